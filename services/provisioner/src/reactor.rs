//! The VM reactor: drives the provider until each VM is where it was asked to be.
//!
//! It is level-triggered, like a Kubernetes controller: whatever event woke it, it loads
//! the VM, performs the one provider step the VM's state calls for, appends the outcome
//! and looks again, until nothing is left to do. Redelivered or reordered events
//! therefore do no harm: a step is only taken when the folded state asks for it, the
//! provider calls are idempotent, and the appended event ids derive from the waking
//! event, the step and the version, so a repeat meets de-duplication or a conflict.

use std::sync::Arc;

use async_trait::async_trait;
use berth_runtime::locks::KeyedLocks;
use berth_runtime::reactor::{ReactError, Reactor};
use berth_runtime::store::{AppendError, Cause, Loaded, Repository, StoredEvent};
use berth_schemas::subjects::{event_filter, EventSubject};
use berth_schemas::usage::usage_id;
use berth_schemas::vm::{Empty, VmEvent, VmProvisioned, VmProvisioningStarted};
use berth_schemas::Actor;
use uuid::Uuid;

use crate::provider::{machine_name, Machine, MachineSpec, ProviderError, VmProvider};

use crate::usage::Usage;
use crate::vm::{failed, provisioned, Step, Vm};

/// Reconciles VMs with the provider.
pub struct VmReactor {
    repository: Arc<Repository<Vm>>,
    usage: Arc<Repository<Usage>>,
    provider: Arc<dyn VmProvider>,
    locks: KeyedLocks,
}

/// At most this many steps per wake-up (a full create is four).
const MAX_STEPS: usize = 16;

impl VmReactor {
    pub fn new(
        repository: Arc<Repository<Vm>>,
        usage: Arc<Repository<Usage>>,
        provider: Arc<dyn VmProvider>,
    ) -> Self {
        Self {
            repository,
            usage,
            provider,
            locks: KeyedLocks::default(),
        }
    }

    fn cause(event: &StoredEvent, label: &str, version: u64) -> Cause {
        Cause {
            id: Uuid::new_v5(&event.meta.id, format!("{label}@{version}").as_bytes()),
            actor: Actor::service("provisioner"),
            correlation_id: event.meta.correlation_id,
            traceparent: event.meta.traceparent.clone(),
        }
    }

    async fn perform(
        &self,
        step: Step,
        vm: &Vm,
        target: &EventSubject,
    ) -> Result<VmEvent, ProviderError> {
        let name = machine_name(target.id);
        Ok(match step {
            Step::BeginProvisioning => VmEvent::ProvisioningStarted(VmProvisioningStarted {
                provider: self.provider.name().to_owned(),
            }),
            Step::Provision => {
                let machine = self.create_machine(vm, target).await?;
                provisioned(self.provider.name(), machine.host, machine.name)
            }
            Step::Start => {
                self.recreating_if_lost(vm, target, || self.provider.start(&name))
                    .await?;
                VmEvent::Started(Empty {})
            }
            Step::Stop => {
                match self.provider.stop(&name).await {
                    // A machine that is gone is not running; a later start recreates it.
                    Ok(()) | Err(ProviderError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
                VmEvent::Stopped(Empty {})
            }
            Step::Restart => {
                self.recreating_if_lost(vm, target, || self.provider.restart(&name))
                    .await?;
                VmEvent::Restarted(Empty {})
            }
            Step::Resize => {
                let spec = self.machine_spec(vm, target)?;
                self.recreating_if_lost(vm, target, || self.provider.resize(&spec))
                    .await?;
                VmEvent::Resized(Empty {})
            }
            Step::Recreate => {
                self.provider.destroy(&name).await?;
                let machine = self.create_machine(vm, target).await?;
                self.provider.start(&machine.name).await?;
                VmEvent::Recreated(VmProvisioned {
                    provider: self.provider.name().to_owned(),
                    host: machine.host,
                    provider_ref: machine.name,
                })
            }
            Step::Destroy => {
                self.provider.destroy(&name).await?;
                VmEvent::Destroyed(Empty {})
            }
        })
    }

    /// What the provider is asked to make for this VM.
    fn machine_spec(&self, vm: &Vm, target: &EventSubject) -> Result<MachineSpec, ProviderError> {
        let spec = vm
            .spec
            .as_ref()
            .ok_or_else(|| ProviderError::Permanent("the vm has no spec".into()))?;
        Ok(MachineSpec {
            vm_id: target.id,
            tenant: target.tenant.to_string(),
            vcpus: spec.vcpus,
            memory_mb: spec.memory_mb,
            disk_gb: spec.disk_gb,
            image: spec.image.clone(),
        })
    }

    /// Makes the VM's machine from its spec (idempotent: finds an existing one).
    async fn create_machine(
        &self,
        vm: &Vm,
        target: &EventSubject,
    ) -> Result<Machine, ProviderError> {
        self.provider.create(&self.machine_spec(vm, target)?).await
    }

    /// Runs a power operation; if the provider lost the machine (a host died, the
    /// simulated datacenter restarted), the machine is made again from the VM's spec
    /// and the operation retried: the desired state wins, as in any controller.
    async fn recreating_if_lost<F, Fut>(
        &self,
        vm: &Vm,
        target: &EventSubject,
        operation: F,
    ) -> Result<(), ProviderError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), ProviderError>>,
    {
        match operation().await {
            Err(ProviderError::NotFound(machine)) => {
                tracing::warn!(vm = %target.id, %machine, "the provider lost the machine; recreating it from the vm's spec");
                self.create_machine(vm, target).await?;
                operation().await
            }
            other => other,
        }
    }

    async fn reconcile(
        &self,
        event: &StoredEvent,
        target: &EventSubject,
    ) -> Result<(), ReactError> {
        for _ in 0..MAX_STEPS {
            let loaded = self
                .repository
                .load(&target.tenant, target.id)
                .await
                .map_err(|e| ReactError::Transient(e.to_string()))?;
            let Some(step) = Step::next(&loaded.state) else {
                return Ok(());
            };
            let outcome = self
                .perform(step, &loaded.state, target)
                .await
                .map_err(|e| match e {
                    ProviderError::Transient(reason) => ReactError::Transient(reason),
                    other => ReactError::Permanent(format!("{} failed: {other}", step.operation())),
                })?;
            let cause = Self::cause(event, &format!("{step:?}"), loaded.version);
            let release = step == Step::Destroy;
            // Appended, or someone moved the VM first: the next look decides what is left.
            if let Err(AppendError::Store(e)) = self
                .append_outcome(target, &loaded, &cause, outcome, release)
                .await
            {
                return Err(ReactError::Transient(e.to_string()));
            }
        }
        Err(ReactError::Transient(format!(
            "vm {} still needs work after {MAX_STEPS} steps",
            target.id
        )))
    }
}

impl VmReactor {
    /// Appends the VM's outcome; with `release`, the tenant's quota for the VM is freed
    /// in the same atomic append, so usage always matches the VMs that exist.
    async fn append_outcome(
        &self,
        target: &EventSubject,
        loaded: &Loaded<Vm>,
        cause: &Cause,
        outcome: VmEvent,
        release: bool,
    ) -> Result<(), AppendError> {
        if !release {
            self.repository
                .append(&target.tenant, target.id, loaded, cause, vec![outcome])
                .await?;
            return Ok(());
        }
        let usage_id = usage_id(&target.tenant);
        let usage = self.usage.load(&target.tenant, usage_id).await?;
        let released = usage.state.release(target.id);
        let vm_append =
            self.repository
                .prepare(&target.tenant, target.id, loaded, cause, &[outcome], 0);
        let usage_append =
            self.usage
                .prepare(&target.tenant, usage_id, &usage, cause, &released, 1);
        let sequences = self
            .repository
            .store()
            .append_all(vec![vm_append.clone(), usage_append.clone()])
            .await?;
        self.repository
            .appended(loaded, cause, vm_append, &sequences[0])?;
        self.usage
            .appended(&usage, cause, usage_append, &sequences[1])?;
        Ok(())
    }
}

/// Events this reactor appends itself: they need no reaction of their own.
fn is_outcome(event: &StoredEvent) -> bool {
    matches!(
        event.decode::<VmEvent>(),
        Ok(VmEvent::Provisioned(_)
            | VmEvent::Started(_)
            | VmEvent::Stopped(_)
            | VmEvent::Restarted(_)
            | VmEvent::Recreated(_)
            | VmEvent::Resized(_)
            | VmEvent::Destroyed(_)
            | VmEvent::Failed(_))
    )
}

#[async_trait]
impl Reactor for VmReactor {
    fn name(&self) -> String {
        "provisioner-vm".into()
    }

    fn filter_subjects(&self) -> Vec<String> {
        vec![event_filter(berth_schemas::vm::AGGREGATE)]
    }

    async fn react(&self, event: &StoredEvent) -> Result<(), ReactError> {
        if is_outcome(event) {
            return Ok(());
        }
        let target = EventSubject::parse(&event.subject).ok_or_else(|| {
            ReactError::Permanent(format!("not a vm event subject: {}", event.subject))
        })?;
        let _guard = self.locks.lock(target.id).await;
        self.reconcile(event, &target).await
    }

    async fn give_up(&self, event: &StoredEvent, error: &str) {
        let Some(target) = EventSubject::parse(&event.subject) else {
            return;
        };
        let _guard = self.locks.lock(target.id).await;
        let Ok(loaded) = self.repository.load(&target.tenant, target.id).await else {
            return;
        };
        let Some(step) = Step::next(&loaded.state) else {
            return;
        };
        let cause = Self::cause(event, "give-up", loaded.version);
        if let Err(e) = self
            .append_outcome(&target, &loaded, &cause, failed(step, error), true)
            .await
        {
            tracing::warn!(vm = %target.id, error = %e, "could not record the vm failure");
        }
    }
}
