//! `berth state <kind> <id> --at <time|sequence>`: an aggregate as it was, folded from
//! the log with the aggregate's own `apply` up to that point
//! ([`berth_runtime::history`]); `--diff <t1> <t2>` shows what changed between two.

use anyhow::{bail, Context};
use berth_runtime::history::{diff, fold_at, Point};
use berth_runtime::store::{Aggregate, StoredEvent};
use berth_runtime::{connect_nats, ConnectArgs, EventStore};
use berth_schemas::subjects::{event_subject, EVENTS_STREAM};
use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::output::{print_json, Output};

/// The aggregates whose past can be shown.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Vm,
    Server,
    Pod,
    Subscription,
    Account,
    Invoice,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Vm => "vm",
            Self::Server => "server",
            Self::Pod => "pod",
            Self::Subscription => "subscription",
            Self::Account => "account",
            Self::Invoice => "invoice",
        }
    }
}

#[derive(Args, Debug)]
pub struct StateArgs {
    kind: Kind,
    id: Uuid,
    /// The state as of this RFC 3339 time or stream sequence (default: now).
    #[arg(long, conflicts_with = "diff")]
    at: Option<Point>,
    /// What changed between two points: `--diff <t1> <t2>`.
    #[arg(long, num_args = 2, value_names = ["FROM", "TO"])]
    diff: Option<Vec<Point>>,
    #[command(flatten)]
    connect: ConnectArgs,
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

/// An aggregate's state as of a point.
#[derive(Debug, Serialize)]
struct StateAt {
    kind: &'static str,
    id: Uuid,
    tenant: String,
    /// The stream sequence of the last event folded (0: it did not exist yet).
    version: u64,
    as_of: Option<DateTime<Utc>>,
    events: usize,
    state: Value,
}

fn folded<A: Aggregate + Serialize>(
    events: &[StoredEvent],
    point: Point,
) -> anyhow::Result<(Value, u64, Option<DateTime<Utc>>, usize)> {
    let folded = fold_at::<A>(events, point)?;
    Ok((
        serde_json::to_value(&folded.state)?,
        folded.version,
        folded.as_of,
        folded.events,
    ))
}

async fn state_at(
    store: &EventStore,
    kind: Kind,
    id: Uuid,
    point: Point,
) -> anyhow::Result<StateAt> {
    let tenant = store.tenant_of(kind.as_str(), id).await?.with_context(|| {
        format!(
            "no {} {id} in the log (`berth events show {id}` looks at every kind)",
            kind.as_str()
        )
    })?;
    let events = store
        .read(&event_subject(&tenant, kind.as_str(), id), 0)
        .await?;
    let (state, version, as_of, count) = match kind {
        Kind::Vm => folded::<berth_provisioner_core::vm::Vm>(&events, point)?,
        Kind::Server => folded::<berth_provisioner_core::server::Server>(&events, point)?,
        Kind::Pod => folded::<berth_pod_lifecycle_core::pod::Pod>(&events, point)?,
        Kind::Subscription => {
            folded::<berth_billing_core::subscription::Subscription>(&events, point)?
        }
        Kind::Account => folded::<berth_billing_core::account::Account>(&events, point)?,
        Kind::Invoice => folded::<berth_billing_core::invoice::Invoice>(&events, point)?,
    };
    Ok(StateAt {
        kind: kind.as_str(),
        id,
        tenant: tenant.to_string(),
        version,
        as_of,
        events: count,
        state,
    })
}

pub async fn run(args: StateArgs) -> anyhow::Result<()> {
    let nats = connect_nats("cli", &args.connect).await?;
    let store = EventStore::new(async_nats::jetstream::new(nats), EVENTS_STREAM);
    if let Some(points) = &args.diff {
        let [from, to] = points.as_slice() else {
            bail!("--diff takes two points");
        };
        let before = state_at(&store, args.kind, args.id, *from).await?;
        let after = state_at(&store, args.kind, args.id, *to).await?;
        let changes = diff(&before.state, &after.state);
        match args.output {
            Output::Json => print_json(&json!({
                "kind": before.kind,
                "id": before.id,
                "from": before.version,
                "to": after.version,
                "changes": changes
                    .iter()
                    .map(|(path, a, b)| json!({"path": path, "from": a, "to": b}))
                    .collect::<Vec<_>>(),
            })),
            Output::Table => {
                println!(
                    "{} {}: version {} → {} ({} events between)",
                    before.kind,
                    before.id,
                    before.version,
                    after.version,
                    after.events.saturating_sub(before.events)
                );
                for (path, a, b) in &changes {
                    println!("  {path}: {a} → {b}");
                }
                if changes.is_empty() {
                    println!("  no change");
                }
            }
        }
        return Ok(());
    }
    let point = args.at.unwrap_or(Point::Time(Utc::now()));
    let state = state_at(&store, args.kind, args.id, point).await?;
    match args.output {
        Output::Json => print_json(&state),
        Output::Table => {
            println!(
                "{} {} (tenant {}) at version {}{}: {} events folded",
                state.kind,
                state.id,
                state.tenant,
                state.version,
                state
                    .as_of
                    .map(|t| format!(", last event {}", t.to_rfc3339()))
                    .unwrap_or_default(),
                state.events
            );
            println!("{}", serde_json::to_string_pretty(&state.state)?);
        }
    }
    Ok(())
}
