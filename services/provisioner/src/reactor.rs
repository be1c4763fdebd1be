//! The VM reactor: drives the provider until each VM is where it was asked to be.
//!
//! It is a [`Controller`] ([`berth_runtime::controller`]): whatever event woke it, it
//! loads the VM, performs the one provider step the VM's state calls for ([`Step`]),
//! appends the outcome and looks again, until nothing is left to do. Provider calls are
//! idempotent, and the appended event ids derive from the waking event, the step and the
//! version, so redelivered or reordered events do no harm.
//!
//! # When a step keeps failing (DESIGN §7: failure never destroys what a customer owns)
//!
//! Every provider call has a deadline below the consumer's ack wait
//! ([`WithDeadlines`]); a call that does not answer in time is a transient failure. A
//! transient failure is retried with capped back-off and never dead-lettered: after
//! `max_deliver` attempts the VM is marked `degraded` (still retrying) and the runtime's
//! retry consumer keeps trying (see [`berth_runtime::reactor`]). A step that fails for
//! good is handled by what it would leave behind ([`Step::undone_on_failure`]):
//! - a failed `provision` or `recreate` left at most a half-made machine: it is destroyed,
//!   and only once the provider confirmed that (or shows no machine of the tenant's under
//!   the name) does the VM fail and give back its quota and server capacity, in one
//!   atomic append; a destroy that fails is tried again (with back-off) until it works;
//! - a failed `start`, `stop`, `restart`, `resize` or `destroy` leaves the machine, the
//!   quota and the capacity alone and marks the VM `degraded` with the reason and the
//!   attempts; `retry` asks for the step again, `start`, `stop` and `destroy` for
//!   something else.
//!
//! Recording either outcome is retried until it is in the log.

use std::sync::Arc;

use async_trait::async_trait;
use berth_runtime::controller::{self, Controller};
use berth_runtime::locks::KeyedLocks;
use berth_runtime::reactor::{Failure, ReactError, Reactor};
use berth_runtime::store::{AtomicAppend, Cause, Loaded, Repository, StoredEvent};
use berth_schemas::subjects::{event_filter, EventSubject};
use berth_schemas::usage::usage_id;
use berth_schemas::vm::{Empty, VmEvent, VmPlaced, VmPlacementFailed, VmProvisioned};
use berth_schemas::Actor;
use tokio::sync::Semaphore;

use crate::placement::{system, Placement, Placer};
use crate::provider::{
    machine_name, Machine, MachineSpec, ProviderError, VmProvider, WithDeadlines,
};
use crate::server::Server;
use crate::usage::Usage;
use crate::vm::{degraded, failed, provisioned, Step, Vm};

/// How many provider calls one provisioner process makes at once.
#[derive(Debug, Clone, Copy)]
pub struct Concurrency {
    /// Creates and recreates: the slow, heavy calls.
    pub provisions: usize,
    /// Start, stop, restart, resize, destroy.
    pub control_ops: usize,
}

impl Default for Concurrency {
    fn default() -> Self {
        Self {
            provisions: 2,
            control_ops: 5,
        }
    }
}

/// The aggregates the reactor reads and appends.
pub struct Repositories {
    pub vms: Arc<Repository<Vm>>,
    pub usage: Arc<Repository<Usage>>,
    pub servers: Arc<Repository<Server>>,
}

/// Reconciles VMs with the provider.
pub struct VmReactor {
    repos: Repositories,
    placer: Placer,
    provider: Arc<dyn VmProvider>,
    locks: KeyedLocks,
    provisions: Semaphore,
    control_ops: Semaphore,
}

impl VmReactor {
    /// The reactor's every provider call gets a deadline ([`WithDeadlines`]).
    pub fn new(
        repos: Repositories,
        provider: Arc<dyn VmProvider>,
        concurrency: Concurrency,
    ) -> Self {
        Self {
            placer: Placer::new(repos.servers.clone(), provider.name()),
            repos,
            provider: Arc::new(WithDeadlines(provider)),
            locks: KeyedLocks::default(),
            provisions: Semaphore::new(concurrency.provisions.max(1)),
            control_ops: Semaphore::new(concurrency.control_ops.max(1)),
        }
    }

    /// Calls the provider for one step, within the process's concurrency limits.
    async fn perform(
        &self,
        step: Step,
        vm: &Vm,
        target: &EventSubject,
    ) -> Result<VmEvent, ProviderError> {
        let slots = match step {
            Step::Provision | Step::Recreate => &self.provisions,
            _ => &self.control_ops,
        };
        let _slot = slots
            .acquire()
            .await
            .map_err(|_| ProviderError::Transient("the provisioner is stopping".into()))?;
        let name = machine_name(target.id);
        let tenant = &target.tenant;
        Ok(match step {
            Step::Place => {
                return Err(ProviderError::Permanent(
                    "placement is not a provider call".into(),
                ))
            }
            Step::Provision => {
                let machine = self.create_machine(vm, target).await?;
                provisioned(self.provider.name(), machine.host, machine.name)
            }
            Step::Start => {
                self.recreating_if_lost(vm, target, || self.provider.start(tenant, &name))
                    .await?;
                VmEvent::Started(Empty {})
            }
            Step::Stop => {
                match self.provider.stop(tenant, &name).await {
                    // A machine that is gone is not running; a later start recreates it.
                    Ok(()) | Err(ProviderError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
                VmEvent::Stopped(Empty {})
            }
            Step::Restart => {
                self.recreating_if_lost(vm, target, || self.provider.restart(tenant, &name))
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
                self.provider.destroy(tenant, &name).await?;
                let machine = self.create_machine(vm, target).await?;
                self.provider.start(tenant, &machine.name).await?;
                VmEvent::Recreated(VmProvisioned {
                    provider: self.provider.name().to_owned(),
                    host: machine.host,
                    provider_ref: machine.name,
                })
            }
            Step::Destroy => {
                self.provider.destroy(tenant, &name).await?;
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
        let host = vm
            .host
            .clone()
            .ok_or_else(|| ProviderError::Permanent("the vm is not placed on a server".into()))?;
        Ok(MachineSpec {
            vm_id: target.id,
            tenant: target.tenant.clone(),
            host,
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

    /// Chooses a server and returns `placed` with the server's allocation, to be appended
    /// atomically; when nothing fits, `placement_failed` with the quota released. Other
    /// placements in this process wait until it is appended.
    async fn place<'a>(
        &'a self,
        target: &EventSubject,
        loaded: &Arc<Loaded<Vm>>,
        cause: &Cause,
    ) -> Result<AtomicAppend<'a>, ReactError> {
        let Some(spec) = &loaded.state.spec else {
            return Err(ReactError::transient_because(
                "no_spec",
                format!("vm {} has no spec to place", target.id),
            ));
        };
        let queued = self.placer.queue().await;
        let placement = self
            .placer
            .place(target.id, spec)
            .await
            .map_err(ReactError::transient)?;
        let outcome = match placement {
            Placement::Chosen(chosen) => {
                let placed = VmEvent::Placed(VmPlaced {
                    provider: self.provider.name().to_owned(),
                    server_id: chosen.server_id,
                    host: chosen.server.state.name().to_owned(),
                });
                AtomicAppend::new(cause)
                    .add(
                        &self.repos.vms,
                        &target.tenant,
                        target.id,
                        loaded,
                        &[placed],
                    )
                    .add(
                        &self.repos.servers,
                        &system(),
                        chosen.server_id,
                        &chosen.server,
                        &chosen.allocate,
                    )
            }
            Placement::NoFit(reason) => {
                tracing::info!(vm = %target.id, %reason, "no server fits the vm");
                let failed = VmEvent::PlacementFailed(VmPlacementFailed { reason });
                self.outcome(target, loaded, cause, failed, true).await?
            }
        };
        Ok(outcome.holding(queued))
    }

    /// Removes what a failed `provision` or `recreate` may have half made. `Ok` only once
    /// the provider confirmed it: the destroy worked, or the provider has no machine of
    /// the tenant's under the VM's name (none at all, or another tenant's, which is never
    /// touched). Anything else is transient: the give-up is tried again.
    async fn remove_half_made(&self, target: &EventSubject) -> Result<(), ReactError> {
        let name = machine_name(target.id);
        let Err(destroy) = self.provider.destroy(&target.tenant, &name).await else {
            return Ok(());
        };
        match self.provider.inspect(&name).await {
            Ok(None) => Ok(()),
            Ok(Some(machine)) if !machine.belongs_to(&target.tenant) => Ok(()),
            Ok(Some(_)) => Err(ReactError::transient_because(
                "not_removed",
                format!("the half-made machine {name} is not removed yet: {destroy}"),
            )),
            Err(inspect) => Err(ReactError::transient_because(
                inspect.code(),
                format!(
                    "the half-made machine {name} is not removed yet: {destroy}; nor could it be looked at: {inspect}"
                ),
            )),
        }
    }

    /// The VM's outcome; with `frees`, the tenant's quota and the server's capacity held
    /// by the VM are released in the same atomic append, so usage and allocations always
    /// match the VMs that exist.
    async fn outcome<'a>(
        &'a self,
        target: &EventSubject,
        loaded: &Arc<Loaded<Vm>>,
        cause: &Cause,
        outcome: VmEvent,
        frees: bool,
    ) -> Result<AtomicAppend<'a>, ReactError> {
        let changes = AtomicAppend::new(cause).add(
            &self.repos.vms,
            &target.tenant,
            target.id,
            loaded,
            &[outcome],
        );
        if !frees {
            return Ok(changes);
        }
        let usage_id = usage_id(&target.tenant);
        let usage = self
            .repos
            .usage
            .load(&target.tenant, usage_id)
            .await
            .map_err(ReactError::transient)?;
        let mut changes = changes.add(
            &self.repos.usage,
            &target.tenant,
            usage_id,
            &usage,
            &usage.state.release(target.id),
        );
        if let Some(server_id) = loaded.state.server_id {
            let server = self
                .repos
                .servers
                .load(&system(), server_id)
                .await
                .map_err(ReactError::transient)?;
            changes = changes.add(
                &self.repos.servers,
                &system(),
                server_id,
                &server,
                &server.state.deallocate(target.id),
            );
        }
        Ok(changes)
    }
}

#[async_trait]
impl Controller for VmReactor {
    type Aggregate = Vm;
    type Step = Step;
    /// A full create is four.
    const MAX_STEPS: usize = 16;

    fn actor(&self) -> Actor {
        Actor::service("provisioner")
    }

    fn repository(&self) -> &Repository<Vm> {
        &self.repos.vms
    }

    fn locks(&self) -> &KeyedLocks {
        &self.locks
    }

    fn next_step(vm: &Vm) -> Option<Step> {
        Step::next(vm)
    }

    async fn act<'a>(
        &'a self,
        target: &EventSubject,
        loaded: &Arc<Loaded<Vm>>,
        step: Step,
        cause: &Cause,
    ) -> Result<AtomicAppend<'a>, ReactError> {
        if step == Step::Place {
            return self.place(target, loaded, cause).await;
        }
        let outcome = self
            .perform(step, &loaded.state, target)
            .await
            .map_err(|e| match e {
                ProviderError::Transient(_) => ReactError::transient(e),
                // `failed` records the operation beside this reason.
                other => ReactError::permanent(other),
            })?;
        let frees = step == Step::Destroy;
        self.outcome(target, loaded, cause, outcome, frees).await
    }

    async fn fail<'a>(
        &'a self,
        target: &EventSubject,
        loaded: &Arc<Loaded<Vm>>,
        step: Step,
        failure: &Failure,
        cause: &Cause,
    ) -> Result<AtomicAppend<'a>, ReactError> {
        if !failure.retrying && step.undone_on_failure() {
            if step != Step::Place {
                self.remove_half_made(target).await?;
            }
            tracing::warn!(vm = %target.id, ?step, error = %failure.error, "the vm failed; its half-made machine is removed, its quota and capacity released");
            let outcome = failed(step, &failure.error);
            self.outcome(target, loaded, cause, outcome, true).await
        } else {
            tracing::warn!(vm = %target.id, ?step, error = %failure.error, attempts = failure.attempts, retrying = failure.retrying, "the vm is degraded; its machine is left as it is");
            let outcome = degraded(step, &failure.error, failure.attempts, failure.retrying);
            self.outcome(target, loaded, cause, outcome, false).await
        }
    }
}

/// Events this reactor appends itself: they need no reaction of their own.
fn is_outcome(event: &StoredEvent) -> bool {
    matches!(
        event.decode::<VmEvent>(),
        Ok(VmEvent::Provisioned(_)
            | VmEvent::Placed(_)
            | VmEvent::PlacementFailed(_)
            | VmEvent::Started(_)
            | VmEvent::Stopped(_)
            | VmEvent::Restarted(_)
            | VmEvent::Recreated(_)
            | VmEvent::Resized(_)
            | VmEvent::Destroyed(_)
            | VmEvent::Failed(_)
            | VmEvent::Degraded(_))
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
            ReactError::permanent_because(
                "invalid_subject",
                format!("not a vm event subject: {}", event.subject),
            )
        })?;
        controller::settle(self, event, &target).await
    }

    /// A VM's step is never abandoned for transience alone.
    fn retries_transient_forever(&self) -> bool {
        true
    }

    async fn record_failure(
        &self,
        event: &StoredEvent,
        failure: &Failure,
    ) -> Result<(), ReactError> {
        controller::record_failure(self, event, failure).await
    }
}
