//! The provisioner's queries ([`berth_schemas::query`]): `vm.list` and `vm.get` from the
//! `vms` projection, `server.list` (operators) from `servers`.

use berth_runtime::{queries, Runtime};
use berth_schemas::query::{
    page, unavailable, EmptyRequest, GetRequest, ListRequest, Page, Query, TenantFilter, GET, LIST,
    SERVER, VM,
};
use berth_schemas::Rejection;
use sqlx::PgPool;

use crate::projection::{self, VmState};
use crate::servers_projection::{self, ServerState};

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
) -> Result<Page<VmState>, Rejection> {
    let tenant = query.tenant(request.filter.tenant.as_ref())?;
    let rows = projection::list(db, tenant.as_ref())
        .await
        .map_err(|e| unavailable("vms", e))?;
    page(rows, &request, |row| row.id.to_string())
}

async fn vm(db: &PgPool, query: Query, request: GetRequest) -> Result<Option<VmState>, Rejection> {
    let row = projection::get(db, request.id)
        .await
        .map_err(|e| unavailable("vms", e))?;
    Ok(row.filter(|row| query.sees(&row.tenant)))
}

async fn servers(
    db: &PgPool,
    request: ListRequest<EmptyRequest>,
) -> Result<Page<ServerState>, Rejection> {
    let rows = servers_projection::list(db)
        .await
        .map_err(|e| unavailable("servers", e))?;
    page(rows, &request, |row| row.id.to_string())
}

#[cfg(test)]
mod tests {
    use berth_runtime::projection::Projection;
    use berth_schemas::query::projection::PROJECTIONS;

    use super::*;

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
