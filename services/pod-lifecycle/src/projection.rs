//! The `pods` and `volumes` projections' tables (one projection, `pods`, owns both):
//! one row per pod and one per pod volume, and `status.<tenant>.pod.<id>` after each
//! commit. Rows keep the folded aggregate as JSON and are folded with the aggregate's own
//! `apply`, so the read model never disagrees with what commands are decided against.

use std::collections::HashMap;

use async_trait::async_trait;
use berth_runtime::projection::{ApplyError, Projection, StatusUpdate};
use berth_runtime::store::{Aggregate, StoredEvent};
use berth_schemas::pod::{PodEvent, PodStatus};
use berth_schemas::status::Status;
use berth_schemas::subjects::event_filter;
use berth_schemas::TenantId;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::pod::Pod;

/// A row of `pods.pods` is the pod's published state.
pub use berth_schemas::status::PodState;

/// One pod volume.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VolumeRow {
    pub pod_id: Uuid,
    pub tenant: String,
    pub claim_name: String,
    /// `pending`, `bound`, `recreating`, `kept` (its pod deleted), `deleted`.
    pub status: String,
    pub size_mb: i32,
    pub mount_path: String,
    pub storage_class: Option<String>,
    pub updated_at: DateTime<Utc>,
}

struct Folded {
    tenant: String,
    pod: Pod,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl Folded {
    fn row(&self, id: Uuid) -> PodState {
        let spec = self.pod.spec.as_ref();
        PodState {
            id,
            tenant: self.tenant.clone(),
            name: spec.map(|s| s.name.clone()).unwrap_or_default(),
            service: spec.map(|s| s.service.clone()).unwrap_or_default(),
            variant: spec.map(|s| s.variant.clone()).unwrap_or_default(),
            subscription_id: spec.and_then(|s| s.subscription_id),
            status: self.pod.status.unwrap_or(PodStatus::Requested),
            replicas: self.pod.desired_replicas as i32,
            runtime: self.pod.runtime.clone(),
            image: spec.map(|s| s.image.clone()).unwrap_or_default(),
            volume_mb: spec.map_or(0, |s| s.volume.size_mb as i32),
            reason: self.pod.reason.clone(),
            purge_after: self.pod.expired.as_ref().map(|e| e.purge_after),
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    fn volume(&self, id: Uuid) -> VolumeRow {
        let spec = self.pod.spec.as_ref();
        let status = match self.pod.status {
            Some(PodStatus::Deleted) if self.pod.keep_volume => "kept",
            Some(PodStatus::Deleted) => "deleted",
            Some(PodStatus::Resetting) => "recreating",
            _ if self.pod.deployed => "bound",
            _ => "pending",
        };
        VolumeRow {
            pod_id: id,
            tenant: self.tenant.clone(),
            claim_name: crate::runtime::volume_name(id),
            status: status.to_owned(),
            size_mb: spec.map_or(0, |s| s.volume.size_mb as i32),
            mount_path: spec
                .map(|s| s.volume.mount_path.clone())
                .unwrap_or_default(),
            storage_class: spec.and_then(|s| s.volume.storage_class.clone()),
            updated_at: self.updated_at,
        }
    }
}

const POD_COLUMNS: &str = "id, tenant, name, service, variant, subscription_id, status, replicas, runtime, image, volume_mb, reason, purge_after, version, created_at, updated_at";

fn pod_row(row: &sqlx::postgres::PgRow) -> sqlx::Result<PodState> {
    Ok(PodState {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant")?,
        name: row.try_get("name")?,
        service: row.try_get("service")?,
        variant: row.try_get("variant")?,
        subscription_id: row.try_get("subscription_id")?,
        status: row
            .try_get::<String, _>("status")?
            .parse()
            .map_err(|e: String| sqlx::Error::Decode(e.into()))?,
        replicas: row.try_get("replicas")?,
        runtime: row.try_get("runtime")?,
        image: row.try_get("image")?,
        volume_mb: row.try_get("volume_mb")?,
        reason: row.try_get("reason")?,
        purge_after: row.try_get("purge_after")?,
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Every pod (of one tenant, or all), by tenant and name.
pub async fn list(db: &PgPool, tenant: Option<&TenantId>) -> sqlx::Result<Vec<PodState>> {
    let rows = sqlx::query(&format!(
        "SELECT {POD_COLUMNS} FROM pods.pods WHERE ($1::text IS NULL OR tenant = $1) ORDER BY tenant, name, id"
    ))
    .bind(tenant.map(TenantId::as_str))
    .fetch_all(db)
    .await?;
    rows.iter().map(pod_row).collect()
}

/// One pod.
pub async fn get(db: &PgPool, id: Uuid) -> sqlx::Result<Option<PodState>> {
    let row = sqlx::query(&format!(
        "SELECT {POD_COLUMNS} FROM pods.pods WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await?;
    row.as_ref().map(pod_row).transpose()
}

/// Every pod volume (of one tenant, or all).
pub async fn volumes(db: &PgPool, tenant: Option<&TenantId>) -> sqlx::Result<Vec<VolumeRow>> {
    let rows = sqlx::query(
        "SELECT pod_id, tenant, claim_name, status, size_mb, mount_path, storage_class, updated_at
         FROM pods.volumes WHERE ($1::text IS NULL OR tenant = $1) ORDER BY tenant, claim_name",
    )
    .bind(tenant.map(TenantId::as_str))
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(VolumeRow {
                pod_id: row.try_get("pod_id")?,
                tenant: row.try_get("tenant")?,
                claim_name: row.try_get("claim_name")?,
                status: row.try_get("status")?,
                size_mb: row.try_get("size_mb")?,
                mount_path: row.try_get("mount_path")?,
                storage_class: row.try_get("storage_class")?,
                updated_at: row.try_get("updated_at")?,
            })
        })
        .collect()
}

/// Pods health monitoring looks at: those that should be running.
pub async fn watched(db: &PgPool) -> sqlx::Result<Vec<(TenantId, Uuid)>> {
    pods_where(db, "status IN ('starting', 'running', 'unhealthy')", None).await
}

/// Expired pods whose grace period ended at or before `at`.
pub async fn purge_due(db: &PgPool, at: DateTime<Utc>) -> sqlx::Result<Vec<(TenantId, Uuid)>> {
    pods_where(db, "status = 'expired' AND purge_after <= $1", Some(at)).await
}

async fn pods_where(
    db: &PgPool,
    condition: &str,
    at: Option<DateTime<Utc>>,
) -> sqlx::Result<Vec<(TenantId, Uuid)>> {
    let query = format!("SELECT tenant, id FROM pods.pods WHERE {condition} ORDER BY id");
    let mut query = sqlx::query(&query);
    if let Some(at) = at {
        query = query.bind(at);
    }
    let rows = query.fetch_all(db).await?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let tenant: String = row.try_get("tenant").ok()?;
            Some((TenantId::parse(&tenant).ok()?, row.try_get("id").ok()?))
        })
        .collect())
}

/// The expired-at of a pod, as the purge command needs it.
pub async fn state(db: &PgPool, id: Uuid) -> sqlx::Result<Option<Pod>> {
    let state: Option<Json<Pod>> = sqlx::query_scalar("SELECT state FROM pods.pods WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await?;
    Ok(state.map(|json| json.0))
}

/// The `pods` projection: tables `pods` and `volumes`.
pub struct PodsProjection;

#[async_trait]
impl Projection for PodsProjection {
    fn name(&self) -> &'static str {
        "pods"
    }

    fn filter_subjects(&self) -> Vec<String> {
        vec![event_filter(berth_schemas::pod::AGGREGATE)]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["pods", "volumes"]
    }

    async fn create_tables(&self, conn: &mut PgConnection, schema: &str) -> sqlx::Result<()> {
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {schema}.pods (
                id uuid PRIMARY KEY,
                tenant text NOT NULL,
                name text NOT NULL,
                service text NOT NULL,
                variant text NOT NULL,
                subscription_id uuid,
                status text NOT NULL,
                replicas int NOT NULL,
                runtime text,
                image text NOT NULL,
                volume_mb int NOT NULL,
                reason text,
                purge_after timestamptz,
                version bigint NOT NULL,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                state jsonb NOT NULL
            )"
        ))
        .execute(&mut *conn)
        .await?;
        sqlx::query(&format!(
            "CREATE INDEX IF NOT EXISTS pods_status ON {schema}.pods (status)"
        ))
        .execute(&mut *conn)
        .await?;
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {schema}.volumes (
                pod_id uuid PRIMARY KEY,
                tenant text NOT NULL,
                claim_name text NOT NULL,
                status text NOT NULL,
                size_mb int NOT NULL,
                mount_path text NOT NULL,
                storage_class text,
                updated_at timestamptz NOT NULL
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
        let rows = sqlx::query(&format!("SELECT {POD_COLUMNS} FROM {schema}.pods"))
            .fetch_all(conn)
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| pod_row(row).ok())
            .filter_map(|row| status_update(&row))
            .collect())
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
            "SELECT id, tenant, version, created_at, updated_at, state FROM {schema}.pods WHERE id = ANY($1)"
        ))
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?
        {
            let state: Json<Pod> = row.try_get("state")?;
            folded.insert(
                row.try_get("id")?,
                Folded {
                    tenant: row.try_get("tenant")?,
                    pod: state.0,
                    version: row.try_get("version")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                },
            );
        }
        let mut changed: Vec<Uuid> = Vec::new();
        for event in events {
            let decoded: PodEvent = event.decode().map_err(|e| ApplyError::Event {
                sequence: event.sequence,
                reason: e.to_string(),
            })?;
            let id = event.meta.subject;
            let entry = match (folded.get_mut(&id), &decoded) {
                (Some(entry), _) if entry.tenant != event.meta.tenant.as_str() => {
                    return Err(ApplyError::Event {
                        sequence: event.sequence,
                        reason: format!(
                            "pod {id} belongs to tenant {}, not {}",
                            entry.tenant, event.meta.tenant
                        ),
                    })
                }
                (Some(entry), _) => entry,
                (None, PodEvent::Requested(_)) => folded.entry(id).or_insert_with(|| Folded {
                    tenant: event.meta.tenant.to_string(),
                    pod: Pod::default(),
                    version: 0,
                    created_at: event.meta.time,
                    updated_at: event.meta.time,
                }),
                (None, _) => {
                    return Err(ApplyError::Event {
                        sequence: event.sequence,
                        reason: format!(
                            "{} for pod {id}, which was never requested",
                            event.meta.event_type
                        ),
                    })
                }
            };
            entry.pod.apply(&decoded);
            entry.version = event.sequence as i64;
            entry.updated_at = event.meta.time;
            if !changed.contains(&id) {
                changed.push(id);
            }
        }
        let mut updates = Vec::new();
        for id in changed {
            let entry = &folded[&id];
            let row = entry.row(id);
            upsert_pod(conn, schema, &row, &entry.pod).await?;
            upsert_volume(conn, schema, &entry.volume(id)).await?;
            updates.extend(status_update(&row));
        }
        Ok(updates)
    }
}

async fn upsert_pod(
    conn: &mut PgConnection,
    schema: &str,
    row: &PodState,
    pod: &Pod,
) -> sqlx::Result<()> {
    sqlx::query(&format!(
        "INSERT INTO {schema}.pods ({POD_COLUMNS}, state)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
         ON CONFLICT (id) DO UPDATE SET
            status = EXCLUDED.status, replicas = EXCLUDED.replicas, runtime = EXCLUDED.runtime,
            reason = EXCLUDED.reason, purge_after = EXCLUDED.purge_after, version = EXCLUDED.version,
            updated_at = EXCLUDED.updated_at, state = EXCLUDED.state"
    ))
    .bind(row.id)
    .bind(&row.tenant)
    .bind(&row.name)
    .bind(&row.service)
    .bind(&row.variant)
    .bind(row.subscription_id)
    .bind(row.status.as_str())
    .bind(row.replicas)
    .bind(&row.runtime)
    .bind(&row.image)
    .bind(row.volume_mb)
    .bind(&row.reason)
    .bind(row.purge_after)
    .bind(row.version)
    .bind(row.created_at)
    .bind(row.updated_at)
    .bind(Json(pod))
    .execute(conn)
    .await?;
    Ok(())
}

async fn upsert_volume(conn: &mut PgConnection, schema: &str, row: &VolumeRow) -> sqlx::Result<()> {
    sqlx::query(&format!(
        "INSERT INTO {schema}.volumes (pod_id, tenant, claim_name, status, size_mb, mount_path, storage_class, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (pod_id) DO UPDATE SET status = EXCLUDED.status, updated_at = EXCLUDED.updated_at"
    ))
    .bind(row.pod_id)
    .bind(&row.tenant)
    .bind(&row.claim_name)
    .bind(&row.status)
    .bind(row.size_mb)
    .bind(&row.mount_path)
    .bind(&row.storage_class)
    .bind(row.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

fn status_update(row: &PodState) -> Option<StatusUpdate> {
    let tenant = TenantId::parse(&row.tenant).ok()?;
    let status = Status::new(row.id, tenant, row.version as u64, row.clone());
    StatusUpdate::of(&status).ok()
}
