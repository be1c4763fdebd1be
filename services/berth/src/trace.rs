//! `berth trace <correlation-id>`: every event of one correlation across services and
//! aggregates, in log order, grouped by the command (or event) that caused it — from the
//! `audit_log` projection.

use anyhow::{bail, Context};
use berth_runtime::{connect_db, ConnectArgs};
use chrono::{DateTime, Utc};
use clap::Args;
use serde::Serialize;
use uuid::Uuid;

use crate::output::{print, Output};

#[derive(Args, Debug)]
pub struct TraceArgs {
    correlation_id: Uuid,
    #[arg(long, value_enum, default_value_t)]
    output: Output,
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct Step {
    pub stream_seq: i64,
    pub time: DateTime<Utc>,
    pub actor: String,
    pub tenant: String,
    pub subject: String,
    pub event_type: String,
    pub event_id: Uuid,
    /// The command (or event) that caused it.
    pub causation_id: Uuid,
}

/// The steps of one correlation, in log order.
pub async fn steps(db: &sqlx::PgPool, correlation_id: Uuid) -> anyhow::Result<Vec<Step>> {
    sqlx::query_as(
        "SELECT stream_seq, time, actor, tenant, subject, event_type, event_id, causation_id
         FROM audit_log.events WHERE correlation_id = $1 ORDER BY stream_seq",
    )
    .bind(correlation_id)
    .fetch_all(db)
    .await
    .context("reading audit_log")
}

pub async fn run(args: TraceArgs) -> anyhow::Result<()> {
    let db = connect_db(&args.connect.database_url).await?;
    let steps = steps(&db, args.correlation_id).await?;
    if steps.is_empty() {
        bail!(
            "no events with correlation id {} (`berth events show <aggregate-id>` prints each event's correlation id)",
            args.correlation_id
        );
    }
    print(
        args.output,
        &["SEQ", "TIME", "ACTOR", "EVENT", "SUBJECT", "CAUSED BY"],
        &steps,
        |s| {
            vec![
                s.stream_seq.to_string(),
                s.time.format("%H:%M:%S%.3f").to_string(),
                s.actor.clone(),
                s.event_type.clone(),
                s.subject.clone(),
                if s.causation_id == args.correlation_id {
                    "the first command".to_owned()
                } else {
                    s.causation_id.to_string()
                },
            ]
        },
    );
    Ok(())
}
