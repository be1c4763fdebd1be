//! The Kubernetes objects around a pod's Deployment ([`super::workload`]): the tenant's
//! namespace with its NetworkPolicy and ResourceQuota, and per pod a Secret with its
//! environment, a PersistentVolumeClaim and a Service. Every object carries berth's
//! labels; nothing here talks to the cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Namespace, PersistentVolumeClaim, PersistentVolumeClaimSpec, ResourceQuota, ResourceQuotaSpec,
    Secret, Service, ServicePort, ServiceSpec, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;
use uuid::Uuid;

use super::quota::TenantQuota;
use crate::runtime::{
    namespace, WorkloadSpec, LABEL_MANAGED, LABEL_POD, LABEL_SPEC_HASH, LABEL_TENANT,
};

/// The name of the port a pod's container and Service expose.
pub(super) const PORT_NAME: &str = "main";
/// The NetworkPolicy of every tenant namespace.
pub const NETWORK_POLICY: &str = "berth-isolation";
/// The ResourceQuota of every tenant namespace.
pub const RESOURCE_QUOTA: &str = "berth-quota";
/// The label every namespace carries with its name (Kubernetes ≥ 1.21 sets it).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The labels every object of `tenant` carries.
fn tenant_labels(tenant: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED.to_string(), "true".to_string()),
        (LABEL_TENANT.to_string(), tenant.to_string()),
    ])
}

/// The labels every object of one pod carries.
pub(super) fn pod_labels(spec: &WorkloadSpec) -> BTreeMap<String, String> {
    let mut labels = tenant_labels(&spec.tenant);
    labels.extend(selector(spec.pod_id));
    labels
}

/// The label selecting the Kubernetes pods of one berth pod.
pub(super) fn selector(pod_id: Uuid) -> BTreeMap<String, String> {
    BTreeMap::from([(LABEL_POD.to_string(), pod_id.to_string())])
}

/// The spec hash, as a label and an annotation of the workload.
pub(super) fn spec_hash_map(spec: &WorkloadSpec) -> BTreeMap<String, String> {
    BTreeMap::from([(LABEL_SPEC_HASH.to_string(), spec.spec_hash())])
}

/// The tenant's namespace, labelled as the tenant's.
pub(super) fn namespace_object(tenant: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(namespace(tenant)),
            labels: Some(tenant_labels(tenant)),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// The NetworkPolicy of a tenant namespace: every pod in it accepts traffic only from
/// pods of the same namespace and, if given, of the ingress controller's namespace.
/// Egress is not restricted.
pub(super) fn network_policy(tenant: &str, ingress_namespace: Option<&str>) -> NetworkPolicy {
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

/// The ResourceQuota of a tenant namespace: `quota` as its hard limits.
pub(super) fn resource_quota(tenant: &str, quota: &TenantQuota) -> ResourceQuota {
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
pub(super) fn env_secret(spec: &WorkloadSpec) -> Secret {
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

/// The pod's PersistentVolumeClaim, created once and never resized.
pub(super) fn claim(spec: &WorkloadSpec) -> PersistentVolumeClaim {
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

/// The pod's ClusterIP Service on its port.
pub(super) fn service(spec: &WorkloadSpec) -> Service {
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
