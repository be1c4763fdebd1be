//! The `servers` projection: one row per server with its capacity used and free, and
//! `status.system.server.<id>` after each commit.
//!
//! The row keeps the folded aggregate (`state`, JSON) next to the columns people and
//! queries use, so each event is folded with the aggregate's own `apply`.

use std::collections::HashMap;

use async_trait::async_trait;
use berth_runtime::projection::{ApplyError, Projection, StatusUpdate};
use berth_runtime::store::{Aggregate, StoredEvent};
use berth_schemas::server::ServerEvent;
use berth_schemas::status::Status;
use berth_schemas::subjects::event_filter;
use berth_schemas::TenantId;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::server::Server;

/// A row of `servers.servers` (without the folded aggregate) is the server's published
/// state.
pub use berth_schemas::status::ServerState;

/// The row of server `id` as folded.
fn row_of(id: Uuid, server: &Server, version: i64, updated_at: DateTime<Utc>) -> ServerState {
    let spec = server.spec.as_ref();
    let (capacity, used) = (server.capacity(), server.used());
    let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    ServerState {
        id,
        name: server.name().to_owned(),
        region: spec.map_or(String::new(), |s| s.region.clone()),
        provider: spec.map_or(String::new(), |s| s.provider.clone()),
        status: server.status.as_str().to_owned(),
        vms: server.allocations.len() as i64,
        capacity_vcpus: int(capacity.vcpus),
        capacity_memory_mb: int(capacity.memory_mb),
        capacity_disk_gb: int(capacity.disk_gb),
        used_vcpus: int(used.vcpus),
        used_memory_mb: int(used.memory_mb),
        used_disk_gb: int(used.disk_gb),
        version,
        updated_at,
    }
}

fn read_row(row: &sqlx::postgres::PgRow) -> sqlx::Result<ServerState> {
    Ok(ServerState {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        region: row.try_get("region")?,
        provider: row.try_get("provider")?,
        status: row.try_get("status")?,
        vms: row.try_get("vms")?,
        capacity_vcpus: row.try_get("capacity_vcpus")?,
        capacity_memory_mb: row.try_get("capacity_memory_mb")?,
        capacity_disk_gb: row.try_get("capacity_disk_gb")?,
        used_vcpus: row.try_get("used_vcpus")?,
        used_memory_mb: row.try_get("used_memory_mb")?,
        used_disk_gb: row.try_get("used_disk_gb")?,
        version: row.try_get("version")?,
        updated_at: row.try_get("updated_at")?,
    })
}

const COLUMNS: &str = "id, name, region, provider, status, vms, capacity_vcpus, capacity_memory_mb, capacity_disk_gb, used_vcpus, used_memory_mb, used_disk_gb, version, updated_at";

/// Every server, by name.
pub async fn list(db: &sqlx::PgPool) -> sqlx::Result<Vec<ServerState>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM servers.servers ORDER BY name"
    ))
    .fetch_all(db)
    .await?;
    rows.iter().map(read_row).collect()
}

/// The `servers` projection.
pub struct ServersProjection;

#[async_trait]
impl Projection for ServersProjection {
    fn name(&self) -> &'static str {
        "servers"
    }

    fn filter_subjects(&self) -> Vec<String> {
        vec![event_filter(berth_schemas::server::AGGREGATE)]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["servers"]
    }

    async fn create_tables(&self, conn: &mut PgConnection, schema: &str) -> sqlx::Result<()> {
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {schema}.servers (
                id uuid PRIMARY KEY,
                name text NOT NULL,
                region text NOT NULL,
                provider text NOT NULL,
                status text NOT NULL,
                vms bigint NOT NULL,
                capacity_vcpus bigint NOT NULL,
                capacity_memory_mb bigint NOT NULL,
                capacity_disk_gb bigint NOT NULL,
                used_vcpus bigint NOT NULL,
                used_memory_mb bigint NOT NULL,
                used_disk_gb bigint NOT NULL,
                version bigint NOT NULL,
                updated_at timestamptz NOT NULL,
                state jsonb NOT NULL
            )"
        ))
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn current_status(
        &self,
        conn: &mut PgConnection,
        schema: &str,
    ) -> sqlx::Result<Vec<StatusUpdate>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM {schema}.servers"))
            .fetch_all(conn)
            .await?;
        rows.iter()
            .map(|row| read_row(row).map(|row| status_update(&row)))
            .collect()
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        schema: &str,
        events: &[StoredEvent],
    ) -> Result<Vec<StatusUpdate>, ApplyError> {
        let ids: Vec<Uuid> = events.iter().map(|e| e.meta.subject).collect();
        let mut states: HashMap<Uuid, (Server, i64, DateTime<Utc>)> = HashMap::new();
        for row in sqlx::query(&format!(
            "SELECT id, state, version, updated_at FROM {schema}.servers WHERE id = ANY($1)"
        ))
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?
        {
            let state: sqlx::types::Json<Server> = row.try_get("state")?;
            states.insert(
                row.try_get("id")?,
                (state.0, row.try_get("version")?, row.try_get("updated_at")?),
            );
        }
        let mut changed: Vec<Uuid> = Vec::new();
        for event in events {
            let decoded: ServerEvent = event.decode().map_err(|e| ApplyError::Event {
                sequence: event.sequence,
                reason: e.to_string(),
            })?;
            let id = event.meta.subject;
            let entry = states
                .entry(id)
                .or_insert_with(|| (Server::default(), 0, event.meta.time));
            entry.0.apply(&decoded);
            entry.1 = event.sequence as i64;
            entry.2 = event.meta.time;
            if !changed.contains(&id) {
                changed.push(id);
            }
        }
        let mut updates = Vec::with_capacity(changed.len());
        for id in changed {
            let (server, version, updated_at) = &states[&id];
            let row = row_of(id, server, *version, *updated_at);
            upsert(conn, schema, &row, server).await?;
            updates.push(status_update(&row));
        }
        Ok(updates)
    }
}

fn status_update(row: &ServerState) -> StatusUpdate {
    let status = Status::new(row.id, TenantId::system(), row.version as u64, row.clone());
    StatusUpdate::of(&status).expect("a uuid is a valid subject token")
}

async fn upsert(
    conn: &mut PgConnection,
    schema: &str,
    row: &ServerState,
    server: &Server,
) -> sqlx::Result<()> {
    sqlx::query(&format!(
        "INSERT INTO {schema}.servers ({COLUMNS}, state)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
         ON CONFLICT (id) DO UPDATE SET
            name = EXCLUDED.name, region = EXCLUDED.region, provider = EXCLUDED.provider,
            status = EXCLUDED.status, vms = EXCLUDED.vms,
            capacity_vcpus = EXCLUDED.capacity_vcpus, capacity_memory_mb = EXCLUDED.capacity_memory_mb,
            capacity_disk_gb = EXCLUDED.capacity_disk_gb, used_vcpus = EXCLUDED.used_vcpus,
            used_memory_mb = EXCLUDED.used_memory_mb, used_disk_gb = EXCLUDED.used_disk_gb,
            version = EXCLUDED.version, updated_at = EXCLUDED.updated_at, state = EXCLUDED.state"
    ))
    .bind(row.id)
    .bind(&row.name)
    .bind(&row.region)
    .bind(&row.provider)
    .bind(&row.status)
    .bind(row.vms)
    .bind(row.capacity_vcpus)
    .bind(row.capacity_memory_mb)
    .bind(row.capacity_disk_gb)
    .bind(row.used_vcpus)
    .bind(row.used_memory_mb)
    .bind(row.used_disk_gb)
    .bind(row.version)
    .bind(row.updated_at)
    .bind(sqlx::types::Json(server))
    .execute(conn)
    .await?;
    Ok(())
}
