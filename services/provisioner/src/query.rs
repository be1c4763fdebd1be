//! The provisioner's queries ([`berth_schemas::query`]): `vm.list` and `vm.get` from the
//! `vms` projection, `server.list` (operators) from `servers`.

use berth_runtime::{queries, Runtime};
use berth_schemas::query::{
    page, unavailable, EmptyRequest, GetRequest, ListRequest, Page, Query, TenantFilter, GET, LIST,
    SERVER, VM,
};
use berth_schemas::Rejection;
use sqlx::PgPool;

use crate::projection::{self, VmRow};
use crate::servers_projection::{self, ServerRow};

/// Answers the provisioner's queries until shutdown.
pub async fn serve(rt: &Runtime) -> berth_runtime::Result<()> {
    let db = &rt.db;
    tokio::try_join!(
        queries::serve(rt, VM, LIST, |query, request| vms(db, query, request)),
        queries::serve(rt, VM, GET, |query, request| vm(db, query, request)),
        queries::serve(rt, SERVER, LIST, |_, request| servers(db, request)),
    )?;
    Ok(())
}

async fn vms(
    db: &PgPool,
    query: Query,
    request: ListRequest<TenantFilter>,
) -> Result<Page<VmRow>, Rejection> {
    let tenant = query.tenant(request.filter.tenant.as_ref())?;
    let rows = projection::list(db, tenant.as_ref())
        .await
        .map_err(|e| unavailable("vms", e))?;
    page(rows, &request, |row| row.id.to_string())
}

async fn vm(db: &PgPool, query: Query, request: GetRequest) -> Result<Option<VmRow>, Rejection> {
    let row = projection::get(db, request.id)
        .await
        .map_err(|e| unavailable("vms", e))?;
    Ok(row.filter(|row| query.sees(&row.tenant)))
}

async fn servers(
    db: &PgPool,
    request: ListRequest<EmptyRequest>,
) -> Result<Page<ServerRow>, Rejection> {
    let rows = servers_projection::list(db)
        .await
        .map_err(|e| unavailable("servers", e))?;
    page(rows, &request, |row| row.id.to_string())
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
    fn rows_read_back_as_the_contract_rows() {
        let now = Utc::now();
        let vm = VmRow {
            id: Uuid::now_v7(),
            tenant: "acme".into(),
            name: "web".into(),
            status: "running".into(),
            desired_running: true,
            vcpus: 2,
            memory_mb: 2048,
            disk_gb: 20,
            image: "debian-12".into(),
            plan: Some("small".into()),
            region: None,
            host: Some("host-1".into()),
            provider_ref: None,
            reason: None,
            version: 7,
            created_at: now,
            updated_at: now,
        };
        let json = serde_json::to_string(&vm).unwrap();
        let read: rows::VmRow = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), json);

        let server = ServerRow {
            id: Uuid::now_v7(),
            name: "host-1".into(),
            region: "eu".into(),
            provider: "sim".into(),
            status: "active".into(),
            vms: 1,
            capacity_vcpus: 8,
            capacity_memory_mb: 16_384,
            capacity_disk_gb: 500,
            used_vcpus: 2,
            used_memory_mb: 2048,
            used_disk_gb: 20,
            version: 3,
            updated_at: now,
        };
        let json = serde_json::to_string(&server).unwrap();
        let read: rows::ServerRow = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), json);
    }

    #[test]
    fn its_projections_are_in_the_contract() {
        for projection in [
            &projection::VmsProjection as &dyn Projection,
            &servers_projection::ServersProjection,
            &berth_runtime::audit::AuditLog,
        ] {
            assert!(PROJECTIONS.contains(&projection.name()));
        }
    }
}
