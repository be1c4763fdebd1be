//! The pod runtime trait: what pod-lifecycle needs from a container platform.
//!
//! A pod is one workload (`berth-pod-<id>`: a container, or a Kubernetes Deployment with
//! its Service) and one volume (`berth-vol-<id>`: a named Docker volume or a PVC). Every
//! call is idempotent: names are deterministic, `ensure_volume` and `deploy` find what
//! exists, deletes of missing things succeed. Runtimes never log a spec's `env`: it holds
//! the pod's generated secrets.
//!
//! # Ownership
//!
//! Names are keyed by the pod id alone, while pods live under their tenant
//! (`evt.<tenant>.pod.<id>`): two tenants could each have a pod with the same id. So every
//! object records its tenant ([`LABEL_TENANT`]; on Kubernetes also its namespace, one per
//! tenant) and every call names the tenant it acts for — in the [`WorkloadSpec`] or as an
//! argument. A workload or volume of another tenant, or a berth-named one without an
//! owner, is refused with [`RuntimeError::Permanent`] naming the conflict: never adopted
//! by `ensure_volume`/`deploy`, mounted, restarted, scaled, read (`health`, `logs`) or
//! deleted. Only orphan clean-up removes an object on no tenant's behalf, with
//! [`PodRuntime::remove`], and only while it still carries the owner the inventory saw.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use berth_schemas::TenantId;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Label (Docker) and Kubernetes label key every berth object carries, value `true`.
pub const LABEL_MANAGED: &str = "berth.managed";
/// Label holding the owning tenant.
pub const LABEL_TENANT: &str = "berth.tenant";
/// Label holding the pod id.
pub const LABEL_POD: &str = "berth.pod";
/// Label holding the id of the aggregate the object belongs to (the pod id too).
pub const LABEL_ID: &str = "berth.id";
/// Label holding a hash of the workload's spec: a different hash means redeploy.
pub const LABEL_SPEC_HASH: &str = "berth.spec-hash";

/// The workload's name: the container, or the Deployment and Service.
pub fn workload_name(pod_id: Uuid) -> String {
    format!("berth-pod-{pod_id}")
}

/// The volume's name: the Docker volume, or the PVC.
pub fn volume_name(pod_id: Uuid) -> String {
    format!("berth-vol-{pod_id}")
}

/// The Kubernetes namespace of a tenant: `berth-<tenant>`, or for a tenant id too long
/// for a 63-character DNS label, its first 48 characters and a hash of the whole id.
pub fn namespace(tenant: &str) -> String {
    const MAX: usize = 63;
    let plain = format!("berth-{tenant}");
    if plain.len() <= MAX {
        return plain;
    }
    let hash = Uuid::new_v5(&Uuid::NAMESPACE_OID, tenant.as_bytes())
        .simple()
        .to_string();
    format!(
        "berth-{}-{}",
        tenant[..48].trim_end_matches('-'),
        &hash[..8]
    )
}

/// CPU and memory, requested and limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Resources {
    pub cpu_request_millis: u32,
    pub cpu_limit_millis: u32,
    pub memory_request_mb: u32,
    pub memory_limit_mb: u32,
}

/// How the runtime tells a pod is healthy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HealthProbe {
    /// An HTTP GET on the pod's port answers 2xx/3xx.
    Http { path: String },
    /// A command run in the container exits 0.
    Command { command: Vec<String> },
}

/// A health check with its timing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HealthCheck {
    pub probe: HealthProbe,
    pub interval_secs: u32,
    pub timeout_secs: u32,
    /// Consecutive failures before the pod counts as unhealthy.
    pub failure_threshold: u32,
    /// Seconds after start during which failures do not count.
    pub start_period_secs: u32,
}

/// Kubernetes' volume access modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessMode {
    ReadWriteOnce,
    ReadWriteMany,
}

impl AccessMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadWriteOnce => "ReadWriteOnce",
            Self::ReadWriteMany => "ReadWriteMany",
        }
    }
}

/// A pod's persistent volume.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VolumeSpec {
    pub size_mb: u32,
    pub mount_path: String,
    /// `None`: the platform's default class.
    pub storage_class: Option<String>,
    pub access_mode: AccessMode,
}

/// Everything a runtime needs to run one pod.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct WorkloadSpec {
    pub pod_id: Uuid,
    pub tenant: String,
    pub service: String,
    pub variant: String,
    pub image: String,
    /// Replaces the image's command when set.
    pub command: Option<Vec<String>>,
    pub port: u16,
    /// Rendered environment, secrets included: never log it.
    pub env: BTreeMap<String, String>,
    pub resources: Resources,
    pub health: HealthCheck,
    pub volume: VolumeSpec,
    /// The user id the image runs as when it can run as non-root (the catalog's
    /// `run_as_user`): Kubernetes then enforces `runAsNonRoot`. `None`: the image's own.
    pub run_as_user: Option<u32>,
}

impl fmt::Debug for WorkloadSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadSpec")
            .field("pod_id", &self.pod_id)
            .field("tenant", &self.tenant)
            .field("service", &self.service)
            .field("variant", &self.variant)
            .field("image", &self.image)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("run_as_user", &self.run_as_user)
            .finish_non_exhaustive()
    }
}

impl WorkloadSpec {
    pub fn workload_name(&self) -> String {
        workload_name(self.pod_id)
    }

    pub fn volume_name(&self) -> String {
        volume_name(self.pod_id)
    }

    /// A stable hash of everything that shapes the workload (not the replicas): a
    /// deployed workload with another hash is replaced.
    pub fn spec_hash(&self) -> String {
        use std::hash::{Hash, Hasher};
        // FNV-1a: stable across processes and Rust versions, unlike `DefaultHasher`.
        struct Fnv(u64);
        impl Hasher for Fnv {
            fn finish(&self) -> u64 {
                self.0
            }
            fn write(&mut self, bytes: &[u8]) {
                for byte in bytes {
                    self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x100_0000_01b3);
                }
            }
        }
        let mut hasher = Fnv(0xcbf2_9ce4_8422_2325);
        self.hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }
}

/// What the runtime sees of a pod's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Running and passing its health check.
    Healthy,
    /// Running, health not known yet.
    Starting,
    /// Running and failing its health check, or crashing.
    Unhealthy(String),
    /// Scaled to zero or stopped.
    Stopped,
    /// No workload.
    Missing,
}

/// A thing a runtime holds for berth.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RuntimeObject {
    pub kind: ObjectKind,
    /// The runtime's name for it (`berth-pod-<id>`, `berth-vol-<id>`).
    pub name: String,
    /// The tenant the runtime records as its owner; `None` when it records none (or,
    /// on Kubernetes, when the label and the namespace disagree).
    pub tenant: Option<String>,
    pub pod_id: Option<Uuid>,
}

impl RuntimeObject {
    /// What errors call it: `volume berth-vol-…`.
    pub fn what(&self) -> String {
        format!("{} {}", self.kind.as_str(), self.name)
    }
}

/// `Ok` if `owner` (what the runtime records for `what`) is `tenant`, else a permanent
/// `conflict: …` naming both.
pub fn check_owner(what: &str, owner: Option<&str>, tenant: &str) -> Result<(), RuntimeError> {
    if owner == Some(tenant) {
        Ok(())
    } else {
        Err(berth_adapters::error::foreign(what, owner, tenant).into())
    }
}

/// The refusal to remove `listed` (an orphan) whose owner is now `now`.
pub fn changed_hands(listed: &RuntimeObject, now: Option<&str>) -> RuntimeError {
    let owner = |tenant: Option<&str>| {
        tenant.map_or_else(|| "no tenant".to_owned(), |t| format!("tenant {t}"))
    };
    RuntimeError::Permanent(format!(
        "conflict: {} was listed as {}'s but is now {}'s; it was left untouched",
        listed.what(),
        owner(listed.tenant.as_deref()),
        owner(now)
    ))
}

/// Workloads and volumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    Workload,
    Volume,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Workload => "workload",
            Self::Volume => "volume",
        }
    }
}

/// Why a runtime call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// Worth retrying: timeouts, a lost connection, a 5xx.
    #[error("{0}")]
    Transient(String),
    /// Retrying will not help: a missing image, a refused spec, an object of another
    /// tenant.
    #[error("{0}")]
    Permanent(String),
    /// The workload or volume is not there.
    #[error("{0} does not exist")]
    NotFound(String),
}

impl RuntimeError {
    /// The stable code of this error: `runtime_transient`, `runtime_permanent` or
    /// `runtime_not_found`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Transient(_) => "runtime_transient",
            Self::Permanent(_) => "runtime_permanent",
            Self::NotFound(_) => "runtime_not_found",
        }
    }
}

impl berth_runtime::Coded for RuntimeError {
    fn code(&self) -> &'static str {
        RuntimeError::code(self)
    }
}

/// A platform that runs pods. Every call acts for the tenant in the spec or named, and
/// refuses objects of another tenant (see the module docs).
#[async_trait]
pub trait PodRuntime: Send + Sync + 'static {
    /// `sim`, `docker`, `kubernetes`.
    fn name(&self) -> &'static str;
    /// Makes the pod's volume unless it exists; returns its name. An existing volume of
    /// another tenant is refused, never adopted.
    async fn ensure_volume(&self, spec: &WorkloadSpec) -> Result<String, RuntimeError>;
    /// Removes the tenant's pod volume and its data; a missing volume is not an error.
    async fn delete_volume(&self, tenant: &TenantId, pod_id: Uuid) -> Result<(), RuntimeError>;
    /// Makes or updates the workload (the tenant's volume must exist) with `replicas`
    /// (0 or 1); an existing workload with the same spec is only scaled. Returns its name.
    async fn deploy(&self, spec: &WorkloadSpec, replicas: u32) -> Result<String, RuntimeError>;
    /// Restarts the running workload; the volume and its data stay.
    async fn restart(&self, spec: &WorkloadSpec) -> Result<(), RuntimeError>;
    /// Sets the workload's replicas (0 or 1); the volume stays.
    async fn scale(&self, spec: &WorkloadSpec, replicas: u32) -> Result<(), RuntimeError>;
    /// Removes the tenant's workload; the volume stays. A missing workload is not an
    /// error.
    async fn delete_workload(&self, tenant: &TenantId, pod_id: Uuid) -> Result<(), RuntimeError>;
    async fn health(&self, spec: &WorkloadSpec) -> Result<Health, RuntimeError>;
    /// The tenant's workload's recent output, oldest first.
    async fn logs(
        &self,
        tenant: &TenantId,
        pod_id: Uuid,
        tail: Option<u32>,
        since: Option<DateTime<Utc>>,
    ) -> Result<String, RuntimeError>;
    /// Every workload and volume berth manages on this runtime.
    async fn inventory(&self) -> Result<Vec<RuntimeObject>, RuntimeError>;
    /// Removes one object found by `inventory` (orphan clean-up), on no tenant's behalf:
    /// only while it still carries the owner the inventory saw; a missing one is not an
    /// error.
    async fn remove(&self, object: &RuntimeObject) -> Result<(), RuntimeError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_fit_a_dns_label_and_stay_distinct() {
        assert_eq!(namespace("acme"), "berth-acme");
        let long = "a".repeat(63);
        let other = format!("{}b", "a".repeat(62));
        assert!(namespace(&long).len() <= 63);
        assert_ne!(namespace(&long), namespace(&other));
    }
}
