//! `berth billing …`: accounts, subscriptions and payments over NATS; reads are
//! billing's queries; the operators' runs (`run-invoices`, `meter`, `check-overdue`).

use std::time::Duration;

use anyhow::{bail, Context};
use berth_runtime::client::send_command;
use berth_runtime::{connect_nats, ConnectArgs};
use berth_schemas::billing::{
    AccountCommand, BillingCommand, CancelSubscription, CheckOverdue, CreateSubscription,
    OpenAccount, PaymentCommand, RecordPayment, RunInvoices, RunMeter, SubscriptionCommand,
    SubscriptionTarget, BILLING_COMMANDS,
};
use berth_schemas::query::rows::{InvoiceRow, SubscriptionRow, UsageRow};
use berth_schemas::query::{TenantFilter, ACCOUNT, INVOICE, SUBSCRIPTION, USAGE};
use berth_schemas::status::AccountState;
use berth_schemas::subjects::command_subject;
use berth_schemas::usage::Tier;
use berth_schemas::{CommandReply, CommandSet, Rejection, TenantId};
use clap::{Args, Subcommand};
use uuid::Uuid;

use crate::output::{print, print_json, Output};
use crate::reads;
use crate::vm::Common;

#[derive(Args, Debug)]
pub struct Listing {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Only this tenant.
    #[arg(long)]
    tenant: Option<TenantId>,
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

impl Listing {
    fn filter(&self) -> TenantFilter {
        TenantFilter {
            tenant: self.tenant.clone(),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum BillingCommandLine {
    /// Accounts: tier, currency, status, balance due.
    Accounts(Listing),
    /// Subscriptions: product, price, status, period end.
    Subscriptions(Listing),
    /// Hourly usage records of VMs.
    Usage(Listing),
    /// Invoices with their totals and status.
    Invoices(Listing),
    /// Issue the invoices of a month that has ended (idempotent): `--month 2026-11`.
    RunInvoices {
        #[arg(long)]
        month: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Meter every hour that ended before now (idempotent).
    Meter {
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Mark overdue invoices and suspend accounts past the grace now.
    CheckOverdue {
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Open the tenant's account.
    OpenAccount {
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = parse_tier, default_value = "free")]
        tier: Tier,
        #[arg(long, default_value = "EUR")]
        currency: String,
        #[command(flatten)]
        common: Common,
    },
    /// Record a payment (minor units: 1250 is 12.50).
    Pay {
        #[arg(long)]
        amount_minor: i64,
        #[arg(long, default_value = "EUR")]
        currency: String,
        #[arg(long)]
        reference: String,
        #[command(flatten)]
        common: Common,
    },
    /// Subscribe to a pod product for a month: `--product n8n --variant basic`.
    Subscribe {
        #[arg(long)]
        product: String,
        #[arg(long)]
        variant: String,
        #[command(flatten)]
        common: Common,
    },
    /// Renew a subscription for another month.
    Renew {
        subscription_id: Uuid,
        #[command(flatten)]
        common: Common,
    },
    /// Cancel a subscription at its period end (or now with --now).
    Cancel {
        subscription_id: Uuid,
        #[arg(long)]
        now: bool,
        #[command(flatten)]
        common: Common,
    },
}

pub async fn run(command: BillingCommandLine) -> anyhow::Result<()> {
    match command {
        BillingCommandLine::Accounts(l) => {
            let rows: Vec<AccountState> = reads::list(&l.connect, ACCOUNT, l.filter())
                .await
                .context("reading accounts")?;
            print(
                l.output,
                &[
                    "TENANT",
                    "NAME",
                    "TIER",
                    "CURRENCY",
                    "STATUS",
                    "DUE",
                    "OPEN INVOICES",
                ],
                &rows,
                |r| {
                    vec![
                        r.tenant.to_string(),
                        r.name.clone(),
                        r.tier.clone(),
                        r.currency.clone(),
                        r.status.clone(),
                        r.balance_due_minor.to_string(),
                        r.open_invoices.to_string(),
                    ]
                },
            );
        }
        BillingCommandLine::Subscriptions(l) => {
            let rows: Vec<SubscriptionRow> = reads::list(&l.connect, SUBSCRIPTION, l.filter())
                .await
                .context("reading subscriptions")?;
            print(
                l.output,
                &["ID", "TENANT", "PRODUCT", "PRICE", "STATUS", "PERIOD END"],
                &rows,
                |r| {
                    vec![
                        r.id.to_string(),
                        r.tenant.to_string(),
                        format!("{}/{}", r.product, r.variant),
                        format!("{} {}", r.price_minor, r.currency),
                        r.status.clone(),
                        r.period_end
                            .map(|at| at.format("%Y-%m-%d %H:%M").to_string())
                            .unwrap_or_default(),
                    ]
                },
            );
        }
        BillingCommandLine::Usage(l) => {
            let rows: Vec<UsageRow> = reads::list(&l.connect, USAGE, l.filter())
                .await
                .context("reading usage")?;
            print(
                l.output,
                &["TENANT", "VM", "HOUR", "SECONDS", "PLAN"],
                &rows,
                |r| {
                    vec![
                        r.tenant.to_string(),
                        r.vm_id.to_string(),
                        r.hour.format("%Y-%m-%d %H:00").to_string(),
                        r.seconds.to_string(),
                        r.plan.clone(),
                    ]
                },
            );
        }
        BillingCommandLine::Invoices(l) => {
            let rows: Vec<InvoiceRow> = reads::list(&l.connect, INVOICE, l.filter())
                .await
                .context("reading invoices")?;
            print(
                l.output,
                &[
                    "NUMBER", "TENANT", "MONTH", "TOTAL", "CURRENCY", "STATUS", "DUE",
                ],
                &rows,
                |r| {
                    vec![
                        r.number.clone(),
                        r.tenant.to_string(),
                        r.month.clone(),
                        r.total_minor.to_string(),
                        r.currency.clone(),
                        r.status.clone(),
                        r.due_at.format("%Y-%m-%d").to_string(),
                    ]
                },
            );
        }
        BillingCommandLine::RunInvoices { month, connect } => {
            operator_run(&connect, BillingCommand::RunInvoices(RunInvoices { month })).await?
        }
        BillingCommandLine::Meter { connect } => {
            let until = chrono::Utc::now();
            operator_run(&connect, BillingCommand::Meter(RunMeter { until })).await?
        }
        BillingCommandLine::CheckOverdue { connect } => {
            operator_run(&connect, BillingCommand::CheckOverdue(CheckOverdue {})).await?
        }
        BillingCommandLine::OpenAccount {
            name,
            email,
            tier,
            currency,
            common,
        } => {
            let open = AccountCommand::Open(OpenAccount {
                name,
                billing_email: email,
                tier,
                currency,
            });
            send(&common, "account", open.action(), open.body()).await?
        }
        BillingCommandLine::Pay {
            amount_minor,
            currency,
            reference,
            common,
        } => {
            let pay = PaymentCommand::Record(RecordPayment {
                amount_minor,
                currency,
                reference,
            });
            send(&common, "payment", pay.action(), pay.body()).await?
        }
        BillingCommandLine::Subscribe {
            product,
            variant,
            common,
        } => {
            let create = SubscriptionCommand::Create(CreateSubscription {
                subscription_id: None,
                product,
                variant,
            });
            send(&common, "subscription", create.action(), create.body()).await?
        }
        BillingCommandLine::Renew {
            subscription_id,
            common,
        } => {
            let renew = SubscriptionCommand::Renew(SubscriptionTarget { subscription_id });
            send(&common, "subscription", renew.action(), renew.body()).await?
        }
        BillingCommandLine::Cancel {
            subscription_id,
            now,
            common,
        } => {
            let cancel = SubscriptionCommand::Cancel(CancelSubscription {
                subscription_id,
                at_period_end: !now,
            });
            send(&common, "subscription", cancel.action(), cancel.body()).await?
        }
    }
    Ok(())
}

pub(crate) async fn send(
    common: &Common,
    kind: &str,
    action: &str,
    body: Vec<u8>,
) -> anyhow::Result<()> {
    let nats = connect_nats("cli", &common.connect).await?;
    let reply = send_command(&nats, &common.tenant, kind, action, &common.meta(), body).await?;
    match reply {
        CommandReply::Accepted {
            aggregate_id,
            version,
            events,
            ..
        } => {
            println!(
                "accepted: {kind} {aggregate_id} at version {version} ({} events)",
                events.len()
            );
            Ok(())
        }
        CommandReply::Rejected(rejection) => {
            bail!("rejected ({}): {}", rejection.code, rejection.message)
        }
    }
}

async fn operator_run(connect: &ConnectArgs, command: BillingCommand) -> anyhow::Result<()> {
    let nats = connect_nats("cli", connect).await?;
    let subject = command_subject(&TenantId::system(), BILLING_COMMANDS, command.action());
    let reply = tokio::time::timeout(
        Duration::from_secs(600),
        berth_runtime::client::request(&nats, subject.clone(), command.body()),
    )
    .await
    .context("no answer within 600 s")?
    .with_context(|| format!("nothing answers {subject}: is billing running (`just up`)?"))?;
    if let Ok(rejection) = serde_json::from_slice::<Rejection>(&reply.payload) {
        bail!("rejected ({}): {}", rejection.code, rejection.message);
    }
    let report: serde_json::Value =
        serde_json::from_slice(&reply.payload).context("an unreadable report")?;
    print_json(&report);
    Ok(())
}

fn parse_tier(value: &str) -> Result<Tier, String> {
    serde_json::from_value(serde_json::Value::String(value.to_owned()))
        .map_err(|_| format!("unknown tier {value:?}: free or pro"))
}
