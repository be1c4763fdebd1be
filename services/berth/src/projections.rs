//! `berth projections parked|retry|skip`: the events projections parked because they
//! could not apply them ([`berth_runtime::parked`]); a retry is applied by the service
//! that runs the projection (`projection.<name>.retry`).

use std::time::Duration;

use anyhow::bail;
use berth_runtime::client::ask_projection;
use berth_runtime::parked::{self, ParkedEvent, Retried};
use berth_runtime::{connect_nats, ConnectArgs, Runtime, Settings};
use berth_schemas::query::projection::{RetryParked, RETRY};
use clap::Subcommand;
use tokio_util::sync::CancellationToken;

use crate::output::{print, print_json, Output};
use crate::reads::answered_plainly;
use crate::replay::known as projection;

/// How long applying one parked event may take.
const RETRY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Subcommand, Debug)]
pub enum ProjectionsCommand {
    /// Events projections parked, oldest first: projection, sequence, type, error.
    Parked {
        /// Only this projection's (`vms`, `audit_log`, …).
        #[arg(long)]
        projection: Option<String>,
        /// Also the resolved ones (skipped).
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        connect: ConnectArgs,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Apply a parked event now (after a fix), in one transaction with removing its
    /// park record; if it fails again it stays parked with the new error.
    Retry {
        projection: String,
        sequence: u64,
        #[command(flatten)]
        connect: ConnectArgs,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Resolve a parked event as skipped: the projection will never apply it; it stays
    /// listed under `parked --all`.
    Skip {
        projection: String,
        sequence: u64,
        #[command(flatten)]
        connect: ConnectArgs,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
}

async fn runtime(connect: &ConnectArgs) -> anyhow::Result<Runtime> {
    Ok(Runtime::connect(
        "cli",
        connect,
        Settings::default(),
        CancellationToken::new(),
    )
    .await?)
}

pub async fn run(command: ProjectionsCommand) -> anyhow::Result<()> {
    match command {
        ProjectionsCommand::Parked {
            projection: name,
            all,
            connect,
            output,
        } => {
            if let Some(name) = &name {
                projection(name)?;
            }
            let rt = runtime(&connect).await?;
            let events = parked::list(&rt.db, name.as_deref(), all).await?;
            print(
                output,
                &[
                    "PROJECTION",
                    "SEQ",
                    "PARKED",
                    "SUBJECT",
                    "EVENT",
                    "TRIES",
                    "RESOLVED",
                    "ERROR",
                ],
                &events,
                |p| {
                    vec![
                        p.projection.clone(),
                        p.sequence.to_string(),
                        p.parked_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                        p.subject.clone(),
                        p.event_type.clone(),
                        p.attempts.to_string(),
                        p.resolved.clone().unwrap_or_else(|| "-".into()),
                        p.error.chars().take(80).collect(),
                    ]
                },
            );
        }
        ProjectionsCommand::Retry {
            projection: name,
            sequence,
            connect,
            output,
        } => {
            projection(&name)?;
            let nats = connect_nats("cli", &connect).await?;
            let asked = RetryParked { sequence };
            let retried: Retried = answered_plainly(
                ask_projection(&nats, &name, RETRY, &asked, RETRY_TIMEOUT).await?,
            )?;
            match output {
                Output::Json => print_json(&retried),
                Output::Table => match &retried {
                    Retried::Applied => println!("{name}: applied event {sequence}; unparked"),
                    Retried::StillParked { parked } => println!(
                        "{name}: event {sequence} failed again and stays parked (try {}): {}",
                        parked.attempts, parked.error
                    ),
                },
            }
            if let Retried::StillParked { .. } = retried {
                bail!("event {sequence} is still parked in {name}");
            }
        }
        ProjectionsCommand::Skip {
            projection: name,
            sequence,
            connect,
            output,
        } => {
            projection(&name)?;
            let rt = runtime(&connect).await?;
            let skipped: ParkedEvent = parked::skip(&rt, &name, sequence).await?;
            match output {
                Output::Json => print_json(&skipped),
                Output::Table => println!(
                    "{name}: event {sequence} ({}) skipped; `berth projections parked --all` still lists it",
                    skipped.event_type
                ),
            }
        }
    }
    Ok(())
}
