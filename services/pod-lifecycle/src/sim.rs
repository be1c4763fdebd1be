//! `sim`: pods in memory, for demos, load tests and the end-to-end tests of the rules.
//!
//! Volumes hold files (a map of path to content) so tests can see that a restart keeps
//! data and a reset wipes it; health can be broken on purpose; objects can be made
//! behind berth's back to test orphan detection.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::runtime::{
    volume_name, workload_name, Health, ObjectKind, PodRuntime, RuntimeError, RuntimeObject,
    WorkloadSpec,
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
        self.world()
            .volumes
            .entry(name.clone())
            .or_insert_with(|| SimVolume {
                tenant: spec.tenant.clone(),
                pod_id: Some(spec.pod_id),
                files: BTreeMap::new(),
            });
        Ok(name)
    }

    async fn delete_volume(&self, _tenant: &str, pod_id: Uuid) -> Result<(), RuntimeError> {
        self.pause().await;
        let mut world = self.world();
        let name = volume_name(pod_id);
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
        if !world.volumes.contains_key(&spec.volume_name()) {
            return Err(RuntimeError::Permanent(format!(
                "volume {} does not exist",
                spec.volume_name()
            )));
        }
        let hash = spec.spec_hash();
        let workload = world
            .workloads
            .entry(name.clone())
            .or_insert_with(|| SimWorkload {
                tenant: spec.tenant.clone(),
                pod_id: spec.pod_id,
                replicas: 0,
                spec_hash: hash.clone(),
                env: BTreeMap::new(),
                starts: 0,
                log: Vec::new(),
            });
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
        let workload = world
            .workloads
            .get_mut(&spec.workload_name())
            .ok_or_else(|| RuntimeError::NotFound(spec.workload_name()))?;
        started(workload, "restarted");
        Ok(())
    }

    async fn scale(&self, spec: &WorkloadSpec, replicas: u32) -> Result<(), RuntimeError> {
        self.pause().await;
        let mut world = self.world();
        let workload = world
            .workloads
            .get_mut(&spec.workload_name())
            .ok_or_else(|| RuntimeError::NotFound(spec.workload_name()))?;
        if replicas == 1 && workload.replicas == 0 {
            started(workload, "scaled up");
        }
        workload.replicas = replicas;
        Ok(())
    }

    async fn delete_workload(&self, _tenant: &str, pod_id: Uuid) -> Result<(), RuntimeError> {
        self.pause().await;
        self.world().workloads.remove(&workload_name(pod_id));
        Ok(())
    }

    async fn health(&self, spec: &WorkloadSpec) -> Result<Health, RuntimeError> {
        let world = self.world();
        let Some(workload) = world.workloads.get(&spec.workload_name()) else {
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
        _tenant: &str,
        pod_id: Uuid,
        tail: Option<u32>,
        _since: Option<DateTime<Utc>>,
    ) -> Result<String, RuntimeError> {
        let world = self.world();
        let workload = world
            .workloads
            .get(&workload_name(pod_id))
            .ok_or_else(|| RuntimeError::NotFound(workload_name(pod_id)))?;
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
