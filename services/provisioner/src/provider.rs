//! The VM provider trait: what the provisioner needs from a hypervisor or container
//! engine. Every call is idempotent: machines have deterministic names
//! (`berth-vm-<id>`), create finds an existing machine instead of making a second one,
//! destroy of a missing machine succeeds.

use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

/// What a provider is asked to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineSpec {
    pub vm_id: Uuid,
    pub tenant: String,
    /// The server placement chose.
    pub host: String,
    pub vcpus: u32,
    pub memory_mb: u32,
    pub disk_gb: u32,
    pub image: String,
}

impl MachineSpec {
    /// The machine's name at the provider.
    pub fn machine_name(&self) -> String {
        machine_name(self.vm_id)
    }
}

/// The provider-side name of a VM.
pub fn machine_name(vm_id: Uuid) -> String {
    format!("berth-vm-{vm_id}")
}

/// Power state as the provider sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    Running,
    Stopped,
}

/// A machine as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub name: String,
    pub host: String,
    pub power: PowerState,
}

pub use berth_schemas::vm::ExecOutput;

/// Why a provider call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Worth retrying: timeouts, a busy host, a lost connection.
    #[error("{0}")]
    Transient(String),
    /// Retrying will not help: a bad image, a refused size.
    #[error("{0}")]
    Permanent(String),
    /// The machine is not there.
    #[error("machine {0} does not exist")]
    NotFound(String),
}

/// A hypervisor or container engine that runs VMs.
#[async_trait]
pub trait VmProvider: Send + Sync + 'static {
    /// `sim`, `docker`, …
    fn name(&self) -> &'static str;
    /// Makes the machine (stopped) unless it exists; returns it either way.
    async fn create(&self, spec: &MachineSpec) -> Result<Machine, ProviderError>;
    async fn start(&self, name: &str) -> Result<(), ProviderError>;
    async fn stop(&self, name: &str) -> Result<(), ProviderError>;
    async fn restart(&self, name: &str) -> Result<(), ProviderError>;
    /// Gives a stopped machine the spec's size.
    async fn resize(&self, spec: &MachineSpec) -> Result<(), ProviderError>;
    /// Removes the machine; a missing machine is not an error.
    async fn destroy(&self, name: &str) -> Result<(), ProviderError>;
    async fn inspect(&self, name: &str) -> Result<Option<Machine>, ProviderError>;
    /// Every machine berth manages at this provider.
    async fn list(&self) -> Result<Vec<Machine>, ProviderError>;
    /// Runs a command in a running machine; gives up (transiently) after `timeout`.
    async fn exec(
        &self,
        name: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, ProviderError>;
}
