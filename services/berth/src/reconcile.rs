//! `berth reconcile` and `berth orphans list|clean`: ask the provisioner to compare its
//! provider with the log now (`cmd.system.provisioner.reconcile`).

use std::time::Duration;

use anyhow::{bail, Context};
use berth_runtime::{connect_nats, ConnectArgs};
use berth_schemas::orphan::{Reconcile, ReconcileReport};
use berth_schemas::subjects::RECONCILE_SUBJECT;
use berth_schemas::Rejection;
use clap::{Args, Subcommand};

use crate::output::{print, print_json, Output};

#[derive(Args, Debug)]
pub struct ReconcileArgs {
    /// Also remove the orphans found.
    #[arg(long)]
    clean_orphans: bool,
    #[arg(long, value_enum, default_value_t)]
    output: Output,
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Subcommand, Debug)]
pub enum OrphansCommand {
    /// Machines at the provider that no live VM owns (recorded, not removed).
    List {
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Remove every orphan found now.
    Clean {
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

async fn ask(connect: &ConnectArgs, clean_orphans: bool) -> anyhow::Result<ReconcileReport> {
    let nats = connect_nats("cli", connect).await?;
    let body = serde_json::to_vec(&Reconcile { clean_orphans })?;
    let reply = tokio::time::timeout(
        Duration::from_secs(120),
        berth_runtime::client::request(&nats, RECONCILE_SUBJECT, body),
    )
    .await
    .context("no reconciliation report within 120 s")?
    .with_context(|| {
        format!("nothing answers {RECONCILE_SUBJECT}: is the provisioner running (`just up`)?")
    })?;
    if let Ok(report) = serde_json::from_slice::<ReconcileReport>(&reply.payload) {
        return Ok(report);
    }
    match serde_json::from_slice::<Rejection>(&reply.payload) {
        Ok(rejection) => bail!("rejected ({}): {}", rejection.code, rejection.message),
        Err(_) => bail!("unreadable reply to {RECONCILE_SUBJECT}"),
    }
}

pub async fn run(args: ReconcileArgs) -> anyhow::Result<()> {
    let report = ask(&args.connect, args.clean_orphans).await?;
    match args.output {
        Output::Json => print_json(&report),
        Output::Table => {
            println!(
                "{}: {} machines, {} vms checked, {} lost (being made again), {} orphans, {} removed",
                report.provider,
                report.machines,
                report.vms_checked,
                report.lost.len(),
                report.orphans.len(),
                report.removed.len()
            );
            for lost in &report.lost {
                println!("  lost    vm {} of {}", lost.vm_id, lost.tenant);
            }
            for orphan in &report.orphans {
                println!("  orphan  {orphan}");
            }
            for error in &report.errors {
                println!("  error   {error}");
            }
        }
    }
    Ok(())
}

pub async fn orphans(command: OrphansCommand) -> anyhow::Result<()> {
    match command {
        OrphansCommand::List { output, connect } => {
            let report = ask(&connect, false).await?;
            print(output, &["MACHINE"], &report.orphans, |m| vec![m.clone()]);
        }
        OrphansCommand::Clean { connect } => {
            let report = ask(&connect, true).await?;
            for machine in &report.removed {
                println!("removed {machine}");
            }
            for error in &report.errors {
                eprintln!("error: {error}");
            }
            if report.removed.is_empty() {
                println!("no orphans");
            }
        }
    }
    Ok(())
}
