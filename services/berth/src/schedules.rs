//! `berth schedules list|show|pause|resume|fire-now` and `berth timers list`; reads are
//! the scheduler's `schedule.list` query.

use anyhow::{bail, Context};
use berth_runtime::client::send_command;
use berth_runtime::{connect_nats, ConnectArgs};
use berth_schemas::command::CommandMeta;
use berth_schemas::query::{ScheduleFilter, ScheduleKind, SCHEDULE};
use berth_schemas::schedule::{ScheduleCommand, ScheduleTarget};
use berth_schemas::status::ScheduleState;
use berth_schemas::{Actor, CommandReply, CommandSet, TenantId};
use clap::{Args, Subcommand};

use crate::output::{print, print_json, Output};
use crate::reads;

#[derive(Args, Debug)]
pub struct Listing {
    /// Only this tenant's (all tenants by default).
    #[arg(long)]
    tenant: Option<TenantId>,
    #[arg(long, value_enum, default_value_t)]
    output: Output,
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Args, Debug)]
pub struct Named {
    name: String,
    #[arg(long, env = "BERTH_TENANT", default_value = "system")]
    tenant: TenantId,
    #[arg(long, env = "BERTH_ACTOR", default_value = "user:operator")]
    actor: Actor,
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Subcommand, Debug)]
pub enum SchedulesCommand {
    /// Every cron schedule with its last and next due times.
    List(Listing),
    /// One schedule, as JSON.
    Show(Named),
    /// No fires until resumed.
    Pause(Named),
    Resume(Named),
    /// Fire once now, outside the schedule.
    FireNow(Named),
}

#[derive(Subcommand, Debug)]
pub enum TimersCommand {
    /// Every one-shot timer.
    List(Listing),
}

pub async fn run(command: SchedulesCommand) -> anyhow::Result<()> {
    let (named, command) = match command {
        SchedulesCommand::List(listing) => return list(listing, ScheduleKind::Cron).await,
        SchedulesCommand::Show(named) => {
            let filter = ScheduleFilter {
                tenant: Some(named.tenant.clone()),
                kind: None,
            };
            let rows: Vec<ScheduleState> = reads::list(&named.connect, SCHEDULE, filter)
                .await
                .context("reading schedules")?;
            let Some(row) = rows.into_iter().find(|r| r.name == named.name) else {
                bail!(
                    "no schedule {} of tenant {} in the schedules projection",
                    named.name,
                    named.tenant
                );
            };
            print_json(&row);
            return Ok(());
        }
        SchedulesCommand::Pause(named) => {
            let target = ScheduleTarget {
                name: named.name.clone(),
            };
            (named, ScheduleCommand::Pause(target))
        }
        SchedulesCommand::Resume(named) => {
            let target = ScheduleTarget {
                name: named.name.clone(),
            };
            (named, ScheduleCommand::Resume(target))
        }
        SchedulesCommand::FireNow(named) => {
            let target = ScheduleTarget {
                name: named.name.clone(),
            };
            (named, ScheduleCommand::FireNow(target))
        }
    };
    let nats = connect_nats("cli", &named.connect).await?;
    let reply = send_command(
        &nats,
        &named.tenant,
        "schedule",
        command.action(),
        &CommandMeta::new(named.actor),
        command.body(),
    )
    .await?;
    match reply {
        CommandReply::Accepted { version, .. } => {
            println!("accepted: schedule {} at version {version}", named.name);
            Ok(())
        }
        CommandReply::Rejected(rejection) => {
            bail!("rejected ({}): {}", rejection.code, rejection.message)
        }
    }
}

pub async fn timers(command: TimersCommand) -> anyhow::Result<()> {
    let TimersCommand::List(listing) = command;
    list(listing, ScheduleKind::At).await
}

async fn list(listing: Listing, kind: ScheduleKind) -> anyhow::Result<()> {
    let filter = ScheduleFilter {
        tenant: listing.tenant,
        kind: Some(kind),
    };
    let rows: Vec<ScheduleState> = reads::list(&listing.connect, SCHEDULE, filter)
        .await
        .context("reading schedules")?;
    let when = |at: &Option<chrono::DateTime<chrono::Utc>>| {
        at.map(|at| at.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default()
    };
    print(
        listing.output,
        &[
            "TENANT", "NAME", "TIMING", "STATUS", "FIRES", "LAST DUE", "NEXT DUE",
        ],
        &rows,
        |row| {
            vec![
                row.tenant.to_string(),
                row.name.clone(),
                row.timing.clone(),
                row.status.clone(),
                row.fires.to_string(),
                when(&row.last_due),
                when(&row.next_due),
            ]
        },
    );
    Ok(())
}
