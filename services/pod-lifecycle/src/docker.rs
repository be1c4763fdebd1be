//! `docker`: a [`PodRuntime`] on one Docker engine. A pod is the container
//! `berth-pod-<id>` with the named volume `berth-vol-<id>` mounted at the catalog's path,
//! the catalog's CPU and memory limits, a Docker health check from the catalog's probe,
//! and these labels (on the container; the volume has all but the spec hash, and
//! `berth.size_mb`):
//!
//! | label             | value                                   |
//! |-------------------|-----------------------------------------|
//! | `berth.managed`   | `true`                                  |
//! | `berth.tenant`    | the owning tenant                       |
//! | `berth.id`        | the pod id                              |
//! | `berth.pod`       | the pod id (older name, kept)           |
//! | `berth.scope`     | the installation (see [`LABEL_SCOPE`])  |
//! | `berth.spec-hash` | hash of the spec; another one redeploys |
//!
//! Ownership (see [`crate::runtime`]): before it adopts (look before create), mounts,
//! starts, stops, restarts, reads or removes a container or volume, the runtime inspects
//! it and refuses one whose `berth.tenant` is another tenant's, or missing, with a
//! permanent `conflict: …`; containers are then acted on by the id inspected. A deploy
//! mounts only a volume that exists and is the tenant's (Docker would otherwise make a
//! missing one, unlabelled, or mount another tenant's).
//!
//! Hardening and networking are the provisioner's, shared:
//! [`berth_adapters::docker::harden`] (pids limit, capabilities, no-new-privileges)
//! and [`NetworkMode`] (the tenant's own network `berth-net-<tenant>` by default, or
//! `none`; shared networks and the host's refused).
//!
//! An HTTP probe runs `wget` inside the container against the pod's port (as any Docker
//! `HEALTHCHECK` would; the image needs `wget`). Volumes of the `local` driver have no size
//! limit: the size is recorded as the label `berth.size_mb`. Errors are classified as the
//! provisioner's Docker provider does.

use std::collections::HashMap;

use async_trait::async_trait;
use berth_adapters::docker::{classify, harden, NetworkMode, TenantNetworks};
use berth_adapters::error::ProviderError;
use berth_schemas::TenantId;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, HealthConfig, HealthStatusEnum, HostConfig,
    Mount, MountType, Volume, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListVolumesOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
    RestartContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use uuid::Uuid;

use crate::runtime::{
    changed_hands, check_owner, volume_name, workload_name, Health, HealthProbe, ObjectKind,
    PodRuntime, RuntimeError, RuntimeObject, WorkloadSpec, LABEL_ID, LABEL_MANAGED, LABEL_POD,
    LABEL_SPEC_HASH, LABEL_TENANT,
};

/// Label holding the volume's size in MiB, which the local driver does not enforce.
pub const LABEL_SIZE_MB: &str = "berth.size_mb";
/// Seconds a stop or restart waits after SIGTERM before it kills the container.
const STOP_TIMEOUT_SECS: i32 = 10;
const ENGINE: &str = "the engine";

/// Label naming the berth installation that owns the object: one engine can serve
/// several installations (or test runs) without one taking the other's pods for orphans.
pub const LABEL_SCOPE: &str = "berth.scope";

/// How pod containers are wired.
#[derive(Debug, Clone)]
pub struct DockerRuntimeConfig {
    /// The installation's [`LABEL_SCOPE`]; `inventory` sees only objects carrying it.
    pub scope: String,
    /// The containers' networking, as [`NetworkMode::parse`] reads it: unset or
    /// `tenant` for an internal network per tenant, `tenant-external` for one with a
    /// route out, `none` (an engine started with `--bridge=none` or without iptables).
    /// The host network and shared networks are refused.
    pub network_mode: Option<String>,
}

/// Pods as containers with named volumes on one Docker engine.
pub struct DockerRuntime {
    docker: Docker,
    config: DockerRuntimeConfig,
    networks: TenantNetworks,
}

impl From<ProviderError> for RuntimeError {
    fn from(error: ProviderError) -> Self {
        match error {
            ProviderError::Transient(reason) => Self::Transient(reason),
            ProviderError::Permanent(reason) => Self::Permanent(reason),
            ProviderError::NotFound(name) => Self::NotFound(name),
        }
    }
}

fn docker_error(name: &str, error: DockerError) -> RuntimeError {
    classify(name, error).into()
}

/// `Ok(())` for a 404: the thing is already gone.
fn gone_is_fine(name: &str, result: Result<(), DockerError>) -> Result<(), RuntimeError> {
    match result.map_err(|error| docker_error(name, error)) {
        Err(RuntimeError::NotFound(_)) => Ok(()),
        other => other,
    }
}

/// `Ok(None)` for a 404.
fn missing_is_none<T>(
    name: &str,
    result: Result<T, DockerError>,
) -> Result<Option<T>, RuntimeError> {
    match result {
        Ok(found) => Ok(Some(found)),
        Err(error) => match docker_error(name, error) {
            RuntimeError::NotFound(_) => Ok(None),
            other => Err(other),
        },
    }
}

/// The owner an inspected container records.
fn container_owner(container: &ContainerInspectResponse) -> Option<&str> {
    container
        .config
        .as_ref()
        .and_then(|config| config.labels.as_ref())
        .and_then(|labels| labels.get(LABEL_TENANT))
        .map(String::as_str)
}

/// The owner an inspected volume records.
fn volume_owner(volume: &Volume) -> Option<&str> {
    volume.labels.get(LABEL_TENANT).map(String::as_str)
}

/// The id of an inspected container.
fn container_id(name: &str, container: &ContainerInspectResponse) -> Result<String, RuntimeError> {
    container
        .id
        .clone()
        .ok_or_else(|| RuntimeError::Transient(format!("the engine reported {name} without an id")))
}

impl DockerRuntime {
    /// Connects to the engine named by `DOCKER_HOST` (else the default socket) and agrees
    /// on an API version with it. A refused network mode fails here.
    pub async fn connect(config: DockerRuntimeConfig) -> Result<Self, RuntimeError> {
        let mode = NetworkMode::parse(config.network_mode.as_deref())?;
        let docker = Docker::connect_with_defaults().map_err(|e| docker_error(ENGINE, e))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| docker_error(ENGINE, e))?;
        Ok(Self {
            networks: TenantNetworks::new(docker.clone(), mode),
            docker,
            config,
        })
    }

    /// The container `name`, whoever owns it.
    async fn inspect(&self, name: &str) -> Result<Option<ContainerInspectResponse>, RuntimeError> {
        missing_is_none(name, self.docker.inspect_container(name, None).await)
    }

    /// The container `name` if it is `tenant`'s; `None` if there is none; a conflict if
    /// it is another tenant's or no one's.
    async fn owned_container(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<ContainerInspectResponse>, RuntimeError> {
        let Some(container) = self.inspect(name).await? else {
            return Ok(None);
        };
        check_owner(
            &format!("workload {name}"),
            container_owner(&container),
            tenant,
        )?;
        Ok(Some(container))
    }

    /// The id of `tenant`'s container `name`; [`RuntimeError::NotFound`] if missing.
    async fn owned_container_id(&self, tenant: &str, name: &str) -> Result<String, RuntimeError> {
        let container = self
            .owned_container(tenant, name)
            .await?
            .ok_or_else(|| RuntimeError::NotFound(name.to_owned()))?;
        container_id(name, &container)
    }

    /// The volume `name` if it is `tenant`'s; `None` if there is none; a conflict if it
    /// is another tenant's or no one's.
    async fn owned_volume(&self, tenant: &str, name: &str) -> Result<Option<Volume>, RuntimeError> {
        let Some(volume) = missing_is_none(name, self.docker.inspect_volume(name).await)? else {
            return Ok(None);
        };
        check_owner(&format!("volume {name}"), volume_owner(&volume), tenant)?;
        Ok(Some(volume))
    }

    fn create_body(&self, spec: &WorkloadSpec, network_mode: String) -> ContainerCreateBody {
        let labels = HashMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_TENANT.to_owned(), spec.tenant.clone()),
            (LABEL_ID.to_owned(), spec.pod_id.to_string()),
            (LABEL_POD.to_owned(), spec.pod_id.to_string()),
            (LABEL_SCOPE.to_owned(), self.config.scope.clone()),
            (LABEL_SPEC_HASH.to_owned(), spec.spec_hash()),
        ]);
        let memory = i64::from(spec.resources.memory_limit_mb) * 1024 * 1024;
        let nanos = |secs: u32| i64::from(secs) * 1_000_000_000;
        let test = match &spec.health.probe {
            HealthProbe::Http { path } => vec![
                "CMD".to_owned(),
                "wget".to_owned(),
                "-q".to_owned(),
                "-O".to_owned(),
                "/dev/null".to_owned(),
                format!("http://127.0.0.1:{}{path}", spec.port),
            ],
            HealthProbe::Command { command } => std::iter::once("CMD".to_owned())
                .chain(command.iter().cloned())
                .collect(),
        };
        let mut host_config = HostConfig {
            nano_cpus: Some(i64::from(spec.resources.cpu_limit_millis) * 1_000_000),
            memory: Some(memory),
            memory_swap: Some(memory),
            memory_reservation: Some(i64::from(spec.resources.memory_request_mb) * 1024 * 1024),
            network_mode: Some(network_mode),
            mounts: Some(vec![Mount {
                target: Some(spec.volume.mount_path.clone()),
                source: Some(spec.volume_name()),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            }]),
            ..Default::default()
        };
        harden(&mut host_config);
        ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: spec.command.clone(),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(labels),
            exposed_ports: Some(vec![format!("{}/tcp", spec.port)]),
            healthcheck: Some(HealthConfig {
                test: Some(test),
                interval: Some(nanos(spec.health.interval_secs)),
                timeout: Some(nanos(spec.health.timeout_secs)),
                retries: Some(i64::from(spec.health.failure_threshold)),
                start_period: Some(nanos(spec.health.start_period_secs)),
                start_interval: None,
            }),
            host_config: Some(host_config),
            ..Default::default()
        }
    }

    async fn create_container(&self, spec: &WorkloadSpec) -> Result<(), RuntimeError> {
        let name = spec.workload_name();
        let network_mode = self.networks.network_for(&spec.tenant).await?;
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        match self
            .docker
            .create_container(Some(options), self.create_body(spec, network_mode))
            .await
        {
            // 409: a concurrent deploy made it first (the caller checks whose it is).
            Ok(_)
            | Err(DockerError::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(error) => Err(docker_error(&name, error)),
        }
    }

    /// Starts (`replicas` 1) or stops (0) the container `id` called `name`.
    async fn set_running(&self, name: &str, id: &str, replicas: u32) -> Result<(), RuntimeError> {
        if replicas == 1 {
            // A running container answers 304, which bollard reports as success.
            self.docker
                .start_container(id, None)
                .await
                .map_err(|e| docker_error(name, e))
        } else {
            let options = StopContainerOptionsBuilder::new()
                .t(STOP_TIMEOUT_SECS)
                .build();
            self.docker
                .stop_container(id, Some(options))
                .await
                .map_err(|e| docker_error(name, e))
        }
    }

    async fn remove_container(&self, name: &str, id: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptionsBuilder::new().force(true).build();
        gone_is_fine(name, self.docker.remove_container(id, Some(options)).await)
    }

    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        let options = RemoveVolumeOptionsBuilder::new().force(false).build();
        match self.docker.remove_volume(name, Some(options)).await {
            // 409: still mounted by a container that is being removed.
            Err(DockerError::DockerResponseServerError {
                status_code: 409,
                message,
            }) => Err(RuntimeError::Transient(format!("volume {name}: {message}"))),
            other => gone_is_fine(name, other),
        }
    }
}

fn label(labels: Option<&HashMap<String, String>>, key: &str) -> Option<String> {
    labels.and_then(|labels| labels.get(key).cloned())
}

/// The pod id in a berth name (`berth-pod-<id>`, `berth-vol-<id>`).
fn pod_id_in(name: &str, prefix: &str) -> Option<Uuid> {
    name.strip_prefix(prefix).and_then(|id| id.parse().ok())
}

#[async_trait]
impl PodRuntime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn ensure_volume(&self, spec: &WorkloadSpec) -> Result<String, RuntimeError> {
        let name = spec.volume_name();
        if self.owned_volume(&spec.tenant, &name).await?.is_some() {
            return Ok(name);
        }
        let request = VolumeCreateRequest {
            name: Some(name.clone()),
            labels: Some(HashMap::from([
                (LABEL_MANAGED.to_owned(), "true".to_owned()),
                (LABEL_TENANT.to_owned(), spec.tenant.clone()),
                (LABEL_ID.to_owned(), spec.pod_id.to_string()),
                (LABEL_POD.to_owned(), spec.pod_id.to_string()),
                (LABEL_SCOPE.to_owned(), self.config.scope.clone()),
                (LABEL_SIZE_MB.to_owned(), spec.volume.size_mb.to_string()),
            ])),
            ..Default::default()
        };
        // Creating a volume that exists (a concurrent create) returns it unchanged, with
        // its own labels: whose it is is checked again.
        let volume = self
            .docker
            .create_volume(request)
            .await
            .map_err(|e| docker_error(&name, e))?;
        check_owner(
            &format!("volume {name}"),
            volume_owner(&volume),
            &spec.tenant,
        )?;
        Ok(name)
    }

    async fn delete_volume(&self, tenant: &TenantId, pod_id: Uuid) -> Result<(), RuntimeError> {
        let name = volume_name(pod_id);
        match self.owned_volume(tenant.as_str(), &name).await? {
            None => Ok(()),
            Some(_) => self.remove_volume(&name).await,
        }
    }

    async fn deploy(&self, spec: &WorkloadSpec, replicas: u32) -> Result<String, RuntimeError> {
        let name = spec.workload_name();
        if self
            .owned_volume(&spec.tenant, &spec.volume_name())
            .await?
            .is_none()
        {
            return Err(RuntimeError::Permanent(format!(
                "volume {} does not exist",
                spec.volume_name()
            )));
        }
        let existing = self.owned_container(&spec.tenant, &name).await?;
        let same_spec = existing.as_ref().is_some_and(|container| {
            label(
                container.config.as_ref().and_then(|c| c.labels.as_ref()),
                LABEL_SPEC_HASH,
            ) == Some(spec.spec_hash())
        });
        if let (Some(container), false) = (&existing, same_spec) {
            self.remove_container(&name, &container_id(&name, container)?)
                .await?;
        }
        if !same_spec {
            self.create_container(spec).await?;
        }
        let id = self.owned_container_id(&spec.tenant, &name).await?;
        self.set_running(&name, &id, replicas).await?;
        Ok(name)
    }

    async fn restart(&self, spec: &WorkloadSpec) -> Result<(), RuntimeError> {
        let name = spec.workload_name();
        let id = self.owned_container_id(&spec.tenant, &name).await?;
        let options = RestartContainerOptionsBuilder::new()
            .t(STOP_TIMEOUT_SECS)
            .build();
        self.docker
            .restart_container(&id, Some(options))
            .await
            .map_err(|e| docker_error(&name, e))
    }

    async fn scale(&self, spec: &WorkloadSpec, replicas: u32) -> Result<(), RuntimeError> {
        let name = spec.workload_name();
        let id = self.owned_container_id(&spec.tenant, &name).await?;
        self.set_running(&name, &id, replicas).await
    }

    async fn delete_workload(&self, tenant: &TenantId, pod_id: Uuid) -> Result<(), RuntimeError> {
        let name = workload_name(pod_id);
        match self.owned_container(tenant.as_str(), &name).await? {
            None => Ok(()),
            Some(container) => {
                self.remove_container(&name, &container_id(&name, &container)?)
                    .await
            }
        }
    }

    async fn health(&self, spec: &WorkloadSpec) -> Result<Health, RuntimeError> {
        let Some(container) = self
            .owned_container(&spec.tenant, &spec.workload_name())
            .await?
        else {
            return Ok(Health::Missing);
        };
        let state = container.state.unwrap_or_default();
        if state.running != Some(true) {
            return Ok(Health::Stopped);
        }
        let health = state.health.unwrap_or_default();
        Ok(match health.status {
            Some(HealthStatusEnum::HEALTHY) | Some(HealthStatusEnum::NONE) => Health::Healthy,
            Some(HealthStatusEnum::UNHEALTHY) => {
                let last = health
                    .log
                    .and_then(|log| log.into_iter().last())
                    .and_then(|result| result.output)
                    .unwrap_or_default();
                Health::Unhealthy(format!(
                    "health check failing ({} times): {}",
                    health.failing_streak.unwrap_or(0),
                    last.trim().chars().take(200).collect::<String>()
                ))
            }
            _ => Health::Starting,
        })
    }

    async fn logs(
        &self,
        tenant: &TenantId,
        pod_id: Uuid,
        tail: Option<u32>,
        since: Option<DateTime<Utc>>,
    ) -> Result<String, RuntimeError> {
        let name = workload_name(pod_id);
        let id = self.owned_container_id(tenant.as_str(), &name).await?;
        let tail = tail.map_or_else(|| "all".to_owned(), |tail| tail.to_string());
        let since = since.map_or(0, |at| i32::try_from(at.timestamp()).unwrap_or(i32::MAX));
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail(&tail)
            .since(since)
            .build();
        let mut output = Vec::new();
        let mut frames = self.docker.logs(&id, Some(options));
        while let Some(frame) = frames.next().await {
            match frame.map_err(|e| docker_error(&name, e))? {
                LogOutput::StdOut { message }
                | LogOutput::StdErr { message }
                | LogOutput::Console { message } => output.extend_from_slice(&message),
                LogOutput::StdIn { .. } => {}
            }
        }
        Ok(String::from_utf8_lossy(&output).into_owned())
    }

    /// Every container and volume of this installation's scope named like berth's.
    async fn inventory(&self) -> Result<Vec<RuntimeObject>, RuntimeError> {
        let scope = format!("{LABEL_SCOPE}={}", self.config.scope);
        let by_name = |prefix: &str| {
            HashMap::from([
                ("name", vec![prefix.to_owned()]),
                ("label", vec![scope.clone()]),
            ])
        };
        let containers = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&by_name("berth-pod-"))
                    .build(),
            ))
            .await
            .map_err(|e| docker_error(ENGINE, e))?;
        let volumes = self
            .docker
            .list_volumes(Some(
                ListVolumesOptionsBuilder::new()
                    .filters(&by_name("berth-vol-"))
                    .build(),
            ))
            .await
            .map_err(|e| docker_error(ENGINE, e))?;
        let workloads = containers.into_iter().filter_map(|container| {
            let name = container.names.as_ref()?.first()?;
            let name = name.strip_prefix('/').unwrap_or(name).to_owned();
            // The name filter matches anywhere in the name.
            let pod_id = pod_id_in(&name, "berth-pod-");
            name.starts_with("berth-pod-").then(|| RuntimeObject {
                kind: ObjectKind::Workload,
                tenant: label(container.labels.as_ref(), LABEL_TENANT),
                pod_id,
                name,
            })
        });
        let volumes = volumes
            .volumes
            .unwrap_or_default()
            .into_iter()
            .filter(|volume| volume.name.starts_with("berth-vol-"))
            .map(|volume| RuntimeObject {
                kind: ObjectKind::Volume,
                tenant: volume.labels.get(LABEL_TENANT).cloned(),
                pod_id: pod_id_in(&volume.name, "berth-vol-"),
                name: volume.name,
            });
        Ok(workloads.chain(volumes).collect())
    }

    async fn remove(&self, object: &RuntimeObject) -> Result<(), RuntimeError> {
        match object.kind {
            ObjectKind::Workload => {
                let Some(container) = self.inspect(&object.name).await? else {
                    return Ok(());
                };
                let now = container_owner(&container);
                if now != object.tenant.as_deref() {
                    return Err(changed_hands(object, now));
                }
                self.remove_container(&object.name, &container_id(&object.name, &container)?)
                    .await
            }
            ObjectKind::Volume => {
                let inspected = self.docker.inspect_volume(&object.name).await;
                let Some(volume) = missing_is_none(&object.name, inspected)? else {
                    return Ok(());
                };
                let now = volume_owner(&volume);
                if now != object.tenant.as_deref() {
                    return Err(changed_hands(object, now));
                }
                self.remove_volume(&object.name).await
            }
        }
    }
}
