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
//!   few a root image's start-up needs ([`berth_adapters::docker::CAPABILITIES`]) —
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
//!
//! Layout: this file holds [`KubernetesRuntime`] and its [`PodRuntime`] methods;
//! `objects` builds the namespace's and the pod's objects around the Deployment that
//! `workload` builds (where the hardening lives); `api` makes the calls beyond a single
//! apply; `reading` turns what the cluster reports into [`Health`] and
//! [`RuntimeObject`]s; `errors` classifies kube errors ([`classify`]); `quota` holds
//! [`TenantQuota`]. The tests play the API server (`fixtures`, a `tower-test` mock) and
//! check each call the runtime makes, in order.

mod api;
mod errors;
#[cfg(test)]
mod fixtures;
mod objects;
mod quota;
mod reading;
#[cfg(test)]
mod tests;
mod workload;

use ::kube::api::Patch;
use ::kube::{Client, ResourceExt};
use async_trait::async_trait;
use berth_schemas::TenantId;
use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde_json::json;
use tracing::{debug, info};
use uuid::Uuid;

pub use self::api::FIELD_MANAGER;
pub use self::errors::{classify, status_code};
pub use self::objects::{env_secret_name, NETWORK_POLICY, RESOURCE_QUOTA};
pub use self::quota::TenantQuota;

use self::api::{apply_params, log_params, post_params};
use self::errors::{api_message, object_path};
use self::objects::{claim, env_secret, service};
use self::reading::{deployment_health, runtime_object};
use self::workload::{deployment, replica_count};
use crate::runtime::{
    volume_name, workload_name, Health, ObjectKind, PodRuntime, RuntimeError, RuntimeObject,
    WorkloadSpec, LABEL_TENANT,
};

/// The pod template annotation `kubectl rollout restart` sets; changing it restarts.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

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

    /// Deletes in the namespace the inventory found the object in: `reading::runtime_object`
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
