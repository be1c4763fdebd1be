//! `docker`: a [`VmProvider`] that runs each VM as a container on one Docker engine.
//!
//! A VM is the container `berth-vm-<id>` ([`MachineSpec::machine_name`]) made from the
//! spec's image, limited to its vCPUs (`NanoCpus`) and memory (`Memory`, with
//! `MemorySwap` equal to it: no swap beyond the VM's memory), and labelled so that
//! [`DockerProvider::list`] finds exactly berth's machines:
//!
//! | label            | value                                   |
//! |------------------|-----------------------------------------|
//! | `berth.managed`  | `true`                                  |
//! | `berth.tenant`   | the owning tenant                       |
//! | `berth.id`       | the VM id                               |
//! | `berth.vm`       | the VM id (older name, kept)            |
//! | `berth.host`     | the placement host from the spec        |
//! | `berth.disk_gb`  | the requested disk size (not enforced)  |
//!
//! # Ownership
//!
//! The name is keyed by the VM id alone, so the tenant lives in `berth.tenant` and is
//! checked before every act (see [`crate::provider`]): create (look before create),
//! start, stop, restart, resize, exec and destroy inspect the container first and refuse
//! one of another tenant, or one without the label, with a permanent `conflict: …`
//! error; then they act on the container *id* they inspected, so a container swapped in
//! under the same name meanwhile is not the one touched.
//!
//! # Hardening
//!
//! Tenants' code runs in these containers. Each gets [`harden`]: at most [`PIDS_LIMIT`]
//! processes (a fork bomb stays inside its VM), every capability dropped but the few in
//! [`CAPABILITIES`], and `no-new-privileges` (setuid binaries gain nothing). Networking
//! is [`NetworkMode`]: by default a bridge network per tenant, `berth-net-<tenant>`
//! (labelled, internal — no route out — unless `tenant-external`), so no two tenants
//! share a network; or `none`. The host network and other shared networks are refused
//! when the provider is configured. Note: the isolation between two tenant networks is
//! the engine's (its iptables rules); an engine run with `--iptables=false`, like the
//! one `infra/docker-up.sh` starts, creates the networks but routes between them, so on
//! such an engine use `none` (as the tests and the README do).
//!
//! Every call maps the engine's answer onto [`ProviderError`] in one place, `classify`:
//! 404 is [`ProviderError::NotFound`] (except a missing image, which is permanent),
//! connection failures, timeouts and 5xx are transient, other 4xx are permanent.
//!
//! The engine is found the way the `docker` CLI finds it (`DOCKER_HOST`, else the default
//! socket). `infra/docker-up.sh` starts one and `infra/build-test-image.sh` builds the
//! image the integration tests use (`tests/tests/docker_provider.rs`).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use berth_schemas::TenantId;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerSummary, ContainerSummaryStateEnum,
    ContainerUpdateBody, HostConfig,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    RestartContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures::StreamExt;

pub use berth_adapters::docker::{
    classify, harden, tenant_network, NetworkMode, TenantNetworks, CAPABILITIES, LABEL_ID,
    LABEL_MANAGED, LABEL_TENANT, NETWORK_PREFIX, PIDS_LIMIT, SECURITY_OPT,
};

use crate::provider::{
    changed_hands, check_owner, ExecOutput, Machine, MachineSpec, PowerState, ProviderError,
    VmProvider,
};

/// Label holding the VM id (the older name of [`LABEL_ID`], still written).
pub const LABEL_VM: &str = "berth.vm";
/// Label holding the placement host the VM was created for.
pub const LABEL_HOST: &str = "berth.host";
/// Label holding the requested disk size in GB, which the engine does not enforce.
pub const LABEL_DISK_GB: &str = "berth.disk_gb";

/// What errors about the engine itself, rather than one machine, name.
const ENGINE: &str = "the engine";

/// Seconds a stop or restart waits after SIGTERM before it kills the container.
const STOP_TIMEOUT_SECS: i32 = 10;

/// Which engine to use and how its containers are wired.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// The server name this engine is registered as; reported as every machine's host.
    pub host_name: String,
    /// The containers' networking, as [`NetworkMode::parse`] reads it: unset or `tenant`
    /// for an internal network per tenant, `tenant-external` for one with a route out,
    /// `none` for no network (an engine started with `--bridge=none`, or without
    /// iptables). Anything shared (`host`, `bridge`, a named network) is refused.
    pub network_mode: Option<String>,
}

/// VMs as containers on one Docker engine.
///
/// Disk size cannot be enforced: the vfs and overlay storage drivers only support a size
/// limit (`--storage-opt size=`) on filesystems with project quotas, so the requested size
/// is only recorded, as the label [`LABEL_DISK_GB`].
pub struct DockerProvider {
    docker: Docker,
    config: DockerConfig,
    networks: TenantNetworks,
}

/// A container as inspected: its id and owner.
struct Found {
    id: String,
    tenant: Option<String>,
    running: bool,
}

impl DockerProvider {
    /// Connects to the engine named by `DOCKER_HOST` (else the default socket) and agrees
    /// on an API version with it. A refused network mode fails here.
    pub async fn connect(config: DockerConfig) -> Result<Self, ProviderError> {
        let mode = NetworkMode::parse(config.network_mode.as_deref())?;
        // A missing socket is transient (the engine may not be up yet), a malformed
        // address permanent.
        let docker = Docker::connect_with_defaults().map_err(|error| classify(ENGINE, error))?;
        // bollard speaks the newest API version by default, which older engines refuse
        // (Debian 12's dockerd 20.10 speaks 1.41): settle on the engine's version.
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|error| classify(ENGINE, error))?;
        Ok(Self {
            networks: TenantNetworks::new(docker.clone(), mode),
            docker,
            config,
        })
    }

    /// The engine's CPUs and memory in MB, to register it as a server.
    pub async fn engine_capacity(&self) -> Result<(u32, u32), ProviderError> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|error| classify(ENGINE, error))?;
        let vcpus = info.ncpu.unwrap_or(0);
        let memory_mb = info.mem_total.unwrap_or(0) / (1024 * 1024);
        Ok((saturating_u32(vcpus), saturating_u32(memory_mb)))
    }

    async fn exec_to_end(
        &self,
        name: &str,
        id: &str,
        command: &[String],
    ) -> Result<ExecOutput, ProviderError> {
        let options = CreateExecOptions {
            cmd: Some(command.to_vec()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let exec = match self.docker.create_exec(id, options).await {
            Ok(exec) => exec,
            // 409: "Container … is not running" (or paused, or restarting).
            Err(DockerError::DockerResponseServerError {
                status_code: 409, ..
            }) => {
                return Err(ProviderError::Permanent(format!(
                    "vm {name} is not running"
                )))
            }
            Err(error) => return Err(classify(name, error)),
        };
        let started = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(|error| classify(name, error))?;
        let StartExecResults::Attached { mut output, .. } = started else {
            return Err(ProviderError::Permanent(format!(
                "exec in {name} started detached"
            )));
        };
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        while let Some(frame) = output.next().await {
            match frame.map_err(|error| classify(name, error))? {
                LogOutput::StdErr { message } => stderr.extend_from_slice(&message),
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    stdout.extend_from_slice(&message)
                }
                LogOutput::StdIn { .. } => {}
            }
        }
        // The engine records the exit code before it closes the output; should an engine
        // answer in between, ask again (bounded by the caller's timeout).
        let exit_code = loop {
            let inspected = self
                .docker
                .inspect_exec(&exec.id)
                .await
                .map_err(|error| classify(name, error))?;
            match (inspected.running, inspected.exit_code) {
                (Some(false) | None, Some(code)) => break code,
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        Ok(ExecOutput {
            exit_code,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }

    fn create_body(&self, spec: &MachineSpec, network_mode: String) -> ContainerCreateBody {
        let labels = HashMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_TENANT.to_owned(), spec.tenant.to_string()),
            (LABEL_ID.to_owned(), spec.vm_id.to_string()),
            (LABEL_VM.to_owned(), spec.vm_id.to_string()),
            (LABEL_HOST.to_owned(), spec.host.clone()),
            (LABEL_DISK_GB.to_owned(), spec.disk_gb.to_string()),
        ]);
        let (nano_cpus, memory) = limits(spec);
        let mut host_config = HostConfig {
            nano_cpus: Some(nano_cpus),
            memory: Some(memory),
            memory_swap: Some(memory),
            network_mode: Some(network_mode),
            ..Default::default()
        };
        harden(&mut host_config);
        ContainerCreateBody {
            image: Some(spec.image.clone()),
            labels: Some(labels),
            host_config: Some(host_config),
            ..Default::default()
        }
    }

    fn machine(&self, name: &str, found: &Found) -> Machine {
        Machine {
            name: name.to_owned(),
            host: self.config.host_name.clone(),
            power: if found.running {
                PowerState::Running
            } else {
                PowerState::Stopped
            },
            tenant: found.tenant.clone(),
        }
    }

    /// The container called `name`, whoever owns it.
    async fn find(&self, name: &str) -> Result<Option<Found>, ProviderError> {
        match self.docker.inspect_container(name, None).await {
            Ok(container) => Ok(Some(found(name, container)?)),
            Err(error) => match classify(name, error) {
                ProviderError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    /// The container called `name` if it is `tenant`'s; `None` if there is none; a
    /// conflict if it is another tenant's or no one's.
    async fn find_owned(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<Option<Found>, ProviderError> {
        let Some(found) = self.find(name).await? else {
            return Ok(None);
        };
        check_owner(&format!("machine {name}"), found.tenant.as_deref(), tenant)?;
        Ok(Some(found))
    }

    /// Like [`Self::find_owned`], and a missing container is [`ProviderError::NotFound`].
    async fn owned(&self, tenant: &TenantId, name: &str) -> Result<Found, ProviderError> {
        self.find_owned(tenant, name)
            .await?
            .ok_or_else(|| ProviderError::NotFound(name.to_owned()))
    }

    /// Removes the container `id` (called `name`) and its anonymous volumes.
    async fn remove(&self, name: &str, id: &str) -> Result<(), ProviderError> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            // 409: "removal of container … is already in progress".
            Err(DockerError::DockerResponseServerError {
                status_code: 409,
                message,
            }) => Err(ProviderError::Transient(format!(
                "destroy of {name}: {message}"
            ))),
            Err(error) => match classify(name, error) {
                ProviderError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }
}

/// The id, owner and state of an inspected container.
fn found(name: &str, container: ContainerInspectResponse) -> Result<Found, ProviderError> {
    let id = container.id.ok_or_else(|| {
        ProviderError::Transient(format!("the engine reported {name} without an id"))
    })?;
    Ok(Found {
        id,
        tenant: container
            .config
            .and_then(|config| config.labels)
            .and_then(|mut labels| labels.remove(LABEL_TENANT)),
        running: container
            .state
            .and_then(|state| state.running)
            .unwrap_or(false),
    })
}

#[async_trait]
impl VmProvider for DockerProvider {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn create(&self, spec: &MachineSpec) -> Result<Machine, ProviderError> {
        let name = spec.machine_name();
        if let Some(found) = self.find_owned(&spec.tenant, &name).await? {
            return Ok(self.machine(&name, &found));
        }
        let network_mode = self.networks.network_for(spec.tenant.as_str()).await?;
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        match self
            .docker
            .create_container(Some(options), self.create_body(spec, network_mode))
            .await
        {
            // 409: a concurrent create got there first; report its container, if it is
            // this tenant's.
            Ok(_)
            | Err(DockerError::DockerResponseServerError {
                status_code: 409, ..
            }) => {}
            Err(error) => return Err(classify(&name, error)),
        }
        let found = self.find_owned(&spec.tenant, &name).await?.ok_or_else(|| {
            ProviderError::Transient(format!("{name} disappeared right after create"))
        })?;
        Ok(self.machine(&name, &found))
    }

    async fn start(&self, tenant: &TenantId, name: &str) -> Result<(), ProviderError> {
        let found = self.owned(tenant, name).await?;
        // An already running container answers 304, which bollard reports as success.
        self.docker
            .start_container(&found.id, None)
            .await
            .map_err(|error| classify(name, error))
    }

    async fn stop(&self, tenant: &TenantId, name: &str) -> Result<(), ProviderError> {
        let found = self.owned(tenant, name).await?;
        // An already stopped container answers 304, which bollard reports as success.
        let options = StopContainerOptionsBuilder::new()
            .t(STOP_TIMEOUT_SECS)
            .build();
        self.docker
            .stop_container(&found.id, Some(options))
            .await
            .map_err(|error| classify(name, error))
    }

    async fn restart(&self, tenant: &TenantId, name: &str) -> Result<(), ProviderError> {
        let found = self.owned(tenant, name).await?;
        let options = RestartContainerOptionsBuilder::new()
            .t(STOP_TIMEOUT_SECS)
            .build();
        self.docker
            .restart_container(&found.id, Some(options))
            .await
            .map_err(|error| classify(name, error))
    }

    /// Sets the container's CPU and memory limits. Its labels keep the sizes it was
    /// created with: the engine cannot change labels.
    async fn resize(&self, spec: &MachineSpec) -> Result<(), ProviderError> {
        let name = spec.machine_name();
        let found = self.owned(&spec.tenant, &name).await?;
        if found.running {
            return Err(ProviderError::Permanent(format!(
                "{name} must be stopped to resize"
            )));
        }
        let (nano_cpus, memory) = limits(spec);
        let update = ContainerUpdateBody {
            nano_cpus: Some(nano_cpus),
            memory: Some(memory),
            // The engine refuses a memory limit above the swap limit.
            memory_swap: Some(memory),
            ..Default::default()
        };
        self.docker
            .update_container(&found.id, update)
            .await
            .map_err(|error| classify(&name, error))
    }

    async fn destroy(&self, tenant: &TenantId, name: &str) -> Result<(), ProviderError> {
        match self.find_owned(tenant, name).await? {
            None => Ok(()),
            Some(found) => self.remove(name, &found.id).await,
        }
    }

    async fn inspect(&self, name: &str) -> Result<Option<Machine>, ProviderError> {
        Ok(self
            .find(name)
            .await?
            .map(|found| self.machine(name, &found)))
    }

    /// The managed containers of this engine's server (`berth.host` = its name): engines
    /// shared by several servers or test runs keep out of each other's way.
    async fn list(&self) -> Result<Vec<Machine>, ProviderError> {
        let filters = HashMap::from([(
            "label",
            vec![
                format!("{LABEL_MANAGED}=true"),
                format!("{LABEL_HOST}={}", self.config.host_name),
            ],
        )]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|error| classify(ENGINE, error))?;
        Ok(containers
            .iter()
            .filter_map(|container| {
                let found = Found {
                    id: container.id.clone()?,
                    tenant: container
                        .labels
                        .as_ref()
                        .and_then(|labels| labels.get(LABEL_TENANT).cloned()),
                    running: container.state == Some(ContainerSummaryStateEnum::RUNNING),
                };
                Some(self.machine(container_name(container)?, &found))
            })
            .collect())
    }

    /// Runs `command` in the running VM `name` and returns its output and exit code.
    ///
    /// A command still running after `timeout` is a transient error; the engine has no
    /// way to kill an exec, so the process is left to finish inside the VM.
    async fn exec(
        &self,
        tenant: &TenantId,
        name: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, ProviderError> {
        if command.is_empty() {
            return Err(ProviderError::Permanent(format!(
                "exec in {name} needs a command"
            )));
        }
        let found = self.owned(tenant, name).await?;
        tokio::time::timeout(timeout, self.exec_to_end(name, &found.id, command))
            .await
            .map_err(|_| {
                ProviderError::Transient(format!(
                    "exec in {name} did not finish within {timeout:?}"
                ))
            })?
    }

    async fn remove_orphan(&self, orphan: &Machine) -> Result<(), ProviderError> {
        let name = &orphan.name;
        let Some(found) = self.find(name).await? else {
            return Ok(());
        };
        let now = self.machine(name, &found);
        if now.tenant != orphan.tenant {
            return Err(changed_hands(&now, orphan));
        }
        self.remove(name, &found.id).await
    }
}

/// `(NanoCpus, Memory in bytes)` for a spec.
fn limits(spec: &MachineSpec) -> (i64, i64) {
    (
        i64::from(spec.vcpus) * 1_000_000_000,
        i64::from(spec.memory_mb) * 1024 * 1024,
    )
}

/// A listed container's name without the engine's leading `/`.
fn container_name(container: &ContainerSummary) -> Option<&str> {
    let name = container.names.as_ref()?.first()?;
    Some(name.strip_prefix('/').unwrap_or(name))
}

fn saturating_u32(value: i64) -> u32 {
    u32::try_from(value.max(0)).unwrap_or(u32::MAX)
}
