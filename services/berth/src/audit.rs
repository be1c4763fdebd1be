//! `berth audit <tenant|aggregate-id>`: who did what and when, from the `audit_log`
//! projection (every event with its actor).

use anyhow::Context;
use berth_runtime::{connect_db, ConnectArgs};
use chrono::{DateTime, Utc};
use clap::Args;
use serde::Serialize;
use uuid::Uuid;

use crate::output::{print, Output};

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// A tenant id, or the id of a VM (or any aggregate).
    of: String,
    /// The most recent N entries.
    #[arg(long, default_value_t = 100)]
    limit: i64,
    #[arg(long, value_enum, default_value_t)]
    output: Output,
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct Entry {
    time: DateTime<Utc>,
    actor: String,
    tenant: String,
    event_type: String,
    aggregate_id: Uuid,
    correlation_id: Uuid,
    stream_seq: i64,
}

pub async fn run(args: AuditArgs) -> anyhow::Result<()> {
    let db = connect_db(&args.connect.database_url).await?;
    let by_aggregate = Uuid::parse_str(&args.of).ok();
    let mut entries: Vec<Entry> = sqlx::query_as(
        "SELECT time, actor, tenant, event_type, aggregate_id, correlation_id, stream_seq
         FROM audit_log.events
         WHERE CASE WHEN $1::uuid IS NULL THEN tenant = $2 ELSE aggregate_id = $1 END
         ORDER BY stream_seq DESC LIMIT $3",
    )
    .bind(by_aggregate)
    .bind(&args.of)
    .bind(args.limit)
    .fetch_all(&db)
    .await
    .context("reading audit_log")?;
    entries.reverse();
    print(
        args.output,
        &[
            "TIME",
            "ACTOR",
            "TENANT",
            "EVENT",
            "AGGREGATE",
            "CORRELATION",
        ],
        &entries,
        |e| {
            vec![
                e.time.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
                e.actor.clone(),
                e.tenant.clone(),
                e.event_type.clone(),
                e.aggregate_id.to_string(),
                e.correlation_id.to_string(),
            ]
        },
    );
    Ok(())
}
