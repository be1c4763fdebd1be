//! pod-lifecycle's queries ([`berth_schemas::query`]): `pod.list`, `pod.get` and
//! `volume.list` from the `pods` projection, and `catalog.get`: the catalog pods are
//! made from here.

use berth_runtime::{queries, Runtime};
use berth_schemas::query::{
    page, unavailable, EmptyRequest, GetRequest, ListRequest, Page, Query, TenantFilter, CATALOG,
    GET, LIST, POD, VOLUME,
};
use berth_schemas::Rejection;
use sqlx::PgPool;

use crate::catalog::Catalog;
use crate::projection::{self, PodState, VolumeRow};

/// Answers pod-lifecycle's queries until shutdown.
pub async fn serve(rt: &Runtime, catalog: &Catalog) -> berth_runtime::Result<()> {
    let db = &rt.db;
    tokio::try_join!(
        queries::serve(rt, POD, LIST, |query, request| pods(db, query, request)),
        queries::serve(rt, POD, GET, |query, request| pod(db, query, request)),
        queries::serve(rt, VOLUME, LIST, |query, request| volumes(
            db, query, request
        )),
        queries::serve(
            rt,
            CATALOG,
            GET,
            |_, EmptyRequest {}| async move { Ok(catalog) }
        ),
    )?;
    Ok(())
}

async fn pods(
    db: &PgPool,
    query: Query,
    request: ListRequest<TenantFilter>,
) -> Result<Page<PodState>, Rejection> {
    let tenant = query.tenant(request.filter.tenant.as_ref())?;
    let rows = projection::list(db, tenant.as_ref())
        .await
        .map_err(|e| unavailable("pods", e))?;
    page(rows, &request, |row| row.id.to_string())
}

async fn pod(
    db: &PgPool,
    query: Query,
    request: GetRequest,
) -> Result<Option<PodState>, Rejection> {
    let row = projection::get(db, request.id)
        .await
        .map_err(|e| unavailable("pods", e))?;
    Ok(row.filter(|row| query.sees(&row.tenant)))
}

async fn volumes(
    db: &PgPool,
    query: Query,
    request: ListRequest<TenantFilter>,
) -> Result<Page<VolumeRow>, Rejection> {
    let tenant = query.tenant(request.filter.tenant.as_ref())?;
    let rows = projection::volumes(db, tenant.as_ref())
        .await
        .map_err(|e| unavailable("volumes", e))?;
    page(rows, &request, |row| row.pod_id.to_string())
}

#[cfg(test)]
mod tests {
    use berth_runtime::projection::Projection;
    use berth_schemas::query::projection::PROJECTIONS;
    use berth_schemas::query::rows;
    use chrono::Utc;
    use uuid::Uuid;

    use super::*;

    /// What the CLI prints is the contract's row: each must read back unchanged.
    #[test]
    fn rows_and_the_catalog_read_back_as_the_contract_ones() {
        let now = Utc::now();
        let volume = VolumeRow {
            pod_id: Uuid::now_v7(),
            tenant: "acme".into(),
            claim_name: "pod-data".into(),
            status: "bound".into(),
            size_mb: 1024,
            mount_path: "/data".into(),
            storage_class: None,
            updated_at: now,
        };
        let json = serde_json::to_string(&volume).unwrap();
        let read: rows::VolumeRow = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), json);

        let json = serde_json::to_string(&Catalog::builtin().unwrap()).unwrap();
        let read: rows::Catalog = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), json);
    }

    #[test]
    fn its_projection_is_in_the_contract() {
        assert!(PROJECTIONS.contains(&projection::PodsProjection.name()));
    }
}
