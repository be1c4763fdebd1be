//! `cmd.<tenant>.schedule.*` and `cmd.<tenant>.timer.*`.

use std::sync::Arc;

use async_trait::async_trait;
use berth_runtime::commands::{execute_with, CommandService};
use berth_runtime::store::{Aggregate, Cause, Repository};
use berth_schemas::schedule::{
    schedule_id, timer_name, ScheduleCommand, SetSchedule, TimerCommand, When,
};
use berth_schemas::{CommandReply, Rejection, TenantId};

use crate::clock::Clock;
use crate::schedule::Schedule;

/// Schedule commands.
pub struct ScheduleCommands {
    pub schedules: Arc<Repository<Schedule>>,
    pub clock: Arc<dyn Clock>,
}

#[async_trait]
impl CommandService for ScheduleCommands {
    type Command = ScheduleCommand;

    fn kind(&self) -> &'static str {
        berth_schemas::schedule::AGGREGATE
    }

    async fn execute(
        &self,
        tenant: &TenantId,
        cause: &Cause,
        command: &ScheduleCommand,
    ) -> Result<CommandReply, Rejection> {
        let id = schedule_id(tenant, command.name());
        execute_with(&self.schedules, tenant, id, cause, None, |schedule| {
            let now = self.clock.now();
            match command {
                ScheduleCommand::Create(set) => schedule.set(set, false, now),
                ScheduleCommand::Update(set) => schedule.set(set, true, now),
                ScheduleCommand::FireNow(_) => schedule.fire(now, now, false, true),
                other => schedule.decide(other),
            }
        })
        .await
    }
}

/// One-shot timers: a schedule named `timer-<key>` that fires once.
pub struct TimerCommands {
    pub schedules: Arc<Repository<Schedule>>,
    pub clock: Arc<dyn Clock>,
}

#[async_trait]
impl CommandService for TimerCommands {
    type Command = TimerCommand;

    fn kind(&self) -> &'static str {
        berth_schemas::schedule::TIMER_COMMANDS
    }

    async fn execute(
        &self,
        tenant: &TenantId,
        cause: &Cause,
        command: &TimerCommand,
    ) -> Result<CommandReply, Rejection> {
        let name = timer_name(command.key());
        let id = schedule_id(tenant, &name);
        execute_with(&self.schedules, tenant, id, cause, None, |schedule| {
            let now = self.clock.now();
            match command {
                TimerCommand::Set(set) => {
                    let at = match (set.at, set.after_secs) {
                        (Some(at), _) => at,
                        (None, Some(secs)) => now + chrono::Duration::seconds(secs as i64),
                        (None, None) => return Err(Rejection::invalid("give at or after_secs")),
                    };
                    let spec = SetSchedule {
                        name: name.clone(),
                        when: When::At { at },
                        action: set.action.clone(),
                        catch_up: berth_schemas::schedule::CatchUp::FireOnce,
                        max_catch_up: 1,
                        jitter_secs: 0,
                        payload: set.payload.clone(),
                    };
                    schedule
                        .set(&spec, true, now)
                        .or_else(|_| schedule.set(&spec, false, now))
                }
                TimerCommand::Cancel(_) => schedule.decide(&ScheduleCommand::Delete(
                    berth_schemas::schedule::ScheduleTarget { name: name.clone() },
                )),
            }
        })
        .await
    }
}
