//! Billing's queries ([`berth_schemas::query`]): `account.list`, `subscription.list`,
//! `usage.list` and `invoice.list` from the `billing` projection.

use berth_runtime::{queries, Runtime};
use berth_schemas::query::{
    page, unavailable, ListRequest, Page, Query, TenantFilter, ACCOUNT, INVOICE, LIST,
    SUBSCRIPTION, USAGE,
};
use berth_schemas::Rejection;
use sqlx::PgPool;

use crate::projection::{self, AccountState, InvoiceRow, SubscriptionRow, UsageRow};

/// Answers billing's queries until shutdown.
pub async fn serve(rt: &Runtime) -> berth_runtime::Result<()> {
    let db = &rt.db;
    tokio::try_join!(
        queries::serve(rt, ACCOUNT, LIST, |query, request| accounts(
            db, query, request
        )),
        queries::serve(rt, SUBSCRIPTION, LIST, |query, request| {
            subscriptions(db, query, request)
        }),
        queries::serve(rt, USAGE, LIST, |query, request| usage(db, query, request)),
        queries::serve(rt, INVOICE, LIST, |query, request| invoices(
            db, query, request
        )),
    )?;
    Ok(())
}

async fn accounts(
    db: &PgPool,
    query: Query,
    request: ListRequest<TenantFilter>,
) -> Result<Page<AccountState>, Rejection> {
    let tenant = query.tenant(request.filter.tenant.as_ref())?;
    let rows = projection::accounts(db, tenant.as_ref())
        .await
        .map_err(|e| unavailable("accounts", e))?;
    page(rows, &request, |row| row.tenant.clone())
}

async fn subscriptions(
    db: &PgPool,
    query: Query,
    request: ListRequest<TenantFilter>,
) -> Result<Page<SubscriptionRow>, Rejection> {
    let tenant = query.tenant(request.filter.tenant.as_ref())?;
    let rows = projection::subscriptions(db, tenant.as_ref())
        .await
        .map_err(|e| unavailable("subscriptions", e))?;
    page(rows, &request, |row| row.id.to_string())
}

async fn usage(
    db: &PgPool,
    query: Query,
    request: ListRequest<TenantFilter>,
) -> Result<Page<UsageRow>, Rejection> {
    let tenant = query.tenant(request.filter.tenant.as_ref())?;
    let rows = projection::usage(db, tenant.as_ref())
        .await
        .map_err(|e| unavailable("usage", e))?;
    page(rows, &request, |row| {
        format!("{}/{}", row.vm_id, row.hour.timestamp())
    })
}

async fn invoices(
    db: &PgPool,
    query: Query,
    request: ListRequest<TenantFilter>,
) -> Result<Page<InvoiceRow>, Rejection> {
    let tenant = query.tenant(request.filter.tenant.as_ref())?;
    let rows = projection::invoices(db, tenant.as_ref())
        .await
        .map_err(|e| unavailable("invoices", e))?;
    page(rows, &request, |row| row.id.to_string())
}

#[cfg(test)]
mod tests {
    use berth_runtime::projection::Projection;
    use berth_schemas::query::projection::PROJECTIONS;
    use berth_schemas::query::rows;
    use chrono::Utc;
    use serde::de::DeserializeOwned;
    use serde::Serialize;
    use uuid::Uuid;

    use super::*;

    /// `row` reads back as the contract's row `C` unchanged: what the CLI prints.
    fn reads_back_as<C: DeserializeOwned + Serialize>(row: &impl Serialize) {
        let json = serde_json::to_string(row).unwrap();
        let read: C = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), json);
    }

    #[test]
    fn rows_read_back_as_the_contract_rows() {
        let now = Utc::now();
        reads_back_as::<rows::SubscriptionRow>(&SubscriptionRow {
            id: Uuid::now_v7(),
            tenant: "acme".into(),
            product: "n8n".into(),
            variant: "basic".into(),
            price_minor: 900,
            currency: "EUR".into(),
            status: "active".into(),
            period_end: Some(now),
            version: 2,
        });
        reads_back_as::<rows::UsageRow>(&UsageRow {
            vm_id: Uuid::now_v7(),
            tenant: "acme".into(),
            hour: now,
            seconds: 3600,
            plan: "small".into(),
        });
        reads_back_as::<rows::InvoiceRow>(&InvoiceRow {
            id: Uuid::now_v7(),
            tenant: "acme".into(),
            number: "2026-11-0001".into(),
            month: "2026-11".into(),
            currency: "EUR".into(),
            total_minor: 1250,
            status: "open".into(),
            issued_at: now,
            due_at: now,
            lines: serde_json::json!([{"description": "vm small", "amount_minor": 1250}]),
        });
    }

    #[test]
    fn its_projection_is_in_the_contract() {
        assert!(PROJECTIONS.contains(&projection::BillingProjection.name()));
    }
}
