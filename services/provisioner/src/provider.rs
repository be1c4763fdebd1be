//! The VM provider trait: what the provisioner needs from a hypervisor or container
//! engine. Every call is idempotent: machines have deterministic names
//! (`berth-vm-<id>`), create finds an existing machine instead of making a second one,
//! destroy of a missing machine succeeds.
//!
//! # Ownership
//!
//! Aggregates live under their tenant (`evt.<tenant>.vm.<id>`), so two tenants could
//! each hold a VM with the same id; the machine name is keyed by the id alone. A
//! provider therefore records the owning tenant with every machine (a label, or the
//! simulator's own record) and every call that acts for a VM names the tenant it acts
//! for: a machine of another tenant — or a berth-named machine with no owner at all —
//! is refused with [`ProviderError::Permanent`] naming the conflict ([`foreign`]) and is
//! never adopted, started, stopped, resized, exec'd in or removed. Reading
//! ([`VmProvider::inspect`], [`VmProvider::list`]) is not acting: it reports the owner in
//! [`Machine::tenant`] and lets the caller judge. Only reconciliation removes a machine
//! on no tenant's behalf, with [`VmProvider::remove_orphan`], and only while the machine
//! still carries the owner its listing showed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_runtime::reactor::within_deadline;
use berth_schemas::TenantId;
use uuid::Uuid;

pub use berth_adapters::error::{check_owner, foreign, ProviderError};

/// What a provider is asked to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineSpec {
    pub vm_id: Uuid,
    /// The tenant the machine is made for and belongs to.
    pub tenant: TenantId,
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

/// The prefix of every machine name.
pub const MACHINE_PREFIX: &str = "berth-vm-";

/// The provider-side name of a VM.
pub fn machine_name(vm_id: Uuid) -> String {
    format!("{MACHINE_PREFIX}{vm_id}")
}

/// The VM id in a machine name, if it is one of berth's.
pub fn vm_id_in(name: &str) -> Option<Uuid> {
    name.strip_prefix(MACHINE_PREFIX)
        .and_then(|id| Uuid::parse_str(id).ok())
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
    /// The tenant the provider recorded as the machine's owner; `None` for a machine
    /// made behind berth's back without one.
    pub tenant: Option<String>,
}

impl Machine {
    /// Whether the machine is recorded as `tenant`'s.
    pub fn belongs_to(&self, tenant: &TenantId) -> bool {
        self.tenant.as_deref() == Some(tenant.as_str())
    }

    /// `Ok` if the machine is `tenant`'s, else the refusal [`foreign`] describes.
    pub fn check_owner(&self, tenant: &TenantId) -> Result<(), ProviderError> {
        check_owner(
            &format!("machine {}", self.name),
            self.tenant.as_deref(),
            tenant,
        )
    }
}

/// The refusal to remove an orphan whose owner changed since it was listed as `listed`.
pub fn changed_hands(now: &Machine, listed: &Machine) -> ProviderError {
    let owner = |tenant: &Option<String>| {
        tenant
            .as_ref()
            .map_or_else(|| "no tenant".to_owned(), |t| format!("tenant {t}"))
    };
    ProviderError::Permanent(format!(
        "conflict: machine {} was listed as {}'s but is now {}'s; it was left untouched",
        listed.name,
        owner(&listed.tenant),
        owner(&now.tenant)
    ))
}

pub use berth_schemas::vm::ExecOutput;

/// A hypervisor or container engine that runs VMs. Calls that act for a VM name its
/// tenant (directly or in the spec) and are refused on a machine of another (see the
/// module docs).
#[async_trait]
pub trait VmProvider: Send + Sync + 'static {
    /// `sim`, `docker`, …
    fn name(&self) -> &'static str;
    /// Makes the machine (stopped) for `spec.tenant` unless it exists; returns it either
    /// way. An existing machine of another tenant is refused, never adopted.
    async fn create(&self, spec: &MachineSpec) -> Result<Machine, ProviderError>;
    async fn start(&self, tenant: &TenantId, name: &str) -> Result<(), ProviderError>;
    async fn stop(&self, tenant: &TenantId, name: &str) -> Result<(), ProviderError>;
    async fn restart(&self, tenant: &TenantId, name: &str) -> Result<(), ProviderError>;
    /// Gives a stopped machine the spec's size.
    async fn resize(&self, spec: &MachineSpec) -> Result<(), ProviderError>;
    /// Removes `tenant`'s machine; a missing machine is not an error.
    async fn destroy(&self, tenant: &TenantId, name: &str) -> Result<(), ProviderError>;
    /// The machine called `name`, whoever owns it.
    async fn inspect(&self, name: &str) -> Result<Option<Machine>, ProviderError>;
    /// Every machine berth manages at this provider.
    async fn list(&self) -> Result<Vec<Machine>, ProviderError>;
    /// Runs a command in `tenant`'s running machine; gives up (transiently) after `timeout`.
    async fn exec(
        &self,
        tenant: &TenantId,
        name: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, ProviderError>;
    /// Removes a machine that [`list`](Self::list) reported, on no tenant's behalf
    /// (orphan clean-up), if it still carries the owner the listing showed; a machine
    /// that changed hands meanwhile is refused, a missing one is not an error.
    async fn remove_orphan(&self, machine: &Machine) -> Result<(), ProviderError>;
}

/// A provider whose every call has a deadline: in a reaction, below its consumer's ack
/// wait ([`berth_runtime::reactor::call_deadline`]). A call that does not answer in
/// time is dropped and reported as [`ProviderError::Transient`], so the reactor tries
/// again later instead of holding the message past its ack wait; calls are idempotent,
/// so an abandoned call that still took effect is found by the next one. `exec` has its
/// own timeout and gets that plus [`EXEC_GRACE`].
pub struct WithDeadlines(pub Arc<dyn VmProvider>);

/// How long past its own timeout an `exec` may take before it is abandoned.
pub const EXEC_GRACE: Duration = Duration::from_secs(5);

impl WithDeadlines {
    async fn within<T>(
        &self,
        operation: &str,
        name: &str,
        call: impl Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        within_deadline(call).await.unwrap_or_else(|deadline| {
            tracing::warn!(operation, machine = name, ?deadline, "a provider call did not answer in time; abandoned");
            Err(ProviderError::Transient(format!(
                "{operation} of {name} did not answer within {deadline:?}; abandoned, to be tried again"
            )))
        })
    }
}

#[async_trait]
impl VmProvider for WithDeadlines {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    async fn create(&self, spec: &MachineSpec) -> Result<Machine, ProviderError> {
        let name = spec.machine_name();
        self.within("create", &name, self.0.create(spec)).await
    }

    async fn start(&self, tenant: &TenantId, name: &str) -> Result<(), ProviderError> {
        self.within("start", name, self.0.start(tenant, name)).await
    }

    async fn stop(&self, tenant: &TenantId, name: &str) -> Result<(), ProviderError> {
        self.within("stop", name, self.0.stop(tenant, name)).await
    }

    async fn restart(&self, tenant: &TenantId, name: &str) -> Result<(), ProviderError> {
        self.within("restart", name, self.0.restart(tenant, name))
            .await
    }

    async fn resize(&self, spec: &MachineSpec) -> Result<(), ProviderError> {
        let name = spec.machine_name();
        self.within("resize", &name, self.0.resize(spec)).await
    }

    async fn destroy(&self, tenant: &TenantId, name: &str) -> Result<(), ProviderError> {
        self.within("destroy", name, self.0.destroy(tenant, name))
            .await
    }

    async fn inspect(&self, name: &str) -> Result<Option<Machine>, ProviderError> {
        self.within("inspect", name, self.0.inspect(name)).await
    }

    async fn list(&self) -> Result<Vec<Machine>, ProviderError> {
        self.within("list", "the machines", self.0.list()).await
    }

    async fn exec(
        &self,
        tenant: &TenantId,
        name: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, ProviderError> {
        let deadline = timeout + EXEC_GRACE;
        tokio::time::timeout(deadline, self.0.exec(tenant, name, command, timeout))
            .await
            .unwrap_or_else(|_| {
                Err(ProviderError::Transient(format!(
                    "exec in {name} did not answer within {deadline:?}"
                )))
            })
    }

    async fn remove_orphan(&self, machine: &Machine) -> Result<(), ProviderError> {
        self.within("remove", &machine.name, self.0.remove_orphan(machine))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_recorded_tenant_owns_a_machine() {
        let acme = TenantId::parse("acme").unwrap();
        let mut machine = Machine {
            name: machine_name(Uuid::nil()),
            host: "h".into(),
            power: PowerState::Running,
            tenant: Some("acme".into()),
        };
        assert!(machine.check_owner(&acme).is_ok());
        machine.tenant = Some("globex".into());
        let refused = machine.check_owner(&acme).unwrap_err().to_string();
        assert!(
            refused.contains("belongs to another tenant, not to tenant acme"),
            "{refused}"
        );
        assert!(
            !refused.contains("globex"),
            "the owner is not named: {refused}"
        );
        machine.tenant = None;
        assert!(matches!(
            machine.check_owner(&acme),
            Err(ProviderError::Permanent(m)) if m.contains("carries no owning tenant")
        ));
        assert_eq!(vm_id_in(&machine_name(Uuid::nil())), Some(Uuid::nil()));
        assert_eq!(vm_id_in("stray-1"), None);
    }
}
