//! `berth pods debug`: every pod beside what its runtime has, and the orphans — workloads
//! and volumes named like berth's that no live pod owns (no record, or a pod deleted
//! without keeping its volume). `clean_orphans` removes them. Served on
//! [`PODS_DEBUG_SUBJECT`], one replica per request.
//!
//! Ownership goes by tenant and id (see [`crate::runtime`]): an object belongs to the pod
//! with its id *in the tenant the runtime records for it*. An object of tenant `b` named
//! after tenant `a`'s live pod is `b`'s orphan (removed, if asked, on `b`'s behalf), never
//! `a`'s; an object that records no tenant while some tenant's pod with its id is live is
//! reported as a conflict and never removed. `clean_orphans` removes an object only while
//! it still carries the owner the inventory saw.

use std::collections::HashSet;
use std::sync::Arc;

use berth_runtime::store::Repository;
use berth_runtime::Runtime;
use berth_schemas::pod::{DebugPods, PodSideBySide, PodStatus, PodsReport, RuntimeOrphan};
use berth_schemas::subjects::PODS_DEBUG_SUBJECT;
use berth_schemas::TenantId;
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
    pub async fn report(&self, clean_orphans: bool) -> crate::Result<PodsReport> {
        let inventory = self.runtime.inventory().await?;
        let volumes: HashSet<(&str, Uuid)> = inventory
            .iter()
            .filter(|o| o.kind == ObjectKind::Volume)
            .filter_map(|o| Some((o.tenant.as_deref()?, o.pod_id?)))
            .collect();
        let mut pods = Vec::new();
        for row in projection::list(&self.db, None).await? {
            if row.status == PodStatus::Deleted {
                continue;
            }
            let tenant = TenantId::parse(&row.tenant)?;
            let loaded = self.pods.load(&tenant, row.id).await?;
            let runtime_status = match self.specs.workload(&tenant, row.id, &loaded.state) {
                Ok(spec) => describe(self.runtime.health(&spec).await),
                Err(e) => format!("unknown: {e}"),
            };
            let volume_present = volumes.contains(&(row.tenant.as_str(), row.id));
            pods.push(PodSideBySide {
                pod_id: row.id,
                tenant: row.tenant,
                name: row.name,
                status: row.status.to_string(),
                runtime_status,
                volume_present,
            });
        }
        let mut found: Vec<(RuntimeObject, RuntimeOrphan, bool)> = Vec::new();
        for object in inventory.iter().cloned() {
            if let Some((why, removable)) = self.orphan_reason(&object).await? {
                let orphan = RuntimeOrphan {
                    kind: object.kind.as_str().to_owned(),
                    name: object.name.clone(),
                    tenant: object.tenant.clone(),
                    why,
                };
                found.push((object, orphan, removable));
            }
        }
        // Workloads first: a volume in use cannot be removed.
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let mut removed = Vec::new();
        if clean_orphans {
            for (object, orphan, removable) in &found {
                if !removable {
                    tracing::warn!(name = %object.name, why = %orphan.why, "orphan left for an operator");
                    continue;
                }
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
        let orphans = found.into_iter().map(|(_, orphan, _)| orphan).collect();
        Ok(PodsReport {
            runtime: self.runtime.name().to_owned(),
            pods,
            orphans,
            removed,
        })
    }

    /// Why an object is an orphan and whether `clean_orphans` may remove it, or `None`
    /// when a live pod of its own tenant owns it.
    async fn orphan_reason(&self, object: &RuntimeObject) -> crate::Result<Option<(String, bool)>> {
        let Some(pod_id) = object.pod_id else {
            return Ok(Some(("its name holds no pod id".into(), true)));
        };
        let mut own = None;
        let mut live_elsewhere = None;
        for tenant in self
            .pods
            .store()
            .owners(berth_schemas::pod::AGGREGATE, pod_id)
            .await?
        {
            let pod = self.pods.load(&tenant, pod_id).await?;
            if object.tenant.as_deref() == Some(tenant.as_str()) {
                own = Some(pod.state.clone());
            } else if pod.state.status.is_some_and(|s| s != PodStatus::Deleted) {
                live_elsewhere = Some(tenant);
            }
        }
        Ok(judge(
            object.kind,
            object.tenant.as_deref(),
            own.as_ref(),
            live_elsewhere.as_ref(),
        ))
    }
}

/// The rule, without I/O: `own` is the pod with the object's id in the object's own
/// tenant, `live_elsewhere` another tenant whose pod with that id is not deleted.
/// `Some((why, removable))` for an orphan.
fn judge(
    kind: ObjectKind,
    tenant: Option<&str>,
    own: Option<&Pod>,
    live_elsewhere: Option<&TenantId>,
) -> Option<(String, bool)> {
    let Some(tenant) = tenant else {
        return Some(match live_elsewhere {
            Some(other) => (
                format!("conflict: it records no owning tenant, but tenant {other}'s pod with its id is live; left for an operator, never given to tenant {other} nor removed"),
                false,
            ),
            None => ("it records no owning tenant and no live pod has its id".into(), true),
        });
    };
    let Some(pod) = own.filter(|pod| pod.status.is_some()) else {
        let whose = match live_elsewhere {
            Some(other) => format!(" (tenant {other}'s pod with this id never owns it)"),
            None => String::new(),
        };
        return Some((
            format!("tenant {tenant} has no pod with its id{whose}"),
            true,
        ));
    };
    let deleted = pod.status == Some(PodStatus::Deleted);
    match kind {
        ObjectKind::Workload if deleted => Some(("its pod was deleted".into(), true)),
        ObjectKind::Volume if deleted && !pod.keep_volume => Some((
            "its pod was deleted without keeping the volume".into(),
            true,
        )),
        _ => None,
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

/// Answers [`PODS_DEBUG_SUBJECT`] until shutdown.
pub async fn serve(rt: &Runtime, inspector: &Inspector) -> crate::Result<()> {
    let decode = |_: &str, body: &[u8]| DebugPods::decode(body);
    berth_runtime::requests::serve(rt, PODS_DEBUG_SUBJECT, decode, |asked| async move {
        inspector
            .report(asked.clean_orphans)
            .await
            .map_err(|e| crate::Error::Debug(Box::new(e)))
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: PodStatus, keep_volume: bool) -> Pod {
        Pod {
            status: Some(status),
            keep_volume,
            ..Pod::default()
        }
    }

    fn tenant(name: &str) -> TenantId {
        TenantId::parse(name).unwrap()
    }

    #[test]
    fn an_object_belongs_to_the_live_pod_of_its_own_tenant_only() {
        let running = pod(PodStatus::Running, false);
        let a = tenant("a");
        assert_eq!(
            judge(ObjectKind::Volume, Some("a"), Some(&running), None),
            None
        );
        // b's deleted pod with a's id never makes a's volume an orphan …
        assert_eq!(
            judge(
                ObjectKind::Volume,
                Some("a"),
                Some(&running),
                Some(&tenant("b"))
            ),
            None
        );
        // … and a's live pod never makes b's volume a's: b's orphan, removable.
        let (why, removable) = judge(ObjectKind::Volume, Some("b"), None, Some(&a)).unwrap();
        assert!(removable && why.contains("tenant b has no pod"), "{why}");
        let deleted = pod(PodStatus::Deleted, false);
        assert!(judge(ObjectKind::Workload, Some("b"), Some(&deleted), Some(&a)).is_some());
        let kept = pod(PodStatus::Deleted, true);
        assert_eq!(
            judge(ObjectKind::Volume, Some("b"), Some(&kept), Some(&a)),
            None
        );
    }

    #[test]
    fn an_object_without_an_owner_is_removable_only_when_no_live_pod_has_its_id() {
        let (_, removable) = judge(ObjectKind::Volume, None, None, None).unwrap();
        assert!(removable);
        let (why, removable) = judge(ObjectKind::Volume, None, None, Some(&tenant("a"))).unwrap();
        assert!(!removable && why.starts_with("conflict:"), "{why}");
    }
}
