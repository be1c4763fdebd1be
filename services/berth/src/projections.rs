//! `berth projections parked|retry|skip`: the events projections parked because they
//! could not apply them ([`berth_runtime::parked`]).

use std::sync::Arc;

use anyhow::bail;
use berth_runtime::parked::{self, ParkedEvent, Retried};
use berth_runtime::projection::Projection;
use berth_runtime::ConnectArgs;
use clap::Subcommand;

use crate::output::{print, print_json, Output};
use crate::replay::{projections, runtime};

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

/// The projection called `name`, or a list of the known ones.
fn projection(name: &str) -> anyhow::Result<Arc<dyn Projection>> {
    let all = projections();
    let names: Vec<&str> = all.iter().map(|p| p.name()).collect();
    let names = names.join(", ");
    match all.iter().find(|p| p.name() == name) {
        Some(found) => Ok(found.clone()),
        None => bail!("unknown projection {name:?}; choose one of {names}"),
    }
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
            let projection = projection(&name)?;
            let rt = runtime(&connect).await?;
            let retried = parked::retry(&rt, projection.as_ref(), sequence).await?;
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
