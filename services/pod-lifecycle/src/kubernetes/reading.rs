//! The cluster's objects read back in berth's terms: a Deployment's [`Health`] and an
//! inventoried [`RuntimeObject`].

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use uuid::Uuid;

use crate::runtime::{namespace, Health, ObjectKind, RuntimeObject, LABEL_POD, LABEL_TENANT};

/// Stopped at 0 replicas, healthy once one is ready, unhealthy on a failure condition,
/// else starting.
pub(super) fn deployment_health(deployment: &Deployment) -> Health {
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

/// A rollout that stopped progressing or failed to create a replica.
fn is_failure(condition: &DeploymentCondition) -> bool {
    matches!(
        (condition.type_.as_deref(), condition.status.as_deref()),
        (Some("Progressing"), Some("False")) | (Some("ReplicaFailure"), Some("True"))
    )
}

/// A failure condition's reason and message.
fn describe(condition: &DeploymentCondition) -> String {
    let fallback = condition.type_.as_deref().unwrap_or("deployment failure");
    let reason = condition.reason.as_deref().unwrap_or(fallback);
    match condition.message.as_deref() {
        Some(message) => format!("{reason}: {message}"),
        None => reason.to_string(),
    }
}

/// An inventoried object. Its tenant is its label's only if the object lives in that
/// tenant's namespace: a label naming another tenant (made by hand) must not send a
/// removal into that tenant's namespace.
pub(super) fn runtime_object(kind: ObjectKind, metadata: &ObjectMeta) -> RuntimeObject {
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
