//! `berth replay` and `berth status`: asked of the service that runs each projection
//! (`projection.<name>.rebuild|status`, [`berth_schemas::query::projection`]).

use std::time::Duration;

use anyhow::bail;
use async_nats::jetstream;
use berth_runtime::client::ask_projection;
use berth_runtime::parked::{HealthState, ProjectionStatus};
use berth_runtime::projection::RebuildReport;
use berth_runtime::{connect_nats, ConnectArgs};
use berth_schemas::query::projection::{
    RebuildProgress, RebuildRequest, PROJECTIONS, REBUILD, STATUS,
};
use berth_schemas::query::EmptyRequest;
use berth_schemas::subjects::EVENTS_STREAM;
use clap::Args;
use futures::StreamExt;

use crate::output::{print, Output};
use crate::reads::answered_plainly;

/// How long a rebuild may take.
const REBUILD_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long a projection's status may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The projection to rebuild (`vms`, `servers`, `schedules`, `pods`, `billing`,
    /// `notifications`, `audit_log`) or `all`.
    projection: String,
    /// Build and compare, but keep the live schema.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    connect: ConnectArgs,
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

/// The projection called `name`, or the error naming the known ones.
pub fn known(name: &str) -> anyhow::Result<&'static str> {
    match PROJECTIONS.iter().find(|known| **known == name) {
        Some(found) => Ok(found),
        None => bail!(
            "unknown projection {name:?}; choose one of {}",
            PROJECTIONS.join(", ")
        ),
    }
}

pub async fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let chosen: Vec<&str> = PROJECTIONS
        .iter()
        .copied()
        .filter(|name| args.projection == "all" || *name == args.projection)
        .collect();
    if chosen.is_empty() {
        bail!(
            "unknown projection {:?}; choose one of {} or all",
            args.projection,
            PROJECTIONS.join(", ")
        );
    }
    let nats = connect_nats("cli", &args.connect).await?;
    let mut reports = Vec::new();
    for name in chosen {
        let report = rebuild(&nats, name, args.dry_run).await?;
        if args.output == Output::Table {
            println!(
                "{}: {} events in {:.2}s ({:.0}/s), checkpoint {}, {}{}",
                report.projection,
                report.events,
                report.seconds,
                report.events_per_second(),
                report.checkpoint,
                if report.matches_live() {
                    "identical to the live rows"
                } else {
                    "DIFFERENT from the live rows"
                },
                if report.swapped {
                    "; swapped in"
                } else {
                    "; dry run, live schema kept"
                },
            );
            for table in report.tables.iter().filter(|t| t.live != t.rebuilt) {
                println!(
                    "  {}: live {} rows, rebuilt {} rows",
                    table.table, table.live.rows, table.rebuilt.rows
                );
            }
        }
        reports.push(report);
    }
    if args.output == Output::Json {
        crate::output::print_json(&reports);
    }
    let differing: Vec<&str> = reports
        .iter()
        .filter(|r| !r.matches_live())
        .map(|r| r.projection.as_str())
        .collect();
    if args.dry_run && !differing.is_empty() {
        bail!(
            "the rebuilt rows differ from the live ones in {}: `berth replay <name>` rebuilds and swaps them in",
            differing.join(", ")
        );
    }
    Ok(())
}

/// Has the service that runs projection `name` rebuild it, printing its progress.
async fn rebuild(
    nats: &async_nats::Client,
    name: &str,
    dry_run: bool,
) -> anyhow::Result<RebuildReport> {
    let inbox = nats.new_inbox();
    let mut progress = nats.subscribe(inbox.clone()).await?;
    let request = RebuildRequest {
        dry_run,
        progress: Some(inbox),
    };
    let rebuilt = ask_projection(nats, name, REBUILD, &request, REBUILD_TIMEOUT);
    tokio::pin!(rebuilt);
    loop {
        tokio::select! {
            reply = &mut rebuilt => return answered_plainly(reply?),
            Some(message) = progress.next() => {
                if let Ok(p) = serde_json::from_slice::<RebuildProgress>(&message.payload) {
                    let elapsed = Duration::from_millis(p.elapsed_ms).as_secs_f64();
                    let rate = p.applied as f64 / elapsed.max(1e-3);
                    let eta = p.total.saturating_sub(p.applied) as f64 / rate.max(1.0);
                    eprintln!(
                        "{name}: {}/{} events, {rate:.0} events/s, ETA {eta:.0}s",
                        p.applied, p.total
                    );
                }
            }
        }
    }
}

/// `berth status`: each projection's checkpoint, the events it follows that it has yet to
/// apply, its parked events and its fault, as the service that runs it sees them.
pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let nats = connect_nats("cli", &args.connect).await?;
    let mut rows: Vec<ProjectionStatus> = Vec::new();
    let mut unanswered = Vec::new();
    for name in PROJECTIONS {
        match ask_projection(&nats, name, STATUS, &EmptyRequest {}, STATUS_TIMEOUT).await {
            Ok(reply) => rows.push(answered_plainly(reply)?),
            Err(error) => unanswered.push(format!("{name}: {error}")),
        }
    }
    if args.output == Output::Table {
        let last = jetstream::new(nats)
            .get_stream(EVENTS_STREAM)
            .await?
            .info()
            .await?
            .state
            .last_sequence;
        println!("EVENTS last sequence: {last}");
    }
    print(
        args.output,
        &[
            "PROJECTION",
            "CHECKPOINT",
            "BEHIND",
            "STATE",
            "PARKED",
            "FAULT",
        ],
        &rows,
        |r| {
            let fault = match (r.health.state, &r.health.reason, r.health.sequence) {
                (HealthState::Ok, _, _) | (_, None, _) => "-".to_owned(),
                (HealthState::Retrying, Some(reason), _) | (_, Some(reason), None) => {
                    reason.clone()
                }
                (HealthState::Degraded, Some(reason), Some(sequence)) => {
                    format!("last parked: event {sequence}: {reason}")
                }
            };
            vec![
                r.projection.clone(),
                r.checkpoint.to_string(),
                r.behind.to_string(),
                r.health.state.as_str().to_owned(),
                r.health.parked.to_string(),
                fault.chars().take(100).collect(),
            ]
        },
    );
    if !unanswered.is_empty() {
        bail!(
            "no status from the service running {}",
            unanswered.join("; ")
        );
    }
    Ok(())
}
