//! `cmd.<tenant>.schedule.*` and `cmd.<tenant>.timer.*`.
//!
//! Every spec, a schedule's or a timer's, passes [`admit`] before anything is decided:
//! [`validate_spec`] (names, bounds, what a tenant's schedule may send, payload and
//! body), then its timing (a cron and a zone that parse; for a tenant, at most once a
//! minute). Appends go through the [`Ledger`], which keeps the tenant's slot count in
//! the same atomic batch.

use std::sync::Arc;

use async_trait::async_trait;
use berth_runtime::commands::CommandService;
use berth_runtime::store::{Aggregate, Cause};
use berth_schemas::ids::SYSTEM_TENANT;
use berth_schemas::schedule::{
    schedule_id, timer_name, validate_spec, ScheduleCommand, ScheduleTarget, SetSchedule,
    TimerCommand,
};
use berth_schemas::{CommandReply, Rejection, RejectionCode, TenantId};
use chrono::{DateTime, Utc};

use crate::slots::Ledger;
use crate::spec::spec_sequence;
use crate::timing::Timing;

/// Whether `tenant` may hold `spec` as of `now`: the one check of schedules and timers.
pub fn admit(tenant: &TenantId, spec: &SetSchedule, now: DateTime<Utc>) -> Result<(), Rejection> {
    validate_spec(tenant, spec)?;
    let timing = Timing::parse(&spec.when).map_err(Rejection::invalid)?;
    if tenant.as_str() != SYSTEM_TENANT {
        timing.check_tenant_rate(now).map_err(Rejection::invalid)?;
    }
    Ok(())
}

/// Schedule commands.
pub struct ScheduleCommands {
    pub ledger: Arc<Ledger>,
}

#[async_trait]
impl CommandService for ScheduleCommands {
    type Command = ScheduleCommand;
    type Output = ();

    fn kind(&self) -> &'static str {
        berth_schemas::schedule::AGGREGATE
    }

    async fn execute(
        &self,
        tenant: &TenantId,
        cause: &Cause,
        command: &ScheduleCommand,
    ) -> Result<CommandReply, Rejection> {
        if let ScheduleCommand::Create(set) | ScheduleCommand::Update(set) = command {
            admit(tenant, set, self.ledger.clock.now())?;
        }
        let id = schedule_id(tenant, command.name());
        self.ledger
            .execute(tenant, id, cause, |loaded, now| {
                let schedule = &loaded.state;
                match command {
                    ScheduleCommand::Create(set) => schedule.set(set, false, now),
                    ScheduleCommand::Update(set) => schedule.set(set, true, now),
                    ScheduleCommand::FireNow(target) => match spec_sequence(loaded) {
                        Some(spec) => schedule.fire(now, now, false, true, spec),
                        None => Err(Rejection::new(
                            RejectionCode::NotFound,
                            format!("no schedule {}", target.name),
                        )),
                    },
                    other => schedule.decide(other, &cause.context(now)),
                }
            })
            .await
    }
}

/// One-shot timers: a schedule named `timer-<key>` that fires once.
pub struct TimerCommands {
    pub ledger: Arc<Ledger>,
}

#[async_trait]
impl CommandService for TimerCommands {
    type Command = TimerCommand;
    type Output = ();

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
        match command {
            TimerCommand::Set(set) => {
                // `after_secs` counts from when the command is first handled.
                let spec = set.schedule(self.ledger.clock.now())?;
                admit(tenant, &spec, self.ledger.clock.now())?;
                self.ledger
                    .execute(tenant, id, cause, |loaded, now| {
                        let schedule = &loaded.state;
                        schedule
                            .set(&spec, true, now)
                            .or_else(|_| schedule.set(&spec, false, now))
                    })
                    .await
            }
            TimerCommand::Cancel(_) => {
                let delete = ScheduleCommand::Delete(ScheduleTarget { name });
                self.ledger
                    .execute(tenant, id, cause, |loaded, now| {
                        loaded.state.decide(&delete, &cause.context(now))
                    })
                    .await
            }
        }
    }
}
