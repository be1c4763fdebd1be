-- Events a projection parked: it could not apply them for a reason that would repeat
-- on every try (bad data, a constraint, an undecodable body), so it recorded them here,
-- moved its checkpoint past them in the same transaction and went on with the next
-- events (DESIGN §7). `berth projections retry` applies one again and removes its row;
-- `berth projections skip` keeps the row with `resolved = 'skipped'`, so what was
-- skipped stays visible.
CREATE TABLE IF NOT EXISTS berth.parked_events (
    projection text NOT NULL,
    stream_seq bigint NOT NULL CHECK (stream_seq > 0),
    subject text NOT NULL,
    event_type text NOT NULL,
    error text NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 1 CHECK (attempts > 0),
    resolved text CHECK (resolved IN ('skipped')),
    resolved_at timestamptz,
    PRIMARY KEY (projection, stream_seq),
    CHECK ((resolved IS NULL) = (resolved_at IS NULL))
);

CREATE INDEX IF NOT EXISTS parked_events_open
    ON berth.parked_events (projection, stream_seq) WHERE resolved IS NULL;

-- A projection no longer stops at an event; this table now holds the transient error
-- (lost connection, deadlock, …) a projection keeps retrying, from its checkpoint.
COMMENT ON TABLE berth.projection_faults IS
    'A transient error a projection is retrying with back-off: stream_seq is its checkpoint';
