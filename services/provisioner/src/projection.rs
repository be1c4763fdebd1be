//! The `vms` projection: one row per VM, and `status.<tenant>.vm.<id>` after each commit.
//!
//! Rows are folded with the aggregate's own `apply`, so the read model can never
//! disagree with what commands are decided against. A batch reads every row it touches
//! in one query and writes every changed row in one `UNNEST` upsert.

use std::collections::HashMap;

use async_trait::async_trait;
use berth_runtime::projection::{ApplyError, Projection, StatusUpdate};
use berth_runtime::store::{Aggregate, StoredEvent};
use berth_schemas::status::Status;
use berth_schemas::subjects::event_filter;
use berth_schemas::vm::{VmEvent, VmRequested, VmStatus};
use berth_schemas::TenantId;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::vm::Vm;

/// A row of `vms.vms` is the VM's published state.
pub use berth_schemas::status::VmState;

/// The VM a row was folded into, to fold the next event with the aggregate's `apply`.
fn vm_of(row: &VmState) -> Vm {
    Vm {
        status: Some(row.status),
        spec: Some(VmRequested {
            name: row.name.clone(),
            vcpus: row.vcpus as u32,
            memory_mb: row.memory_mb as u32,
            disk_gb: row.disk_gb as u32,
            image: row.image.clone(),
            plan: row
                .plan
                .as_deref()
                .and_then(|p| serde_json::from_value(serde_json::Value::String(p.to_owned())).ok()),
            region: row.region.clone(),
        }),
        desired_running: row.desired_running,
        server_id: None,
        host: row.host.clone(),
        provider_ref: row.provider_ref.clone(),
        reason: row.reason.clone(),
        // A row keeps what people see (status, reason); the events carry the rest.
        degraded: None,
    }
}

/// Copies what people see of `vm` into its row.
fn set_row(row: &mut VmState, vm: &Vm) {
    if let Some(spec) = &vm.spec {
        row.name = spec.name.clone();
        row.vcpus = spec.vcpus as i32;
        row.memory_mb = spec.memory_mb as i32;
        row.disk_gb = spec.disk_gb as i32;
        row.image = spec.image.clone();
        row.plan = spec
            .plan
            .and_then(|p| serde_json::to_value(p).ok())
            .and_then(|v| v.as_str().map(str::to_owned));
        row.region = spec.region.clone();
    }
    row.status = vm.status.unwrap_or(VmStatus::Requested);
    row.desired_running = vm.desired_running;
    row.host = vm.host.clone();
    row.provider_ref = vm.provider_ref.clone();
    row.reason = vm.reason.clone();
}

fn read_row(row: &sqlx::postgres::PgRow) -> sqlx::Result<VmState> {
    Ok(VmState {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant")?,
        name: row.try_get("name")?,
        status: row
            .try_get::<String, _>("status")?
            .parse()
            .map_err(|e: String| sqlx::Error::Decode(e.into()))?,
        desired_running: row.try_get("desired_running")?,
        vcpus: row.try_get("vcpus")?,
        memory_mb: row.try_get("memory_mb")?,
        disk_gb: row.try_get("disk_gb")?,
        image: row.try_get("image")?,
        plan: row.try_get("plan")?,
        region: row.try_get("region")?,
        host: row.try_get("host")?,
        provider_ref: row.try_get("provider_ref")?,
        reason: row.try_get("reason")?,
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The columns of `vms`, in table order.
pub const COLUMNS: &str = "id, tenant, name, status, desired_running, vcpus, memory_mb, disk_gb, image, plan, region, host, provider_ref, reason, version, created_at, updated_at";

/// Reads every VM of a tenant from the live projection, by name.
pub async fn list(db: &sqlx::PgPool, tenant: Option<&TenantId>) -> sqlx::Result<Vec<VmState>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM vms.vms WHERE ($1::text IS NULL OR tenant = $1) ORDER BY tenant, name, id"
    ))
    .bind(tenant.map(TenantId::as_str))
    .fetch_all(db)
    .await?;
    rows.iter().map(read_row).collect()
}

/// Reads one VM from the live projection.
pub async fn get(db: &sqlx::PgPool, id: Uuid) -> sqlx::Result<Option<VmState>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM vms.vms WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(read_row).transpose()
}

/// The `vms` projection.
pub struct VmsProjection;

#[async_trait]
impl Projection for VmsProjection {
    fn name(&self) -> &'static str {
        "vms"
    }

    fn filter_subjects(&self) -> Vec<String> {
        vec![event_filter(berth_schemas::vm::AGGREGATE)]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["vms"]
    }

    async fn create_tables(&self, conn: &mut PgConnection, schema: &str) -> sqlx::Result<()> {
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {schema}.vms (
                id uuid PRIMARY KEY,
                tenant text NOT NULL,
                name text NOT NULL,
                status text NOT NULL,
                desired_running boolean NOT NULL,
                vcpus integer NOT NULL,
                memory_mb integer NOT NULL,
                disk_gb integer NOT NULL,
                image text NOT NULL,
                plan text,
                region text,
                host text,
                provider_ref text,
                reason text,
                version bigint NOT NULL,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL
            )"
        ))
        .execute(&mut *conn)
        .await?;
        sqlx::query(&format!(
            "CREATE INDEX IF NOT EXISTS vms_by_tenant ON {schema}.vms (tenant, name)"
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
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM {schema}.vms"))
            .fetch_all(conn)
            .await?;
        let rows = rows
            .iter()
            .map(read_row)
            .collect::<sqlx::Result<Vec<_>>>()?;
        Ok(rows.iter().filter_map(status_update).collect())
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        schema: &str,
        events: &[StoredEvent],
    ) -> Result<Vec<StatusUpdate>, ApplyError> {
        let ids: Vec<Uuid> = events.iter().map(|e| e.meta.subject).collect();
        let mut rows: HashMap<Uuid, VmState> = HashMap::new();
        for row in sqlx::query(&format!(
            "SELECT {COLUMNS} FROM {schema}.vms WHERE id = ANY($1)"
        ))
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?
        {
            let row = read_row(&row)?;
            rows.insert(row.id, row);
        }
        let mut changed: Vec<Uuid> = Vec::new();
        for event in events {
            let decoded: VmEvent = event.decode().map_err(|e| ApplyError::Event {
                sequence: event.sequence,
                reason: e.to_string(),
            })?;
            let id = event.meta.subject;
            let row = match (rows.get_mut(&id), &decoded) {
                (Some(row), _) if row.tenant != event.meta.tenant.as_str() => {
                    return Err(ApplyError::Event {
                        sequence: event.sequence,
                        reason: format!(
                            "vm {id} belongs to tenant {}, not {}",
                            row.tenant, event.meta.tenant
                        ),
                    })
                }
                (Some(row), _) => row,
                (None, VmEvent::Requested(_)) => rows.entry(id).or_insert_with(|| VmState {
                    id,
                    tenant: event.meta.tenant.to_string(),
                    name: String::new(),
                    status: VmStatus::Requested,
                    desired_running: false,
                    vcpus: 0,
                    memory_mb: 0,
                    disk_gb: 0,
                    image: String::new(),
                    plan: None,
                    region: None,
                    host: None,
                    provider_ref: None,
                    reason: None,
                    version: 0,
                    created_at: event.meta.time,
                    updated_at: event.meta.time,
                }),
                (None, _) => {
                    return Err(ApplyError::Event {
                        sequence: event.sequence,
                        reason: format!(
                            "{} for vm {id}, which was never requested",
                            event.meta.event_type
                        ),
                    })
                }
            };
            let mut vm = vm_of(row);
            vm.apply(&decoded);
            set_row(row, &vm);
            row.version = event.sequence as i64;
            row.updated_at = event.meta.time;
            if !changed.contains(&id) {
                changed.push(id);
            }
        }
        let changed: Vec<&VmState> = changed.iter().map(|id| &rows[id]).collect();
        upsert(conn, schema, &changed).await?;
        Ok(changed.into_iter().filter_map(status_update).collect())
    }
}

fn status_update(row: &VmState) -> Option<StatusUpdate> {
    let tenant = TenantId::parse(&row.tenant).ok()?;
    let status = Status::new(row.id, tenant, row.version as u64, row.clone());
    StatusUpdate::of(&status).ok()
}

async fn upsert(conn: &mut PgConnection, schema: &str, rows: &[&VmState]) -> sqlx::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&VmState) -> String| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
    let optional =
        |f: fn(&VmState) -> Option<String>| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
    let number = |f: fn(&VmState) -> i32| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
    sqlx::query(&format!(
        "INSERT INTO {schema}.vms ({COLUMNS})
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bool[], $6::int[], $7::int[],
                              $8::int[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
                              $14::text[], $15::bigint[], $16::timestamptz[], $17::timestamptz[])
         ON CONFLICT (id) DO UPDATE SET
            tenant = EXCLUDED.tenant, name = EXCLUDED.name, status = EXCLUDED.status,
            desired_running = EXCLUDED.desired_running, vcpus = EXCLUDED.vcpus,
            memory_mb = EXCLUDED.memory_mb, disk_gb = EXCLUDED.disk_gb, image = EXCLUDED.image,
            plan = EXCLUDED.plan, region = EXCLUDED.region,
            host = EXCLUDED.host, provider_ref = EXCLUDED.provider_ref, reason = EXCLUDED.reason,
            version = EXCLUDED.version, created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at"
    ))
    .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
    .bind(column(|r| r.tenant.clone()))
    .bind(column(|r| r.name.clone()))
    .bind(column(|r| r.status.as_str().to_owned()))
    .bind(rows.iter().map(|r| r.desired_running).collect::<Vec<_>>())
    .bind(number(|r| r.vcpus))
    .bind(number(|r| r.memory_mb))
    .bind(number(|r| r.disk_gb))
    .bind(column(|r| r.image.clone()))
    .bind(optional(|r| r.plan.clone()))
    .bind(optional(|r| r.region.clone()))
    .bind(optional(|r| r.host.clone()))
    .bind(optional(|r| r.provider_ref.clone()))
    .bind(optional(|r| r.reason.clone()))
    .bind(rows.iter().map(|r| r.version).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.updated_at).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}
