//! Billing's command services: `cmd.<tenant>.account.*` and `cmd.<tenant>.payment.record`
//! (both on the tenant's account aggregate), and the operators' runs on
//! `cmd.system.billing.*`, answered with a JSON report.

use std::sync::Arc;

use crate::error::Error;
use async_trait::async_trait;
use berth_runtime::commands::{execute_with, CommandService};
use berth_runtime::store::{Cause, Repository};
use berth_runtime::Runtime;
use berth_schemas::billing::{account_id, AccountCommand, BillingCommand, PaymentCommand};
use berth_schemas::ids::SYSTEM_TENANT;
use berth_schemas::subjects::system_command_filter;
use berth_schemas::{CommandReply, CommandSet, Rejection, RejectionCode, TenantId};

use crate::account::Account;
use crate::Billing;

/// `cmd.<tenant>.account.<action>`.
pub struct AccountCommands {
    pub accounts: Arc<Repository<Account>>,
}

#[async_trait]
impl CommandService for AccountCommands {
    type Command = AccountCommand;
    type Output = ();

    fn kind(&self) -> &'static str {
        berth_schemas::billing::ACCOUNT
    }

    async fn execute(
        &self,
        tenant: &TenantId,
        cause: &Cause,
        command: &AccountCommand,
    ) -> Result<CommandReply, Rejection> {
        refuse_system(tenant)?;
        execute_with(
            &self.accounts,
            tenant,
            account_id(tenant),
            cause,
            None,
            |account| {
                berth_runtime::store::Aggregate::decide(
                    account,
                    command,
                    &cause.context(chrono::Utc::now()),
                )
            },
        )
        .await
    }
}

/// `cmd.<tenant>.payment.record`.
pub struct PaymentCommands {
    pub accounts: Arc<Repository<Account>>,
}

#[async_trait]
impl CommandService for PaymentCommands {
    type Command = PaymentCommand;
    type Output = ();

    fn kind(&self) -> &'static str {
        berth_schemas::billing::PAYMENT_COMMANDS
    }

    async fn execute(
        &self,
        tenant: &TenantId,
        cause: &Cause,
        command: &PaymentCommand,
    ) -> Result<CommandReply, Rejection> {
        refuse_system(tenant)?;
        let PaymentCommand::Record(payment) = command;
        execute_with(
            &self.accounts,
            tenant,
            account_id(tenant),
            cause,
            None,
            |account| account.record_payment(payment),
        )
        .await
    }
}

fn refuse_system(tenant: &TenantId) -> Result<(), Rejection> {
    if tenant.as_str() == SYSTEM_TENANT {
        return Err(Rejection::invalid(
            "accounts belong to tenants: send this to cmd.<tenant>.…",
        ));
    }
    Ok(())
}

/// Answers `cmd.system.billing.<action>` (one replica per request) until shutdown.
pub async fn serve_runs(rt: &Runtime, billing: &Billing) -> crate::Result<()> {
    let subject = system_command_filter(berth_schemas::billing::BILLING_COMMANDS);
    let decode = |subject: &str, body: &[u8]| {
        let action = subject.rsplit('.').next().unwrap_or_default();
        BillingCommand::decode(action, body)
    };
    berth_runtime::requests::serve(rt, &subject, decode, |command| async move {
        let run = billing.run(&command).await;
        run.map_err(|e| Error::Run {
            action: command.action().to_string(),
            source: Box::new(e),
        })
    })
    .await?;
    Ok(())
}

/// `cmd.<tenant>.subscription.<action>`: a create is priced from the price list in the
/// account's currency (the account must be open).
pub struct SubscriptionCommands {
    pub subscriptions: Arc<Repository<crate::subscription::Subscription>>,
    pub accounts: Arc<Repository<Account>>,
    pub prices: Arc<crate::prices::PriceList>,
    pub clock: Arc<dyn berth_runtime::clock::Clock>,
}

#[async_trait]
impl CommandService for SubscriptionCommands {
    type Command = berth_schemas::billing::SubscriptionCommand;
    type Output = ();

    fn kind(&self) -> &'static str {
        berth_schemas::billing::SUBSCRIPTION
    }

    async fn execute(
        &self,
        tenant: &TenantId,
        cause: &Cause,
        command: &berth_schemas::billing::SubscriptionCommand,
    ) -> Result<CommandReply, Rejection> {
        use berth_schemas::billing::{Money, SubscriptionCommand};
        refuse_system(tenant)?;
        let price = match command {
            SubscriptionCommand::Create(create) => {
                let account = self
                    .accounts
                    .load(tenant, account_id(tenant))
                    .await
                    .map_err(berth_runtime::commands::unavailable)?;
                let Some(opened) = &account.state.opened else {
                    return Err(Rejection::new(
                        RejectionCode::NotFound,
                        "this tenant has no account; send account.open first",
                    ));
                };
                let amount_minor = self
                    .prices
                    .prices(&opened.currency)
                    .and_then(|prices| prices.pod_per_month(&create.product, &create.variant))
                    .ok_or_else(|| {
                        Rejection::new(
                            RejectionCode::NotFound,
                            format!(
                                "{}/{} is not sold in {}",
                                create.product, create.variant, opened.currency
                            ),
                        )
                    })?;
                Some(Money {
                    amount_minor,
                    currency: opened.currency.clone(),
                })
            }
            _ => None,
        };
        let id = command.aggregate_id(cause.id);
        let decision = crate::subscription::Decision {
            now: self.clock.now(),
            price,
        };
        execute_with(
            &self.subscriptions,
            tenant,
            id,
            cause,
            None,
            |subscription| subscription.decide_with(command, &decision),
        )
        .await
    }
}
