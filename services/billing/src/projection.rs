//! The `billing` projection: tables `accounts`, `subscriptions`, `usage` and `invoices`, and
//! `status.<tenant>.account.<id>` / `status.<tenant>.invoice.<id>` after each commit.
//! Every row is a fold of billing's own events (usage records, invoices, the account
//! ledger), so a rebuild gives the same rows, to the cent.

use std::collections::HashMap;

use async_trait::async_trait;
use berth_runtime::projection::{ApplyError, Projection, StatusUpdate};
use berth_runtime::store::{Aggregate, StoredEvent};
use berth_schemas::billing::{AccountEvent, InvoiceEvent, MeterEvent, SubscriptionEvent};
use berth_schemas::event::DomainEvent;
use berth_schemas::status::{InvoiceState, Status, StatusState, SubscriptionState};
use berth_schemas::subjects::event_filter;
use berth_schemas::TenantId;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::account::Account;
use crate::subscription::Subscription;

/// A row of `billing.accounts` (without the folded aggregate) is the account's published
/// state.
pub use berth_schemas::status::AccountState;

/// One hourly usage record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    pub vm_id: Uuid,
    pub tenant: String,
    pub hour: DateTime<Utc>,
    pub seconds: i32,
    pub plan: String,
}

/// One invoice.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InvoiceRow {
    pub id: Uuid,
    pub tenant: String,
    pub number: String,
    pub month: String,
    pub currency: String,
    pub total_minor: i64,
    /// `open`, `overdue` or `paid`.
    pub status: String,
    pub issued_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub lines: serde_json::Value,
}

/// One subscription.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubscriptionRow {
    pub id: Uuid,
    pub tenant: String,
    pub product: String,
    pub variant: String,
    pub price_minor: i64,
    pub currency: String,
    /// `active`, `cancelled` (ends at the period end) or `expired`.
    pub status: String,
    pub period_end: Option<DateTime<Utc>>,
    pub version: i64,
}

/// Every subscription (of one tenant, or all).
pub async fn subscriptions(
    db: &PgPool,
    tenant: Option<&TenantId>,
) -> sqlx::Result<Vec<SubscriptionRow>> {
    let rows = sqlx::query(
        "SELECT id, tenant, product, variant, price_minor, currency, status, period_end, version
         FROM billing.subscriptions WHERE ($1::text IS NULL OR tenant = $1) ORDER BY tenant, id",
    )
    .bind(tenant.map(TenantId::as_str))
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(SubscriptionRow {
                id: r.try_get("id")?,
                tenant: r.try_get("tenant")?,
                product: r.try_get("product")?,
                variant: r.try_get("variant")?,
                price_minor: r.try_get("price_minor")?,
                currency: r.try_get("currency")?,
                status: r.try_get("status")?,
                period_end: r.try_get("period_end")?,
                version: r.try_get("version")?,
            })
        })
        .collect()
}

/// Every account (of one tenant, or all).
pub async fn accounts(db: &PgPool, tenant: Option<&TenantId>) -> sqlx::Result<Vec<AccountState>> {
    let rows = sqlx::query(
        "SELECT tenant, name, billing_email, tier, currency, status, balance_due_minor, open_invoices, version
         FROM billing.accounts WHERE ($1::text IS NULL OR tenant = $1) ORDER BY tenant",
    )
    .bind(tenant.map(TenantId::as_str))
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AccountState {
                tenant: r.try_get("tenant")?,
                name: r.try_get("name")?,
                billing_email: r.try_get("billing_email")?,
                tier: r.try_get("tier")?,
                currency: r.try_get("currency")?,
                status: r.try_get("status")?,
                balance_due_minor: r.try_get("balance_due_minor")?,
                open_invoices: r.try_get("open_invoices")?,
                version: r.try_get("version")?,
            })
        })
        .collect()
}

/// Usage records (of one tenant, or all), by tenant, VM and hour.
pub async fn usage(db: &PgPool, tenant: Option<&TenantId>) -> sqlx::Result<Vec<UsageRow>> {
    let rows = sqlx::query(
        "SELECT vm_id, tenant, hour, seconds, plan FROM billing.usage
         WHERE ($1::text IS NULL OR tenant = $1) ORDER BY tenant, vm_id, hour",
    )
    .bind(tenant.map(TenantId::as_str))
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(UsageRow {
                vm_id: r.try_get("vm_id")?,
                tenant: r.try_get("tenant")?,
                hour: r.try_get("hour")?,
                seconds: r.try_get("seconds")?,
                plan: r.try_get("plan")?,
            })
        })
        .collect()
}

/// Invoices (of one tenant, or all), by tenant and month.
pub async fn invoices(db: &PgPool, tenant: Option<&TenantId>) -> sqlx::Result<Vec<InvoiceRow>> {
    let rows = sqlx::query(
        "SELECT id, tenant, number, month, currency, total_minor, status, issued_at, due_at, lines
         FROM billing.invoices WHERE ($1::text IS NULL OR tenant = $1) ORDER BY tenant, month",
    )
    .bind(tenant.map(TenantId::as_str))
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(InvoiceRow {
                id: r.try_get("id")?,
                tenant: r.try_get("tenant")?,
                number: r.try_get("number")?,
                month: r.try_get("month")?,
                currency: r.try_get("currency")?,
                total_minor: r.try_get("total_minor")?,
                status: r.try_get("status")?,
                issued_at: r.try_get("issued_at")?,
                due_at: r.try_get("due_at")?,
                lines: r.try_get::<Json<serde_json::Value>, _>("lines")?.0,
            })
        })
        .collect()
}

/// The `billing` projection.
pub struct BillingProjection;

#[async_trait]
impl Projection for BillingProjection {
    fn name(&self) -> &'static str {
        "billing"
    }

    fn filter_subjects(&self) -> Vec<String> {
        use berth_schemas::billing::{ACCOUNT, INVOICE, METER, SUBSCRIPTION};
        vec![
            event_filter(ACCOUNT),
            event_filter(METER),
            event_filter(INVOICE),
            event_filter(SUBSCRIPTION),
        ]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["accounts", "usage", "invoices", "subscriptions"]
    }

    async fn create_tables(&self, conn: &mut PgConnection, schema: &str) -> sqlx::Result<()> {
        for ddl in [
            format!(
                "CREATE TABLE IF NOT EXISTS {schema}.accounts (
                    tenant text PRIMARY KEY, id uuid NOT NULL, name text NOT NULL,
                    billing_email text NOT NULL, tier text NOT NULL, currency text NOT NULL,
                    status text NOT NULL, balance_due_minor bigint NOT NULL,
                    open_invoices int NOT NULL, version bigint NOT NULL, state jsonb NOT NULL)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {schema}.usage (
                    vm_id uuid NOT NULL, hour timestamptz NOT NULL, tenant text NOT NULL,
                    seconds int NOT NULL, plan text NOT NULL, vcpus int NOT NULL,
                    memory_mb int NOT NULL, PRIMARY KEY (vm_id, hour))"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {schema}.invoices (
                    id uuid PRIMARY KEY, tenant text NOT NULL, number text NOT NULL,
                    month text NOT NULL, currency text NOT NULL, total_minor bigint NOT NULL,
                    status text NOT NULL, issued_at timestamptz NOT NULL,
                    due_at timestamptz NOT NULL, lines jsonb NOT NULL)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {schema}.subscriptions (
                    id uuid PRIMARY KEY, tenant text NOT NULL, product text NOT NULL,
                    variant text NOT NULL, price_minor bigint NOT NULL, currency text NOT NULL,
                    status text NOT NULL, period_end timestamptz, version bigint NOT NULL,
                    state jsonb NOT NULL)"
            ),
        ] {
            sqlx::query(&ddl).execute(&mut *conn).await?;
        }
        Ok(())
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        schema: &str,
        events: &[StoredEvent],
    ) -> Result<Vec<StatusUpdate>, ApplyError> {
        let mut accounts: HashMap<String, (Uuid, Account, i64)> = HashMap::new();
        let mut updates = Vec::new();
        for event in events {
            let bad = |e: berth_runtime::Error| ApplyError::Event {
                sequence: event.sequence,
                reason: e.to_string(),
            };
            let tenant = event.meta.tenant.to_string();
            match event.meta.event_type.as_str() {
                t if MeterEvent::has_type(t) => {
                    let MeterEvent::Recorded(record) = event.decode().map_err(bad)?;
                    sqlx::query(&format!(
                        "INSERT INTO {schema}.usage (vm_id, hour, tenant, seconds, plan, vcpus, memory_mb)
                         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING"
                    ))
                    .bind(event.meta.subject)
                    .bind(record.hour)
                    .bind(&tenant)
                    .bind(record.seconds as i32)
                    .bind(&record.plan)
                    .bind(record.vcpus as i32)
                    .bind(record.memory_mb as i32)
                    .execute(&mut *conn)
                    .await?;
                }
                t if SubscriptionEvent::has_type(t) => {
                    let decoded: SubscriptionEvent = event.decode().map_err(bad)?;
                    updates.extend(apply_subscription(conn, schema, event, &decoded).await?);
                }
                t if InvoiceEvent::has_type(t) => {
                    let InvoiceEvent::Issued(issued) = event.decode().map_err(bad)?;
                    sqlx::query(&format!(
                        "INSERT INTO {schema}.invoices (id, tenant, number, month, currency, total_minor, status, issued_at, due_at, lines)
                         VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $8, $9)
                         ON CONFLICT (id) DO NOTHING"
                    ))
                    .bind(event.meta.subject)
                    .bind(&tenant)
                    .bind(&issued.number)
                    .bind(&issued.month)
                    .bind(&issued.currency)
                    .bind(issued.total_minor)
                    .bind(issued.issued_at)
                    .bind(issued.due_at)
                    .bind(Json(&issued.lines))
                    .execute(&mut *conn)
                    .await?;
                    updates.extend(
                        invoice_status(conn, schema, event.meta.subject, event.sequence).await?,
                    );
                }
                _ => {
                    let decoded: AccountEvent = event.decode().map_err(bad)?;
                    if !accounts.contains_key(&tenant) {
                        let state: Option<Json<Account>> = sqlx::query_scalar(&format!(
                            "SELECT state FROM {schema}.accounts WHERE tenant = $1"
                        ))
                        .bind(&tenant)
                        .fetch_optional(&mut *conn)
                        .await?;
                        let account = state.map(|s| s.0).unwrap_or_default();
                        accounts.insert(tenant.clone(), (event.meta.subject, account, 0));
                    }
                    let entry = accounts.get_mut(&tenant).expect("inserted above");
                    entry.1.apply(&decoded);
                    entry.2 = event.sequence as i64;
                    let status = match &decoded {
                        AccountEvent::InvoiceSettled(s) => Some((s.invoice_id, "paid")),
                        AccountEvent::InvoiceOverdue(o) => Some((o.invoice_id, "overdue")),
                        _ => None,
                    };
                    if let Some((invoice, status)) = status {
                        sqlx::query(&format!(
                            "UPDATE {schema}.invoices SET status = $2 WHERE id = $1"
                        ))
                        .bind(invoice)
                        .bind(status)
                        .execute(&mut *conn)
                        .await?;
                        updates
                            .extend(invoice_status(conn, schema, invoice, event.sequence).await?);
                    }
                }
            }
        }
        for (tenant, (id, account, version)) in accounts {
            let Some(opened) = &account.opened else {
                continue;
            };
            let status = if account.closed {
                "closed"
            } else if account.suspended {
                "suspended"
            } else {
                "active"
            };
            let tier = serde_json::to_value(opened.tier)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let row = AccountState {
                tenant: tenant.clone(),
                name: opened.name.clone(),
                billing_email: opened.billing_email.clone(),
                tier,
                currency: opened.currency.clone(),
                status: status.to_owned(),
                balance_due_minor: account.balance_due_minor(),
                open_invoices: account.open_invoices.len() as i32,
                version,
            };
            sqlx::query(&format!(
                "INSERT INTO {schema}.accounts (tenant, id, name, billing_email, tier, currency, status, balance_due_minor, open_invoices, version, state)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT (tenant) DO UPDATE SET name = EXCLUDED.name, billing_email = EXCLUDED.billing_email,
                    tier = EXCLUDED.tier, status = EXCLUDED.status, balance_due_minor = EXCLUDED.balance_due_minor,
                    open_invoices = EXCLUDED.open_invoices, version = EXCLUDED.version, state = EXCLUDED.state"
            ))
            .bind(&row.tenant)
            .bind(id)
            .bind(&row.name)
            .bind(&row.billing_email)
            .bind(&row.tier)
            .bind(&row.currency)
            .bind(&row.status)
            .bind(row.balance_due_minor)
            .bind(row.open_invoices)
            .bind(row.version)
            .bind(Json(&account))
            .execute(&mut *conn)
            .await?;
            if let Some(update) = account_status(id, &row) {
                updates.push(update);
            }
        }
        Ok(updates)
    }
}

/// `status.<tenant>.invoice.<id>` for an invoice row as it is now; `version` is the
/// sequence of the event that changed it.
async fn invoice_status(
    conn: &mut PgConnection,
    schema: &str,
    id: Uuid,
    version: u64,
) -> sqlx::Result<Option<StatusUpdate>> {
    let row = sqlx::query(&format!(
        "SELECT tenant, number, month, currency, total_minor, status, issued_at, due_at FROM {schema}.invoices WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let tenant: String = row.try_get("tenant")?;
    let state = InvoiceState {
        id,
        tenant: tenant.clone(),
        number: row.try_get("number")?,
        month: row.try_get("month")?,
        currency: row.try_get("currency")?,
        total_minor: row.try_get("total_minor")?,
        status: row.try_get("status")?,
        issued_at: row.try_get("issued_at")?,
        due_at: row.try_get("due_at")?,
    };
    Ok(status_update(id, &tenant, version, state))
}

/// The update of `state`, the thing `id` of `tenant` as of event `version`.
fn status_update<T: StatusState<Id = Uuid>>(
    id: Uuid,
    tenant: &str,
    version: u64,
    state: T,
) -> Option<StatusUpdate> {
    let tenant = TenantId::parse(tenant).ok()?;
    StatusUpdate::of(&Status::new(id, tenant, version, state)).ok()
}

async fn apply_subscription(
    conn: &mut PgConnection,
    schema: &str,
    event: &StoredEvent,
    decoded: &SubscriptionEvent,
) -> Result<Option<StatusUpdate>, ApplyError> {
    let found: Option<(String, Json<Subscription>)> = sqlx::query_as(&format!(
        "SELECT tenant, state FROM {schema}.subscriptions WHERE id = $1"
    ))
    .bind(event.meta.subject)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((owner, _)) = found
        .as_ref()
        .filter(|(owner, _)| owner != event.meta.tenant.as_str())
    {
        return Err(ApplyError::Event {
            sequence: event.sequence,
            reason: format!(
                "subscription {} belongs to tenant {owner}, not {}",
                event.meta.subject, event.meta.tenant
            ),
        });
    }
    let mut subscription = found.map(|(_, s)| s.0).unwrap_or_default();
    subscription.apply(decoded);
    let Some(created) = &subscription.created else {
        return Ok(None);
    };
    sqlx::query(&format!(
        "INSERT INTO {schema}.subscriptions (id, tenant, product, variant, price_minor, currency, status, period_end, version, state)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, period_end = EXCLUDED.period_end,
            version = EXCLUDED.version, state = EXCLUDED.state"
    ))
    .bind(event.meta.subject)
    .bind(event.meta.tenant.as_str())
    .bind(&created.product)
    .bind(&created.variant)
    .bind(created.price.amount_minor)
    .bind(&created.price.currency)
    .bind(subscription.status())
    .bind(subscription.period_end)
    .bind(event.sequence as i64)
    .bind(Json(&subscription))
    .execute(conn)
    .await?;
    let state = SubscriptionState {
        id: event.meta.subject,
        tenant: event.meta.tenant.to_string(),
        product: created.product.clone(),
        variant: created.variant.clone(),
        price_minor: created.price.amount_minor,
        currency: created.price.currency.clone(),
        status: subscription.status().to_owned(),
        period_end: subscription.period_end,
    };
    Ok(status_update(
        event.meta.subject,
        event.meta.tenant.as_str(),
        event.sequence,
        state,
    ))
}

fn account_status(id: Uuid, row: &AccountState) -> Option<StatusUpdate> {
    status_update(id, &row.tenant, row.version as u64, row.clone())
}
