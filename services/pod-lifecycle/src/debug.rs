//! `berth pods debug`: every pod beside what its runtime has, and the orphans — workloads
//! and volumes named like berth's that no live pod owns (no record, or a pod deleted
//! without keeping its volume). `clean_orphans` removes them. Served on
//! [`DEBUG_SUBJECT`], one replica per request.

use std::collections::HashSet;
use std::sync::Arc;

use berth_runtime::store::Repository;
use berth_runtime::Runtime;
use berth_schemas::pod::{
    DebugPods, PodSideBySide, PodStatus, PodsReport, RuntimeOrphan, DEBUG_SUBJECT,
};
use berth_schemas::{Rejection, RejectionCode, TenantId};
use sqlx::PgPool;
use uuid::Uuid;

use crate::pod::Pod;
use crate::projection;
use crate::runtime::{Health, ObjectKind, PodRuntime, RuntimeObject};
use crate::specs::Specs;

/// Compares the runtime with the pods.
pub struct Inspector {
    pub pods: Arc<Repository<Pod>>,
    pub runtime: Arc<dyn PodRuntime>,
    pub specs: Arc<Specs>,
    pub db: PgPool,
}

impl Inspector {
    pub async fn report(&self, clean_orphans: bool) -> anyhow::Result<PodsReport> {
        let inventory = self.runtime.inventory().await?;
        let volumes: HashSet<Uuid> = inventory
            .iter()
            .filter(|o| o.kind == ObjectKind::Volume)
            .filter_map(|o| o.pod_id)
            .collect();
        let mut pods = Vec::new();
        for row in projection::list(&self.db, None).await? {
            if row.status == PodStatus::Deleted.as_str() {
                continue;
            }
            let tenant = TenantId::parse(&row.tenant)?;
            let loaded = self.pods.load(&tenant, row.id).await?;
            let runtime_status = match self.specs.workload(&tenant, row.id, &loaded.state) {
                Ok(spec) => describe(self.runtime.health(&spec).await),
                Err(e) => format!("unknown: {e}"),
            };
            pods.push(PodSideBySide {
                pod_id: row.id,
                tenant: row.tenant,
                name: row.name,
                status: row.status,
                runtime_status,
                volume_present: volumes.contains(&row.id),
            });
        }
        let mut found: Vec<(RuntimeObject, RuntimeOrphan)> = Vec::new();
        for object in inventory {
            if let Some(why) = self.orphan_reason(&object).await? {
                let orphan = RuntimeOrphan {
                    kind: object.kind.as_str().to_owned(),
                    name: object.name.clone(),
                    tenant: object.tenant.clone(),
                    why,
                };
                found.push((object, orphan));
            }
        }
        // Workloads first: a volume in use cannot be removed.
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let mut removed = Vec::new();
        if clean_orphans {
            for (object, orphan) in &found {
                match self.runtime.remove(object).await {
                    Ok(()) => {
                        tracing::info!(kind = object.kind.as_str(), name = %object.name, "orphan removed");
                        removed.push(orphan.clone());
                    }
                    Err(e) => {
                        tracing::warn!(name = %object.name, error = %e, "could not remove an orphan")
                    }
                }
            }
        }
        let orphans = found.into_iter().map(|(_, orphan)| orphan).collect();
        Ok(PodsReport {
            runtime: self.runtime.name().to_owned(),
            pods,
            orphans,
            removed,
        })
    }

    /// Why an object no live pod owns, or `None` when one does.
    async fn orphan_reason(&self, object: &RuntimeObject) -> anyhow::Result<Option<String>> {
        let Some(pod_id) = object.pod_id else {
            return Ok(Some("its name holds no pod id".into()));
        };
        let Some(tenant) = self
            .pods
            .store()
            .tenant_of(berth_schemas::pod::AGGREGATE, pod_id)
            .await?
        else {
            return Ok(Some("berth has no record of its pod".into()));
        };
        let pod = self.pods.load(&tenant, pod_id).await?;
        let deleted = pod.state.status == Some(PodStatus::Deleted);
        Ok(match object.kind {
            ObjectKind::Workload if deleted => Some("its pod was deleted".into()),
            ObjectKind::Volume if deleted && !pod.state.keep_volume => {
                Some("its pod was deleted without keeping the volume".into())
            }
            _ => None,
        })
    }
}

fn describe(health: Result<Health, crate::runtime::RuntimeError>) -> String {
    match health {
        Ok(Health::Healthy) => "healthy".into(),
        Ok(Health::Starting) => "starting".into(),
        Ok(Health::Unhealthy(reason)) => format!("unhealthy: {reason}"),
        Ok(Health::Stopped) => "stopped".into(),
        Ok(Health::Missing) => "missing".into(),
        Err(e) => format!("unknown: {e}"),
    }
}

/// Answers [`DEBUG_SUBJECT`] until shutdown.
pub async fn serve(rt: &Runtime, inspector: &Inspector) -> anyhow::Result<()> {
    berth_runtime::requests::serve(
        rt,
        DEBUG_SUBJECT,
        "berth-pod-lifecycle",
        |_, body| async move {
            let answer = match DebugPods::decode(&body) {
                Err(rejection) => serde_json::to_vec(&rejection),
                Ok(asked) => match inspector.report(asked.clean_orphans).await {
                    Ok(report) => serde_json::to_vec(&report),
                    Err(e) => serde_json::to_vec(&Rejection::new(
                        RejectionCode::Unavailable,
                        format!("pods debug failed: {e:#}"),
                    )),
                },
            };
            answer.expect("reports and rejections serialize")
        },
    )
    .await?;
    Ok(())
}
