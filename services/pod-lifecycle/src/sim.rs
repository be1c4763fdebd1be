//! `sim`: pods in memory, for demos, load tests and the end-to-end tests of the rules.
//!
//! Volumes hold files (a map of path to content) so tests can see that a restart keeps
//! data and a reset wipes it; health can be broken on purpose; objects can be made
//! behind berth's back to test orphan detection. Each object records its tenant and the
//! sim enforces the ownership rule of [`crate::runtime`] as the real runtimes do.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use berth_schemas::TenantId;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::runtime::{
    changed_hands, check_owner, volume_name, workload_name, Health, ObjectKind, PodRuntime,
    RuntimeError, RuntimeObject, WorkloadSpec,
};

#[derive(Debug, Clone)]
struct SimWorkload {
    tenant: String,
    pod_id: Uuid,
    replicas: u32,
    spec_hash: String,
    env: BTreeMap<String, String>,
    starts: u32,
    log: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct SimVolume {
    tenant: String,
    pod_id: Option<Uuid>,
    files: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct World {
    workloads: BTreeMap<String, SimWorkload>,
    volumes: BTreeMap<String, SimVolume>,
    /// Pods whose health check fails, with the reason.
    unhealthy: BTreeMap<Uuid, String>,
}

/// An in-memory pod platform.
#[derive(Debug, Default)]
pub struct SimRuntime {
    world: Mutex<World>,
    /// How long every call takes.
    pub latency: Duration,
}

impl SimRuntime {
    pub fn new(latency: Duration) -> Self {
        Self {
            world: Mutex::default(),
            latency,
        }
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().expect("sim world lock")
    }

    async fn pause(&self) {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }

    /// Writes a file into a pod's volume (as the app would).
    pub fn write_file(&self, pod_id: Uuid, path: &str, content: &str) -> Result<(), RuntimeError> {
        let mut world = self.world();
        let volume = world
            .volumes
            .get_mut(&volume_name(pod_id))
            .ok_or_else(|| RuntimeError::NotFound(volume_name(pod_id)))?;
        volume.files.insert(path.to_owned(), content.to_owned());
        Ok(())
    }

    /// A file of a pod's volume; `None` when the file or the volume is missing.
    pub fn read_file(&self, pod_id: Uuid, path: &str) -> Option<String> {
        self.world()
            .volumes
            .get(&volume_name(pod_id))
            .and_then(|volume| volume.files.get(path).cloned())
    }

    pub fn has_volume(&self, pod_id: Uuid) -> bool {
        self.world().volumes.contains_key(&volume_name(pod_id))
    }

    /// The workload's replicas; `None` when there is no workload.
    pub fn replicas(&self, pod_id: Uuid) -> Option<u32> {
        self.world()
            .workloads
            .get(&workload_name(pod_id))
            .map(|w| w.replicas)
    }

    /// How often the workload was started (deploys, restarts, scale-ups).
    pub fn starts(&self, pod_id: Uuid) -> u32 {
        self.world()
            .workloads
            .get(&workload_name(pod_id))
            .map_or(0, |w| w.starts)
    }

    /// The environment the workload was last deployed with.
    pub fn env(&self, pod_id: Uuid) -> Option<BTreeMap<String, String>> {
        self.world()
            .workloads
            .get(&workload_name(pod_id))
            .map(|w| w.env.clone())
    }

    /// Makes the pod's health check fail (`Some(reason)`) or pass (`None`).
    pub fn set_unhealthy(&self, pod_id: Uuid, reason: Option<&str>) {
        let mut world = self.world();
        match reason {
            Some(reason) => world.unhealthy.insert(pod_id, reason.to_owned()),
            None => world.unhealthy.remove(&pod_id),
        };
    }

    /// Makes a volume no pod owns, as someone working behind berth's back would.
    pub fn add_stray_volume(&self, name: &str, tenant: &str) {
        self.world().volumes.insert(
            name.to_owned(),
            SimVolume {
                tenant: tenant.to_owned(),
                ..SimVolume::default()
            },
        );
    }
}

impl World {
    /// The volume `name` if it is `tenant`'s; `None` if there is none.
    fn owned_volume(
        &mut self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<&mut SimVolume>, RuntimeError> {
        match self.volumes.get_mut(name) {
            None => Ok(None),
            Some(volume) => {
                check_owner(&format!("volume {name}"), Some(&volume.tenant), tenant)?;
                Ok(Some(volume))
            }
        }
    }

    /// The workload `name` if it is `tenant`'s; `None` if there is none.
    fn owned_workload(
        &mut self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<&mut SimWorkload>, RuntimeError> {
        match self.workloads.get_mut(name) {
            None => Ok(None),
            Some(workload) => {
                check_owner(&format!("workload {name}"), Some(&workload.tenant), tenant)?;
                Ok(Some(workload))
            }
        }
    }

    /// Like [`Self::owned_workload`], a missing one being [`RuntimeError::NotFound`].
    fn existing_workload(
        &mut self,
        tenant: &str,
        name: &str,
    ) -> Result<&mut SimWorkload, RuntimeError> {
        self.owned_workload(tenant, name)?
            .ok_or_else(|| RuntimeError::NotFound(name.to_owned()))
    }
}

fn started(workload: &mut SimWorkload, what: &str) {
    workload.starts += 1;
    workload.log.push(format!(
        "{} {what} (start {})",
        Utc::now().to_rfc3339(),
        workload.starts
    ));
}

#[async_trait]
impl PodRuntime for SimRuntime {
    fn name(&self) -> &'static str {
        "sim"
    }

    async fn ensure_volume(&self, spec: &WorkloadSpec) -> Result<String, RuntimeError> {
        self.pause().await;
        let name = spec.volume_name();
        let mut world = self.world();
        if world.owned_volume(&spec.tenant, &name)?.is_none() {
            world.volumes.insert(
                name.clone(),
                SimVolume {
                    tenant: spec.tenant.clone(),
                    pod_id: Some(spec.pod_id),
                    files: BTreeMap::new(),
                },
            );
        }
        Ok(name)
    }

    async fn delete_volume(&self, tenant: &TenantId, pod_id: Uuid) -> Result<(), RuntimeError> {
        self.pause().await;
        let mut world = self.world();
        let name = volume_name(pod_id);
        if world.owned_volume(tenant.as_str(), &name)?.is_none() {
            return Ok(());
        }
        if world.workloads.contains_key(&workload_name(pod_id)) {
            return Err(RuntimeError::Transient(format!(
                "volume {name} is in use by its workload"
            )));
        }
        world.volumes.remove(&name);
        Ok(())
    }

    async fn deploy(&self, spec: &WorkloadSpec, replicas: u32) -> Result<String, RuntimeError> {
        self.pause().await;
        let mut world = self.world();
        let name = spec.workload_name();
        if world
            .owned_volume(&spec.tenant, &spec.volume_name())?
            .is_none()
        {
            return Err(RuntimeError::Permanent(format!(
                "volume {} does not exist",
                spec.volume_name()
            )));
        }
        let hash = spec.spec_hash();
        if world.owned_workload(&spec.tenant, &name)?.is_none() {
            world.workloads.insert(
                name.clone(),
                SimWorkload {
                    tenant: spec.tenant.clone(),
                    pod_id: spec.pod_id,
                    replicas: 0,
                    spec_hash: hash.clone(),
                    env: BTreeMap::new(),
                    starts: 0,
                    log: Vec::new(),
                },
            );
        }
        let workload = world.existing_workload(&spec.tenant, &name)?;
        let changed = workload.spec_hash != hash;
        workload.spec_hash = hash;
        workload.env = spec.env.clone();
        if replicas == 1 && (workload.replicas == 0 || changed) {
            started(workload, "deployed");
        }
        workload.replicas = replicas;
        Ok(name)
    }

    async fn restart(&self, spec: &WorkloadSpec) -> Result<(), RuntimeError> {
        self.pause().await;
        let mut world = self.world();
        let workload = world.existing_workload(&spec.tenant, &spec.workload_name())?;
        started(workload, "restarted");
        Ok(())
    }

    async fn scale(&self, spec: &WorkloadSpec, replicas: u32) -> Result<(), RuntimeError> {
        self.pause().await;
        let mut world = self.world();
        let workload = world.existing_workload(&spec.tenant, &spec.workload_name())?;
        if replicas == 1 && workload.replicas == 0 {
            started(workload, "scaled up");
        }
        workload.replicas = replicas;
        Ok(())
    }

    async fn delete_workload(&self, tenant: &TenantId, pod_id: Uuid) -> Result<(), RuntimeError> {
        self.pause().await;
        let mut world = self.world();
        let name = workload_name(pod_id);
        if world.owned_workload(tenant.as_str(), &name)?.is_some() {
            world.workloads.remove(&name);
        }
        Ok(())
    }

    async fn health(&self, spec: &WorkloadSpec) -> Result<Health, RuntimeError> {
        let mut world = self.world();
        let Some(workload) = world.owned_workload(&spec.tenant, &spec.workload_name())? else {
            return Ok(Health::Missing);
        };
        if workload.replicas == 0 {
            return Ok(Health::Stopped);
        }
        Ok(match world.unhealthy.get(&spec.pod_id) {
            Some(reason) => Health::Unhealthy(reason.clone()),
            None => Health::Healthy,
        })
    }

    async fn logs(
        &self,
        tenant: &TenantId,
        pod_id: Uuid,
        tail: Option<u32>,
        _since: Option<DateTime<Utc>>,
    ) -> Result<String, RuntimeError> {
        let mut world = self.world();
        let workload = world.existing_workload(tenant.as_str(), &workload_name(pod_id))?;
        let skip = tail.map_or(0, |tail| workload.log.len().saturating_sub(tail as usize));
        Ok(workload.log[skip..].join("\n"))
    }

    async fn inventory(&self) -> Result<Vec<RuntimeObject>, RuntimeError> {
        let world = self.world();
        let workloads = world.workloads.iter().map(|(name, w)| RuntimeObject {
            kind: ObjectKind::Workload,
            name: name.clone(),
            tenant: Some(w.tenant.clone()),
            pod_id: Some(w.pod_id),
        });
        let volumes = world.volumes.iter().map(|(name, v)| RuntimeObject {
            kind: ObjectKind::Volume,
            name: name.clone(),
            tenant: Some(v.tenant.clone()),
            pod_id: v.pod_id,
        });
        Ok(workloads.chain(volumes).collect())
    }

    async fn remove(&self, object: &RuntimeObject) -> Result<(), RuntimeError> {
        let mut world = self.world();
        let now = match object.kind {
            ObjectKind::Workload => world.workloads.get(&object.name).map(|w| w.tenant.clone()),
            ObjectKind::Volume => world.volumes.get(&object.name).map(|v| v.tenant.clone()),
        };
        let Some(now) = now else {
            return Ok(());
        };
        if object.tenant.as_deref() != Some(now.as_str()) {
            return Err(changed_hands(object, Some(&now)));
        }
        match object.kind {
            ObjectKind::Workload => {
                world.workloads.remove(&object.name);
            }
            ObjectKind::Volume => {
                world.volumes.remove(&object.name);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{AccessMode, HealthCheck, HealthProbe, Resources, VolumeSpec};

    fn spec(tenant: &str, pod_id: Uuid) -> WorkloadSpec {
        WorkloadSpec {
            pod_id,
            tenant: tenant.to_owned(),
            service: "n8n".into(),
            variant: "basic".into(),
            image: "berth/busybox:test".into(),
            command: None,
            port: 5678,
            env: BTreeMap::from([("KEY".to_owned(), format!("{tenant}'s secret"))]),
            resources: Resources {
                cpu_request_millis: 100,
                cpu_limit_millis: 500,
                memory_request_mb: 64,
                memory_limit_mb: 128,
            },
            health: HealthCheck {
                probe: HealthProbe::Command {
                    command: vec!["true".into()],
                },
                interval_secs: 1,
                timeout_secs: 1,
                failure_threshold: 3,
                start_period_secs: 0,
            },
            volume: VolumeSpec {
                size_mb: 64,
                mount_path: "/data".into(),
                storage_class: None,
                access_mode: AccessMode::ReadWriteOnce,
            },
            run_as_user: None,
        }
    }

    fn tenant(name: &str) -> TenantId {
        TenantId::parse(name).unwrap()
    }

    fn is_conflict<T: std::fmt::Debug>(result: Result<T, RuntimeError>) -> bool {
        matches!(&result, Err(RuntimeError::Permanent(m)) if m.starts_with("conflict:"))
    }

    #[tokio::test]
    async fn another_tenant_with_the_same_pod_id_cannot_mount_touch_read_or_wipe_the_pod() {
        let sim = SimRuntime::new(Duration::ZERO);
        let id = Uuid::now_v7();
        let mine = spec("a", id);
        sim.ensure_volume(&mine).await.unwrap();
        sim.deploy(&mine, 1).await.unwrap();
        sim.write_file(id, "data.txt", "precious").unwrap();
        let starts = sim.starts(id);

        let theirs = spec("b", id);
        let b = tenant("b");
        assert!(
            is_conflict(sim.ensure_volume(&theirs).await),
            "adopt the volume"
        );
        assert!(is_conflict(sim.deploy(&theirs, 1).await), "mount it");
        assert!(is_conflict(sim.restart(&theirs).await), "restart");
        assert!(is_conflict(sim.scale(&theirs, 0).await), "stop");
        assert!(is_conflict(sim.health(&theirs).await), "read its health");
        assert!(
            is_conflict(sim.logs(&b, id, None, None).await),
            "read its logs"
        );
        assert!(is_conflict(sim.delete_workload(&b, id).await), "delete it");
        assert!(
            is_conflict(sim.delete_volume(&b, id).await),
            "wipe the volume"
        );

        assert_eq!(sim.read_file(id, "data.txt").as_deref(), Some("precious"));
        assert_eq!((sim.replicas(id), sim.starts(id)), (Some(1), starts));
        assert_eq!(
            sim.env(id).unwrap()["KEY"],
            "a's secret",
            "b's spec never reached a's workload"
        );
        assert_eq!(sim.health(&mine).await, Ok(Health::Healthy));
        sim.delete_workload(&tenant("a"), id).await.unwrap();
        sim.delete_volume(&tenant("a"), id).await.unwrap();
        assert!(!sim.has_volume(id), "its owner still can");
    }

    #[tokio::test]
    async fn orphans_are_removed_only_while_they_carry_the_owner_the_inventory_saw() {
        let sim = SimRuntime::new(Duration::ZERO);
        sim.add_stray_volume("berth-vol-stray", "a");
        let listed = sim.inventory().await.unwrap().remove(0);
        assert_eq!(listed.tenant.as_deref(), Some("a"));
        let misread = RuntimeObject {
            tenant: Some("b".into()),
            ..listed.clone()
        };
        assert!(is_conflict(sim.remove(&misread).await));
        sim.remove(&listed).await.unwrap();
        sim.remove(&listed).await.unwrap();
        assert!(sim.inventory().await.unwrap().is_empty());
    }
}
