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
//! A projection that cannot apply an event commits everything before it, records the
//! fault in `berth.projection_faults`, publishes `status.system.projection.<name>` and
//! stops there; it never skips an event. The other projections go on.
//!
//! Batches close when full or when the consumer has nothing more pending (see
//! [`batched`]), so catching up commits few large transactions.
//!
//! [`rebuild`] folds from sequence 1 into a shadow schema while the live schema keeps
//! serving, catches up to the live checkpoint under the projection's advisory lock,
//! compares row counts and checksums, and swaps the schemas in one transaction. A
//! rebuild publishes nothing and causes no side effect.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, consumer::DeliverPolicy};
use async_trait::async_trait;
use berth_schemas::subjects::EVENTS_STREAM;
use futures::{Stream, StreamExt};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use tracing::{error, info, warn};

use crate::error::{Error, Result};
use crate::store::StoredEvent;
use crate::Runtime;

/// A changed row to announce on its status subject after the commit.
#[derive(Debug, Clone)]
pub struct StatusUpdate {
    pub subject: String,
    pub body: serde_json::Value,
}

/// Why a batch could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// This event cannot be applied: the projection stops here.
    #[error("event {sequence}: {reason}")]
    Event { sequence: u64, reason: String },
    #[error(transparent)]
    Db(#[from] sqlx::Error),
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
pub fn fault_subject(name: &str) -> String {
    format!("status.system.projection.{name}")
}

async fn lock_projection(conn: &mut PgConnection, name: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('berth.projection.' || $1))")
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}

async fn checkpoint_for_update(conn: &mut PgConnection, name: &str) -> sqlx::Result<u64> {
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

/// What happened to one batch.
enum BatchOutcome {
    Applied,
    Stalled { sequence: u64, reason: String },
}

/// Applies one batch to the live schema with the checkpoint, then publishes status.
async fn apply_live(
    rt: &Runtime,
    projection: &dyn Projection,
    events: Vec<StoredEvent>,
) -> Result<BatchOutcome> {
    let name = projection.name();
    let mut tx = rt.db.begin().await.map_err(Error::db("begin"))?;
    lock_projection(&mut tx, name)
        .await
        .map_err(Error::db("lock projection"))?;
    let done = checkpoint_for_update(&mut tx, name)
        .await
        .map_err(Error::db("checkpoint"))?;
    let events: Vec<StoredEvent> = events.into_iter().filter(|e| e.sequence > done).collect();
    let Some(last) = events.last().map(|e| e.sequence) else {
        return Ok(BatchOutcome::Applied);
    };
    match projection.apply(&mut tx, name, &events).await {
        Ok(updates) => {
            advance_checkpoint(&mut tx, name, last)
                .await
                .map_err(Error::db("advance checkpoint"))?;
            tx.commit().await.map_err(Error::db("commit batch"))?;
            publish_status(rt, updates).await;
            Ok(BatchOutcome::Applied)
        }
        Err(ApplyError::Db(e)) => Err(Error::db(format!("apply {name}"))(e)),
        Err(ApplyError::Event { sequence, reason }) => {
            tx.rollback().await.map_err(Error::db("rollback"))?;
            let before: Vec<StoredEvent> = events
                .into_iter()
                .filter(|e| e.sequence < sequence)
                .collect();
            if !before.is_empty() {
                Box::pin(apply_live(rt, projection, before)).await?;
            }
            Ok(BatchOutcome::Stalled { sequence, reason })
        }
    }
}

async fn publish_status(rt: &Runtime, updates: Vec<StatusUpdate>) {
    let mut acks = Vec::with_capacity(updates.len());
    for update in updates {
        let body = serde_json::to_vec(&update.body).expect("status bodies serialize");
        match rt.js.publish(update.subject, body.into()).await {
            Ok(ack) => acks.push(ack),
            Err(e) => warn!(error = %e, "could not publish a status update"),
        }
    }
    for ack in acks {
        if let Err(e) = ack.await {
            warn!(error = %e, "a status update was not stored");
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

/// The recorded fault of a projection that stopped.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub projection: String,
    pub sequence: u64,
    pub error: String,
}

async fn record_fault(rt: &Runtime, fault: &Fault) {
    error!(projection = %fault.projection, sequence = fault.sequence, error = %fault.error,
        "projection stopped at an event it cannot apply");
    let stored = sqlx::query(
        "INSERT INTO berth.projection_faults (projection, stream_seq, error) VALUES ($1, $2, $3)
         ON CONFLICT (projection) DO UPDATE SET stream_seq = $2, error = $3, at = now()",
    )
    .bind(&fault.projection)
    .bind(fault.sequence as i64)
    .bind(&fault.error)
    .execute(&rt.db)
    .await;
    if let Err(e) = stored {
        warn!(error = %e, "could not record the projection fault");
    }
    let body = serde_json::json!({
        "kind": "projection", "id": fault.projection, "state": "stalled",
        "sequence": fault.sequence, "reason": fault.error,
    });
    publish_status(
        rt,
        vec![StatusUpdate {
            subject: fault_subject(&fault.projection),
            body,
        }],
    )
    .await;
}

async fn clear_fault(rt: &Runtime, name: &str) -> Result<()> {
    sqlx::query("DELETE FROM berth.projection_faults WHERE projection = $1")
        .bind(name)
        .execute(&rt.db)
        .await
        .map_err(Error::db("clear fault"))?;
    Ok(())
}

/// Runs a projection live until shutdown or until it meets an event it cannot apply.
pub async fn run(rt: &Runtime, projection: Arc<dyn Projection>) -> Result<()> {
    let name = projection.name();
    prepare(&rt.db, projection.as_ref()).await?;
    clear_fault(rt, name).await?;
    republish_status(rt, projection.as_ref()).await?;
    while !rt.shutdown.is_cancelled() {
        match follow(rt, projection.as_ref()).await {
            Ok(Some(fault)) => {
                record_fault(rt, &fault).await;
                rt.shutdown.cancelled().await;
            }
            Ok(None) => {}
            Err(e) => {
                warn!(projection = name, error = %e, "projection interrupted; resuming from its checkpoint");
                tokio::select! {
                    _ = rt.shutdown.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    Ok(())
}

/// Follows `EVENTS` from the checkpoint; returns a fault if it had to stop.
async fn follow(rt: &Runtime, projection: &dyn Projection) -> Result<Option<Fault>> {
    let start = checkpoint(&rt.db, projection.name()).await? + 1;
    let (_, messages) = ordered_from(&rt.js, projection, start).await?;
    let mut batches = Box::pin(batched(messages, rt.settings.projection_batch));
    loop {
        let batch = tokio::select! {
            _ = rt.shutdown.cancelled() => return Ok(None),
            batch = batches.next() => batch,
        };
        let Some(batch) = batch else { return Ok(None) };
        let mut events = Vec::with_capacity(batch.len());
        let mut unreadable = None;
        for message in batch {
            let message = message?;
            match StoredEvent::from_jetstream(&message) {
                Ok(event) => events.push(event),
                Err(e) => {
                    let sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
                    unreadable = Some(Fault {
                        projection: projection.name().into(),
                        sequence,
                        error: e.to_string(),
                    });
                    break;
                }
            }
        }
        match apply_live(rt, projection, events).await? {
            BatchOutcome::Applied => {}
            BatchOutcome::Stalled { sequence, reason } => {
                return Ok(Some(Fault {
                    projection: projection.name().into(),
                    sequence,
                    error: reason,
                }))
            }
        }
        if unreadable.is_some() {
            return Ok(unreadable);
        }
    }
}

/// What a rebuild did.
#[derive(Debug, Clone, Serialize)]
pub struct RebuildReport {
    pub projection: String,
    pub events: u64,
    pub seconds: f64,
    pub checkpoint: u64,
    /// Of `seconds`, the time spent applying batches to Postgres (the rest is reading
    /// and decoding events, and the catch-up, comparison and swap).
    pub apply_seconds: f64,
    pub tables: Vec<TableComparison>,
    pub swapped: bool,
}

impl RebuildReport {
    /// Whether the rebuilt rows equal the live rows, table by table.
    pub fn matches_live(&self) -> bool {
        self.tables.iter().all(|t| t.live == t.rebuilt)
    }

    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.seconds.max(1e-9)
    }
}

/// Row count and checksum of one table, live and rebuilt.
#[derive(Debug, Clone, Serialize)]
pub struct TableComparison {
    pub table: String,
    pub live: TableDigest,
    pub rebuilt: TableDigest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableDigest {
    pub rows: i64,
    pub checksum: String,
}

/// The row count and an order-independent checksum of `schema.table`.
pub async fn digest(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> sqlx::Result<TableDigest> {
    let (rows, checksum): (i64, Option<String>) = sqlx::query_as(&format!(
        "SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {schema}.{table} t"
    ))
    .fetch_one(conn)
    .await?;
    Ok(TableDigest {
        rows,
        checksum: checksum.unwrap_or_default(),
    })
}

/// Progress of a rebuild, reported after every batch.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub applied: u64,
    pub total: u64,
    pub elapsed: Duration,
}

/// Rebuilds a projection into a shadow schema and, unless `dry_run`, swaps it in.
pub async fn rebuild(
    rt: &Runtime,
    projection: &dyn Projection,
    dry_run: bool,
    mut progress: impl FnMut(Progress),
) -> Result<RebuildReport> {
    let name = projection.name();
    let shadow = format!("{name}_rebuild");
    prepare(&rt.db, projection).await?;
    let mut conn = rt.db.acquire().await.map_err(Error::db("acquire"))?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {shadow} CASCADE"))
        .execute(&mut *conn)
        .await
        .map_err(Error::db("drop shadow"))?;
    sqlx::query(&format!("CREATE SCHEMA {shadow}"))
        .execute(&mut *conn)
        .await
        .map_err(Error::db("create shadow"))?;
    projection
        .create_tables(&mut conn, &shadow)
        .await
        .map_err(Error::db("create shadow tables"))?;
    drop(conn);

    let started = Instant::now();
    let mut applied = 0u64;
    let mut apply_time = Duration::ZERO;
    let mut shadow_seq = 0u64;
    let (total, messages) = ordered_from(&rt.js, projection, 1).await?;
    if total > 0 {
        let mut batches = Box::pin(batched(messages, rt.settings.projection_batch));
        while let Some(batch) = batches.next().await {
            let mut events = Vec::with_capacity(batch.len());
            let mut caught_up = false;
            for message in batch {
                let message = message?;
                let info = message.info().map_err(|e| Error::Other(e.to_string()))?;
                caught_up = info.pending == 0;
                events.push(StoredEvent::from_jetstream(&message)?);
            }
            shadow_seq = events.last().map_or(shadow_seq, |e| e.sequence);
            applied += events.len() as u64;
            let applying = Instant::now();
            apply_shadow(&rt.db, projection, &shadow, &events).await?;
            apply_time += applying.elapsed();
            progress(Progress {
                applied,
                total,
                elapsed: started.elapsed(),
            });
            if caught_up {
                break;
            }
        }
    }

    let mut tx = rt.db.begin().await.map_err(Error::db("begin swap"))?;
    lock_projection(&mut tx, name)
        .await
        .map_err(Error::db("lock projection"))?;
    let live = checkpoint_for_update(&mut tx, name)
        .await
        .map_err(Error::db("checkpoint"))?;
    if live > shadow_seq {
        let (_, messages) = ordered_from(&rt.js, projection, shadow_seq + 1).await?;
        let mut messages = Box::pin(messages);
        let mut tail = Vec::new();
        while let Some(message) = messages.next().await {
            let message = message?;
            let event = StoredEvent::from_jetstream(&message)?;
            if event.sequence > live {
                break;
            }
            let reached = event.sequence == live;
            tail.push(event);
            if reached {
                break;
            }
        }
        applied += tail.len() as u64;
        apply_or_fail(projection, &mut tx, &shadow, &tail).await?;
        shadow_seq = live;
    }
    let mut tables = Vec::new();
    for table in projection.tables() {
        tables.push(TableComparison {
            table: (*table).to_owned(),
            live: digest(&mut tx, name, table)
                .await
                .map_err(Error::db("digest live"))?,
            rebuilt: digest(&mut tx, &shadow, table)
                .await
                .map_err(Error::db("digest rebuilt"))?,
        });
    }
    if dry_run {
        tx.rollback().await.map_err(Error::db("rollback"))?;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {shadow} CASCADE"))
            .execute(&rt.db)
            .await
            .map_err(Error::db("drop shadow"))?;
    } else {
        let retired = format!("{name}_retired");
        for statement in [
            format!("DROP SCHEMA IF EXISTS {retired} CASCADE"),
            format!("ALTER SCHEMA {name} RENAME TO {retired}"),
            format!("ALTER SCHEMA {shadow} RENAME TO {name}"),
            format!("DROP SCHEMA {retired} CASCADE"),
        ] {
            sqlx::query(&statement)
                .execute(&mut *tx)
                .await
                .map_err(Error::db("swap schemas"))?;
        }
        advance_checkpoint(&mut tx, name, shadow_seq)
            .await
            .map_err(Error::db("advance checkpoint"))?;
        tx.commit().await.map_err(Error::db("commit swap"))?;
        info!(
            projection = name,
            events = applied,
            "projection rebuilt and swapped in"
        );
    }
    Ok(RebuildReport {
        projection: name.to_owned(),
        events: applied,
        seconds: started.elapsed().as_secs_f64(),
        checkpoint: shadow_seq.max(live),
        apply_seconds: apply_time.as_secs_f64(),
        tables,
        swapped: !dry_run,
    })
}

async fn apply_shadow(
    db: &PgPool,
    projection: &dyn Projection,
    shadow: &str,
    events: &[StoredEvent],
) -> Result<()> {
    let mut tx = db.begin().await.map_err(Error::db("begin"))?;
    apply_or_fail(projection, &mut tx, shadow, events).await?;
    tx.commit()
        .await
        .map_err(Error::db("commit shadow batch"))?;
    Ok(())
}

async fn apply_or_fail(
    projection: &dyn Projection,
    conn: &mut PgConnection,
    schema: &str,
    events: &[StoredEvent],
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    match projection.apply(conn, schema, events).await {
        Ok(_) => Ok(()),
        Err(ApplyError::Db(e)) => Err(Error::db("apply")(e)),
        Err(ApplyError::Event { sequence, reason }) => Err(Error::Other(format!(
            "rebuild of {} stopped at event {sequence}: {reason}",
            projection.name()
        ))),
    }
}
