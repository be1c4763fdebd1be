//! Projections: Postgres read models folded from `EVENTS`.
//!
//! Each projection owns the Postgres schema named after it. The live runner reads
//! `EVENTS` with an ordered consumer from its checkpoint and applies each batch of
//! events in one transaction **together with** the checkpoint (`berth.checkpoints`,
//! only ever moved forwards), so a crash or a redelivery is exactly-once in effect:
//! Postgres owns the position, not NATS. After the commit it publishes the changed
//! rows to `status.<tenant>.<kind>.<id>`, and on start it republishes every row's status
//! (a crash between a commit and its publish would otherwise leave a subject behind).
//!
//! One bad event freezes nothing (DESIGN §7). When a batch fails, [`classify`] says
//! whether trying again can help:
//! - a **transient** error (connection, pool, deadlock, a server shutting down) is
//!   retried from the checkpoint with capped back-off; after a few failures in a row
//!   the projection shows as `retrying` (in `berth.projection_faults`);
//! - a **deterministic** one (an envelope or body that does not decode, an
//!   [`ApplyError::Event`], a Postgres data exception, constraint violation or schema
//!   error) would fail the same way forever. The batch is then applied again event by
//!   event, each in a savepoint of one transaction, and exactly the events that fail are
//!   **parked** in `berth.parked_events` ([`crate::parked`]) while the checkpoint moves
//!   past them in the same transaction. The projection goes on with the next events; the
//!   fault stays visible on `status.system.projection.<name>` (`degraded`, the parked
//!   count, the last error) and in `berth status` until an operator retries or skips
//!   each parked event (`berth projections retry|skip`).
//!
//! Batches close when full or when the consumer has nothing more pending (see
//! [`batched`]), so catching up commits few large transactions.
//!
//! [`rebuild`] folds from sequence 1 into a shadow schema while the live schema keeps
//! serving, catches up to the live checkpoint under the projection's advisory lock,
//! compares row counts and checksums, and swaps the schemas in one transaction. It
//! leaves out the events the live projection parked, as the live rows do. A rebuild
//! publishes nothing and causes no side effect.

#![allow(
    clippy::disallowed_methods,
    reason = "raw NATS belongs to berth-runtime: projections publish the status they keep"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, consumer::DeliverPolicy};
use async_trait::async_trait;
use berth_schemas::ids::InvalidToken;
use berth_schemas::status::{Status, StatusState};
use berth_schemas::subjects::{status_subject, StatusKind, EVENTS_STREAM};
use berth_schemas::TenantId;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use tracing::{error, info, warn};

use crate::error::{Error, Result};
use crate::parked::{self, Parking};
use crate::store::StoredEvent;
use crate::Runtime;

/// A changed row to announce on its status subject after the commit.
#[derive(Debug, Clone)]
pub struct StatusUpdate {
    pub subject: String,
    pub body: serde_json::Value,
}

impl StatusUpdate {
    /// The update that publishes `status` on its subject.
    pub fn of<T: StatusState>(status: &Status<T>) -> Result<Self, InvalidToken> {
        Ok(Self {
            subject: status.subject()?,
            body: serde_json::to_value(status).expect("statuses serialize"),
        })
    }
}

/// Why a batch could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// This event cannot be applied, and never will be: it is parked.
    #[error("event {sequence}: {reason}")]
    Event { sequence: u64, reason: String },
    /// A body or a value that does not (de)serialize: parked like [`ApplyError::Event`].
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// Postgres refused or failed; [`classify`] tells bad data from a lost connection.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Whether applying an event again can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The same event fails the same way on every try (bad data, a constraint, a
    /// decode, a schema bug): park it and go on with the next.
    Deterministic,
    /// The connection, the pool, a lock, the server: try again after a pause.
    Transient,
}

/// Classifies an apply error: a deterministic error parks the event, a transient one is
/// retried with back-off.
///
/// Postgres errors go by their SQLSTATE class. Deterministic: 21 cardinality violation,
/// 22 data exception (a NUL in `text`, `\u0000` in `jsonb`, a number out of range), 23
/// integrity constraint violation, 42 syntax error or undefined object (a schema bug)
/// and 44 check option violation — except 42501, a missing privilege, which an operator
/// fixes without touching the event. Transient: 08 connection, 40 transaction rollback
/// (serialization failure, deadlock), 53 insufficient resources, 55 lock not available,
/// 57 operator intervention (admin shutdown, cancel) and every other class. Errors sqlx
/// raises itself are deterministic when they are about a row or a value (not found,
/// column, encode, decode) and transient otherwise (I/O, TLS, protocol, pool), so an
/// unknown error is never a reason to park.
pub fn classify(error: &ApplyError) -> ErrorClass {
    use ErrorClass::{Deterministic, Transient};
    match error {
        ApplyError::Event { .. } | ApplyError::Json(_) => Deterministic,
        ApplyError::Db(sqlx::Error::Database(e)) => match e.code().as_deref() {
            Some("42501") | None => Transient,
            Some(code) => match code.get(..2) {
                Some("21" | "22" | "23" | "42" | "44") => Deterministic,
                _ => Transient,
            },
        },
        ApplyError::Db(
            sqlx::Error::RowNotFound
            | sqlx::Error::TypeNotFound { .. }
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Encode(_)
            | sqlx::Error::Decode(_),
        ) => Deterministic,
        ApplyError::Db(_) => Transient,
    }
}

/// The error as recorded with a parked event: Postgres errors with their SQLSTATE.
pub(crate) fn describe(error: &ApplyError) -> String {
    match error {
        ApplyError::Event { reason, .. } => reason.clone(),
        ApplyError::Db(sqlx::Error::Database(e)) => match e.code() {
            Some(code) => format!("{} (SQLSTATE {code})", e.message()),
            None => e.message().to_owned(),
        },
        other => other.to_string(),
    }
}

/// An apply error as the runtime's error (a transient failure to retry).
fn apply_error(name: &str, error: ApplyError) -> Error {
    match error {
        ApplyError::Db(e) => Error::db(format!("apply {name}"))(e),
        other => Error::Apply(format!("apply {name}: {other}")),
    }
}

/// A read model in Postgres.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// The projection's name, which is also its live Postgres schema.
    fn name(&self) -> &'static str;
    /// The `EVENTS` subjects it folds.
    fn filter_subjects(&self) -> Vec<String>;
    /// Its tables, for verification after a rebuild.
    fn tables(&self) -> &'static [&'static str];
    /// Creates its tables in `schema` if they are missing.
    async fn create_tables(&self, conn: &mut PgConnection, schema: &str) -> sqlx::Result<()>;
    /// The status of every row, published when the projection starts so that a status
    /// lost between a commit and its publish (a crash) is restored. None by default.
    async fn current_status(
        &self,
        _conn: &mut PgConnection,
        _schema: &str,
    ) -> sqlx::Result<Vec<StatusUpdate>> {
        Ok(Vec::new())
    }
    /// Applies `events` (in stream order) to `schema`; returns the status updates to
    /// publish once the transaction commits.
    async fn apply(
        &self,
        conn: &mut PgConnection,
        schema: &str,
        events: &[StoredEvent],
    ) -> Result<Vec<StatusUpdate>, ApplyError>;
}

/// The status subject a projection's own health goes to.
pub fn fault_subject(name: &str) -> Result<String> {
    Ok(status_subject(
        &TenantId::system(),
        StatusKind::Projection,
        name,
    )?)
}

pub(crate) async fn lock_projection(conn: &mut PgConnection, name: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('berth.projection.' || $1))")
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) async fn checkpoint_for_update(
    conn: &mut PgConnection,
    name: &str,
) -> sqlx::Result<u64> {
    sqlx::query("INSERT INTO berth.checkpoints (projection, stream_seq) VALUES ($1, 0) ON CONFLICT DO NOTHING")
        .bind(name)
        .execute(&mut *conn)
        .await?;
    let seq: i64 = sqlx::query_scalar(
        "SELECT stream_seq FROM berth.checkpoints WHERE projection = $1 FOR UPDATE",
    )
    .bind(name)
    .fetch_one(conn)
    .await?;
    Ok(seq as u64)
}

async fn advance_checkpoint(conn: &mut PgConnection, name: &str, seq: u64) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE berth.checkpoints SET stream_seq = $2, updated_at = now() WHERE projection = $1 AND stream_seq < $2",
    )
    .bind(name)
    .bind(seq as i64)
    .execute(conn)
    .await?;
    Ok(())
}

/// The live checkpoint of a projection (0 before its first event).
pub async fn checkpoint(db: &PgPool, name: &str) -> Result<u64> {
    let seq: Option<i64> =
        sqlx::query_scalar("SELECT stream_seq FROM berth.checkpoints WHERE projection = $1")
            .bind(name)
            .fetch_optional(db)
            .await
            .map_err(Error::db("read checkpoint"))?;
    Ok(seq.unwrap_or(0) as u64)
}

/// Creates the live schema and tables if missing.
pub async fn prepare(db: &PgPool, projection: &dyn Projection) -> Result<()> {
    let mut tx = db.begin().await.map_err(Error::db("begin"))?;
    lock_projection(&mut tx, projection.name())
        .await
        .map_err(Error::db("lock projection"))?;
    sqlx::query(&format!(
        "CREATE SCHEMA IF NOT EXISTS {}",
        projection.name()
    ))
    .execute(&mut *tx)
    .await
    .map_err(Error::db("create schema"))?;
    projection
        .create_tables(&mut tx, projection.name())
        .await
        .map_err(Error::db("create tables"))?;
    checkpoint_for_update(&mut tx, projection.name())
        .await
        .map_err(Error::db("checkpoint"))?;
    tx.commit().await.map_err(Error::db("commit"))?;
    Ok(())
}

/// An ordered consumer over the projection's subjects from `start` (inclusive).
async fn ordered_from(
    js: &jetstream::Context,
    projection: &dyn Projection,
    start: u64,
) -> Result<(u64, impl Stream<Item = Result<jetstream::Message>>)> {
    let stream = js
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| Error::nats("get EVENTS stream", e))?;
    let mut consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subjects: projection.filter_subjects(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start.max(1),
            },
            ..Default::default()
        })
        .await
        .map_err(|e| Error::nats("create ordered consumer", e))?;
    let pending = consumer
        .info()
        .await
        .map_err(|e| Error::nats("consumer info", e))?
        .num_pending;
    let messages = consumer
        .messages()
        .await
        .map_err(|e| Error::nats("consume", e))?;
    Ok((
        pending,
        messages.map(|m| m.map_err(|e| Error::nats("ordered consumer", e))),
    ))
}

/// How many events the projection follows lie above `checkpoint`: what it has yet to
/// apply. Counted by the server (`num_pending` of a throw-away consumer on the
/// projection's subjects starting after the checkpoint), so events on other subjects —
/// however many — never make an idle projection look behind.
pub async fn behind(
    js: &jetstream::Context,
    projection: &dyn Projection,
    checkpoint: u64,
) -> Result<u64> {
    let stream = js
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| Error::nats("get EVENTS stream", e))?;
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            filter_subjects: projection.filter_subjects(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: checkpoint + 1,
            },
            ack_policy: consumer::AckPolicy::None,
            headers_only: true,
            memory_storage: true,
            inactive_threshold: Duration::from_secs(10),
            ..Default::default()
        })
        .await
        .map_err(|e| Error::nats("create counting consumer", e))?;
    let info = consumer.cached_info();
    if let Err(e) = stream.delete_consumer(&info.name).await {
        warn!(error = %e, error.code = "nats", "could not delete a counting consumer; it expires on its own");
    }
    Ok(info.num_pending)
}

/// Groups an ordered consumer's messages into batches: a batch closes when it is full
/// or when the consumer reports nothing more pending, so a rebuild commits large
/// batches and a live projection that is caught up commits at once.
fn batched(
    messages: impl Stream<Item = Result<jetstream::Message>>,
    max: usize,
) -> impl Stream<Item = Vec<Result<jetstream::Message>>> {
    futures::stream::unfold(
        (Box::pin(messages), false),
        move |(mut messages, ended)| async move {
            if ended {
                return None;
            }
            let mut batch = Vec::new();
            loop {
                match messages.next().await {
                    None => return (!batch.is_empty()).then_some((batch, (messages, true))),
                    Some(message) => {
                        let caught_up = match &message {
                            Ok(m) => m.info().map(|info| info.pending == 0).unwrap_or(true),
                            Err(_) => true,
                        };
                        batch.push(message);
                        if caught_up || batch.len() >= max {
                            return Some((batch, (messages, false)));
                        }
                    }
                }
            }
        },
    )
}

/// Splits a batch into the events and the messages whose envelope does not even
/// decode (those are parked without being applied).
fn read_batch(batch: Vec<Result<jetstream::Message>>) -> Result<(Vec<StoredEvent>, Vec<Parking>)> {
    let mut events = Vec::with_capacity(batch.len());
    let mut unreadable = Vec::new();
    for message in batch {
        let message = message?;
        match StoredEvent::from_jetstream(&message) {
            Ok(event) => events.push(event),
            Err(e) => {
                let info = message.info().map_err(|e| {
                    Error::Malformed(format!("message without JetStream info: {e}"))
                })?;
                unreadable.push(Parking::unreadable(
                    info.stream_sequence,
                    &message.subject,
                    message.headers.as_ref(),
                    e.to_string(),
                ));
            }
        }
    }
    Ok((events, unreadable))
}

/// Applies one batch to the live schema with the checkpoint, then publishes status.
/// When the batch fails deterministically it is applied again event by event, so that
/// exactly the events that fail are parked; a transient failure is returned, to be
/// retried from the checkpoint.
async fn apply_live(
    rt: &Runtime,
    projection: &dyn Projection,
    events: Vec<StoredEvent>,
    unreadable: Vec<Parking>,
) -> Result<()> {
    let name = projection.name();
    if unreadable.is_empty() {
        match apply_batch(rt, projection, &events).await {
            Ok(()) => return Ok(()),
            Err(e) if classify(&e) == ErrorClass::Deterministic => {
                warn!(projection = name, error = %e, error.code = "apply",
                    "a batch failed on its data; applying it event by event to park what fails");
            }
            Err(e) => return Err(apply_error(name, e)),
        }
    }
    apply_parking(rt, projection, events, unreadable).await
}

/// The common case: the whole batch in one transaction with the checkpoint.
async fn apply_batch(
    rt: &Runtime,
    projection: &dyn Projection,
    events: &[StoredEvent],
) -> Result<(), ApplyError> {
    let name = projection.name();
    let mut tx = rt.db.begin().await?;
    lock_projection(&mut tx, name).await?;
    let done = checkpoint_for_update(&mut tx, name).await?;
    let fresh = events
        .iter()
        .position(|e| e.sequence > done)
        .map_or(&[][..], |first| &events[first..]);
    let Some(last) = fresh.last().map(|e| e.sequence) else {
        return Ok(());
    };
    let updates = projection.apply(&mut tx, name, fresh).await?;
    advance_checkpoint(&mut tx, name, last).await?;
    tx.commit().await?;
    publish_status(rt, updates).await;
    Ok(())
}

/// After a deterministic failure: each event in a savepoint of one transaction; the
/// events that fail deterministically are parked, and the checkpoint moves past the whole
/// batch in the same transaction as the park records.
async fn apply_parking(
    rt: &Runtime,
    projection: &dyn Projection,
    events: Vec<StoredEvent>,
    mut parking: Vec<Parking>,
) -> Result<()> {
    let name = projection.name();
    let mut tx = rt.db.begin().await.map_err(Error::db("begin"))?;
    lock_projection(&mut tx, name)
        .await
        .map_err(Error::db("lock projection"))?;
    let done = checkpoint_for_update(&mut tx, name)
        .await
        .map_err(Error::db("checkpoint"))?;
    parking.retain(|p| p.sequence > done);
    let mut updates = Vec::new();
    for event in events.iter().filter(|e| e.sequence > done) {
        match apply_one(&mut tx, projection, name, event).await? {
            Ok(changed) => updates.extend(changed),
            Err(error) => parking.push(Parking::event(event, error)),
        }
    }
    let last = events
        .iter()
        .map(|e| e.sequence)
        .chain(parking.iter().map(|p| p.sequence))
        .max()
        .filter(|last| *last > done);
    let Some(last) = last else {
        return Ok(());
    };
    parked::park(&mut tx, name, &parking)
        .await
        .map_err(Error::db("park events"))?;
    advance_checkpoint(&mut tx, name, last)
        .await
        .map_err(Error::db("advance checkpoint"))?;
    tx.commit().await.map_err(Error::db("commit batch"))?;
    for parked in &parking {
        error!(projection = name, sequence = parked.sequence, subject = %parked.subject,
            event_type = %parked.event_type, error = %parked.error, error.code = "apply",
            "parked an event the projection cannot apply; going on with the next");
    }
    publish_status(rt, updates).await;
    if !parking.is_empty() {
        parked::publish_health(rt, name).await;
    }
    Ok(())
}

/// Applies one event in a savepoint of `conn`'s transaction. `Ok(Ok(updates))`: applied;
/// `Ok(Err(reason))`: it failed deterministically and the savepoint was rolled back;
/// `Err`: a transient failure.
pub(crate) async fn apply_one(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    schema: &str,
    event: &StoredEvent,
) -> Result<Result<Vec<StatusUpdate>, String>> {
    let mut savepoint = sqlx::Connection::begin(&mut *conn)
        .await
        .map_err(Error::db("savepoint"))?;
    match projection
        .apply(&mut savepoint, schema, std::slice::from_ref(event))
        .await
    {
        Ok(updates) => {
            savepoint
                .commit()
                .await
                .map_err(Error::db("release savepoint"))?;
            Ok(Ok(updates))
        }
        Err(e) if classify(&e) == ErrorClass::Deterministic => {
            savepoint
                .rollback()
                .await
                .map_err(Error::db("roll back to savepoint"))?;
            Ok(Err(describe(&e)))
        }
        Err(e) => Err(apply_error(projection.name(), e)),
    }
}

pub(crate) async fn publish_status(rt: &Runtime, updates: Vec<StatusUpdate>) {
    let mut acks = Vec::with_capacity(updates.len());
    for update in updates {
        let body = serde_json::to_vec(&update.body).expect("status bodies serialize");
        match rt.js.publish(update.subject, body.into()).await {
            Ok(ack) => acks.push(ack),
            Err(e) => warn!(error = %e, error.code = "nats", "could not publish a status update"),
        }
    }
    for ack in acks {
        if let Err(e) = ack.await {
            warn!(error = %e, error.code = "nats", "a status update was not stored");
        }
    }
}

/// Publishes every row's status, so the status subjects agree with the rows even if the
/// last run died between a commit and its publish. Clients drop what is not newer.
async fn republish_status(rt: &Runtime, projection: &dyn Projection) -> Result<()> {
    let mut conn = rt.db.acquire().await.map_err(Error::db("acquire"))?;
    let updates = projection
        .current_status(&mut conn, projection.name())
        .await
        .map_err(Error::db("read current status"))?;
    drop(conn);
    publish_status(rt, updates).await;
    Ok(())
}

/// The first pause after a transient failure; it doubles with each failure in a row.
const RETRY_FIRST: Duration = Duration::from_millis(250);
/// The longest pause between two tries.
const RETRY_MAX: Duration = Duration::from_secs(10);
/// Failures in a row after which the projection shows as `retrying`.
const RETRYING_AFTER: u32 = 3;

/// The pause after `failures` transient failures in a row.
fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    RETRY_FIRST.saturating_mul(1 << doublings).min(RETRY_MAX)
}

/// Runs a projection live until shutdown and answers operators' requests about it
/// ([`crate::projection_requests`]). Events it cannot apply are parked; transient
/// failures are retried from the checkpoint with capped back-off.
pub async fn run(rt: &Runtime, projection: Arc<dyn Projection>) -> Result<()> {
    let projection = projection.as_ref();
    // Its tables exist before it answers anyone, so an answer proves them there.
    prepare(&rt.db, projection).await?;
    tokio::try_join!(
        run_live(rt, projection),
        crate::projection_requests::serve(rt, projection)
    )?;
    Ok(())
}

async fn run_live(rt: &Runtime, projection: &dyn Projection) -> Result<()> {
    let name = projection.name();
    parked::forget_retrying(&rt.db, name)
        .await
        .map_err(Error::db("clear the retrying fault"))?;
    republish_status(rt, projection).await?;
    parked::announce(rt, name).await;
    let mut failures = 0u32;
    while !rt.shutdown.is_cancelled() {
        if let Err(e) = follow(rt, projection, &mut failures).await {
            failures = failures.saturating_add(1);
            let delay = retry_delay(failures);
            warn!(projection = name, error = %e, error.code = e.code(), failures, retry_in = ?delay,
                "projection interrupted; retrying from its checkpoint");
            if failures >= RETRYING_AFTER {
                parked::record_retrying(rt, name, &e.to_string()).await;
            }
            tokio::select! {
                _ = rt.shutdown.cancelled() => {}
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
    Ok(())
}

/// Follows `EVENTS` from the checkpoint until shutdown or a transient failure.
async fn follow(rt: &Runtime, projection: &dyn Projection, failures: &mut u32) -> Result<()> {
    let name = projection.name();
    let start = checkpoint(&rt.db, name).await? + 1;
    let (pending, messages) = ordered_from(&rt.js, projection, start).await?;
    if pending == 0 {
        recovered(rt, name, failures).await;
    }
    let mut batches = Box::pin(batched(messages, rt.settings.projection_batch));
    loop {
        let batch = tokio::select! {
            _ = rt.shutdown.cancelled() => return Ok(()),
            batch = batches.next() => batch,
        };
        let Some(batch) = batch else { return Ok(()) };
        let (events, unreadable) = read_batch(batch)?;
        apply_live(rt, projection, events, unreadable).await?;
        recovered(rt, name, failures).await;
    }
}

/// The projection moves again: forget the failures and a `retrying` state.
async fn recovered(rt: &Runtime, name: &str, failures: &mut u32) {
    if *failures >= RETRYING_AFTER {
        info!(projection = name, "projection recovered");
        parked::clear_retrying(rt, name).await;
    }
    *failures = 0;
}

mod rebuild;
pub use rebuild::{digest, rebuild, Progress, RebuildReport, TableComparison, TableDigest};

#[cfg(test)]
mod tests;
