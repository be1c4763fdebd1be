-- The runtime's own bookkeeping. Projections own their schemas; this schema owns
-- their positions and faults.
CREATE SCHEMA IF NOT EXISTS berth;

CREATE TABLE IF NOT EXISTS berth.checkpoints (
    projection text PRIMARY KEY,
    stream_seq bigint NOT NULL DEFAULT 0 CHECK (stream_seq >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS berth.projection_faults (
    projection text PRIMARY KEY,
    stream_seq bigint NOT NULL,
    error text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
