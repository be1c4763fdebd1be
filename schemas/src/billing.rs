//! Billing: accounts (`cmd.<tenant>.account.*`, one per tenant), subscriptions
//! (`cmd.<tenant>.subscription.*`), payments (`cmd.<tenant>.payment.record`), hourly VM
//! usage (`evt.<tenant>.meter.<vm id>`), monthly invoices (`evt.<tenant>.invoice.<id>`)
//! and the operators' runs (`cmd.system.billing.*`).
//!
//! Money is always an integer number of minor units (cents) with its ISO 4217 currency;
//! an account has one currency and anything in another is refused.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::command::{parse_body, CommandSet, Rejection};
use crate::domain_events;
use crate::ids::{validate_slug, TenantId};
use crate::usage::Tier;

/// The aggregate kinds.
pub const ACCOUNT: &str = "account";
pub const INVOICE: &str = "invoice";
pub const SUBSCRIPTION: &str = "subscription";
pub const METER: &str = "meter";
/// Command kinds without an aggregate of their own.
pub const PAYMENT_COMMANDS: &str = "payment";
pub const BILLING_COMMANDS: &str = "billing";
/// Built-in schedules billing follows.
pub const METERING_SCHEDULE: &str = "metering";
pub const INVOICING_SCHEDULE: &str = "invoicing";
pub const OVERDUE_SCHEDULE: &str = "overdue-check";

/// A tenant's account id: one per tenant.
pub fn account_id(tenant: &TenantId) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("berth.account.{tenant}").as_bytes(),
    )
}

/// The invoice of an account for a month (`YYYY-MM`): one per account and month.
pub fn invoice_id(tenant: &TenantId, month: &str) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("berth.invoice.{tenant}.{month}").as_bytes(),
    )
}

/// A sum of money: minor units of a currency. Never a float.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Money {
    pub amount_minor: i64,
    /// ISO 4217, upper case: `EUR`, `USD`.
    pub currency: String,
}

/// `^[A-Z]{3}$`.
pub fn validate_currency(currency: &str) -> Result<(), Rejection> {
    if currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(Rejection::invalid(format!(
            "currency must be an ISO 4217 code like EUR, got {:?}",
            currency.chars().take(8).collect::<String>()
        )))
    }
}

// ---------------------------------------------------------------- accounts

/// `account.open`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAccount {
    /// 1 to 200 characters.
    pub name: String,
    pub billing_email: String,
    pub tier: Tier,
    pub currency: String,
}

/// `account.update_contact`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateContact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_email: Option<String>,
}

/// `account.set_tier`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetTier {
    pub tier: Tier,
}

/// `account.close`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseAccount {}

/// Account commands: the aggregate is the tenant's account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountCommand {
    Open(OpenAccount),
    UpdateContact(UpdateContact),
    SetTier(SetTier),
    Close(CloseAccount),
}

fn validate_name(name: &str) -> Result<(), Rejection> {
    if name.trim().is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(Rejection::invalid(
            "name must hold 1 to 200 printable characters",
        ));
    }
    Ok(())
}

fn validate_email(email: &str) -> Result<(), Rejection> {
    let well_formed = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if well_formed {
        Ok(())
    } else {
        Err(Rejection::invalid(
            "billing_email must be an address like billing@example.com",
        ))
    }
}

impl CommandSet for AccountCommand {
    fn decode(action: &str, body: &[u8]) -> Result<Self, Rejection> {
        let command = match action {
            "open" => Self::Open(parse_body(action, body)?),
            "update_contact" => Self::UpdateContact(parse_body(action, body)?),
            "set_tier" => Self::SetTier(parse_body(action, body)?),
            "close" => Self::Close(parse_body(action, body)?),
            other => {
                return Err(Rejection::invalid(format!(
                    "unknown account action {:?}; expected open, update_contact, set_tier or close",
                    other.chars().take(40).collect::<String>()
                )))
            }
        };
        match &command {
            Self::Open(open) => {
                validate_name(&open.name)?;
                validate_email(&open.billing_email)?;
                validate_currency(&open.currency)?;
            }
            Self::UpdateContact(update) => {
                if let Some(name) = &update.name {
                    validate_name(name)?;
                }
                if let Some(email) = &update.billing_email {
                    validate_email(email)?;
                }
            }
            _ => {}
        }
        Ok(command)
    }
    /// The services derive the account id from the tenant.
    fn aggregate_id(&self, command_id: Uuid) -> Uuid {
        command_id
    }
    fn expected_version(&self) -> Option<u64> {
        None
    }
    fn action(&self) -> &'static str {
        match self {
            Self::Open(_) => "open",
            Self::UpdateContact(_) => "update_contact",
            Self::SetTier(_) => "set_tier",
            Self::Close(_) => "close",
        }
    }
}

impl AccountCommand {
    pub fn body(&self) -> Vec<u8> {
        let encoded = match self {
            Self::Open(c) => serde_json::to_vec(c),
            Self::UpdateContact(c) => serde_json::to_vec(c),
            Self::SetTier(c) => serde_json::to_vec(c),
            Self::Close(c) => serde_json::to_vec(c),
        };
        encoded.expect("commands are plain data")
    }
}

/// `payment.record`: money received for the tenant's account; settles invoices oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordPayment {
    /// Positive, in minor units.
    pub amount_minor: i64,
    pub currency: String,
    /// The payment provider's reference, 1 to 100 characters.
    pub reference: String,
}

/// Payment commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentCommand {
    Record(RecordPayment),
}

impl CommandSet for PaymentCommand {
    fn decode(action: &str, body: &[u8]) -> Result<Self, Rejection> {
        let Self::Record(record) = match action {
            "record" => Self::Record(parse_body(action, body)?),
            other => {
                return Err(Rejection::invalid(format!(
                    "unknown payment action {:?}; expected record",
                    other.chars().take(40).collect::<String>()
                )))
            }
        };
        if record.amount_minor <= 0 {
            return Err(Rejection::invalid("amount_minor must be positive"));
        }
        validate_currency(&record.currency)?;
        if record.reference.is_empty() || record.reference.len() > 100 {
            return Err(Rejection::invalid(
                "reference must hold 1 to 100 characters",
            ));
        }
        Ok(Self::Record(record))
    }
    fn aggregate_id(&self, command_id: Uuid) -> Uuid {
        command_id
    }
    fn expected_version(&self) -> Option<u64> {
        None
    }
    fn action(&self) -> &'static str {
        "record"
    }
}

impl PaymentCommand {
    pub fn body(&self) -> Vec<u8> {
        let Self::Record(record) = self;
        serde_json::to_vec(record).expect("commands are plain data")
    }
}

/// The account was opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AccountOpened {
    pub name: String,
    pub billing_email: String,
    pub tier: Tier,
    pub currency: String,
}

/// An invoice was issued to the account (in the same atomic append as the invoice).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InvoicePosted {
    pub invoice_id: Uuid,
    pub number: String,
    pub total_minor: i64,
    pub due_at: DateTime<Utc>,
}

/// Money received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentRecorded {
    pub amount_minor: i64,
    pub reference: String,
}

/// An invoice is paid in full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InvoiceRef {
    pub invoice_id: Uuid,
}

/// The account is suspended: its VMs are stopped and its pods scaled to 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AccountSuspended {
    pub reason: String,
}

/// A step that has nothing to say but that it happened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Nothing {}

domain_events! {
    /// Everything that happens to an account.
    pub enum AccountEvent {
        Opened(AccountOpened) = "berth.account.opened.v1",
        ContactUpdated(UpdateContact) = "berth.account.contact_updated.v1",
        TierSet(SetTier) = "berth.account.tier_set.v1",
        Closed(Nothing) = "berth.account.closed.v1",
        InvoicePosted(InvoicePosted) = "berth.account.invoice_posted.v1",
        PaymentRecorded(PaymentRecorded) = "berth.account.payment_recorded.v1",
        InvoiceSettled(InvoiceRef) = "berth.account.invoice_settled.v1",
        InvoiceOverdue(InvoiceRef) = "berth.account.invoice_overdue.v1",
        Suspended(AccountSuspended) = "berth.account.suspended.v1",
        Resumed(Nothing) = "berth.account.resumed.v1",
    }
}

// ---------------------------------------------------------------- subscriptions

/// The timer that expires a subscription at the end of its period.
pub fn subscription_timer_key(subscription_id: Uuid) -> String {
    format!("sub-end-{subscription_id}")
}

/// `subscription.create`: a monthly subscription to a pod product, starting now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscription {
    /// Defaults to the command id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<Uuid>,
    /// A catalog service, e.g. `n8n`.
    pub product: String,
    pub variant: String,
}

/// `subscription.renew` (one more period; after expiry, a new period from now) and
/// `subscription.expire` (sent by the period-end timer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionTarget {
    pub subscription_id: Uuid,
}

/// `subscription.cancel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelSubscription {
    pub subscription_id: Uuid,
    /// `true` (default): at the end of the paid period; `false`: now.
    #[serde(default = "yes")]
    pub at_period_end: bool,
}

fn yes() -> bool {
    true
}

/// Subscription commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionCommand {
    Create(CreateSubscription),
    Renew(SubscriptionTarget),
    Cancel(CancelSubscription),
    Expire(SubscriptionTarget),
}

impl SubscriptionCommand {
    pub fn subscription_id(&self, command_id: Uuid) -> Uuid {
        match self {
            Self::Create(c) => c.subscription_id.unwrap_or(command_id),
            Self::Renew(t) | Self::Expire(t) => t.subscription_id,
            Self::Cancel(c) => c.subscription_id,
        }
    }

    pub fn body(&self) -> Vec<u8> {
        let encoded = match self {
            Self::Create(c) => serde_json::to_vec(c),
            Self::Renew(t) | Self::Expire(t) => serde_json::to_vec(t),
            Self::Cancel(c) => serde_json::to_vec(c),
        };
        encoded.expect("commands are plain data")
    }
}

impl CommandSet for SubscriptionCommand {
    fn decode(action: &str, body: &[u8]) -> Result<Self, Rejection> {
        let command = match action {
            "create" => Self::Create(parse_body(action, body)?),
            "renew" => Self::Renew(parse_body(action, body)?),
            "cancel" => Self::Cancel(parse_body(action, body)?),
            "expire" => Self::Expire(parse_body(action, body)?),
            other => {
                return Err(Rejection::invalid(format!(
                    "unknown subscription action {:?}; expected create, renew, cancel or expire",
                    other.chars().take(40).collect::<String>()
                )))
            }
        };
        if let Self::Create(create) = &command {
            for (what, token) in [("product", &create.product), ("variant", &create.variant)] {
                validate_slug(what, token, 63).map_err(|e| Rejection::invalid(e.to_string()))?;
            }
        }
        Ok(command)
    }
    fn aggregate_id(&self, command_id: Uuid) -> Uuid {
        self.subscription_id(command_id)
    }
    fn expected_version(&self) -> Option<u64> {
        None
    }
    fn action(&self) -> &'static str {
        match self {
            Self::Create(_) => "create",
            Self::Renew(_) => "renew",
            Self::Cancel(_) => "cancel",
            Self::Expire(_) => "expire",
        }
    }
}

/// A subscription began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SubscriptionCreated {
    pub product: String,
    pub variant: String,
    /// Per month, from the price list when it was created.
    pub price: Money,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
}

/// The subscription runs until `period_end` (from `period_start` when it had expired).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SubscriptionRenewed {
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
}

/// The customer cancelled: it ends at `ends_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SubscriptionCancelled {
    pub at_period_end: bool,
    pub ends_at: DateTime<Utc>,
}

/// The subscription ended at `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SubscriptionEnded {
    pub at: DateTime<Utc>,
}

domain_events! {
    /// Everything that happens to a subscription.
    pub enum SubscriptionEvent {
        Created(SubscriptionCreated) = "berth.subscription.created.v1",
        Renewed(SubscriptionRenewed) = "berth.subscription.renewed.v1",
        Cancelled(SubscriptionCancelled) = "berth.subscription.cancelled.v1",
        Expired(SubscriptionEnded) = "berth.subscription.expired.v1",
    }
}

// ---------------------------------------------------------------- usage and invoices

/// A VM ran `seconds` within the hour starting at `hour` (one record per VM and hour:
/// its event id derives from both).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UsageRecorded {
    pub hour: DateTime<Utc>,
    pub seconds: u32,
    /// `small`, `medium`, `large`, or `custom`.
    pub plan: String,
    pub vcpus: u32,
    pub memory_mb: u32,
}

domain_events! {
    /// A VM's metered running time.
    pub enum MeterEvent {
        Recorded(UsageRecorded) = "berth.meter.recorded.v1",
    }
}

/// One line of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InvoiceLine {
    pub description: String,
    /// `vm_usage` or `subscription`.
    pub kind: String,
    /// Seconds of VM running time, or seconds the subscription was active, in the month.
    pub quantity_seconds: i64,
    /// Per hour (VM usage) or per month (subscriptions, prorated by the month's seconds).
    pub unit_price_minor: i64,
    pub amount_minor: i64,
}

/// The month's invoice; immutable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InvoiceIssued {
    /// For people: `BER-<YYYYMM>-<tenant>`.
    pub number: String,
    /// `YYYY-MM`.
    pub month: String,
    pub currency: String,
    pub lines: Vec<InvoiceLine>,
    pub total_minor: i64,
    pub issued_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
}

domain_events! {
    /// An invoice.
    pub enum InvoiceEvent {
        Issued(InvoiceIssued) = "berth.invoice.issued.v1",
    }
}

// ---------------------------------------------------------------- operator runs

/// `billing.run_invoices`: issue the invoices of a month (idempotent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunInvoices {
    /// `YYYY-MM`, a month that has ended.
    pub month: String,
}

/// `billing.meter`: meter every hour up to `until` not metered yet (idempotent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunMeter {
    pub until: DateTime<Utc>,
}

/// `billing.check_overdue`: mark invoices overdue and suspend accounts past the grace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckOverdue {}

/// Operator runs on `cmd.system.billing.<action>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BillingCommand {
    RunInvoices(RunInvoices),
    Meter(RunMeter),
    CheckOverdue(CheckOverdue),
}

impl BillingCommand {
    pub fn body(&self) -> Vec<u8> {
        let encoded = match self {
            Self::RunInvoices(c) => serde_json::to_vec(c),
            Self::Meter(c) => serde_json::to_vec(c),
            Self::CheckOverdue(c) => serde_json::to_vec(c),
        };
        encoded.expect("commands are plain data")
    }
}

/// Parses `YYYY-MM` into the first instant of that month.
pub fn month_start(month: &str) -> Result<DateTime<Utc>, Rejection> {
    let invalid = || {
        Rejection::invalid(format!(
            "month must look like 2026-11, got {:?}",
            month.chars().take(12).collect::<String>()
        ))
    };
    let (year, number) = month.split_once('-').ok_or_else(invalid)?;
    if year.len() != 4 || number.len() != 2 {
        return Err(invalid());
    }
    let year: i32 = year.parse().map_err(|_| invalid())?;
    let number: u32 = number.parse().map_err(|_| invalid())?;
    chrono::NaiveDate::from_ymd_opt(year, number, 1)
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .map(|at| at.and_utc())
        .ok_or_else(invalid)
}

impl CommandSet for BillingCommand {
    fn decode(action: &str, body: &[u8]) -> Result<Self, Rejection> {
        let command = match action {
            "run_invoices" => Self::RunInvoices(parse_body(action, body)?),
            "meter" => Self::Meter(parse_body(action, body)?),
            "check_overdue" => Self::CheckOverdue(parse_body(action, body)?),
            other => {
                return Err(Rejection::invalid(format!(
                    "unknown billing action {:?}; expected run_invoices, meter or check_overdue",
                    other.chars().take(40).collect::<String>()
                )))
            }
        };
        if let Self::RunInvoices(run) = &command {
            month_start(&run.month)?;
        }
        Ok(command)
    }
    fn aggregate_id(&self, command_id: Uuid) -> Uuid {
        command_id
    }
    fn expected_version(&self) -> Option<u64> {
        None
    }
    fn action(&self) -> &'static str {
        match self {
            Self::RunInvoices(_) => "run_invoices",
            Self::Meter(_) => "meter",
            Self::CheckOverdue(_) => "check_overdue",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::RejectionCode;

    #[test]
    fn bad_billing_commands_are_invalid() {
        let cases: [(&str, &str, &[u8]); 7] = [
            (
                "account",
                "open",
                br#"{"name":"Acme","billing_email":"nope","tier":"pro","currency":"EUR"}"#,
            ),
            (
                "account",
                "open",
                br#"{"name":"Acme","billing_email":"a@b.c","tier":"gold","currency":"EUR"}"#,
            ),
            (
                "account",
                "open",
                br#"{"name":"Acme","billing_email":"a@b.c","tier":"pro","currency":"eur"}"#,
            ),
            (
                "payment",
                "record",
                br#"{"amount_minor":0,"currency":"EUR","reference":"x"}"#,
            ),
            (
                "payment",
                "record",
                br#"{"amount_minor":10.5,"currency":"EUR","reference":"x"}"#,
            ),
            ("billing", "run_invoices", br#"{"month":"2026-13"}"#),
            ("account", "close", br#"{"now":true}"#),
        ];
        for (kind, action, body) in cases {
            let code = match kind {
                "account" => AccountCommand::decode(action, body).err(),
                "payment" => PaymentCommand::decode(action, body).err(),
                _ => BillingCommand::decode(action, body).err(),
            }
            .map(|r| r.code);
            assert_eq!(
                code,
                Some(RejectionCode::Invalid),
                "{kind}.{action} {}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn months_parse_to_their_first_instant() {
        assert_eq!(
            month_start("2026-02").unwrap().to_rfc3339(),
            "2026-02-01T00:00:00+00:00"
        );
        assert!(month_start("2026-2").is_err());
    }
}
