//! The scheduler's query ([`berth_schemas::query`]): `schedule.list`, schedules and
//! timers from the `schedules` projection.

use berth_runtime::{queries, Runtime};
use berth_schemas::query::{
    page, unavailable, ListRequest, Page, Query, ScheduleFilter, LIST, SCHEDULE,
};
use berth_schemas::Rejection;
use sqlx::PgPool;

use crate::projection::{self, ScheduleState};

/// Answers the scheduler's query until shutdown.
pub async fn serve(rt: &Runtime) -> berth_runtime::Result<()> {
    let db = &rt.db;
    queries::serve(rt, SCHEDULE, LIST, |query, request| {
        schedules(db, query, request)
    })
    .await
}

async fn schedules(
    db: &PgPool,
    query: Query,
    request: ListRequest<ScheduleFilter>,
) -> Result<Page<ScheduleState>, Rejection> {
    let tenant = query.tenant(request.filter.tenant.as_ref())?;
    let rows = projection::list(db, tenant.as_ref())
        .await
        .map_err(|e| unavailable("schedules", e))?;
    let kind = request.filter.kind.map(|kind| kind.as_str());
    let of_kind = rows
        .into_iter()
        .filter(|row| kind.is_none_or(|kind| row.kind == kind));
    page(of_kind, &request, |row| row.id.to_string())
}

#[cfg(test)]
mod tests {
    use berth_runtime::projection::Projection;
    use berth_schemas::query::projection::PROJECTIONS;

    use super::*;

    #[test]
    fn its_projection_is_in_the_contract() {
        assert!(PROJECTIONS.contains(&projection::SchedulesProjection.name()));
    }
}
