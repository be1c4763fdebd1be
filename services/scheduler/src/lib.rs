//! berth-scheduler: durable cron schedules and one-shot timers that fire exactly once.
//!
//! - [`timing`]: cron in IANA time zones with the DST rules, one-shots, and a tenant's
//!   once-a-minute rule.
//! - [`schedule`]: the `schedule` aggregate (timers are schedules that fire once).
//! - [`slots`]: per-tenant caps on schedules and timers, counted in the same atomic
//!   append as each schedule change.
//! - [`commands`]: `cmd.<tenant>.schedule.*` and `cmd.<tenant>.timer.*`; every spec is
//!   admitted by one check (`berth_schemas::schedule::validate_spec` plus its timing).
//! - [`engine`]: sleeps until the next due time and appends `schedule.fired`, once per
//!   due time however many replicas run; a fire names its spec, it copies nothing.
//! - [`actions`]: sends the command a fire asks for, as `schedule:<id>`;
//!   [`projection`]: `schedules`; [`query`]: `query.*.schedule.list`.
//!
//! Trust (DESIGN §7): a tenant's schedule may send only tenant actions to its own
//! tenant; `system` schedules (on `cmd.system.…`, which tenants cannot publish to) may
//! send anything to anyone. Services keep their timers about a tenant's things under
//! `system` (`berth_runtime::client::send_timer`), out of the tenant's reach.
//!
//! Worked example: `tests/tests/scheduler.rs`, `a_tenant_timer_fires_its_own_vm_stop_as_the_schedule`.

pub mod actions;
pub mod cli;
pub mod commands;
pub mod engine;
pub mod error;
pub mod projection;
pub mod query;
pub use berth_scheduler_core::schedule;
pub mod slots;
pub mod spec;
pub use berth_scheduler_core::timing;

pub use berth_runtime::clock;

use std::sync::Arc;

use berth_runtime::commands::{execute_with, serve as serve_commands, CommandHandler};
use berth_runtime::store::{Cause, Repository};
use berth_runtime::{projection as projections, reactor as reactors, Runtime};
use berth_schemas::billing::{INVOICING_SCHEDULE, METERING_SCHEDULE, OVERDUE_SCHEDULE};
use berth_schemas::demo::RESET_SCHEDULE;
use berth_schemas::orphan::RECONCILE_SCHEDULE;
use berth_schemas::pod::GRACE_SWEEP_SCHEDULE;
use berth_schemas::schedule::{schedule_id, Action, CatchUp, SetSchedule, When};
use berth_schemas::{Actor, TenantId};
use futures::TryFutureExt;
use uuid::Uuid;

use crate::actions::FiredCommands;
use crate::clock::{Clock, SystemClock};
use crate::commands::{ScheduleCommands, TimerCommands};
pub use crate::error::{Error, Result};
use crate::projection::SchedulesProjection;
use crate::schedule::Schedule;
use crate::slots::{Ledger, Slots};

/// How the scheduler behaves beyond the runtime's settings.
#[derive(Clone)]
pub struct SchedulerConfig {
    /// Schedules of tenant `system` created at start (a repeat changes nothing).
    pub builtins: Vec<SetSchedule>,
    /// The system clock, or a manual one for simulated time.
    pub clock: Arc<dyn Clock>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            builtins: builtin_schedules(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// The schedules berth itself runs: reconciliation every minute, the public demo's reset
/// at 07:00 UTC daily, the pods' grace sweep at 03:00 UTC daily, and billing's metering
/// (hourly, five minutes past: the hour before is settled), invoicing (00:00 UTC on the
/// 1st) and overdue check (06:00 UTC daily).
pub fn builtin_schedules() -> Vec<SetSchedule> {
    let reconcile = SetSchedule {
        name: RECONCILE_SCHEDULE.into(),
        when: When::Cron {
            expression: "* * * * *".into(),
            timezone: "UTC".into(),
        },
        action: Action::Emit,
        catch_up: CatchUp::Skip,
        max_catch_up: 1,
        jitter_secs: 0,
        payload: serde_json::json!({"purpose": "compare providers with the log"}),
    };
    let demo_reset = SetSchedule {
        name: RESET_SCHEDULE.into(),
        when: When::Cron {
            expression: "0 7 * * *".into(),
            timezone: "UTC".into(),
        },
        action: Action::Emit,
        catch_up: CatchUp::FireOnce,
        max_catch_up: 1,
        jitter_secs: 0,
        payload: serde_json::json!({"purpose": "reset the public demo"}),
    };
    let grace_sweep = SetSchedule {
        name: GRACE_SWEEP_SCHEDULE.into(),
        when: When::Cron {
            expression: "0 3 * * *".into(),
            timezone: "UTC".into(),
        },
        action: Action::Emit,
        catch_up: CatchUp::FireOnce,
        max_catch_up: 1,
        jitter_secs: 0,
        payload: serde_json::json!({"purpose": "delete pods whose 60-day grace period is over"}),
    };
    let billing = [
        (
            METERING_SCHEDULE,
            "5 * * * *",
            CatchUp::FireOnce,
            "meter the VMs' last hour",
        ),
        (
            INVOICING_SCHEDULE,
            "0 0 1 * *",
            CatchUp::FireOnce,
            "issue last month's invoices",
        ),
        (
            OVERDUE_SCHEDULE,
            "0 6 * * *",
            CatchUp::FireOnce,
            "mark overdue invoices, suspend accounts past the grace",
        ),
    ]
    .map(|(name, expression, catch_up, purpose)| SetSchedule {
        name: name.into(),
        when: When::Cron {
            expression: expression.into(),
            timezone: "UTC".into(),
        },
        action: Action::Emit,
        catch_up,
        max_catch_up: 1,
        jitter_secs: 0,
        payload: serde_json::json!({ "purpose": purpose }),
    });
    let mut all = vec![reconcile, demo_reset, grace_sweep];
    all.extend(billing);
    all
}

/// Runs the scheduler until `rt.shutdown` is cancelled.
pub async fn run(rt: Runtime, config: SchedulerConfig) -> Result<()> {
    let ledger = Arc::new(Ledger {
        schedules: Arc::new(Repository::<Schedule>::new(rt.store.clone(), rt.service)),
        slots: Arc::new(Repository::<Slots>::new(rt.store.clone(), rt.service)),
        clock: config.clock.clone(),
    });
    create_builtins(&ledger.schedules, &config.builtins, config.clock.as_ref()).await;
    let schedule_handler = Arc::new(CommandHandler::new(
        Arc::new(ScheduleCommands {
            ledger: ledger.clone(),
        }),
        &rt,
    ));
    let timer_handler = Arc::new(CommandHandler::new(
        Arc::new(TimerCommands {
            ledger: ledger.clone(),
        }),
        &rt,
    ));
    let fired_commands = Arc::new(FiredCommands {
        nats: rt.nats.clone(),
        store: rt.store.clone(),
    });
    tokio::try_join!(
        serve_commands(&rt, schedule_handler).err_into(),
        serve_commands(&rt, timer_handler).err_into(),
        reactors::run(&rt, fired_commands).err_into(),
        projections::run(&rt, Arc::new(SchedulesProjection)).err_into(),
        query::serve(&rt).err_into(),
        engine::run(&rt, ledger.clone()),
    )?;
    Ok(())
}

/// Creates the built-in schedules; one whose spec an operator changed is left alone.
async fn create_builtins(
    schedules: &Repository<Schedule>,
    builtins: &[SetSchedule],
    clock: &dyn Clock,
) {
    let system = TenantId::system();
    for set in builtins {
        let id = schedule_id(&system, &set.name);
        let cause_id = Uuid::new_v5(&id, b"builtin");
        let cause = Cause {
            id: cause_id,
            actor: Actor::service("scheduler"),
            correlation_id: cause_id,
            traceparent: None,
        };
        let created = execute_with(schedules, &system, id, &cause, None, |schedule| {
            schedule.set(set, false, clock.now())
        })
        .await;
        if let Err(rejection) = created {
            tracing::info!(schedule = %set.name, %rejection, "built-in schedule kept as it is");
        }
    }
}
