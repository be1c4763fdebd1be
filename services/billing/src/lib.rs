//! berth-billing: every cent explainable from events, counted exactly once.
//!
//! - [`prices`]: the price list (`prices.json`), integer minor units only.
//! - [`account`]: the `account` aggregate — contact, tier, currency and the ledger
//!   (invoices posted, payments, settlements oldest first, overdue, suspension).
//! - [`subscription`]: monthly pod subscriptions; [`timers`]: their period-end timers.
//! - [`meter`]: hourly usage records from each VM's running time in the log.
//! - [`invoicing`]: monthly invoices, issued once, posted atomically with the invoice.
//! - [`commands`]: `cmd.<tenant>.account.*`, `cmd.<tenant>.payment.record`, and the
//!   operators' runs on `cmd.system.billing.*`; [`projection`]: `billing`; [`query`]:
//!   `query.*.account|subscription|usage|invoice.list`.
//!
//! [`run`] serves all of it and follows the built-in `metering` (hourly), `invoicing`
//! (monthly) and `overdue-check` (daily) schedules.

pub use berth_billing_core::account;
pub mod cli;
pub mod commands;
pub mod error;
pub mod invoicing;
pub mod meter;
pub mod prices;
pub mod projection;
pub mod query;
pub use berth_billing_core::subscription;
pub mod timers;

use std::sync::Arc;

use async_trait::async_trait;
use berth_runtime::clock::{Clock, SystemClock};
use berth_runtime::commands::{serve as serve_commands, CommandHandler};
use berth_runtime::reactor::{ReactError, Reactor};
use berth_runtime::store::{Cause, Repository, StoredEvent};
use berth_runtime::{projection as projections, reactor as reactors, Runtime};
use berth_schemas::billing::{
    BillingCommand, INVOICING_SCHEDULE, METERING_SCHEDULE, OVERDUE_SCHEDULE,
};
use berth_schemas::schedule::{schedule_id, ScheduleEvent};
use berth_schemas::subjects::event_subject;
use berth_schemas::{Actor, TenantId};
use chrono::{Duration, Months};
use futures::TryFutureExt;
use uuid::Uuid;

use crate::account::Account;
use crate::commands::{AccountCommands, PaymentCommands, SubscriptionCommands};
pub use crate::error::{Error, Result};
use crate::invoicing::{Invoice, Invoicing};
use crate::meter::{floor_hour, Metering};
use crate::prices::PriceList;
use crate::projection::BillingProjection;

/// How billing behaves beyond the runtime's settings.
#[derive(Clone)]
pub struct BillingConfig {
    pub prices: Arc<PriceList>,
    /// Days an invoice may stay overdue before the account is suspended.
    pub grace_days: i64,
    /// How long after an hour ends it is metered (late events settle meanwhile).
    pub settle: Duration,
    pub clock: Arc<dyn Clock>,
}

impl BillingConfig {
    pub fn new(prices: PriceList) -> Self {
        Self {
            prices: Arc::new(prices),
            grace_days: 7,
            settle: Duration::minutes(5),
            clock: Arc::new(SystemClock),
        }
    }
}

/// Billing's runs: metering, invoicing, the overdue check.
pub struct Billing {
    pub accounts: Arc<Repository<Account>>,
    pub subscriptions: Arc<Repository<subscription::Subscription>>,
    pub metering: Arc<Metering>,
    pub invoicing: Invoicing,
    pub config: BillingConfig,
}

impl Billing {
    pub fn new(rt: &Runtime, config: BillingConfig) -> Self {
        let accounts = Arc::new(Repository::<Account>::new(rt.store.clone(), rt.service));
        let subscriptions = Arc::new(Repository::new(rt.store.clone(), rt.service));
        let metering = Arc::new(Metering::new(Arc::new(Repository::new(
            rt.store.clone(),
            rt.service,
        ))));
        let invoicing = Invoicing {
            accounts: accounts.clone(),
            invoices: Arc::new(Repository::<Invoice>::new(rt.store.clone(), rt.service)),
            subscriptions: subscriptions.clone(),
            metering: metering.clone(),
            prices: config.prices.clone(),
            clock: config.clock.clone(),
        };
        Self {
            accounts,
            subscriptions,
            metering,
            invoicing,
            config,
        }
    }

    /// Runs one operator command; the answer is a JSON report.
    pub async fn run(&self, command: &BillingCommand) -> crate::Result<serde_json::Value> {
        Ok(match command {
            BillingCommand::RunInvoices(run) => {
                serde_json::to_value(self.invoicing.run(&run.month).await?)?
            }
            BillingCommand::Meter(meter) => {
                let report = self.metering.meter_until(floor_hour(meter.until)).await?;
                serde_json::json!({"vms": report.vms, "records": report.records})
            }
            BillingCommand::CheckOverdue(_) => {
                serde_json::json!({"changed_accounts": self.check_overdue().await?})
            }
        })
    }

    /// Meters every hour that ended at least the settling delay ago.
    pub async fn meter_now(&self) -> crate::Result<()> {
        let until = floor_hour(self.config.clock.now() - self.config.settle);
        self.metering.meter_until(until).await.map(|_| ())
    }

    /// Invoices the month before the current one.
    pub async fn invoice_last_month(&self) -> crate::Result<()> {
        let now = self.config.clock.now();
        let last = now - Months::new(1);
        self.invoicing
            .run(&last.format("%Y-%m").to_string())
            .await
            .map(|_| ())
    }

    /// Marks overdue invoices and suspends accounts past the grace; returns how many
    /// accounts changed.
    pub async fn check_overdue(&self) -> crate::Result<usize> {
        let now = self.config.clock.now();
        let grace = Duration::days(self.config.grace_days);
        let mut changed = 0;
        let store = self.accounts.store();
        for (tenant, id) in store
            .all_aggregates(berth_schemas::billing::ACCOUNT)
            .await?
        {
            let loaded = self.accounts.load(&tenant, id).await?;
            let events = loaded.state.check_overdue(now, grace);
            if events.is_empty() {
                continue;
            }
            let cause_id = Uuid::new_v5(&id, format!("overdue@{}", loaded.version).as_bytes());
            let cause = Cause {
                id: cause_id,
                actor: Actor::service("billing"),
                correlation_id: cause_id,
                traceparent: None,
            };
            // A conflict: a payment came in meanwhile; the next check looks again.
            if self
                .accounts
                .append(&tenant, id, &loaded, &cause, events)
                .await
                .is_ok()
            {
                changed += 1;
            }
        }
        Ok(changed)
    }
}

/// Follows the fires of billing's built-in schedules (one replica per fire).
struct OnSchedule {
    billing: Arc<Billing>,
}

#[async_trait]
impl Reactor for OnSchedule {
    fn name(&self) -> String {
        "billing-schedules".into()
    }

    fn filter_subjects(&self) -> Vec<String> {
        let system = TenantId::system();
        [METERING_SCHEDULE, INVOICING_SCHEDULE, OVERDUE_SCHEDULE]
            .iter()
            .map(|name| event_subject(&system, "schedule", schedule_id(&system, name)))
            .collect()
    }

    async fn react(&self, event: &StoredEvent) -> Result<(), ReactError> {
        let Ok(ScheduleEvent::Fired(_)) = event.decode::<ScheduleEvent>() else {
            return Ok(());
        };
        let system = TenantId::system();
        let schedule = event.meta.subject;
        let outcome = if schedule == schedule_id(&system, METERING_SCHEDULE) {
            self.billing.meter_now().await
        } else if schedule == schedule_id(&system, INVOICING_SCHEDULE) {
            self.billing.invoice_last_month().await
        } else {
            self.billing.check_overdue().await.map(|_| ())
        };
        outcome.map_err(ReactError::transient)
    }
}

/// Runs billing until `rt.shutdown` is cancelled.
pub async fn run(rt: Runtime, config: BillingConfig) -> crate::Result<()> {
    let billing = Arc::new(Billing::new(&rt, config));
    let accounts = Arc::new(CommandHandler::new(
        Arc::new(AccountCommands {
            accounts: billing.accounts.clone(),
        }),
        &rt,
    ));
    let payments = Arc::new(CommandHandler::new(
        Arc::new(PaymentCommands {
            accounts: billing.accounts.clone(),
        }),
        &rt,
    ));
    let subscriptions = Arc::new(CommandHandler::new(
        Arc::new(SubscriptionCommands {
            subscriptions: billing.subscriptions.clone(),
            accounts: billing.accounts.clone(),
            prices: billing.config.prices.clone(),
            clock: billing.config.clock.clone(),
        }),
        &rt,
    ));
    let timers = Arc::new(timers::SubscriptionTimers {
        nats: rt.nats.clone(),
    });
    let on_schedule = Arc::new(OnSchedule {
        billing: billing.clone(),
    });
    tokio::try_join!(
        serve_commands(&rt, accounts).err_into(),
        serve_commands(&rt, payments).err_into(),
        serve_commands(&rt, subscriptions).err_into(),
        reactors::run(&rt, timers).err_into(),
        reactors::run(&rt, on_schedule).err_into(),
        projections::run(&rt, Arc::new(BillingProjection)).err_into(),
        query::serve(&rt).err_into(),
        commands::serve_runs(&rt, &billing),
    )?;
    Ok(())
}
