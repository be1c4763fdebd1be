//! The Deployment that runs a pod: one replica or none, replaced on change (`Recreate`,
//! the volume mounts once), its container reading the environment from the pod's
//! Secret and hardened as the module overview describes, with the spec's resources and
//! health probes. Nothing here talks to the cluster.

use std::collections::BTreeMap;

use berth_adapters::docker::CAPABILITIES;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvFromSource, ExecAction, HTTPGetAction,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretEnvSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::objects::{env_secret_name, pod_labels, selector, spec_hash_map, PORT_NAME};
use crate::runtime::{namespace, HealthCheck, HealthProbe, Resources, RuntimeError, WorkloadSpec};

const DATA_VOLUME: &str = "data";

/// A berth pod runs 0 or 1 replicas; more is refused.
pub(super) fn replica_count(replicas: u32) -> Result<i32, RuntimeError> {
    match replicas {
        0 => Ok(0),
        1 => Ok(1),
        n => Err(RuntimeError::Permanent(format!(
            "{n} replicas asked for: a berth pod runs 0 or 1 (its volume mounts once)"
        ))),
    }
}

/// Seconds as the API's `i32`, capped at its maximum.
fn seconds(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// The pod's Deployment with `replicas` (0 or 1), replaced on change (`Recreate`).
pub(super) fn deployment(spec: &WorkloadSpec, replicas: i32) -> Deployment {
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

/// The pod template: the container and its volume, with no service account token and
/// no service links in the environment.
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

/// The container: image, command, port, environment from the pod's Secret, probes.
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

/// The spec's CPU and memory requests and limits.
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
pub(super) fn probe(check: &HealthCheck, port: i32, initial_delay_secs: u32) -> Probe {
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
