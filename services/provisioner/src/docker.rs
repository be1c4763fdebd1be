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
//! | `berth.vm`       | the VM id                               |
//! | `berth.host`     | the placement host from the spec        |
//! | `berth.disk_gb`  | the requested disk size (not enforced)  |
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

use crate::provider::{ExecOutput, Machine, MachineSpec, PowerState, ProviderError, VmProvider};

/// Label every berth container carries, with the value `true`.
pub const LABEL_MANAGED: &str = "berth.managed";
/// Label holding the tenant that owns the VM.
pub const LABEL_TENANT: &str = "berth.tenant";
/// Label holding the VM id.
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
    /// The containers' network mode, e.g. `none` on an engine started with
    /// `--bridge=none`; `None` leaves the engine's default.
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
}

impl DockerProvider {
    /// Connects to the engine named by `DOCKER_HOST` (else the default socket) and agrees
    /// on an API version with it.
    pub async fn connect(config: DockerConfig) -> Result<Self, ProviderError> {
        // A missing socket is transient (the engine may not be up yet), a malformed
        // address permanent.
        let docker = Docker::connect_with_defaults().map_err(|error| classify(ENGINE, error))?;
        // bollard speaks the newest API version by default, which older engines refuse
        // (Debian 12's dockerd 20.10 speaks 1.41): settle on the engine's version.
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|error| classify(ENGINE, error))?;
        Ok(Self { docker, config })
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
        command: &[String],
    ) -> Result<ExecOutput, ProviderError> {
        let options = CreateExecOptions {
            cmd: Some(command.to_vec()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let exec = match self.docker.create_exec(name, options).await {
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

    fn create_body(&self, spec: &MachineSpec) -> ContainerCreateBody {
        let labels = HashMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_TENANT.to_owned(), spec.tenant.clone()),
            (LABEL_VM.to_owned(), spec.vm_id.to_string()),
            (LABEL_HOST.to_owned(), spec.host.clone()),
            (LABEL_DISK_GB.to_owned(), spec.disk_gb.to_string()),
        ]);
        let (nano_cpus, memory) = limits(spec);
        ContainerCreateBody {
            image: Some(spec.image.clone()),
            labels: Some(labels),
            host_config: Some(HostConfig {
                nano_cpus: Some(nano_cpus),
                memory: Some(memory),
                memory_swap: Some(memory),
                network_mode: self.config.network_mode.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn machine(&self, name: &str, running: bool) -> Machine {
        Machine {
            name: name.to_owned(),
            host: self.config.host_name.clone(),
            power: if running {
                PowerState::Running
            } else {
                PowerState::Stopped
            },
        }
    }

    async fn inspect_container(
        &self,
        name: &str,
    ) -> Result<Option<ContainerInspectResponse>, ProviderError> {
        match self.docker.inspect_container(name, None).await {
            Ok(container) => Ok(Some(container)),
            Err(error) => match classify(name, error) {
                ProviderError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }
}

#[async_trait]
impl VmProvider for DockerProvider {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn create(&self, spec: &MachineSpec) -> Result<Machine, ProviderError> {
        let name = spec.machine_name();
        if let Some(machine) = self.inspect(&name).await? {
            return Ok(machine);
        }
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        match self
            .docker
            .create_container(Some(options), self.create_body(spec))
            .await
        {
            // 409: a concurrent create got there first; report its container.
            Ok(_)
            | Err(DockerError::DockerResponseServerError {
                status_code: 409, ..
            }) => {}
            Err(error) => return Err(classify(&name, error)),
        }
        self.inspect(&name).await?.ok_or_else(|| {
            ProviderError::Transient(format!("{name} disappeared right after create"))
        })
    }

    async fn start(&self, name: &str) -> Result<(), ProviderError> {
        // An already running container answers 304, which bollard reports as success.
        self.docker
            .start_container(name, None)
            .await
            .map_err(|error| classify(name, error))
    }

    async fn stop(&self, name: &str) -> Result<(), ProviderError> {
        // An already stopped container answers 304, which bollard reports as success.
        let options = StopContainerOptionsBuilder::new()
            .t(STOP_TIMEOUT_SECS)
            .build();
        self.docker
            .stop_container(name, Some(options))
            .await
            .map_err(|error| classify(name, error))
    }

    async fn restart(&self, name: &str) -> Result<(), ProviderError> {
        let options = RestartContainerOptionsBuilder::new()
            .t(STOP_TIMEOUT_SECS)
            .build();
        self.docker
            .restart_container(name, Some(options))
            .await
            .map_err(|error| classify(name, error))
    }

    /// Sets the container's CPU and memory limits. Its labels keep the sizes it was
    /// created with: the engine cannot change labels.
    async fn resize(&self, spec: &MachineSpec) -> Result<(), ProviderError> {
        let name = spec.machine_name();
        match self.inspect(&name).await? {
            None => return Err(ProviderError::NotFound(name)),
            Some(machine) if machine.power == PowerState::Running => {
                return Err(ProviderError::Permanent(format!(
                    "{name} must be stopped to resize"
                )))
            }
            Some(_) => {}
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
            .update_container(&name, update)
            .await
            .map_err(|error| classify(&name, error))
    }

    async fn destroy(&self, name: &str) -> Result<(), ProviderError> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(name, Some(options)).await {
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

    async fn inspect(&self, name: &str) -> Result<Option<Machine>, ProviderError> {
        Ok(self.inspect_container(name).await?.map(|container| {
            let running = container
                .state
                .and_then(|state| state.running)
                .unwrap_or(false);
            self.machine(name, running)
        }))
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
                let running = container.state == Some(ContainerSummaryStateEnum::RUNNING);
                Some(self.machine(container_name(container)?, running))
            })
            .collect())
    }

    /// Runs `command` in the running VM `name` and returns its output and exit code.
    ///
    /// A command still running after `timeout` is a transient error; the engine has no
    /// way to kill an exec, so the process is left to finish inside the VM.
    async fn exec(
        &self,
        name: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, ProviderError> {
        if command.is_empty() {
            return Err(ProviderError::Permanent(format!(
                "exec in {name} needs a command"
            )));
        }
        tokio::time::timeout(timeout, self.exec_to_end(name, command))
            .await
            .map_err(|_| {
                ProviderError::Transient(format!(
                    "exec in {name} did not finish within {timeout:?}"
                ))
            })?
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

/// Maps an engine error about the machine `name` onto [`ProviderError`].
pub fn classify(name: &str, error: DockerError) -> ProviderError {
    match error {
        // A create names a missing image with a 404 too, but the machine is not the
        // missing thing and retrying will not bring the image.
        DockerError::DockerResponseServerError {
            status_code: 404,
            message,
        } if message.to_ascii_lowercase().contains("no such image") => {
            ProviderError::Permanent(format!("{name}: {message}"))
        }
        DockerError::DockerResponseServerError {
            status_code: 404, ..
        } => ProviderError::NotFound(name.to_owned()),
        DockerError::DockerResponseServerError {
            status_code,
            message,
        } if status_code >= 500 => ProviderError::Transient(format!(
            "the Docker engine failed on {name} ({status_code}): {message}"
        )),
        DockerError::DockerResponseServerError {
            status_code,
            message,
        } => ProviderError::Permanent(format!(
            "the Docker engine refused {name} ({status_code}): {message}"
        )),
        // The request or the answer does not fit the API: asking again will not help.
        error @ (DockerError::JsonDataError { .. }
        | DockerError::JsonSerdeError { .. }
        | DockerError::APIVersionParseError {}
        | DockerError::URLEncodedError { .. }
        | DockerError::URLParseError { .. }
        | DockerError::InvalidURIError { .. }
        | DockerError::InvalidURIPartsError { .. }
        | DockerError::UnsupportedURISchemeError { .. }) => {
            ProviderError::Permanent(format!("Docker call about {name} failed: {error}"))
        }
        // Connection failures, timeouts, broken streams.
        error => ProviderError::Transient(format!("Docker call about {name} failed: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(status_code: u16, message: &str) -> DockerError {
        DockerError::DockerResponseServerError {
            status_code,
            message: message.to_owned(),
        }
    }

    #[test]
    fn engine_errors_map_onto_provider_errors() {
        let name = "berth-vm-1";
        assert_eq!(
            classify(name, server_error(404, "No such container: berth-vm-1")),
            ProviderError::NotFound(name.to_owned())
        );
        assert!(matches!(
            classify(name, server_error(404, "No such image: nope:latest")),
            ProviderError::Permanent(message) if message.contains("No such image: nope:latest")
        ));
        assert!(matches!(
            classify(
                name,
                server_error(400, "Range of CPUs is from 0.01 to 2.00")
            ),
            ProviderError::Permanent(_)
        ));
        assert!(matches!(
            classify(name, server_error(500, "containerd is restarting")),
            ProviderError::Transient(_)
        ));
        assert!(matches!(
            classify(name, DockerError::RequestTimeoutError),
            ProviderError::Transient(_)
        ));
        assert!(matches!(
            classify(
                name,
                std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into()
            ),
            ProviderError::Transient(_)
        ));
    }
}
