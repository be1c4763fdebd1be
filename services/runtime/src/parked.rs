//! Parked events and the health of projections.
//!
//! A projection that meets an event it can never apply (see
//! [`projection::classify`](crate::projection::classify)) parks it in
//! `berth.parked_events` and goes on; this module is the operator's side of that:
//!
//! - [`list`] the parked events; [`retry`] one after a fix — it is applied to the live
//!   schema in one transaction with the removal of its park record, or stays parked
//!   with the new error; [`skip`] one — it stays listed, resolved as `skipped`.
//! - [`Health`]: `ok`, `degraded` (events parked) or `retrying` (a transient error the
//!   projection keeps retrying, kept in `berth.projection_faults`), published on
//!   `status.system.projection.<name>` whenever it changes, and with the position and
//!   the events still to apply in [`status`] (what `berth status` shows).
//!
//! Health is read and published under the projection's advisory lock, so the runner
//! and an operator's retry or skip publish in the order their changes committed.

#![allow(
    clippy::disallowed_methods,
    reason = "raw NATS belongs to berth-runtime: a projection's fault is published to its health subject here"
)]

use std::collections::HashSet;

use async_nats::HeaderMap;
use berth_schemas::envelope::headers;
pub use berth_schemas::status::HealthState;
use berth_schemas::status::{ProjectionHealth, Status};
use berth_schemas::subjects::EVENTS_STREAM;
use berth_schemas::TenantId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor, PgPool};
use tracing::warn;

use crate::client::last_status;
use crate::error::{Error, Result};
use crate::projection::{
    self, apply_one, fault_subject, lock_projection, publish_status, Projection,
};
use crate::store::StoredEvent;
use crate::Runtime;

/// An event a projection is about to park: where it is and why it cannot be applied.
#[derive(Debug, Clone)]
pub(crate) struct Parking {
    pub sequence: u64,
    pub subject: String,
    pub event_type: String,
    pub error: String,
}

impl Parking {
    /// An event whose apply failed deterministically.
    pub(crate) fn event(event: &StoredEvent, error: String) -> Self {
        Self {
            sequence: event.sequence,
            subject: event.subject.clone(),
            event_type: event.meta.event_type.clone(),
            error,
        }
    }

    /// A message whose envelope does not decode; its type is read leniently, if present.
    pub(crate) fn unreadable(
        sequence: u64,
        subject: &str,
        headers: Option<&HeaderMap>,
        error: String,
    ) -> Self {
        let event_type = headers
            .and_then(|map| {
                map.iter()
                    .find(|(name, _)| name.to_string().eq_ignore_ascii_case(headers::TYPE))
                    .and_then(|(_, values)| values.first())
                    .map(|value| value.to_string())
            })
            .unwrap_or_default();
        Self {
            sequence,
            subject: subject.to_owned(),
            event_type,
            error,
        }
    }
}

/// Records parked events in the caller's transaction (the one that moves the checkpoint
/// past them).
pub(crate) async fn park(
    conn: &mut PgConnection,
    projection: &str,
    events: &[Parking],
) -> sqlx::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO berth.parked_events (projection, stream_seq, subject, event_type, error)
         SELECT $1, * FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::text[])
         ON CONFLICT (projection, stream_seq) DO UPDATE
            SET error = EXCLUDED.error, attempts = berth.parked_events.attempts + 1",
    )
    .bind(projection)
    .bind(events.iter().map(|e| e.sequence as i64).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.subject.clone()).collect::<Vec<_>>())
    .bind(
        events
            .iter()
            .map(|e| e.event_type.clone())
            .collect::<Vec<_>>(),
    )
    .bind(events.iter().map(|e| e.error.clone()).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// The sequences a projection parked, resolved or not: a rebuild leaves them out, as the
/// live rows do.
pub(crate) async fn sequences<'e>(
    db: impl PgExecutor<'e>,
    projection: &str,
) -> sqlx::Result<HashSet<u64>> {
    let rows: Vec<i64> =
        sqlx::query_scalar("SELECT stream_seq FROM berth.parked_events WHERE projection = $1")
            .bind(projection)
            .fetch_all(db)
            .await?;
    Ok(rows.into_iter().map(|seq| seq as u64).collect())
}

/// One parked event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ParkedEvent {
    pub projection: String,
    /// Its sequence in `EVENTS`.
    #[sqlx(rename = "stream_seq")]
    pub sequence: i64,
    pub subject: String,
    /// The CloudEvents type (empty if the envelope did not decode).
    pub event_type: String,
    /// Why it could not be applied, from the last try.
    pub error: String,
    pub parked_at: DateTime<Utc>,
    /// Tries so far: the first, and one per retry.
    pub attempts: i32,
    /// `skipped` once an operator skipped it; `None` while it waits.
    pub resolved: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str =
    "projection, stream_seq, subject, event_type, error, parked_at, attempts, resolved, resolved_at";

/// Parked events, oldest first: of one projection or all; waiting ones only unless
/// `include_resolved`.
pub async fn list(
    db: &PgPool,
    projection: Option<&str>,
    include_resolved: bool,
) -> Result<Vec<ParkedEvent>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM berth.parked_events
         WHERE ($1::text IS NULL OR projection = $1) AND ($2 OR resolved IS NULL)
         ORDER BY stream_seq, projection"
    ))
    .bind(projection)
    .bind(include_resolved)
    .fetch_all(db)
    .await
    .map_err(Error::db("list parked events"))
}

/// One parked event, resolved or not.
pub async fn get(db: &PgPool, projection: &str, sequence: u64) -> Result<Option<ParkedEvent>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM berth.parked_events WHERE projection = $1 AND stream_seq = $2"
    ))
    .bind(projection)
    .bind(sequence as i64)
    .fetch_optional(db)
    .await
    .map_err(Error::db("read parked event"))
}

/// What a retry did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Retried {
    /// The event is applied and no longer parked.
    Applied,
    /// It failed again and stays parked, with the new error.
    StillParked { parked: ParkedEvent },
}

/// Applies a parked event (waiting or skipped) to the live schema now, in one
/// transaction with the removal of its park record; if it fails again deterministically
/// it stays parked with the new error. It is applied to the rows as they are now — the
/// projection has gone on since — so retry an aggregate's parked events in order.
pub async fn retry(rt: &Runtime, projection: &dyn Projection, sequence: u64) -> Result<Retried> {
    let name = projection.name();
    let stream = rt
        .js
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| Error::nats("get EVENTS stream", e))?;
    let message = stream
        .direct_get(sequence)
        .await
        .map_err(|e| Error::nats(format!("read event {sequence} from EVENTS"), e))?;
    let event = StoredEvent::from_parts(
        sequence,
        message.subject.to_string(),
        message.headers,
        message.payload,
    );

    let mut tx = rt.db.begin().await.map_err(Error::db("begin"))?;
    lock_projection(&mut tx, name)
        .await
        .map_err(Error::db("lock projection"))?;
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT stream_seq FROM berth.parked_events
         WHERE projection = $1 AND stream_seq = $2 FOR UPDATE",
    )
    .bind(name)
    .bind(sequence as i64)
    .fetch_optional(&mut *tx)
    .await
    .map_err(Error::db("read parked event"))?;
    if found.is_none() {
        return Err(Error::NotFound(format!(
            "event {sequence} is not parked in {name}"
        )));
    }
    let outcome = match &event {
        Ok(event) => apply_one(&mut tx, projection, name, event).await?,
        Err(e) => Err(e.to_string()),
    };
    let retried = match outcome {
        Ok(updates) => {
            sqlx::query(
                "DELETE FROM berth.parked_events WHERE projection = $1 AND stream_seq = $2",
            )
            .bind(name)
            .bind(sequence as i64)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("unpark event"))?;
            tx.commit().await.map_err(Error::db("commit retry"))?;
            publish_status(rt, updates).await;
            Retried::Applied
        }
        Err(error) => {
            let parked = sqlx::query_as(&format!(
                "UPDATE berth.parked_events SET error = $3, attempts = attempts + 1
                 WHERE projection = $1 AND stream_seq = $2 RETURNING {COLUMNS}"
            ))
            .bind(name)
            .bind(sequence as i64)
            .bind(&error)
            .fetch_one(&mut *tx)
            .await
            .map_err(Error::db("record the retry"))?;
            tx.commit().await.map_err(Error::db("commit retry"))?;
            Retried::StillParked { parked }
        }
    };
    publish_health(rt, name).await;
    Ok(retried)
}

/// Resolves a waiting parked event as skipped: the projection will never apply it. The
/// record stays (see [`list`] with `include_resolved`).
pub async fn skip(rt: &Runtime, projection: &str, sequence: u64) -> Result<ParkedEvent> {
    let skipped: Option<ParkedEvent> = sqlx::query_as(&format!(
        "UPDATE berth.parked_events SET resolved = 'skipped', resolved_at = now()
         WHERE projection = $1 AND stream_seq = $2 AND resolved IS NULL RETURNING {COLUMNS}"
    ))
    .bind(projection)
    .bind(sequence as i64)
    .fetch_optional(&rt.db)
    .await
    .map_err(Error::db("skip parked event"))?;
    let Some(skipped) = skipped else {
        return Err(Error::InvalidState(
            match get(&rt.db, projection, sequence).await? {
                Some(parked) => format!(
                    "event {sequence} of {projection} is already resolved ({})",
                    parked.resolved.unwrap_or_default()
                ),
                None => format!("event {sequence} is not parked in {projection}"),
            },
        ));
    };
    publish_health(rt, projection).await;
    Ok(skipped)
}

/// A projection's faults: parked events and a transient error being retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub state: HealthState,
    /// Parked events waiting for an operator (skipped ones not counted).
    pub parked: u64,
    /// The last waiting parked event.
    pub sequence: Option<u64>,
    /// The error being retried, else the last parked event's error.
    pub reason: Option<String>,
}

/// Reads a projection's health.
pub async fn health(conn: &mut PgConnection, projection: &str) -> sqlx::Result<Health> {
    let (parked, last): (i64, Option<i64>) = sqlx::query_as(
        "SELECT count(*), max(stream_seq) FROM berth.parked_events
         WHERE projection = $1 AND resolved IS NULL",
    )
    .bind(projection)
    .fetch_one(&mut *conn)
    .await?;
    let last_error: Option<String> =
        match last {
            Some(seq) => sqlx::query_scalar(
                "SELECT error FROM berth.parked_events WHERE projection = $1 AND stream_seq = $2",
            )
            .bind(projection)
            .bind(seq)
            .fetch_optional(&mut *conn)
            .await?,
            None => None,
        };
    let retrying: Option<String> =
        sqlx::query_scalar("SELECT error FROM berth.projection_faults WHERE projection = $1")
            .bind(projection)
            .fetch_optional(&mut *conn)
            .await?;
    let state = match (&retrying, parked) {
        (Some(_), _) => HealthState::Retrying,
        (None, 0) => HealthState::Ok,
        (None, _) => HealthState::Degraded,
    };
    Ok(Health {
        state,
        parked: parked as u64,
        sequence: last.map(|seq| seq as u64),
        reason: retrying.or(last_error),
    })
}

/// Publishes a projection's health on `status.system.projection.<name>`: read and
/// published under the projection's lock, so publishes follow the order of the changes.
/// A failure is logged: the state is in Postgres and is published again on start.
pub(crate) async fn publish_health(rt: &Runtime, projection: &str) {
    if let Err(e) = try_publish_health(rt, projection).await {
        warn!(projection, error = %e, error.code = e.code(), "could not publish the projection's health");
    }
}

async fn try_publish_health(rt: &Runtime, projection: &str) -> Result<()> {
    let mut tx = rt.db.begin().await.map_err(Error::db("begin"))?;
    lock_projection(&mut tx, projection)
        .await
        .map_err(Error::db("lock projection"))?;
    let health = health(&mut tx, projection)
        .await
        .map_err(Error::db("read health"))?;
    let status = Status::new(
        projection.to_owned(),
        TenantId::system(),
        // Health has no stream sequence of its own; publishes are ordered by the lock,
        // and the clock orders them for clients that keep the newest version.
        Utc::now().timestamp_micros().unsigned_abs(),
        ProjectionHealth {
            status: health.state,
            parked: health.parked,
            sequence: health.sequence,
            reason: health.reason,
        },
    );
    rt.js
        .publish(fault_subject(projection)?, status.to_json().into())
        .await
        .map_err(|e| Error::nats("publish health", e))?
        .await
        .map_err(|e| Error::nats("store health", e))?;
    tx.commit().await.map_err(Error::db("commit"))?;
    Ok(())
}

/// On start: publishes the health if there is a fault to show or a published one to
/// correct (events skipped or retried while the projection was not running).
pub(crate) async fn announce(rt: &Runtime, projection: &str) {
    let faulty = async {
        let mut conn = rt.db.acquire().await.map_err(Error::db("acquire"))?;
        let health = health(&mut conn, projection)
            .await
            .map_err(Error::db("read health"))?;
        if health.state != HealthState::Ok {
            return Ok(true);
        }
        // A published health that is not `ok`, or does not read as one, is corrected.
        let published: Option<serde_json::Value> =
            last_status(&rt.js, &fault_subject(projection)?).await?;
        Ok::<_, Error>(published.is_some_and(|body| {
            serde_json::from_value::<Status<ProjectionHealth>>(body)
                .map_or(true, |status| status.state.status != HealthState::Ok)
        }))
    };
    match faulty.await {
        Ok(true) => publish_health(rt, projection).await,
        Ok(false) => {}
        Err(e) => {
            warn!(projection, error = %e, error.code = e.code(), "could not read the projection's health")
        }
    }
}

/// Records the transient error a projection keeps retrying, and shows it.
pub(crate) async fn record_retrying(rt: &Runtime, projection: &str, error: &str) {
    let recorded = sqlx::query(
        "INSERT INTO berth.projection_faults (projection, stream_seq, error)
         SELECT $1, coalesce((SELECT stream_seq FROM berth.checkpoints WHERE projection = $1), 0), $2
         ON CONFLICT (projection) DO UPDATE
            SET stream_seq = EXCLUDED.stream_seq, error = EXCLUDED.error, at = now()",
    )
    .bind(projection)
    .bind(error)
    .execute(&rt.db)
    .await;
    match recorded {
        Ok(_) => publish_health(rt, projection).await,
        Err(e) => {
            warn!(projection, error = %e, error.code = "db", "could not record the retrying fault")
        }
    }
}

/// Forgets a `retrying` fault without publishing (on start, before [`announce`]).
pub(crate) async fn forget_retrying(db: &PgPool, projection: &str) -> sqlx::Result<bool> {
    let deleted = sqlx::query("DELETE FROM berth.projection_faults WHERE projection = $1")
        .bind(projection)
        .execute(db)
        .await?;
    Ok(deleted.rows_affected() > 0)
}

/// The projection moves again: forgets its `retrying` fault and shows that.
pub(crate) async fn clear_retrying(rt: &Runtime, projection: &str) {
    match forget_retrying(&rt.db, projection).await {
        Ok(true) => publish_health(rt, projection).await,
        Ok(false) => {}
        Err(e) => {
            warn!(projection, error = %e, error.code = "db", "could not clear the retrying fault")
        }
    }
}

/// A projection's position and faults, as `berth status` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectionStatus {
    pub projection: String,
    pub checkpoint: u64,
    /// Events the projection follows above its checkpoint: what it has yet to apply.
    pub behind: u64,
    #[serde(flatten)]
    pub health: Health,
}

/// Reads a projection's position, what it has yet to apply, and its faults.
pub async fn status(rt: &Runtime, projection: &dyn Projection) -> Result<ProjectionStatus> {
    let name = projection.name();
    let mut conn = rt.db.acquire().await.map_err(Error::db("acquire"))?;
    let checkpoint = projection::checkpoint(&rt.db, name).await?;
    let health = health(&mut conn, name)
        .await
        .map_err(Error::db("read health"))?;
    drop(conn);
    Ok(ProjectionStatus {
        projection: name.to_owned(),
        checkpoint,
        behind: projection::behind(&rt.js, projection, checkpoint).await?,
        health,
    })
}
