//! The Kubernetes runtime: a pod is a Deployment with a Service, a Secret holding its
//! environment, and a PVC.
//!
//! Each tenant gets a namespace `berth-<tenant>`, and every call about a tenant's pod
//! works in that namespace only — the one cluster-wide read is the inventory (orphans),
//! and removing an orphan happens in the namespace it was found in. A namespace labelled
//! as another tenant's is refused, never taken over. A pod's Deployment and Service are
//! called `berth-pod-<id>`, its Secret `berth-env-<id>`, its PersistentVolumeClaim
//! `berth-vol-<id>`. Workloads are written with server-side apply (field manager
//! `berth`), so deploying twice is a no-op and a changed spec updates in place; volumes
//! are created once and never resized. Every object carries the `berth.managed`,
//! `berth.tenant` and `berth.pod` labels that [`PodRuntime::inventory`] lists by.
//!
//! Hardening, where tenants' code runs:
//! - the environment (which holds the pod's derived secrets) is a `Secret` per pod,
//!   read by the container with `envFrom`, never plain `env` values in the Deployment;
//! - the pod runs with `seccompProfile: RuntimeDefault`; its container with
//!   `allowPrivilegeEscalation: false` and every capability dropped, keeping only the
//!   few a root image's start-up needs ([`berth_provisioner::docker::CAPABILITIES`]) —
//!   none at all when the catalog names a non-root user (`run_as_user`), which then
//!   also sets `runAsNonRoot`, `runAsUser` and `fsGroup` (so the volume is writable);
//! - each tenant namespace gets the NetworkPolicy `berth-isolation` (ingress only from
//!   pods of the same namespace, and from the ingress controller's namespace if one is
//!   configured: [`KubernetesRuntime::with_ingress_namespace`]) and the ResourceQuota
//!   `berth-quota` ([`TenantQuota`], by default [`TenantQuota::DEFAULT`]), both applied
//!   with the namespace.
//!
//! Its service account needs a ClusterRole: get and patch namespaces; patch
//! networkpolicies and resourcequotas; get, create, patch and delete deployments,
//! services, secrets and persistentvolumeclaims; list deployments and
//! persistentvolumeclaims in all namespaces (inventory); list pods and get pods/log.
//! It never logs a spec's `env`.

use std::collections::BTreeMap;

use ::kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use ::kube::{Client, Resource, ResourceExt};
use async_trait::async_trait;
use berth_provisioner::docker::CAPABILITIES;
use berth_schemas::TenantId;
use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentSpec, DeploymentStrategy,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvFromSource, ExecAction, HTTPGetAction, Namespace,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, Pod,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceQuota, ResourceQuotaSpec,
    ResourceRequirements, SeccompProfile, Secret, SecretEnvSource, SecurityContext, Service,
    ServicePort, ServiceSpec, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;
use serde_json::json;
use tracing::{debug, info};
use uuid::Uuid;

use crate::runtime::{
    check_owner, namespace, volume_name, workload_name, Health, HealthCheck, HealthProbe,
    ObjectKind, PodRuntime, Resources, RuntimeError, RuntimeObject, WorkloadSpec, LABEL_MANAGED,
    LABEL_POD, LABEL_SPEC_HASH, LABEL_TENANT,
};

/// The field manager of every server-side apply berth makes.
pub const FIELD_MANAGER: &str = "berth";
/// The pod template annotation `kubectl rollout restart` sets; changing it restarts.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
const DATA_VOLUME: &str = "data";
const PORT_NAME: &str = "main";
/// The NetworkPolicy of every tenant namespace.
pub const NETWORK_POLICY: &str = "berth-isolation";
/// The ResourceQuota of every tenant namespace.
pub const RESOURCE_QUOTA: &str = "berth-quota";
/// The label every namespace carries with its name (Kubernetes ≥ 1.21 sets it).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// What one tenant's namespace may hold at most: the `hard` limits of its
/// ResourceQuota. Requests and limits are both capped at the totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantQuota {
    pub pods: u32,
    pub cpu_millis: u32,
    pub memory_mb: u32,
    pub volumes: u32,
    pub storage_mb: u32,
}

impl TenantQuota {
    /// Pods a tenant may run by default.
    pub const DEFAULT_PODS: u32 = 20;
    /// [`Self::DEFAULT_PODS`] pods of the catalog's largest plan (n8n `pro`: 2 CPUs,
    /// 2 GiB of memory, a 1 GiB volume); the catalog's tests check that it still is.
    pub const DEFAULT: Self = Self {
        pods: Self::DEFAULT_PODS,
        cpu_millis: Self::DEFAULT_PODS * 2000,
        memory_mb: Self::DEFAULT_PODS * 2048,
        volumes: Self::DEFAULT_PODS,
        storage_mb: Self::DEFAULT_PODS * 1024,
    };

    /// Whether `pods` pods of `resources` with a volume of `volume_mb` each fit.
    pub fn fits(&self, pods: u32, resources: &Resources, volume_mb: u32) -> bool {
        let total = |each: u32| u64::from(each) * u64::from(pods);
        pods <= self.pods
            && pods <= self.volumes
            && total(resources.cpu_limit_millis) <= u64::from(self.cpu_millis)
            && total(resources.memory_limit_mb) <= u64::from(self.memory_mb)
            && total(volume_mb) <= u64::from(self.storage_mb)
    }
}

impl Default for TenantQuota {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Runs berth pods on a Kubernetes cluster.
#[derive(Clone)]
pub struct KubernetesRuntime {
    client: Client,
    /// The namespace of the ingress controller, allowed in by each tenant's
    /// NetworkPolicy; `None`: only the tenant's own pods reach its pods.
    ingress_namespace: Option<String>,
    quota: TenantQuota,
}

impl KubernetesRuntime {
    /// A runtime talking through `client`, with [`TenantQuota::DEFAULT`] and no ingress
    /// namespace.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            ingress_namespace: None,
            quota: TenantQuota::DEFAULT,
        }
    }

    /// Lets the pods of `namespace` (the ingress controller's) reach every tenant's pods.
    pub fn with_ingress_namespace(mut self, namespace: Option<String>) -> Self {
        self.ingress_namespace = namespace;
        self
    }

    /// The ResourceQuota of every tenant namespace.
    pub fn with_quota(mut self, quota: TenantQuota) -> Self {
        self.quota = quota;
        self
    }

    /// A runtime for the cluster found by `kube::Client::try_default`: `KUBECONFIG` or
    /// `~/.kube/config`, else the in-cluster service account.
    pub async fn connect() -> Result<Self, RuntimeError> {
        let client = Client::try_default().await.map_err(|err| {
            RuntimeError::Permanent(format!("no usable Kubernetes configuration: {err}"))
        })?;
        Ok(Self::new(client))
    }

    fn deployments(&self, tenant: &str) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &namespace(tenant))
    }

    fn services(&self, tenant: &str) -> Api<Service> {
        Api::namespaced(self.client.clone(), &namespace(tenant))
    }

    fn claims(&self, tenant: &str) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), &namespace(tenant))
    }

    fn pods(&self, tenant: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &namespace(tenant))
    }

    fn secrets(&self, tenant: &str) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &namespace(tenant))
    }

    /// Applies the tenant's namespace with its NetworkPolicy and ResourceQuota. A
    /// namespace of that name labelled as another tenant's (long tenant ids are hashed
    /// into names, and someone may have made it by hand) is refused untouched.
    async fn ensure_namespace(&self, tenant: &str) -> Result<(), RuntimeError> {
        let name = namespace(tenant);
        let what = format!("namespace {name}");
        let namespaces = Api::<Namespace>::all(self.client.clone());
        let existing = namespaces
            .get_opt(&name)
            .await
            .map_err(|err| classify(err, &what))?;
        if let Some(owner) = existing
            .as_ref()
            .and_then(|ns| ns.metadata.labels.as_ref())
            .and_then(|labels| labels.get(LABEL_TENANT))
        {
            check_owner(&what, Some(owner), tenant)?;
        }
        namespaces
            .patch(
                &name,
                &apply_params(),
                &Patch::Apply(namespace_object(tenant)),
            )
            .await
            .map_err(|err| classify(err, &what))?;
        Api::<NetworkPolicy>::namespaced(self.client.clone(), &name)
            .patch(
                NETWORK_POLICY,
                &apply_params(),
                &Patch::Apply(network_policy(tenant, self.ingress_namespace.as_deref())),
            )
            .await
            .map_err(|err| classify(err, &object_path("networkpolicy", tenant, NETWORK_POLICY)))?;
        Api::<ResourceQuota>::namespaced(self.client.clone(), &name)
            .patch(
                RESOURCE_QUOTA,
                &apply_params(),
                &Patch::Apply(resource_quota(tenant, &self.quota)),
            )
            .await
            .map_err(|err| classify(err, &object_path("resourcequota", tenant, RESOURCE_QUOTA)))?;
        Ok(())
    }

    /// After a 409 on create: the claim exists, but one being deleted cannot be used.
    async fn check_existing_claim(&self, tenant: &str, name: &str) -> Result<(), RuntimeError> {
        let what = object_path("persistentvolumeclaim", tenant, name);
        let existing = self
            .claims(tenant)
            .get_opt(name)
            .await
            .map_err(|err| classify(err, &what))?;
        match existing {
            None => Err(RuntimeError::Transient(format!(
                "{what} vanished after a conflict"
            ))),
            Some(claim) if claim.metadata.deletion_timestamp.is_some() => Err(
                RuntimeError::Transient(format!("{what} is still being deleted")),
            ),
            Some(_) => Ok(()),
        }
    }

    async fn delete_workload_named(&self, tenant: &str, name: &str) -> Result<(), RuntimeError> {
        let deleted = self
            .deployments(tenant)
            .delete(name, &DeleteParams::background())
            .await;
        missing_is_done(deleted, &object_path("deployment", tenant, name))?;
        let deleted = self
            .services(tenant)
            .delete(name, &DeleteParams::default())
            .await;
        missing_is_done(deleted, &object_path("service", tenant, name))?;
        if let Some(pod_id) = name
            .strip_prefix("berth-pod-")
            .and_then(|id| Uuid::parse_str(id).ok())
        {
            let secret = env_secret_name(pod_id);
            let deleted = self
                .secrets(tenant)
                .delete(&secret, &DeleteParams::default())
                .await;
            missing_is_done(deleted, &object_path("secret", tenant, &secret))?;
        }
        info!(tenant, name, "workload deleted");
        Ok(())
    }

    async fn delete_claim_named(&self, tenant: &str, name: &str) -> Result<(), RuntimeError> {
        let deleted = self
            .claims(tenant)
            .delete(name, &DeleteParams::default())
            .await;
        missing_is_done(deleted, &object_path("persistentvolumeclaim", tenant, name))?;
        info!(tenant, name, "volume deleted");
        Ok(())
    }

    async fn patch_deployment(
        &self,
        spec: &WorkloadSpec,
        patch: Patch<serde_json::Value>,
    ) -> Result<(), RuntimeError> {
        let name = spec.workload_name();
        self.deployments(&spec.tenant)
            .patch(&name, &PatchParams::default(), &patch)
            .await
            .map_err(|err| classify(err, &object_path("deployment", &spec.tenant, &name)))?;
        Ok(())
    }

    async fn newest_pod(&self, tenant: &str, pod_id: Uuid) -> Result<Option<Pod>, RuntimeError> {
        let params = ListParams::default().labels(&format!("{LABEL_POD}={pod_id}"));
        let pods = self
            .pods(tenant)
            .list(&params)
            .await
            .map_err(|err| classify(err, &format!("pods of {}", workload_name(pod_id))))?;
        Ok(pods
            .items
            .into_iter()
            .max_by(|a, b| a.creation_timestamp().cmp(&b.creation_timestamp())))
    }

    async fn list_managed<K>(&self, what: &str) -> Result<Vec<K>, RuntimeError>
    where
        K: Resource + Clone + std::fmt::Debug + k8s_openapi::serde::de::DeserializeOwned,
        K::DynamicType: Default,
    {
        let params = ListParams::default().labels(&format!("{LABEL_MANAGED}=true"));
        let list = Api::<K>::all(self.client.clone())
            .list(&params)
            .await
            .map_err(|err| classify(err, &format!("list of {what}")))?;
        Ok(list.items)
    }
}

#[async_trait]
impl PodRuntime for KubernetesRuntime {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    async fn ensure_volume(&self, spec: &WorkloadSpec) -> Result<String, RuntimeError> {
        self.ensure_namespace(&spec.tenant).await?;
        let name = spec.volume_name();
        let created = self
            .claims(&spec.tenant)
            .create(&post_params(), &claim(spec))
            .await;
        match created {
            Ok(_) => info!(tenant = %spec.tenant, name, "volume created"),
            Err(err) if status_code(&err) == Some(409) => {
                self.check_existing_claim(&spec.tenant, &name).await?;
                debug!(tenant = %spec.tenant, name, "volume exists");
            }
            Err(err) => {
                return Err(classify(
                    err,
                    &object_path("persistentvolumeclaim", &spec.tenant, &name),
                ))
            }
        }
        Ok(name)
    }

    async fn delete_volume(&self, tenant: &TenantId, pod_id: Uuid) -> Result<(), RuntimeError> {
        self.delete_claim_named(tenant.as_str(), &volume_name(pod_id))
            .await
    }

    async fn deploy(&self, spec: &WorkloadSpec, replicas: u32) -> Result<String, RuntimeError> {
        let replicas = replica_count(replicas)?;
        let name = spec.workload_name();
        let secret = env_secret_name(spec.pod_id);
        self.secrets(&spec.tenant)
            .patch(&secret, &apply_params(), &Patch::Apply(env_secret(spec)))
            .await
            .map_err(|err| classify(err, &object_path("secret", &spec.tenant, &secret)))?;
        self.deployments(&spec.tenant)
            .patch(
                &name,
                &apply_params(),
                &Patch::Apply(deployment(spec, replicas)),
            )
            .await
            .map_err(|err| classify(err, &object_path("deployment", &spec.tenant, &name)))?;
        self.services(&spec.tenant)
            .patch(&name, &apply_params(), &Patch::Apply(service(spec)))
            .await
            .map_err(|err| classify(err, &object_path("service", &spec.tenant, &name)))?;
        info!(tenant = %spec.tenant, name, replicas, spec_hash = %spec.spec_hash(), "workload applied");
        Ok(name)
    }

    async fn restart(&self, spec: &WorkloadSpec) -> Result<(), RuntimeError> {
        let restarted_at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let patch = json!({
            "spec": { "template": { "metadata": { "annotations": { RESTARTED_AT: restarted_at } } } }
        });
        self.patch_deployment(spec, Patch::Strategic(patch)).await?;
        info!(tenant = %spec.tenant, pod_id = %spec.pod_id, "workload restarted");
        Ok(())
    }

    async fn scale(&self, spec: &WorkloadSpec, replicas: u32) -> Result<(), RuntimeError> {
        let replicas = replica_count(replicas)?;
        let patch = json!({ "spec": { "replicas": replicas } });
        self.patch_deployment(spec, Patch::Merge(patch)).await?;
        info!(tenant = %spec.tenant, pod_id = %spec.pod_id, replicas, "workload scaled");
        Ok(())
    }

    async fn delete_workload(&self, tenant: &TenantId, pod_id: Uuid) -> Result<(), RuntimeError> {
        self.delete_workload_named(tenant.as_str(), &workload_name(pod_id))
            .await
    }

    async fn health(&self, spec: &WorkloadSpec) -> Result<Health, RuntimeError> {
        let name = spec.workload_name();
        let found = self
            .deployments(&spec.tenant)
            .get_opt(&name)
            .await
            .map_err(|err| classify(err, &object_path("deployment", &spec.tenant, &name)))?;
        Ok(found.map_or(Health::Missing, |deployment| deployment_health(&deployment)))
    }

    /// The newest pod's output. A pod whose container has not started yet (the API
    /// answers 400) has no output, as has a workload without pods.
    async fn logs(
        &self,
        tenant: &TenantId,
        pod_id: Uuid,
        tail: Option<u32>,
        since: Option<DateTime<Utc>>,
    ) -> Result<String, RuntimeError> {
        let tenant = tenant.as_str();
        let Some(pod) = self.newest_pod(tenant, pod_id).await? else {
            return Ok(String::new());
        };
        let name = pod.name_any();
        let params = log_params(&pod, tail, since, Utc::now());
        match self.pods(tenant).logs(&name, &params).await {
            Ok(text) => Ok(text),
            Err(err) if status_code(&err) == Some(400) => {
                debug!(tenant, pod = name, "no logs yet: {}", api_message(&err));
                Ok(String::new())
            }
            Err(err) => Err(classify(
                err,
                &format!("logs of {}", object_path("pod", tenant, &name)),
            )),
        }
    }

    async fn inventory(&self) -> Result<Vec<RuntimeObject>, RuntimeError> {
        let deployments = self.list_managed::<Deployment>("deployments").await?;
        let claims = self
            .list_managed::<PersistentVolumeClaim>("persistentvolumeclaims")
            .await?;
        let workloads = deployments
            .iter()
            .map(|d| runtime_object(ObjectKind::Workload, &d.metadata));
        let volumes = claims
            .iter()
            .map(|c| runtime_object(ObjectKind::Volume, &c.metadata));
        let mut objects: Vec<RuntimeObject> = workloads.chain(volumes).collect();
        objects.sort();
        Ok(objects)
    }

    /// Deletes in the namespace the inventory found the object in: [`runtime_object`]
    /// reports a tenant only when the object's label and namespace agree.
    async fn remove(&self, object: &RuntimeObject) -> Result<(), RuntimeError> {
        let tenant = object.tenant.as_deref().ok_or_else(|| {
            RuntimeError::Permanent(format!(
                "{} {} has no {LABEL_TENANT} label matching its namespace: whose it is is unknown",
                object.kind.as_str(),
                object.name
            ))
        })?;
        match object.kind {
            ObjectKind::Workload => self.delete_workload_named(tenant, &object.name).await,
            ObjectKind::Volume => self.delete_claim_named(tenant, &object.name).await,
        }
    }
}

/// Maps a kube error about `what` to a [`RuntimeError`]: 404 is [`RuntimeError::NotFound`];
/// 408, 409 (a conflict: retry on a fresh read), 429, 5xx and connection trouble are
/// [`RuntimeError::Transient`]; other 4xx and local errors are [`RuntimeError::Permanent`].
/// Callers that expect a 409 (`AlreadyExists`) check [`status_code`] first.
pub fn classify(err: ::kube::Error, what: &str) -> RuntimeError {
    use ::kube::Error as E;
    match &err {
        E::Api(status) => classify_status(status.code, what, &api_message(&err)),
        E::HyperError(_) | E::Service(_) | E::ReadEvents(_) | E::Auth(_) => {
            RuntimeError::Transient(format!("{what}: {err}"))
        }
        _ => RuntimeError::Permanent(format!("{what}: {err}")),
    }
}

fn classify_status(code: u16, what: &str, message: &str) -> RuntimeError {
    match code {
        404 => RuntimeError::NotFound(what.to_string()),
        408 | 409 | 429 => RuntimeError::Transient(format!("{what}: {message}")),
        400..=499 => RuntimeError::Permanent(format!("{what}: {message}")),
        _ => RuntimeError::Transient(format!("{what}: {message}")),
    }
}

/// The HTTP status of an API error, `None` for other errors.
pub fn status_code(err: &::kube::Error) -> Option<u16> {
    match err {
        ::kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

fn api_message(err: &::kube::Error) -> String {
    match err {
        ::kube::Error::Api(status) => {
            let reason = if status.reason.is_empty() {
                "error"
            } else {
                status.reason.as_str()
            };
            format!("{reason} ({}): {}", status.code, status.message)
        }
        other => other.to_string(),
    }
}

fn missing_is_done<T>(result: Result<T, ::kube::Error>, what: &str) -> Result<(), RuntimeError> {
    match result {
        Ok(_) => Ok(()),
        Err(err) if status_code(&err) == Some(404) => Ok(()),
        Err(err) => Err(classify(err, what)),
    }
}

fn object_path(kind: &str, tenant: &str, name: &str) -> String {
    format!("{kind} {}/{name}", namespace(tenant))
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    }
}

fn replica_count(replicas: u32) -> Result<i32, RuntimeError> {
    match replicas {
        0 => Ok(0),
        1 => Ok(1),
        n => Err(RuntimeError::Permanent(format!(
            "{n} replicas asked for: a berth pod runs 0 or 1 (its volume mounts once)"
        ))),
    }
}

fn seconds(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

fn tenant_labels(tenant: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED.to_string(), "true".to_string()),
        (LABEL_TENANT.to_string(), tenant.to_string()),
    ])
}

fn pod_labels(spec: &WorkloadSpec) -> BTreeMap<String, String> {
    let mut labels = tenant_labels(&spec.tenant);
    labels.extend(selector(spec.pod_id));
    labels
}

fn selector(pod_id: Uuid) -> BTreeMap<String, String> {
    BTreeMap::from([(LABEL_POD.to_string(), pod_id.to_string())])
}

fn spec_hash_map(spec: &WorkloadSpec) -> BTreeMap<String, String> {
    BTreeMap::from([(LABEL_SPEC_HASH.to_string(), spec.spec_hash())])
}

/// The NetworkPolicy of a tenant namespace: every pod in it accepts traffic only from
/// pods of the same namespace and, if given, of the ingress controller's namespace.
/// Egress is not restricted.
fn network_policy(tenant: &str, ingress_namespace: Option<&str>) -> NetworkPolicy {
    let mut from = vec![NetworkPolicyPeer {
        pod_selector: Some(LabelSelector::default()),
        ..NetworkPolicyPeer::default()
    }];
    if let Some(ingress) = ingress_namespace {
        from.push(NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    NAMESPACE_NAME_LABEL.to_string(),
                    ingress.to_string(),
                )])),
                ..LabelSelector::default()
            }),
            ..NetworkPolicyPeer::default()
        });
    }
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(NETWORK_POLICY.to_string()),
            namespace: Some(namespace(tenant)),
            labels: Some(tenant_labels(tenant)),
            ..ObjectMeta::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".to_string()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(from),
                ..NetworkPolicyIngressRule::default()
            }]),
            ..NetworkPolicySpec::default()
        }),
    }
}

fn resource_quota(tenant: &str, quota: &TenantQuota) -> ResourceQuota {
    let cpu = Quantity(format!("{}m", quota.cpu_millis));
    let memory = Quantity(format!("{}Mi", quota.memory_mb));
    let hard = BTreeMap::from([
        ("pods".to_string(), Quantity(quota.pods.to_string())),
        ("requests.cpu".to_string(), cpu.clone()),
        ("limits.cpu".to_string(), cpu),
        ("requests.memory".to_string(), memory.clone()),
        ("limits.memory".to_string(), memory),
        (
            "persistentvolumeclaims".to_string(),
            Quantity(quota.volumes.to_string()),
        ),
        (
            "requests.storage".to_string(),
            Quantity(format!("{}Mi", quota.storage_mb)),
        ),
    ]);
    ResourceQuota {
        metadata: ObjectMeta {
            name: Some(RESOURCE_QUOTA.to_string()),
            namespace: Some(namespace(tenant)),
            labels: Some(tenant_labels(tenant)),
            ..ObjectMeta::default()
        },
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..ResourceQuotaSpec::default()
        }),
        ..ResourceQuota::default()
    }
}

/// The name of a pod's environment Secret.
pub fn env_secret_name(pod_id: Uuid) -> String {
    format!("berth-env-{pod_id}")
}

/// The pod's environment (its derived secrets included) as a Secret.
fn env_secret(spec: &WorkloadSpec) -> Secret {
    let data = spec
        .env
        .iter()
        .map(|(name, value)| (name.clone(), ByteString(value.as_bytes().to_vec())))
        .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(env_secret_name(spec.pod_id)),
            namespace: Some(namespace(&spec.tenant)),
            labels: Some(pod_labels(spec)),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_string()),
        data: Some(data),
        ..Secret::default()
    }
}

fn namespace_object(tenant: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(namespace(tenant)),
            labels: Some(tenant_labels(tenant)),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

fn claim(spec: &WorkloadSpec) -> PersistentVolumeClaim {
    let size = Quantity(format!("{}Mi", spec.volume.size_mb));
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(spec.volume_name()),
            namespace: Some(namespace(&spec.tenant)),
            labels: Some(pod_labels(spec)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec![spec.volume.access_mode.as_str().to_string()]),
            storage_class_name: spec.volume.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), size)])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

fn deployment(spec: &WorkloadSpec, replicas: i32) -> Deployment {
    let mut labels = pod_labels(spec);
    labels.extend(spec_hash_map(spec));
    Deployment {
        metadata: ObjectMeta {
            name: Some(spec.workload_name()),
            namespace: Some(namespace(&spec.tenant)),
            labels: Some(labels),
            annotations: Some(spec_hash_map(spec)),
            ..ObjectMeta::default()
        },
        spec: DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(selector(spec.pod_id)),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".to_string()),
                ..DeploymentStrategy::default()
            }),
            template: pod_template(spec),
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

fn pod_template(spec: &WorkloadSpec) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels(spec)),
            annotations: Some(spec_hash_map(spec)),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container(spec)],
            volumes: Some(vec![Volume {
                name: DATA_VOLUME.to_string(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: spec.volume_name(),
                    ..PersistentVolumeClaimVolumeSource::default()
                }),
                ..Volume::default()
            }]),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(pod_security(spec)),
            ..PodSpec::default()
        }),
    }
}

fn container(spec: &WorkloadSpec) -> Container {
    let port = i32::from(spec.port);
    Container {
        name: spec.service.clone(),
        image: Some(spec.image.clone()),
        command: spec.command.clone(),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.to_string()),
            container_port: port,
            protocol: Some("TCP".to_string()),
            ..ContainerPort::default()
        }]),
        env_from: Some(vec![EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: env_secret_name(spec.pod_id),
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        }]),
        security_context: Some(container_security(spec)),
        resources: Some(resources(&spec.resources)),
        readiness_probe: Some(probe(&spec.health, port, 0)),
        liveness_probe: Some(probe(&spec.health, port, spec.health.start_period_secs)),
        volume_mounts: Some(vec![VolumeMount {
            name: DATA_VOLUME.to_string(),
            mount_path: spec.volume.mount_path.clone(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    }
}

/// The pod's: the runtime's default seccomp profile; a non-root user if the catalog
/// names one, with the volume group-owned by it.
fn pod_security(spec: &WorkloadSpec) -> PodSecurityContext {
    let user = spec.run_as_user.map(i64::from);
    PodSecurityContext {
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            ..SeccompProfile::default()
        }),
        run_as_non_root: user.map(|_| true),
        run_as_user: user,
        run_as_group: user,
        fs_group: user,
        ..PodSecurityContext::default()
    }
}

/// The container's: no privilege escalation, every capability dropped; an image that
/// starts as root keeps the few its start-up needs (the Docker runtime's list).
fn container_security(spec: &WorkloadSpec) -> SecurityContext {
    let add = spec
        .run_as_user
        .is_none()
        .then(|| CAPABILITIES.iter().map(|c| (*c).to_string()).collect());
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            add,
        }),
        ..SecurityContext::default()
    }
}

fn resources(resources: &Resources) -> ResourceRequirements {
    let amounts = |cpu_millis: u32, memory_mb: u32| {
        BTreeMap::from([
            ("cpu".to_string(), Quantity(format!("{cpu_millis}m"))),
            ("memory".to_string(), Quantity(format!("{memory_mb}Mi"))),
        ])
    };
    ResourceRequirements {
        requests: Some(amounts(
            resources.cpu_request_millis,
            resources.memory_request_mb,
        )),
        limits: Some(amounts(
            resources.cpu_limit_millis,
            resources.memory_limit_mb,
        )),
        ..ResourceRequirements::default()
    }
}

/// Kubernetes rejects zero periods, timeouts and thresholds: they become 1.
fn probe(check: &HealthCheck, port: i32, initial_delay_secs: u32) -> Probe {
    let (http_get, exec) = match &check.probe {
        HealthProbe::Http { path } => {
            let action = HTTPGetAction {
                path: Some(path.clone()),
                port: IntOrString::Int(port),
                ..HTTPGetAction::default()
            };
            (Some(action), None)
        }
        HealthProbe::Command { command } => (
            None,
            Some(ExecAction {
                command: Some(command.clone()),
            }),
        ),
    };
    Probe {
        http_get,
        exec,
        initial_delay_seconds: Some(seconds(initial_delay_secs)),
        period_seconds: Some(seconds(check.interval_secs.max(1))),
        timeout_seconds: Some(seconds(check.timeout_secs.max(1))),
        failure_threshold: Some(seconds(check.failure_threshold.max(1))),
        ..Probe::default()
    }
}

fn service(spec: &WorkloadSpec) -> Service {
    let port = i32::from(spec.port);
    Service {
        metadata: ObjectMeta {
            name: Some(spec.workload_name()),
            namespace: Some(namespace(&spec.tenant)),
            labels: Some(pod_labels(spec)),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_string()),
            selector: Some(selector(spec.pod_id)),
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME.to_string()),
                port,
                target_port: Some(IntOrString::Int(port)),
                protocol: Some("TCP".to_string()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn deployment_health(deployment: &Deployment) -> Health {
    if deployment.spec.replicas == Some(0) {
        return Health::Stopped;
    }
    let status = deployment.status.as_ref();
    if status.and_then(|s| s.ready_replicas).unwrap_or(0) >= 1 {
        return Health::Healthy;
    }
    let conditions = status
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    conditions
        .iter()
        .find(|condition| is_failure(condition))
        .map_or(Health::Starting, |condition| {
            Health::Unhealthy(describe(condition))
        })
}

fn is_failure(condition: &DeploymentCondition) -> bool {
    matches!(
        (condition.type_.as_deref(), condition.status.as_deref()),
        (Some("Progressing"), Some("False")) | (Some("ReplicaFailure"), Some("True"))
    )
}

fn describe(condition: &DeploymentCondition) -> String {
    let fallback = condition.type_.as_deref().unwrap_or("deployment failure");
    let reason = condition.reason.as_deref().unwrap_or(fallback);
    match condition.message.as_deref() {
        Some(message) => format!("{reason}: {message}"),
        None => reason.to_string(),
    }
}

fn log_params(
    pod: &Pod,
    tail: Option<u32>,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> LogParams {
    let container = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.containers.first())
        .map(|container| container.name.clone());
    LogParams {
        container,
        tail_lines: tail.map(i64::from),
        since_seconds: since.map(|since| seconds_since(since, now)),
        ..LogParams::default()
    }
}

/// Whole seconds from `since` to `now`, rounded up; at least 1, the API's minimum.
fn seconds_since(since: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    let millis = (now - since).num_milliseconds();
    millis.saturating_add(999).div_euclid(1000).max(1)
}

/// An inventoried object. Its tenant is its label's only if the object lives in that
/// tenant's namespace: a label naming another tenant (made by hand) must not send a
/// removal into that tenant's namespace.
fn runtime_object(kind: ObjectKind, metadata: &ObjectMeta) -> RuntimeObject {
    let label = |key: &str| {
        metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(key))
            .cloned()
    };
    let tenant = label(LABEL_TENANT)
        .filter(|tenant| metadata.namespace.as_deref() == Some(namespace(tenant).as_str()));
    RuntimeObject {
        kind,
        name: metadata.name.clone().unwrap_or_default(),
        tenant,
        pod_id: label(LABEL_POD).and_then(|id| Uuid::parse_str(&id).ok()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ::kube::client::Body;
    use chrono::TimeDelta;
    use http::{Method, Request, Response, StatusCode};
    use serde_json::Value;
    use tokio::task::JoinHandle;
    use tower_test::mock;

    use super::*;
    use crate::runtime::{AccessMode, VolumeSpec};

    type Handle = mock::Handle<Request<Body>, Response<Body>>;
    type Reply = mock::SendResponse<Response<Body>>;

    const TENANT: &str = "acme";
    const NS: &str = "berth-acme";
    /// How long the fake API server waits for the runtime's next call.
    const WAIT: Duration = Duration::from_secs(5);

    fn pod_id() -> Uuid {
        Uuid::from_u128(0x0123_4567_89ab_4def_8123_4567_89ab_cdef)
    }

    fn tenant() -> TenantId {
        TenantId::parse(TENANT).unwrap()
    }

    fn spec() -> WorkloadSpec {
        WorkloadSpec {
            pod_id: pod_id(),
            tenant: TENANT.to_string(),
            service: "web".to_string(),
            variant: "small".to_string(),
            image: "nginx:1.27".to_string(),
            command: Some(vec!["nginx".into(), "-g".into(), "daemon off;".into()]),
            port: 8080,
            env: BTreeMap::from([("DATABASE_PASSWORD".to_string(), "s3cret".to_string())]),
            resources: Resources {
                cpu_request_millis: 250,
                cpu_limit_millis: 500,
                memory_request_mb: 128,
                memory_limit_mb: 256,
            },
            health: HealthCheck {
                probe: HealthProbe::Http {
                    path: "/healthz".to_string(),
                },
                interval_secs: 10,
                timeout_secs: 3,
                failure_threshold: 4,
                start_period_secs: 15,
            },
            volume: VolumeSpec {
                size_mb: 250,
                mount_path: "/data".to_string(),
                storage_class: Some("fast-ssd".to_string()),
                access_mode: AccessMode::ReadWriteOnce,
            },
            run_as_user: None,
        }
    }

    fn namespace_path() -> String {
        format!("/api/v1/namespaces/{NS}")
    }

    fn policy_path() -> String {
        format!("/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/{NETWORK_POLICY}")
    }

    fn quota_path() -> String {
        format!("/api/v1/namespaces/{NS}/resourcequotas/{RESOURCE_QUOTA}")
    }

    fn secret_path() -> String {
        format!("/api/v1/namespaces/{NS}/secrets/berth-env-{}", pod_id())
    }

    fn claims_path() -> String {
        format!("/api/v1/namespaces/{NS}/persistentvolumeclaims")
    }

    fn claim_path() -> String {
        format!("{}/berth-vol-{}", claims_path(), pod_id())
    }

    fn deployment_path() -> String {
        format!(
            "/apis/apps/v1/namespaces/{NS}/deployments/berth-pod-{}",
            pod_id()
        )
    }

    fn service_path() -> String {
        format!("/api/v1/namespaces/{NS}/services/berth-pod-{}", pod_id())
    }

    fn call(method: &Method, path: &str) -> String {
        format!("{method} {path}")
    }

    /// The body the API server sends with a non-2xx answer.
    fn status_json(code: u16, reason: &str, message: &str) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        })
    }

    fn success_json() -> Value {
        json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success" })
    }

    fn deployment_json(replicas: i32) -> Value {
        serde_json::to_value(deployment(&spec(), replicas)).unwrap()
    }

    fn mock_runtime() -> (KubernetesRuntime, ApiServer) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let runtime = KubernetesRuntime::new(Client::new(service, "default"));
        let server = ApiServer {
            handle,
            calls: Vec::new(),
        };
        (runtime, server)
    }

    /// One request the runtime made, waiting for its answer.
    struct Call {
        method: Method,
        path: String,
        query: BTreeMap<String, String>,
        content_type: String,
        body: Value,
        reply: Reply,
    }

    impl Call {
        fn respond(self, status: StatusCode, body: &Value) {
            let bytes = serde_json::to_vec(body).unwrap();
            let response = Response::builder()
                .status(status)
                .body(Body::from(bytes))
                .unwrap();
            self.reply.send_response(response);
        }

        fn respond_text(self, text: &str) {
            let response = Response::new(Body::from(text.as_bytes().to_vec()));
            self.reply.send_response(response);
        }

        /// Answers as the API server does an apply or a create: with the object.
        fn echo(self, status: StatusCode) {
            let body = self.body.clone();
            self.respond(status, &body);
        }

        fn fail(self, code: u16, reason: &str) {
            let status = StatusCode::from_u16(code).unwrap();
            self.respond(
                status,
                &status_json(code, reason, &format!("{reason} (test)")),
            );
        }

        fn assert_server_side_apply(&self) {
            assert_eq!(self.content_type, "application/apply-patch+yaml");
            assert_eq!(
                self.query.get("fieldManager").map(String::as_str),
                Some("berth")
            );
            assert_eq!(self.query.get("force").map(String::as_str), Some("true"));
        }
    }

    /// Plays the Kubernetes API server: hands out the runtime's calls in order.
    struct ApiServer {
        handle: Handle,
        calls: Vec<String>,
    }

    impl ApiServer {
        async fn next(&mut self) -> Call {
            let next = tokio::time::timeout(WAIT, self.handle.next_request()).await;
            let (request, reply) = next
                .unwrap_or_else(|_| panic!("no call after {:?}", self.calls))
                .unwrap_or_else(|| panic!("client dropped after {:?}", self.calls));
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap()
            };
            let query = form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
            let content_type = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .map(|value| value.to_str().unwrap().to_string())
                .unwrap_or_default();
            let path = parts.uri.path().to_string();
            self.calls.push(call(&parts.method, &path));
            Call {
                method: parts.method,
                path,
                query,
                content_type,
                body,
                reply,
            }
        }

        async fn expect(&mut self, method: Method, path: &str) -> Call {
            let next = self.next().await;
            assert_eq!(
                (&next.method, next.path.as_str()),
                (&method, path),
                "calls: {:?}",
                self.calls
            );
            next
        }

        /// Waits for the runtime's `task` to end, failing on any call it makes meanwhile;
        /// returns the task's result and every call the runtime made, in order.
        async fn finish<T>(mut self, task: JoinHandle<T>) -> (T, Vec<String>) {
            let result = tokio::time::timeout(WAIT, self.join(task))
                .await
                .unwrap_or_else(|_| panic!("the runtime is stuck after {:?}", self.calls));
            let next = tokio::time::timeout(WAIT, self.handle.next_request()).await;
            if let Some((request, _)) = next.expect("the runtime's client is still alive") {
                panic!(
                    "unexpected call {} {} after {:?}",
                    request.method(),
                    request.uri(),
                    self.calls
                );
            }
            (result, self.calls)
        }

        async fn join<T>(&mut self, mut task: JoinHandle<T>) -> T {
            tokio::select! {
                result = &mut task => result.unwrap(),
                next = self.handle.next_request() => {
                    if let Some((request, _)) = next {
                        panic!("unexpected call {} {} after {:?}", request.method(), request.uri(), self.calls);
                    }
                    task.await.unwrap()
                }
            }
        }

        /// The namespace sequence of a new tenant: look (missing), apply the namespace,
        /// its NetworkPolicy and its ResourceQuota; returns the three applied bodies.
        async fn namespace_ensure(&mut self) -> (Value, Value, Value) {
            self.expect(Method::GET, &namespace_path())
                .await
                .fail(404, "NotFound");
            let call = self.expect(Method::PATCH, &namespace_path()).await;
            call.assert_server_side_apply();
            let namespace = call.body.clone();
            assert_eq!(namespace["kind"], "Namespace");
            assert_eq!(namespace["metadata"]["labels"][LABEL_MANAGED], "true");
            assert_eq!(namespace["metadata"]["labels"][LABEL_TENANT], TENANT);
            call.echo(StatusCode::OK);
            let policy = self.apply(&policy_path()).await;
            let quota = self.apply(&quota_path()).await;
            (namespace, policy, quota)
        }

        /// One server-side apply at `path`, answered with the object; returns it.
        async fn apply(&mut self, path: &str) -> Value {
            let call = self.expect(Method::PATCH, path).await;
            call.assert_server_side_apply();
            let body = call.body.clone();
            call.echo(StatusCode::OK);
            body
        }

        async fn claim_create(&mut self) -> Value {
            let call = self.expect(Method::POST, &claims_path()).await;
            assert_eq!(
                call.query.get("fieldManager").map(String::as_str),
                Some("berth")
            );
            let body = call.body.clone();
            call.echo(StatusCode::CREATED);
            body
        }

        async fn secret_apply(&mut self) -> Value {
            self.apply(&secret_path()).await
        }

        async fn deployment_apply(&mut self) -> Value {
            let call = self.expect(Method::PATCH, &deployment_path()).await;
            call.assert_server_side_apply();
            let body = call.body.clone();
            call.echo(StatusCode::OK);
            body
        }

        async fn service_apply(&mut self) -> Value {
            let call = self.expect(Method::PATCH, &service_path()).await;
            call.assert_server_side_apply();
            let body = call.body.clone();
            call.echo(StatusCode::OK);
            body
        }

        async fn delete(&mut self, path: &str) -> Value {
            let call = self.expect(Method::DELETE, path).await;
            let body = call.body.clone();
            call.respond(StatusCode::OK, &success_json());
            body
        }

        async fn delete_missing(&mut self, path: &str) {
            self.expect(Method::DELETE, path)
                .await
                .fail(404, "NotFound");
        }

        /// The delete_workload sequence; returns the Deployment delete's options.
        async fn workload_delete(&mut self) -> Value {
            let options = self.delete(&deployment_path()).await;
            self.delete(&service_path()).await;
            self.delete(&secret_path()).await;
            options
        }
    }

    fn namespace_calls() -> Vec<String> {
        vec![
            call(&Method::GET, &namespace_path()),
            call(&Method::PATCH, &namespace_path()),
            call(&Method::PATCH, &policy_path()),
            call(&Method::PATCH, &quota_path()),
        ]
    }

    fn create_calls() -> Vec<String> {
        let mut calls = namespace_calls();
        calls.extend([
            call(&Method::POST, &claims_path()),
            call(&Method::PATCH, &secret_path()),
            call(&Method::PATCH, &deployment_path()),
            call(&Method::PATCH, &service_path()),
        ]);
        calls
    }

    fn workload_delete_calls() -> Vec<String> {
        vec![
            call(&Method::DELETE, &deployment_path()),
            call(&Method::DELETE, &service_path()),
            call(&Method::DELETE, &secret_path()),
        ]
    }

    fn assert_claim_body(claim: &Value) {
        assert_eq!(claim["kind"], "PersistentVolumeClaim");
        assert_eq!(claim["metadata"]["name"], format!("berth-vol-{}", pod_id()));
        assert_eq!(claim["metadata"]["labels"][LABEL_POD], pod_id().to_string());
        assert_eq!(claim["metadata"]["labels"][LABEL_TENANT], TENANT);
        assert_eq!(claim["metadata"]["labels"][LABEL_MANAGED], "true");
        assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "250Mi");
        assert_eq!(claim["spec"]["storageClassName"], "fast-ssd");
        assert_eq!(claim["spec"]["accessModes"], json!(["ReadWriteOnce"]));
    }

    fn assert_deployment_body(deployment: &Value, replicas: i32) {
        let hash = spec().spec_hash();
        assert_eq!(deployment["kind"], "Deployment");
        assert_eq!(deployment["apiVersion"], "apps/v1");
        assert_eq!(deployment["metadata"]["labels"][LABEL_SPEC_HASH], hash);
        assert_eq!(deployment["metadata"]["annotations"][LABEL_SPEC_HASH], hash);
        let spec = &deployment["spec"];
        assert_eq!(spec["replicas"], replicas);
        assert_eq!(spec["strategy"]["type"], "Recreate");
        assert_eq!(
            spec["selector"]["matchLabels"],
            json!({ LABEL_POD: pod_id().to_string() })
        );
        let pod = &spec["template"]["spec"];
        assert_eq!(
            pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
            format!("berth-vol-{}", pod_id())
        );
        let container = &pod["containers"][0];
        assert_eq!(container["name"], "web");
        assert_eq!(container["image"], "nginx:1.27");
        assert_eq!(container["command"], json!(["nginx", "-g", "daemon off;"]));
        assert_eq!(container["ports"][0]["containerPort"], 8080);
        assert!(container.get("env").is_none(), "no plain env values");
        assert_eq!(
            container["envFrom"],
            json!([{ "secretRef": { "name": format!("berth-env-{}", pod_id()), "optional": false } }])
        );
        assert!(
            !deployment.to_string().contains("s3cret"),
            "the Deployment holds no secret value"
        );
        assert_eq!(
            pod["securityContext"],
            json!({ "seccompProfile": { "type": "RuntimeDefault" } })
        );
        assert_eq!(
            container["securityContext"]["allowPrivilegeEscalation"],
            false
        );
        assert_eq!(container["securityContext"]["privileged"], false);
        assert_eq!(
            container["securityContext"]["capabilities"],
            json!({ "drop": ["ALL"], "add": CAPABILITIES })
        );
        assert_eq!(
            container["resources"]["requests"],
            json!({ "cpu": "250m", "memory": "128Mi" })
        );
        assert_eq!(
            container["resources"]["limits"],
            json!({ "cpu": "500m", "memory": "256Mi" })
        );
        assert_eq!(container["volumeMounts"][0]["mountPath"], "/data");
        assert_eq!(
            container["volumeMounts"][0]["name"],
            pod["volumes"][0]["name"]
        );
        for probe in ["readinessProbe", "livenessProbe"] {
            assert_eq!(
                container[probe]["httpGet"],
                json!({ "path": "/healthz", "port": 8080 })
            );
            assert_eq!(container[probe]["periodSeconds"], 10);
            assert_eq!(container[probe]["timeoutSeconds"], 3);
            assert_eq!(container[probe]["failureThreshold"], 4);
        }
        assert_eq!(container["livenessProbe"]["initialDelaySeconds"], 15);
    }

    fn assert_secret_body(secret: &Value) {
        assert_eq!(secret["kind"], "Secret");
        assert_eq!(secret["type"], "Opaque");
        assert_eq!(
            secret["metadata"]["name"],
            format!("berth-env-{}", pod_id())
        );
        assert_eq!(secret["metadata"]["namespace"], NS);
        assert_eq!(secret["metadata"]["labels"][LABEL_TENANT], TENANT);
        // base64 of "s3cret"
        assert_eq!(secret["data"], json!({ "DATABASE_PASSWORD": "czNjcmV0" }));
    }

    fn assert_policy_body(policy: &Value, ingress: Option<&str>) {
        assert_eq!(policy["kind"], "NetworkPolicy");
        assert_eq!(policy["apiVersion"], "networking.k8s.io/v1");
        assert_eq!(policy["metadata"]["name"], NETWORK_POLICY);
        assert_eq!(policy["metadata"]["namespace"], NS);
        assert_eq!(policy["spec"]["podSelector"], json!({}));
        assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress"]));
        let mut from = vec![json!({ "podSelector": {} })];
        if let Some(ingress) = ingress {
            from.push(json!({ "namespaceSelector": { "matchLabels": {
                "kubernetes.io/metadata.name": ingress } } }));
        }
        assert_eq!(policy["spec"]["ingress"], json!([{ "from": from }]));
    }

    fn assert_quota_body(quota: &Value) {
        assert_eq!(quota["kind"], "ResourceQuota");
        assert_eq!(quota["metadata"]["name"], RESOURCE_QUOTA);
        assert_eq!(quota["metadata"]["namespace"], NS);
        assert_eq!(
            quota["spec"]["hard"],
            json!({
                "pods": "20",
                "requests.cpu": "40000m",
                "limits.cpu": "40000m",
                "requests.memory": "40960Mi",
                "limits.memory": "40960Mi",
                "persistentvolumeclaims": "20",
                "requests.storage": "20480Mi",
            })
        );
    }

    fn assert_service_body(service: &Value) {
        assert_eq!(service["kind"], "Service");
        assert_eq!(service["spec"]["type"], "ClusterIP");
        assert_eq!(
            service["spec"]["selector"],
            json!({ LABEL_POD: pod_id().to_string() })
        );
        assert_eq!(service["spec"]["ports"][0]["port"], 8080);
        assert_eq!(service["spec"]["ports"][0]["targetPort"], 8080);
    }

    #[tokio::test]
    async fn create_applies_namespace_creates_volume_and_applies_workload() {
        let (runtime, mut server) = mock_runtime();
        let task = tokio::spawn(async move {
            let volume = runtime.ensure_volume(&spec()).await?;
            let workload = runtime.deploy(&spec(), 1).await?;
            Ok::<_, RuntimeError>((volume, workload))
        });

        let (_, policy, quota) = server.namespace_ensure().await;
        assert_policy_body(&policy, None);
        assert_quota_body(&quota);
        assert_claim_body(&server.claim_create().await);
        assert_secret_body(&server.secret_apply().await);
        assert_deployment_body(&server.deployment_apply().await, 1);
        assert_service_body(&server.service_apply().await);

        let (result, calls) = server.finish(task).await;
        let names = result.unwrap();
        assert_eq!(
            names,
            (
                format!("berth-vol-{}", pod_id()),
                format!("berth-pod-{}", pod_id())
            )
        );
        assert_eq!(calls, create_calls());
    }

    #[tokio::test]
    async fn a_namespace_of_another_tenant_is_refused_untouched() {
        let (runtime, mut server) = mock_runtime();
        let task = tokio::spawn(async move { runtime.ensure_volume(&spec()).await });

        let theirs = json!({ "apiVersion": "v1", "kind": "Namespace",
            "metadata": { "name": NS, "labels": { LABEL_MANAGED: "true", LABEL_TENANT: "other" } } });
        server
            .expect(Method::GET, &namespace_path())
            .await
            .respond(StatusCode::OK, &theirs);

        let (result, calls) = server.finish(task).await;
        assert!(
            matches!(&result, Err(RuntimeError::Permanent(m))
                if m.starts_with("conflict:") && m.contains("another tenant")),
            "{result:?}"
        );
        assert_eq!(calls, vec![call(&Method::GET, &namespace_path())]);
    }

    #[tokio::test]
    async fn an_existing_namespace_of_the_tenant_is_applied_again_with_its_policy_and_quota() {
        let (runtime, mut server) = mock_runtime();
        let runtime = runtime
            .with_ingress_namespace(Some("ingress-nginx".to_string()))
            .with_quota(TenantQuota {
                pods: 3,
                cpu_millis: 1500,
                memory_mb: 768,
                volumes: 3,
                storage_mb: 750,
            });
        let task = tokio::spawn(async move { runtime.ensure_volume(&spec()).await });

        let ours = serde_json::to_value(namespace_object(TENANT)).unwrap();
        server
            .expect(Method::GET, &namespace_path())
            .await
            .respond(StatusCode::OK, &ours);
        server.apply(&namespace_path()).await;
        assert_policy_body(&server.apply(&policy_path()).await, Some("ingress-nginx"));
        let quota = server.apply(&quota_path()).await;
        assert_eq!(
            quota["spec"]["hard"],
            json!({ "pods": "3", "requests.cpu": "1500m", "limits.cpu": "1500m",
                "requests.memory": "768Mi", "limits.memory": "768Mi",
                "persistentvolumeclaims": "3", "requests.storage": "750Mi" })
        );
        server.claim_create().await;

        let (result, calls) = server.finish(task).await;
        result.unwrap();
        assert_eq!(calls.len(), namespace_calls().len() + 1);
    }

    #[test]
    fn a_non_root_image_runs_as_its_user_with_no_capability_at_all() {
        let spec = WorkloadSpec {
            run_as_user: Some(1000),
            ..spec()
        };
        let deployment = serde_json::to_value(deployment(&spec, 1)).unwrap();
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(
            pod["securityContext"],
            json!({ "seccompProfile": { "type": "RuntimeDefault" }, "runAsNonRoot": true,
                "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000 })
        );
        assert_eq!(
            pod["containers"][0]["securityContext"],
            json!({ "allowPrivilegeEscalation": false, "privileged": false,
                "capabilities": { "drop": ["ALL"] } })
        );
        assert_ne!(
            spec.spec_hash(),
            super::tests::spec().spec_hash(),
            "a new user redeploys"
        );
    }

    #[test]
    fn the_default_quota_holds_its_pods_of_the_largest_plan() {
        let largest = Resources {
            cpu_request_millis: 1000,
            cpu_limit_millis: 2000,
            memory_request_mb: 1024,
            memory_limit_mb: 2048,
        };
        let quota = TenantQuota::default();
        assert!(quota.fits(TenantQuota::DEFAULT_PODS, &largest, 1024));
        assert!(!quota.fits(TenantQuota::DEFAULT_PODS + 1, &largest, 1024));
    }

    #[tokio::test]
    async fn restart_only_patches_the_pod_template() {
        let (runtime, mut server) = mock_runtime();
        let task = tokio::spawn(async move { runtime.restart(&spec()).await });

        let patch = server.expect(Method::PATCH, &deployment_path()).await;
        assert_eq!(patch.content_type, "application/strategic-merge-patch+json");
        let stamp = patch.body["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
            .as_str()
            .unwrap()
            .to_string();
        let restarted_at = DateTime::parse_from_rfc3339(&stamp).unwrap();
        assert!((Utc::now() - restarted_at.with_timezone(&Utc)).abs() < TimeDelta::seconds(60));
        assert_eq!(
            patch.body.as_object().unwrap().len(),
            1,
            "only the template is patched"
        );
        patch.respond(StatusCode::OK, &deployment_json(1));

        let (result, calls) = server.finish(task).await;
        result.unwrap();
        assert_eq!(calls, vec![call(&Method::PATCH, &deployment_path())]);
    }

    #[tokio::test]
    async fn reset_deletes_the_volume_before_creating_it_again() {
        let (runtime, mut server) = mock_runtime();
        let task = tokio::spawn(async move {
            let spec = spec();
            runtime.delete_workload(&tenant(), spec.pod_id).await?;
            runtime.delete_volume(&tenant(), spec.pod_id).await?;
            runtime.ensure_volume(&spec).await?;
            runtime.deploy(&spec, 1).await
        });

        let options = server.workload_delete().await;
        assert_eq!(options["propagationPolicy"], "Background");
        server.delete(&claim_path()).await;
        server.namespace_ensure().await;
        assert_claim_body(&server.claim_create().await);
        server.secret_apply().await;
        assert_deployment_body(&server.deployment_apply().await, 1);
        assert_service_body(&server.service_apply().await);

        let (result, calls) = server.finish(task).await;
        result.unwrap();
        let mut expected = workload_delete_calls();
        expected.push(call(&Method::DELETE, &claim_path()));
        expected.extend(create_calls());
        assert_eq!(calls, expected);
        let position = |wanted: &str| calls.iter().position(|c| c == wanted).unwrap();
        assert!(
            position(&call(&Method::DELETE, &claim_path()))
                < position(&call(&Method::POST, &claims_path())),
            "the PVC is deleted before it is created again"
        );
    }

    #[tokio::test]
    async fn scale_to_zero_patches_replicas_only() {
        let (runtime, mut server) = mock_runtime();
        let task = tokio::spawn(async move { runtime.scale(&spec(), 0).await });

        let patch = server.expect(Method::PATCH, &deployment_path()).await;
        assert_eq!(patch.content_type, "application/merge-patch+json");
        assert_eq!(patch.body, json!({ "spec": { "replicas": 0 } }));
        patch.respond(StatusCode::OK, &deployment_json(0));

        let (result, calls) = server.finish(task).await;
        result.unwrap();
        assert_eq!(calls, vec![call(&Method::PATCH, &deployment_path())]);
    }

    #[tokio::test]
    async fn delete_without_volume_keeps_the_claim() {
        let (runtime, mut server) = mock_runtime();
        let task = tokio::spawn(async move { runtime.delete_workload(&tenant(), pod_id()).await });

        server.workload_delete().await;

        let (result, calls) = server.finish(task).await;
        result.unwrap();
        assert_eq!(calls, workload_delete_calls());
    }

    #[tokio::test]
    async fn delete_with_volume_removes_the_claim_after_the_workload() {
        let (runtime, mut server) = mock_runtime();
        let task = tokio::spawn(async move {
            runtime.delete_workload(&tenant(), pod_id()).await?;
            runtime.delete_volume(&tenant(), pod_id()).await
        });

        server.workload_delete().await;
        server.delete(&claim_path()).await;

        let (result, calls) = server.finish(task).await;
        result.unwrap();
        let mut expected = workload_delete_calls();
        expected.push(call(&Method::DELETE, &claim_path()));
        assert_eq!(calls, expected);
    }

    #[tokio::test]
    async fn existing_volume_is_kept_on_conflict() {
        let (runtime, mut server) = mock_runtime();
        let task = tokio::spawn(async move { runtime.ensure_volume(&spec()).await });

        server.namespace_ensure().await;
        server
            .expect(Method::POST, &claims_path())
            .await
            .fail(409, "AlreadyExists");
        let existing = serde_json::to_value(claim(&spec())).unwrap();
        server
            .expect(Method::GET, &claim_path())
            .await
            .respond(StatusCode::OK, &existing);

        let (result, calls) = server.finish(task).await;
        assert_eq!(result, Ok(format!("berth-vol-{}", pod_id())));
        let mut expected = namespace_calls();
        expected.extend([
            call(&Method::POST, &claims_path()),
            call(&Method::GET, &claim_path()),
        ]);
        assert_eq!(
            calls, expected,
            "an existing claim is never patched or resized"
        );
    }

    #[tokio::test]
    async fn volume_still_being_deleted_is_transient() {
        let (runtime, mut server) = mock_runtime();
        let task = tokio::spawn(async move { runtime.ensure_volume(&spec()).await });

        server.namespace_ensure().await;
        server
            .expect(Method::POST, &claims_path())
            .await
            .fail(409, "AlreadyExists");
        let mut terminating = serde_json::to_value(claim(&spec())).unwrap();
        terminating["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
        server
            .expect(Method::GET, &claim_path())
            .await
            .respond(StatusCode::OK, &terminating);

        let (result, calls) = server.finish(task).await;
        assert!(
            matches!(&result, Err(RuntimeError::Transient(m)) if m.contains("being deleted")),
            "{result:?}"
        );
        assert_eq!(calls.len(), namespace_calls().len() + 2);
    }

    #[tokio::test]
    async fn deleting_missing_objects_succeeds() {
        let (runtime, mut server) = mock_runtime();
        let task = tokio::spawn(async move {
            runtime.delete_workload(&tenant(), pod_id()).await?;
            runtime.delete_volume(&tenant(), pod_id()).await
        });

        server.delete_missing(&deployment_path()).await;
        server.delete_missing(&service_path()).await;
        server.delete_missing(&secret_path()).await;
        server.delete_missing(&claim_path()).await;

        let (result, calls) = server.finish(task).await;
        assert_eq!(result, Ok(()));
        assert_eq!(calls.len(), 4);
    }

    #[tokio::test]
    async fn restarting_a_missing_workload_is_not_found() {
        let (runtime, mut server) = mock_runtime();
        let task = tokio::spawn(async move { runtime.restart(&spec()).await });

        server
            .expect(Method::PATCH, &deployment_path())
            .await
            .fail(404, "NotFound");

        let expected = format!("deployment {NS}/berth-pod-{}", pod_id());
        let (result, calls) = server.finish(task).await;
        assert_eq!(result, Err(RuntimeError::NotFound(expected)));
        assert_eq!(calls.len(), 1);
    }

    #[tokio::test]
    async fn server_error_on_deploy_is_transient_and_stops() {
        let (runtime, mut server) = mock_runtime();
        let task = tokio::spawn(async move { runtime.deploy(&spec(), 1).await });

        server.secret_apply().await;
        server
            .expect(Method::PATCH, &deployment_path())
            .await
            .fail(500, "InternalError");

        let (result, calls) = server.finish(task).await;
        assert!(
            matches!(&result, Err(RuntimeError::Transient(m)) if m.contains("500")),
            "{result:?}"
        );
        assert_eq!(
            calls,
            vec![
                call(&Method::PATCH, &secret_path()),
                call(&Method::PATCH, &deployment_path())
            ]
        );
    }

    #[tokio::test]
    async fn forbidden_is_permanent() {
        let (runtime, mut server) = mock_runtime();
        let task = tokio::spawn(async move { runtime.scale(&spec(), 1).await });

        server
            .expect(Method::PATCH, &deployment_path())
            .await
            .fail(403, "Forbidden");

        let (result, calls) = server.finish(task).await;
        assert!(matches!(result, Err(RuntimeError::Permanent(_))));
        assert_eq!(calls.len(), 1);
    }

    #[tokio::test]
    async fn more_than_one_replica_is_refused_without_a_call() {
        let (runtime, server) = mock_runtime();
        let task = tokio::spawn(async move { runtime.deploy(&spec(), 2).await });

        let (result, calls) = server.finish(task).await;
        assert!(matches!(result, Err(RuntimeError::Permanent(_))));
        assert!(calls.is_empty());
    }

    #[tokio::test]
    async fn health_reads_the_deployment() {
        let (runtime, mut server) = mock_runtime();
        let task = tokio::spawn(async move {
            let missing = runtime.health(&spec()).await?;
            let ready = runtime.health(&spec()).await?;
            Ok::<_, RuntimeError>((missing, ready))
        });

        server
            .expect(Method::GET, &deployment_path())
            .await
            .fail(404, "NotFound");
        let mut ready = deployment_json(1);
        ready["status"] = json!({ "replicas": 1, "readyReplicas": 1 });
        server
            .expect(Method::GET, &deployment_path())
            .await
            .respond(StatusCode::OK, &ready);

        let (result, calls) = server.finish(task).await;
        assert_eq!(result, Ok((Health::Missing, Health::Healthy)));
        assert_eq!(calls.len(), 2);
    }

    fn with_status(replicas: i32, status: Value) -> Deployment {
        let mut value = deployment_json(replicas);
        value["status"] = status;
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn deployment_health_follows_replicas_readiness_and_conditions() {
        let ready = json!({ "readyReplicas": 1 });
        assert_eq!(
            deployment_health(&with_status(0, ready.clone())),
            Health::Stopped
        );
        assert_eq!(deployment_health(&with_status(1, ready)), Health::Healthy);
        assert_eq!(
            deployment_health(&with_status(1, json!({}))),
            Health::Starting
        );
        let stuck = json!({ "conditions": [{
            "type": "Progressing", "status": "False",
            "reason": "ProgressDeadlineExceeded", "message": "took too long",
        }]});
        assert_eq!(
            deployment_health(&with_status(1, stuck)),
            Health::Unhealthy("ProgressDeadlineExceeded: took too long".to_string())
        );
        let quota = json!({ "conditions": [
            { "type": "Progressing", "status": "True", "reason": "NewReplicaSetCreated" },
            { "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate" },
        ]});
        assert_eq!(
            deployment_health(&with_status(1, quota)),
            Health::Unhealthy("FailedCreate".to_string())
        );
    }

    fn pod_json(name: &str, created: &str) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": { "name": name, "namespace": NS, "creationTimestamp": created },
            "spec": { "containers": [{ "name": "web", "image": "nginx:1.27" }] },
        })
    }

    #[tokio::test]
    async fn logs_read_the_newest_pod() {
        let (runtime, mut server) = mock_runtime();
        let since = Utc::now() - TimeDelta::seconds(90);
        let task = tokio::spawn(async move {
            runtime
                .logs(&tenant(), pod_id(), Some(50), Some(since))
                .await
        });

        let list = server
            .expect(Method::GET, &format!("/api/v1/namespaces/{NS}/pods"))
            .await;
        assert_eq!(
            list.query["labelSelector"],
            format!("berth.pod={}", pod_id())
        );
        let pods = json!({ "apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [
            pod_json("old", "2025-01-01T00:00:00Z"),
            pod_json("new", "2025-01-02T00:00:00Z"),
        ]});
        list.respond(StatusCode::OK, &pods);
        let logs = server
            .expect(
                Method::GET,
                &format!("/api/v1/namespaces/{NS}/pods/new/log"),
            )
            .await;
        assert_eq!(logs.query["tailLines"], "50");
        assert_eq!(logs.query["container"], "web");
        let since_seconds: i64 = logs.query["sinceSeconds"].parse().unwrap();
        assert!((90..=95).contains(&since_seconds), "{since_seconds}");
        logs.respond_text("first\nsecond\n");

        let (result, calls) = server.finish(task).await;
        assert_eq!(result, Ok("first\nsecond\n".to_string()));
        assert_eq!(calls.len(), 2);
    }

    #[tokio::test]
    async fn logs_without_pods_are_empty() {
        let (runtime, mut server) = mock_runtime();
        let task = tokio::spawn(async move { runtime.logs(&tenant(), pod_id(), None, None).await });

        let list = server
            .expect(Method::GET, &format!("/api/v1/namespaces/{NS}/pods"))
            .await;
        list.respond(
            StatusCode::OK,
            &json!({ "apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [] }),
        );

        let (result, calls) = server.finish(task).await;
        assert_eq!(result, Ok(String::new()));
        assert_eq!(calls.len(), 1);
    }

    #[test]
    fn seconds_since_rounds_up_to_at_least_one() {
        let now = Utc::now();
        assert_eq!(
            seconds_since(now - TimeDelta::milliseconds(90_001), now),
            91
        );
        assert_eq!(seconds_since(now - TimeDelta::seconds(90), now), 90);
        assert_eq!(seconds_since(now, now), 1);
        assert_eq!(seconds_since(now + TimeDelta::seconds(30), now), 1);
    }

    #[tokio::test]
    async fn inventory_lists_managed_objects_in_all_namespaces() {
        let (runtime, mut server) = mock_runtime();
        let task = tokio::spawn(async move { runtime.inventory().await });

        let deployments = server
            .expect(Method::GET, "/apis/apps/v1/deployments")
            .await;
        assert_eq!(deployments.query["labelSelector"], "berth.managed=true");
        let mut unlabelled = deployment_json(1);
        unlabelled["metadata"] = json!({ "name": "stray", "labels": { LABEL_MANAGED: "true" } });
        // Labelled as another tenant's but living in acme's namespace: whose it is is
        // unknown, so a clean-up never reaches into the other tenant's namespace.
        let mut mislabelled = deployment_json(1);
        mislabelled["metadata"] = json!({ "name": "misplaced", "namespace": NS,
            "labels": { LABEL_MANAGED: "true", LABEL_TENANT: "other", LABEL_POD: pod_id().to_string() } });
        let list = json!({ "apiVersion": "apps/v1", "kind": "DeploymentList", "metadata": {},
            "items": [deployment_json(1), unlabelled, mislabelled] });
        deployments.respond(StatusCode::OK, &list);
        let claims = server
            .expect(Method::GET, "/api/v1/persistentvolumeclaims")
            .await;
        assert_eq!(claims.query["labelSelector"], "berth.managed=true");
        let list = json!({ "apiVersion": "v1", "kind": "PersistentVolumeClaimList", "metadata": {},
            "items": [serde_json::to_value(claim(&spec())).unwrap()] });
        claims.respond(StatusCode::OK, &list);

        let object = |kind, name: String| RuntimeObject {
            kind,
            name,
            tenant: Some(TENANT.to_string()),
            pod_id: Some(pod_id()),
        };
        let expected = vec![
            object(ObjectKind::Workload, workload_name(pod_id())),
            RuntimeObject {
                kind: ObjectKind::Workload,
                name: "misplaced".to_string(),
                tenant: None,
                pod_id: Some(pod_id()),
            },
            RuntimeObject {
                kind: ObjectKind::Workload,
                name: "stray".to_string(),
                tenant: None,
                pod_id: None,
            },
            object(ObjectKind::Volume, volume_name(pod_id())),
        ];
        let (result, calls) = server.finish(task).await;
        assert_eq!(result, Ok(expected));
        assert_eq!(calls.len(), 2);
    }

    #[tokio::test]
    async fn remove_deletes_in_the_tenant_namespace() {
        let (runtime, mut server) = mock_runtime();
        let workload = RuntimeObject {
            kind: ObjectKind::Workload,
            name: workload_name(pod_id()),
            tenant: Some(TENANT.to_string()),
            pod_id: Some(pod_id()),
        };
        let volume = RuntimeObject {
            kind: ObjectKind::Volume,
            name: volume_name(pod_id()),
            ..workload.clone()
        };
        let task = tokio::spawn(async move {
            runtime.remove(&workload).await?;
            runtime.remove(&volume).await
        });

        server.workload_delete().await;
        server.delete(&claim_path()).await;

        let (result, calls) = server.finish(task).await;
        result.unwrap();
        assert_eq!(calls.len(), 4);
    }

    #[tokio::test]
    async fn remove_without_tenant_is_permanent_and_calls_nothing() {
        let (runtime, server) = mock_runtime();
        let stray = RuntimeObject {
            kind: ObjectKind::Volume,
            name: "stray".to_string(),
            tenant: None,
            pod_id: None,
        };
        let task = tokio::spawn(async move { runtime.remove(&stray).await });

        let (result, calls) = server.finish(task).await;
        assert!(matches!(result, Err(RuntimeError::Permanent(_))));
        assert!(calls.is_empty());
    }

    fn api_error(code: u16) -> ::kube::Error {
        let status = ::kube::core::Status::failure("test", "Test").with_code(code);
        ::kube::Error::Api(status.boxed())
    }

    #[test]
    fn classify_maps_codes_and_connection_errors() {
        let kind = |err| match classify(err, "thing") {
            RuntimeError::NotFound(_) => "not found",
            RuntimeError::Transient(_) => "transient",
            RuntimeError::Permanent(_) => "permanent",
        };
        assert_eq!(kind(api_error(404)), "not found");
        for code in [408, 409, 429, 500, 503] {
            assert_eq!(kind(api_error(code)), "transient", "{code}");
        }
        for code in [400, 401, 403, 422] {
            assert_eq!(kind(api_error(code)), "permanent", "{code}");
        }
        let refused = ::kube::Error::Service("connection refused".into());
        assert_eq!(kind(refused), "transient");
        assert_eq!(
            classify(api_error(404), "deployment x/y"),
            RuntimeError::NotFound("deployment x/y".to_string())
        );
    }

    #[test]
    fn command_probes_exec_and_zero_timings_become_one() {
        let check = HealthCheck {
            probe: HealthProbe::Command {
                command: vec!["pg_isready".to_string()],
            },
            interval_secs: 0,
            timeout_secs: 0,
            failure_threshold: 0,
            start_period_secs: 0,
        };
        let probe = serde_json::to_value(probe(&check, 5432, 0)).unwrap();
        assert_eq!(probe["exec"]["command"], json!(["pg_isready"]));
        assert!(probe.get("httpGet").is_none());
        assert_eq!(
            (
                &probe["periodSeconds"],
                &probe["timeoutSeconds"],
                &probe["failureThreshold"]
            ),
            (&json!(1), &json!(1), &json!(1))
        );
    }

    async fn wait_for(runtime: &KubernetesRuntime, spec: &WorkloadSpec, wanted: Health) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
        loop {
            let health = runtime.health(spec).await.expect("health");
            if health == wanted {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "still {health:?}, wanted {wanted:?}"
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    fn busybox_spec() -> WorkloadSpec {
        WorkloadSpec {
            pod_id: Uuid::new_v4(),
            tenant: "roundtrip".to_string(),
            service: "app".to_string(),
            image: "busybox:1.36".to_string(),
            command: Some(vec![
                "sh".into(),
                "-c".into(),
                "echo berth-ready; exec sleep 3600".into(),
            ]),
            resources: Resources {
                cpu_request_millis: 10,
                cpu_limit_millis: 100,
                memory_request_mb: 16,
                memory_limit_mb: 32,
            },
            health: HealthCheck {
                probe: HealthProbe::Command {
                    command: vec!["test".into(), "-d".into(), "/data".into()],
                },
                interval_secs: 2,
                timeout_secs: 1,
                failure_threshold: 3,
                start_period_secs: 0,
            },
            volume: VolumeSpec {
                size_mb: 64,
                mount_path: "/data".to_string(),
                storage_class: None,
                access_mode: AccessMode::ReadWriteOnce,
            },
            run_as_user: Some(1000),
            ..spec()
        }
    }

    #[tokio::test]
    #[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
    #[allow(clippy::disallowed_methods)] // a test that is its own edge: it reads KUBECONFIG
    async fn real_cluster_round_trip() {
        assert!(
            std::env::var_os("KUBECONFIG").is_some(),
            "set KUBECONFIG to a test cluster"
        );
        let runtime = KubernetesRuntime::connect()
            .await
            .expect("cluster configuration");
        let spec = busybox_spec();

        runtime.ensure_volume(&spec).await.expect("volume");
        runtime.ensure_volume(&spec).await.expect("volume again");
        runtime.deploy(&spec, 1).await.expect("deploy");
        wait_for(&runtime, &spec, Health::Healthy).await;
        let tenant = TenantId::parse(&spec.tenant).expect("a tenant id");
        let logs = runtime
            .logs(&tenant, spec.pod_id, Some(10), None)
            .await
            .expect("logs");
        assert!(logs.contains("berth-ready"), "{logs:?}");

        runtime.restart(&spec).await.expect("restart");
        wait_for(&runtime, &spec, Health::Healthy).await;
        runtime.scale(&spec, 0).await.expect("scale");
        assert_eq!(runtime.health(&spec).await, Ok(Health::Stopped));
        let inventory = runtime.inventory().await.expect("inventory");
        let ours = inventory
            .iter()
            .filter(|o| o.pod_id == Some(spec.pod_id))
            .count();
        assert_eq!(ours, 2, "{inventory:?}");

        runtime
            .delete_workload(&tenant, spec.pod_id)
            .await
            .expect("delete workload");
        runtime
            .delete_volume(&tenant, spec.pod_id)
            .await
            .expect("delete volume");
        runtime
            .delete_workload(&tenant, spec.pod_id)
            .await
            .expect("delete again");
        assert_eq!(runtime.health(&spec).await, Ok(Health::Missing));
    }
}
