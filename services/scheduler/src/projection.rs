//! The `schedules` projection: one row per schedule or timer with its last and next due
//! times, and `status.<tenant>.schedule.<id>` after each commit.

use std::collections::HashMap;

use async_trait::async_trait;
use berth_runtime::projection::{ApplyError, Projection, StatusUpdate};
use berth_runtime::store::{Aggregate, StoredEvent};
use berth_schemas::schedule::{ScheduleEvent, ScheduleSet, When};
use berth_schemas::subjects::event_filter;
use berth_schemas::TenantId;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::schedule::{Schedule, Status};
use crate::timing::Timing;

/// A row of `schedules.schedules` (without its spec) is the schedule's published state.
pub use berth_schemas::status::ScheduleState;

const COLUMNS: &str =
    "id, tenant, name, kind, timing, status, fires, last_due, next_due, version, updated_at";

fn read_row(row: &sqlx::postgres::PgRow) -> sqlx::Result<ScheduleState> {
    Ok(ScheduleState {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant")?,
        name: row.try_get("name")?,
        kind: row.try_get("kind")?,
        timing: row.try_get("timing")?,
        status: row.try_get("status")?,
        fires: row.try_get("fires")?,
        last_due: row.try_get("last_due")?,
        next_due: row.try_get("next_due")?,
        version: row.try_get("version")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Every schedule (of one tenant, or all), by tenant and name.
pub async fn list(
    db: &sqlx::PgPool,
    tenant: Option<&TenantId>,
) -> sqlx::Result<Vec<ScheduleState>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM schedules.schedules WHERE ($1::text IS NULL OR tenant = $1) ORDER BY tenant, name"
    ))
    .bind(tenant.map(TenantId::as_str))
    .fetch_all(db)
    .await?;
    rows.iter().map(read_row).collect()
}

/// The `schedules` projection.
pub struct SchedulesProjection;

/// The fold a row is rebuilt from: the row keeps the spec as JSON.
#[derive(Default)]
struct Folded {
    tenant: String,
    schedule: Schedule,
    version: i64,
    updated_at: Option<DateTime<Utc>>,
}

#[async_trait]
impl Projection for SchedulesProjection {
    fn name(&self) -> &'static str {
        "schedules"
    }

    fn filter_subjects(&self) -> Vec<String> {
        vec![event_filter(berth_schemas::schedule::AGGREGATE)]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["schedules"]
    }

    async fn create_tables(&self, conn: &mut PgConnection, schema: &str) -> sqlx::Result<()> {
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {schema}.schedules (
                id uuid PRIMARY KEY,
                tenant text NOT NULL,
                name text NOT NULL,
                kind text NOT NULL,
                timing text NOT NULL,
                status text NOT NULL,
                fires bigint NOT NULL,
                last_due timestamptz,
                next_due timestamptz,
                version bigint NOT NULL,
                updated_at timestamptz NOT NULL,
                spec jsonb NOT NULL
            )"
        ))
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        schema: &str,
        events: &[StoredEvent],
    ) -> Result<Vec<StatusUpdate>, ApplyError> {
        let ids: Vec<Uuid> = events.iter().map(|e| e.meta.subject).collect();
        let mut folded: HashMap<Uuid, Folded> = HashMap::new();
        for row in sqlx::query(&format!(
            "SELECT id, tenant, status, fires, last_due, version, updated_at, spec FROM {schema}.schedules WHERE id = ANY($1)"
        ))
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?
        {
            let spec: sqlx::types::Json<ScheduleSet> = row.try_get("spec")?;
            let status: String = row.try_get("status")?;
            let schedule = Schedule {
                status: match status.as_str() {
                    "active" => Status::Active,
                    "paused" => Status::Paused,
                    "done" => Status::Done,
                    "deleted" => Status::Deleted,
                    _ => Status::Unknown,
                },
                spec: Some(spec.0),
                last_due: row.try_get("last_due")?,
                fires: row.try_get::<i64, _>("fires")? as u64,
            };
            folded.insert(
                row.try_get("id")?,
                Folded {
                    tenant: row.try_get("tenant")?,
                    schedule,
                    version: row.try_get("version")?,
                    updated_at: row.try_get("updated_at")?,
                },
            );
        }
        let mut changed: Vec<Uuid> = Vec::new();
        for event in events {
            let decoded: ScheduleEvent = event.decode().map_err(|e| ApplyError::Event {
                sequence: event.sequence,
                reason: e.to_string(),
            })?;
            let entry = folded.entry(event.meta.subject).or_default();
            entry.tenant = event.meta.tenant.to_string();
            entry.schedule.apply(&decoded);
            entry.version = event.sequence as i64;
            entry.updated_at = Some(event.meta.time);
            if !changed.contains(&event.meta.subject) {
                changed.push(event.meta.subject);
            }
        }
        let mut updates = Vec::new();
        for id in changed {
            let entry = &folded[&id];
            let Some(spec) = &entry.schedule.spec else {
                continue;
            };
            let row = row_of(id, entry, spec);
            upsert(conn, schema, &row, spec).await?;
            if let Some(update) = status_update(&row) {
                updates.push(update);
            }
        }
        Ok(updates)
    }
}

fn row_of(id: Uuid, entry: &Folded, spec: &ScheduleSet) -> ScheduleState {
    let (kind, timing) = match &spec.when {
        When::Cron {
            expression,
            timezone,
        } => ("cron", format!("{expression} ({timezone})")),
        When::At { at } => ("at", at.to_rfc3339()),
    };
    let next_due = Timing::parse(&spec.when).ok().and_then(|timing| {
        (entry.schedule.status == Status::Active)
            .then(|| timing.next_after(entry.schedule.last_due.unwrap_or(spec.since)))
            .flatten()
    });
    ScheduleState {
        id,
        tenant: entry.tenant.clone(),
        name: spec.name.clone(),
        kind: kind.into(),
        timing,
        status: entry.schedule.status.as_str().into(),
        fires: entry.schedule.fires as i64,
        last_due: entry.schedule.last_due,
        next_due,
        version: entry.version,
        updated_at: entry.updated_at.unwrap_or_else(Utc::now),
    }
}

fn status_update(row: &ScheduleState) -> Option<StatusUpdate> {
    let tenant = TenantId::parse(&row.tenant).ok()?;
    let status =
        berth_schemas::status::Status::new(row.id, tenant, row.version as u64, row.clone());
    StatusUpdate::of(&status).ok()
}

async fn upsert(
    conn: &mut PgConnection,
    schema: &str,
    row: &ScheduleState,
    spec: &ScheduleSet,
) -> sqlx::Result<()> {
    sqlx::query(&format!(
        "INSERT INTO {schema}.schedules ({COLUMNS}, spec)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (id) DO UPDATE SET
            tenant = EXCLUDED.tenant, name = EXCLUDED.name, kind = EXCLUDED.kind,
            timing = EXCLUDED.timing, status = EXCLUDED.status, fires = EXCLUDED.fires,
            last_due = EXCLUDED.last_due, next_due = EXCLUDED.next_due,
            version = EXCLUDED.version, updated_at = EXCLUDED.updated_at, spec = EXCLUDED.spec"
    ))
    .bind(row.id)
    .bind(&row.tenant)
    .bind(&row.name)
    .bind(&row.kind)
    .bind(&row.timing)
    .bind(&row.status)
    .bind(row.fires)
    .bind(row.last_due)
    .bind(row.next_due)
    .bind(row.version)
    .bind(row.updated_at)
    .bind(sqlx::types::Json(spec))
    .execute(conn)
    .await?;
    Ok(())
}
