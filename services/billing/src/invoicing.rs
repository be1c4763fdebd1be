//! Monthly invoices: for every open account, one invoice per month with a line per VM
//! size (plan, or vCPUs and memory for explicit sizes) and its running time to the second,
//! priced per hour and rounded half up once per line. The invoice (`evt.<tenant>.invoice.<id>`,
//! id derived from tenant and month, so a second run finds it) and its posting on the
//! account go out in one atomic append; an issued invoice is never changed. Accounts with
//! no usage in the month get no invoice.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_runtime::clock::Clock;
use berth_runtime::decision::{execute, Decision};
use berth_runtime::store::{Aggregate, AtomicAppend, Cause, Repository};
use berth_schemas::billing::{
    account_id, invoice_id, month_start, InvoiceEvent, InvoiceIssued, InvoiceLine, InvoicePosted,
};
use berth_schemas::{Actor, TenantId};
use chrono::{DateTime, Duration, Months, Utc};

use crate::account::Account;
use crate::error::Error;
use crate::meter::{Meter, Metering, Size};
use crate::prices::{prorate, PriceList};
use crate::subscription::Subscription;

/// Days from issue to due date.
pub const PAYMENT_TERM_DAYS: i64 = 14;

pub use berth_billing_core::invoice::Invoice;

/// Issues invoices.
pub struct Invoicing {
    pub accounts: Arc<Repository<Account>>,
    pub invoices: Arc<Repository<Invoice>>,
    pub subscriptions: Arc<Repository<Subscription>>,
    pub metering: Arc<Metering>,
    pub prices: Arc<PriceList>,
    pub clock: Arc<dyn Clock>,
}

/// What an invoice run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct InvoiceRun {
    pub month: String,
    pub issued: Vec<String>,
    pub already_issued: usize,
    pub without_usage: usize,
}

impl Invoicing {
    /// Issues the invoices of `month` (`YYYY-MM`) that are not issued yet, after metering
    /// every hour of it.
    pub async fn run(&self, month: &str) -> crate::Result<InvoiceRun> {
        let start = month_start(month).map_err(|r| Error::Invalid(r.message))?;
        let end = start + Months::new(1);
        let now = self.clock.now();
        if end > now {
            return Err(Error::Invalid(format!("{month} has not ended yet")));
        }
        self.metering.meter_until(end).await?;
        let mut run = InvoiceRun {
            month: month.to_owned(),
            ..InvoiceRun::default()
        };
        let store = self.accounts.store();
        for (tenant, _) in store
            .all_aggregates(berth_schemas::billing::ACCOUNT)
            .await?
        {
            match self.issue(&tenant, month, start, end, now).await? {
                Issued::Now(number) => run.issued.push(number),
                Issued::Before => run.already_issued += 1,
                Issued::NothingToBill => run.without_usage += 1,
            }
        }
        Ok(run)
    }

    async fn issue(
        &self,
        tenant: &TenantId,
        month: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> crate::Result<Issued> {
        let id = invoice_id(tenant, month);
        let account_id = account_id(tenant);
        let cause = Cause::derived(id, "issue", Actor::service("billing"));
        execute(Invoice::KIND, id, || async {
            let invoice = self.invoices.load(tenant, id).await?;
            if invoice.state.issued.is_some() {
                return Ok(Decision::done(Issued::Before));
            }
            let account = self.accounts.load(tenant, account_id).await?;
            let Some(opened) = &account.state.opened else {
                return Ok(Decision::done(Issued::NothingToBill));
            };
            let prices = self
                .prices
                .prices(&opened.currency)
                .ok_or_else(|| Error::NoPrices {
                    currency: opened.currency.clone(),
                    tenant: tenant.to_string(),
                })?;
            let mut lines = self
                .lines(tenant, start, end, |size| {
                    prices.vm_per_hour(&size.plan, size.vcpus, size.memory_mb)
                })
                .await?;
            lines.extend(self.subscription_lines(tenant, start, end).await?);
            if lines.is_empty() {
                return Ok(Decision::done(Issued::NothingToBill));
            }
            let number = format!("BER-{}-{tenant}", month.replace('-', ""));
            let issued = InvoiceIssued {
                number: number.clone(),
                month: month.to_owned(),
                currency: opened.currency.clone(),
                total_minor: lines.iter().map(|l| l.amount_minor).sum(),
                lines,
                issued_at: now,
                due_at: now + Duration::days(PAYMENT_TERM_DAYS),
            };
            let posting = account
                .state
                .post_invoice(InvoicePosted {
                    invoice_id: id,
                    number: number.clone(),
                    total_minor: issued.total_minor,
                    due_at: issued.due_at,
                })
                .map_err(|rejection| Error::Refused {
                    tenant: tenant.to_string(),
                    rejection,
                })?;
            let changes = AtomicAppend::new(&cause)
                .add(
                    &self.invoices,
                    tenant,
                    id,
                    &invoice,
                    &[InvoiceEvent::Issued(issued)],
                )
                .add(&self.accounts, tenant, account_id, &account, &posting);
            // Another run got there first (a duplicate, a conflict), or the account
            // moved: the next look decides.
            Ok(Decision::append_then(changes, |_| Ok(Issued::Now(number))))
        })
        .await
    }

    /// The usage lines of a tenant's VMs within [start, end), one per size.
    async fn lines(
        &self,
        tenant: &TenantId,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        price_per_hour: impl Fn(&Size) -> i64,
    ) -> crate::Result<Vec<InvoiceLine>> {
        let store = self.accounts.store();
        let mut seconds: BTreeMap<(String, u32, u32), i64> = BTreeMap::new();
        for vm_id in store
            .aggregate_ids(tenant, berth_schemas::billing::METER)
            .await?
        {
            let meter: Arc<berth_runtime::store::Loaded<Meter>> =
                self.metering.meters().load(tenant, vm_id).await?;
            for record in meter.state.recorded.range(start..end).map(|(_, r)| r) {
                *seconds
                    .entry((record.plan.clone(), record.vcpus, record.memory_mb))
                    .or_default() += i64::from(record.seconds);
            }
        }
        Ok(seconds
            .into_iter()
            .map(|((plan, vcpus, memory_mb), seconds)| {
                let size = Size {
                    plan: plan.clone(),
                    vcpus,
                    memory_mb,
                };
                let unit = price_per_hour(&size);
                InvoiceLine {
                    description: format!(
                        "VM usage, {plan} ({vcpus} vCPU, {memory_mb} MB): {}",
                        hours_text(seconds)
                    ),
                    kind: "vm_usage".into(),
                    quantity_seconds: seconds,
                    unit_price_minor: unit,
                    amount_minor: prorate(unit, seconds, 3600),
                }
            })
            .collect())
    }
}

impl Invoicing {
    /// A line per subscription active in [start, end): its monthly price times the
    /// share of the month's seconds it was active, rounded half up.
    async fn subscription_lines(
        &self,
        tenant: &TenantId,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> crate::Result<Vec<InvoiceLine>> {
        let store = self.accounts.store();
        let month_seconds = (end - start).num_seconds();
        let mut lines = Vec::new();
        for id in store
            .aggregate_ids(tenant, berth_schemas::billing::SUBSCRIPTION)
            .await?
        {
            let subscription = self.subscriptions.load(tenant, id).await?;
            let Some(created) = &subscription.state.created else {
                continue;
            };
            let seconds = subscription.state.active_seconds(start, end);
            if seconds == 0 {
                continue;
            }
            let unit = created.price.amount_minor;
            lines.push(InvoiceLine {
                description: format!(
                    "{} {} subscription, {} of the month",
                    created.product,
                    created.variant,
                    hours_text(seconds)
                ),
                kind: "subscription".into(),
                quantity_seconds: seconds,
                unit_price_minor: unit,
                amount_minor: prorate(unit, seconds, month_seconds),
            });
        }
        Ok(lines)
    }
}

enum Issued {
    Now(String),
    Before,
    NothingToBill,
}

/// `3 h 25 min 0 s`.
fn hours_text(seconds: i64) -> String {
    format!(
        "{} h {} min {} s",
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    )
}
