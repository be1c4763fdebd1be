//! The calls to the Kubernetes API that [`KubernetesRuntime`] makes beyond a single
//! apply: the tenant's namespace with its policy and quota, deletes that treat a missing
//! object as done, a pod's newest instance, the cluster-wide inventory lists; and the
//! parameters every call shares (server-side apply as [`FIELD_MANAGER`], log windows).

use ::kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use ::kube::{Resource, ResourceExt};
use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    Namespace, PersistentVolumeClaim, Pod, ResourceQuota, Secret, Service,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use tracing::info;
use uuid::Uuid;

use super::errors::{classify, missing_is_done, object_path};
use super::objects::{
    env_secret_name, namespace_object, network_policy, resource_quota, NETWORK_POLICY,
    RESOURCE_QUOTA,
};
use super::KubernetesRuntime;
use crate::runtime::{
    check_owner, namespace, workload_name, RuntimeError, WorkloadSpec, LABEL_MANAGED, LABEL_POD,
    LABEL_TENANT,
};

/// The field manager of every server-side apply berth makes.
pub const FIELD_MANAGER: &str = "berth";

impl KubernetesRuntime {
    /// The Deployments of the tenant's namespace; the four below likewise.
    pub(super) fn deployments(&self, tenant: &str) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &namespace(tenant))
    }

    pub(super) fn services(&self, tenant: &str) -> Api<Service> {
        Api::namespaced(self.client.clone(), &namespace(tenant))
    }

    pub(super) fn claims(&self, tenant: &str) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), &namespace(tenant))
    }

    pub(super) fn pods(&self, tenant: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &namespace(tenant))
    }

    pub(super) fn secrets(&self, tenant: &str) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &namespace(tenant))
    }

    /// Applies the tenant's namespace with its NetworkPolicy and ResourceQuota. A
    /// namespace of that name labelled as another tenant's (long tenant ids are hashed
    /// into names, and someone may have made it by hand) is refused untouched.
    pub(super) async fn ensure_namespace(&self, tenant: &str) -> Result<(), RuntimeError> {
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
    pub(super) async fn check_existing_claim(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<(), RuntimeError> {
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

    /// Deletes a workload's Deployment and Service, and the Secret of a berth pod's;
    /// what is already gone counts as deleted.
    pub(super) async fn delete_workload_named(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<(), RuntimeError> {
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

    /// Deletes a PersistentVolumeClaim; one already gone counts as deleted.
    pub(super) async fn delete_claim_named(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<(), RuntimeError> {
        let deleted = self
            .claims(tenant)
            .delete(name, &DeleteParams::default())
            .await;
        missing_is_done(deleted, &object_path("persistentvolumeclaim", tenant, name))?;
        info!(tenant, name, "volume deleted");
        Ok(())
    }

    /// Patches the spec's Deployment in place (restart, scale).
    pub(super) async fn patch_deployment(
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

    /// The most recently created Kubernetes pod of a berth pod, if any.
    pub(super) async fn newest_pod(
        &self,
        tenant: &str,
        pod_id: Uuid,
    ) -> Result<Option<Pod>, RuntimeError> {
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

    /// Every object of kind `K` labelled as berth's, in all namespaces.
    pub(super) async fn list_managed<K>(&self, what: &str) -> Result<Vec<K>, RuntimeError>
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

/// Server-side apply as [`FIELD_MANAGER`], taking over fields others set.
pub(super) fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// A create recorded as [`FIELD_MANAGER`]'s.
pub(super) fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    }
}

/// The log of the pod's first container: the last `tail` lines, those since `since`.
pub(super) fn log_params(
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
pub(super) fn seconds_since(since: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    let millis = (now - since).num_milliseconds();
    millis.saturating_add(999).div_euclid(1000).max(1)
}
