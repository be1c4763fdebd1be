//! Docker, the way every berth service uses it: the labels that say who owns a
//! container, the hardening every tenant container gets, networks that no two tenants
//! share, and one mapping of the engine's errors onto [`ProviderError`].
//!
//! The provisioner's VMs and pod-lifecycle's pods both run as containers on an engine,
//! so both follow these rules (see `services/provisioner/src/docker.rs` for the VM
//! provider and `services/pod-lifecycle/src/docker.rs` for the pod runtime).

use std::collections::HashMap;

use berth_schemas::TenantId;
use bollard::errors::Error as DockerError;
use bollard::models::{HostConfig, NetworkCreateRequest};
use bollard::query_parameters::ListNetworksOptionsBuilder;
use bollard::Docker;

use crate::error::{check_owner, ProviderError};

/// What errors about the engine itself, rather than one machine, name.
const ENGINE: &str = "the engine";

/// Label every berth container carries, with the value `true`.
pub const LABEL_MANAGED: &str = "berth.managed";
/// Label holding the tenant that owns the VM (and the network of a tenant).
pub const LABEL_TENANT: &str = "berth.tenant";
/// Label holding the id of the aggregate the container belongs to.
pub const LABEL_ID: &str = "berth.id";
/// The most processes (threads included) one container may run.
pub const PIDS_LIMIT: i64 = 512;
/// The capabilities a container keeps; every other one is dropped. These are what a
/// typical base image's init and package scripts need as root: `CHOWN`, `FOWNER` and
/// `DAC_OVERRIDE` to own and write files not yet theirs (package installs, volume
/// set-up), `SETUID`/`SETGID` to drop from root to a service user (`su-exec`, `gosu`,
/// Apache and nginx workers), `NET_BIND_SERVICE` to listen on ports below 1024, `KILL`
/// to signal workers running as other users. Left out, among others: `NET_RAW` (raw
/// sockets, ARP spoofing on a shared segment), `MKNOD`, `SYS_CHROOT`, `AUDIT_WRITE`,
/// `SETFCAP`, `SETPCAP`, `FSETID`, which Docker grants by default.
pub const CAPABILITIES: [&str; 7] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "KILL",
    "NET_BIND_SERVICE",
    "SETGID",
    "SETUID",
];
/// The security options of every container: no process gains privileges through
/// setuid binaries or file capabilities.
pub const SECURITY_OPT: &str = "no-new-privileges";
/// The prefix of a tenant's network: `berth-net-<tenant>`.
pub const NETWORK_PREFIX: &str = "berth-net-";

/// How containers are networked: never a network two tenants share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// No network at all (`--network none`).
    None,
    /// The tenant's own bridge network `berth-net-<tenant>`; `internal` ones have no
    /// route out of the engine.
    PerTenant { internal: bool },
}

impl NetworkMode {
    /// Reads the configured mode; the host network and shared networks are refused.
    pub fn parse(configured: Option<&str>) -> Result<Self, ProviderError> {
        match configured {
            None | Some("tenant") => Ok(Self::PerTenant { internal: true }),
            Some("tenant-external") => Ok(Self::PerTenant { internal: false }),
            Some("none") => Ok(Self::None),
            Some("host") => Err(ProviderError::Permanent(
                "docker network mode host is refused: tenants' code would share the host's network".into(),
            )),
            Some(other) => Err(ProviderError::Permanent(format!(
                "docker network mode {other:?} is refused: a network shared by tenants connects their machines; use tenant (the default), tenant-external or none"
            ))),
        }
    }
}

/// The network of one tenant.
pub fn tenant_network(tenant: &str) -> String {
    format!("{NETWORK_PREFIX}{tenant}")
}

/// Limits what a tenant's container may do; see the module docs.
pub fn harden(host: &mut HostConfig) {
    host.pids_limit = Some(PIDS_LIMIT);
    host.cap_drop = Some(vec!["ALL".to_owned()]);
    host.cap_add = Some(CAPABILITIES.iter().map(|c| (*c).to_owned()).collect());
    host.security_opt = Some(vec![SECURITY_OPT.to_owned()]);
}

/// The tenant networks of one engine, made on first use.
pub struct TenantNetworks {
    docker: Docker,
    mode: NetworkMode,
    /// One look-then-create at a time in this process: engines before API 1.44 accept a
    /// second network of the same name.
    making: tokio::sync::Mutex<()>,
}

impl TenantNetworks {
    pub fn new(docker: Docker, mode: NetworkMode) -> Self {
        Self {
            docker,
            mode,
            making: tokio::sync::Mutex::new(()),
        }
    }

    pub fn mode(&self) -> NetworkMode {
        self.mode
    }

    /// The `NetworkMode` of a container of `tenant`: `none`, or the id of the tenant's
    /// network, made (labelled) if missing. A network of that name that is not labelled
    /// as the tenant's is refused, never joined.
    pub async fn network_for(&self, tenant: &str) -> Result<String, ProviderError> {
        let NetworkMode::PerTenant { internal } = self.mode else {
            return Ok("none".to_owned());
        };
        let name = tenant_network(tenant);
        let _one_at_a_time = self.making.lock().await;
        if let Some(id) = self.find(tenant, &name).await? {
            return Ok(id);
        }
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".to_owned()),
            internal: Some(internal),
            labels: Some(HashMap::from([
                (LABEL_MANAGED.to_owned(), "true".to_owned()),
                (LABEL_TENANT.to_owned(), tenant.to_owned()),
            ])),
            ..Default::default()
        };
        let created = self
            .docker
            .create_network(request)
            .await
            .map_err(|error| classify(&format!("network {name}"), error))?;
        if !created.warning.is_empty() {
            // Another process made one first (older engines allow duplicate names):
            // drop ours and use the first.
            let _ = self.docker.remove_network(&created.id).await;
        }
        self.find(tenant, &name).await?.ok_or_else(|| {
            ProviderError::Transient(format!("network {name} disappeared right after create"))
        })
    }

    /// The id of the oldest network called `name`, if every one of that name is the
    /// tenant's.
    async fn find(&self, tenant: &str, name: &str) -> Result<Option<String>, ProviderError> {
        let filters = HashMap::from([("name", vec![name])]);
        let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
        let mut found: Vec<_> = self
            .docker
            .list_networks(Some(options))
            .await
            .map_err(|error| classify(ENGINE, error))?
            .into_iter()
            // The name filter matches parts of names too.
            .filter(|network| network.name.as_deref() == Some(name))
            .collect();
        for network in &found {
            let owner = network.labels.as_ref().and_then(|l| l.get(LABEL_TENANT));
            let tenant_id = TenantId::parse(tenant)
                .map_err(|e| ProviderError::Permanent(format!("network of {tenant:?}: {e}")))?;
            check_owner(
                &format!("network {name}"),
                owner.map(String::as_str),
                &tenant_id,
            )?;
        }
        found.sort_by(|a, b| a.created.cmp(&b.created));
        Ok(found.into_iter().next().and_then(|network| network.id))
    }
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
