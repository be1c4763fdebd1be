//! berth-scheduler: durable cron schedules and one-shot timers that fire exactly once.
//!
//! - [`timing`]: cron in IANA time zones with the DST rules, one-shots.
//! - [`schedule`]: the `schedule` aggregate (timers are schedules that fire once).
//! - [`commands`]: `cmd.<tenant>.schedule.*` and `cmd.<tenant>.timer.*`.
//! - [`engine`]: sleeps until the next due time and appends `schedule.fired`, once per
//!   due time however many replicas run.
//! - [`actions`]: sends the command a fire asks for; [`projection`]: `schedules`.

pub mod actions;
pub mod cli;
pub mod commands;
pub mod engine;
pub mod projection;
pub mod schedule;
pub mod timing;

use std::sync::Arc;

use berth_runtime::commands::{serve as serve_commands, CommandHandler};
use berth_runtime::store::Repository;
use berth_runtime::{projection as projections, reactor as reactors, Runtime};

use crate::actions::FiredCommands;
use crate::commands::{ScheduleCommands, TimerCommands};
use crate::projection::SchedulesProjection;
use crate::schedule::Schedule;

/// Runs the scheduler until `rt.shutdown` is cancelled.
pub async fn run(rt: Runtime) -> anyhow::Result<()> {
    let schedules = Arc::new(Repository::<Schedule>::new(rt.store.clone(), rt.service));
    let max_bytes = rt.settings.max_command_bytes;
    let schedule_handler = Arc::new(CommandHandler::new(
        Arc::new(ScheduleCommands {
            schedules: schedules.clone(),
        }),
        max_bytes,
    ));
    let timer_handler = Arc::new(CommandHandler::new(
        Arc::new(TimerCommands {
            schedules: schedules.clone(),
        }),
        max_bytes,
    ));
    let fired_commands = Arc::new(FiredCommands {
        nats: rt.nats.clone(),
    });
    let engine = async {
        engine::run(&rt, schedules)
            .await
            .map_err(|e| berth_runtime::Error::Other(format!("the firing engine: {e:#}")))
    };
    tokio::try_join!(
        serve_commands(&rt, schedule_handler),
        serve_commands(&rt, timer_handler),
        reactors::run(&rt, fired_commands),
        projections::run(&rt, Arc::new(SchedulesProjection)),
        engine,
    )?;
    Ok(())
}
