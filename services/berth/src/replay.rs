//! `berth replay` and `berth status`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use berth_provisioner::projection::VmsProjection;
use berth_runtime::audit::AuditLog;
use berth_runtime::parked::{self, HealthState};
use berth_runtime::projection::{self, Projection};
use berth_runtime::{ConnectArgs, Runtime, Settings};
use berth_schemas::subjects::EVENTS_STREAM;
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::output::{print, Output};

/// Every projection the CLI can rebuild.
pub fn projections() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(VmsProjection),
        Arc::new(berth_provisioner::servers_projection::ServersProjection),
        Arc::new(berth_scheduler::projection::SchedulesProjection),
        Arc::new(berth_pod_lifecycle::projection::PodsProjection),
        Arc::new(berth_billing::projection::BillingProjection),
        Arc::new(berth_notifier::projection::NotificationsProjection),
        Arc::new(AuditLog),
    ]
}

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

pub(crate) async fn runtime(connect: &ConnectArgs) -> anyhow::Result<Runtime> {
    Ok(Runtime::connect(
        "cli",
        connect,
        Settings::default(),
        CancellationToken::new(),
    )
    .await?)
}

pub async fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let chosen: Vec<_> = projections()
        .into_iter()
        .filter(|p| args.projection == "all" || p.name() == args.projection)
        .collect();
    if chosen.is_empty() {
        let names: Vec<_> = projections().iter().map(|p| p.name()).collect();
        bail!(
            "unknown projection {:?}; choose one of {} or all",
            args.projection,
            names.join(", ")
        );
    }
    let rt = runtime(&args.connect).await?;
    let mut reports = Vec::new();
    for projection in chosen {
        let mut last_print = Duration::ZERO;
        let report = projection::rebuild(&rt, projection.as_ref(), args.dry_run, |p| {
            if p.elapsed >= last_print + Duration::from_millis(500) || p.applied >= p.total {
                last_print = p.elapsed;
                let rate = p.applied as f64 / p.elapsed.as_secs_f64().max(1e-3);
                let eta = p.total.saturating_sub(p.applied) as f64 / rate.max(1.0);
                eprintln!(
                    "{}: {}/{} events, {:.0} events/s, ETA {:.0}s",
                    projection.name(),
                    p.applied,
                    p.total,
                    rate,
                    eta
                );
            }
        })
        .await?;
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

/// `berth status`: each projection's checkpoint, the events it follows that it has yet to
/// apply, its parked events and its fault.
pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let rt = runtime(&args.connect).await?;
    let mut rows = Vec::new();
    for projection in projections() {
        rows.push(parked::status(&rt, projection.as_ref()).await?);
    }
    if args.output == Output::Table {
        let last = rt
            .js
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
    Ok(())
}
