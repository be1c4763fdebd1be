//! The demo reset: a process manager that, on every fire of the built-in `demo-reset`
//! schedule, gives the public demo a fresh VM and records how it went.
//!
//! On a fire: `vm.recreate` on the demo VM (running or stopped); a demo VM that does
//! not exist yet is created under its fixed id; one that failed or was destroyed is
//! destroyed (if needed) and replaced by a VM whose id derives from the fire, which the
//! `demo` aggregate records as the current one — so the demo never has two live VMs.
//! Then it waits for `running` on the VM's status subject and appends
//! `demo.reset_succeeded` with the duration from the fire, or `demo.reset_failed` with
//! the reason. Every command id derives from the fire, so a redelivered fire repeats
//! nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use berth_runtime::client::{send_command, wait_for_status};
use berth_runtime::decision::{execute, Decision};
use berth_runtime::reactor::{ReactError, Reactor};
use berth_runtime::store::{Aggregate, AtomicAppend, Cause, Repository, StoredEvent};
use berth_schemas::command::CommandMeta;
use berth_schemas::demo::{
    demo_id, DemoEvent, DemoResetFailed, DemoResetStarted, DemoResetSucceeded, RESET_SCHEDULE,
};
use berth_schemas::schedule::{schedule_id, ScheduleEvent};
use berth_schemas::status::{Status, VmState};
use berth_schemas::subjects::{event_subject, status_subject, StatusKind};
use berth_schemas::vm::{CreateVm, Plan, VmCommand, VmStatus, VmTarget};
use berth_schemas::{Actor, CommandReply, TenantId};
use uuid::Uuid;

use crate::vm::Vm;

/// What the demo is.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub tenant: TenantId,
    pub name: String,
    pub plan: Plan,
    pub image: String,
    /// How long a reset may take before it counts as failed.
    pub timeout: Duration,
}

pub use berth_provisioner_core::demo::Demo;

/// Resets the demo on every fire of the `demo-reset` schedule.
pub struct DemoReset {
    pub config: DemoConfig,
    pub vms: Arc<Repository<Vm>>,
    pub demos: Repository<Demo>,
    pub nats: async_nats::Client,
}

impl DemoReset {
    pub fn new(config: DemoConfig, vms: Arc<Repository<Vm>>, nats: async_nats::Client) -> Self {
        Self {
            demos: Repository::new(vms.store().clone(), "provisioner"),
            config,
            vms,
            nats,
        }
    }

    /// The demo VM's id before any replacement.
    fn first_vm_id(&self) -> Uuid {
        Uuid::new_v5(
            &demo_id(&self.config.tenant),
            format!("vm.{}", self.config.name).as_bytes(),
        )
    }

    /// The cause of one step of the reset the fire `trigger` started: the same on every
    /// redelivery of the fire, and correlated with it.
    fn step_cause(trigger: Uuid, step: &str) -> Cause {
        Cause {
            correlation_id: trigger,
            ..Cause::derived(trigger, step, Actor::service("provisioner"))
        }
    }

    async fn command(&self, trigger: Uuid, step: &str, command: &VmCommand) -> Result<(), String> {
        let cause = Self::step_cause(trigger, step);
        let meta = CommandMeta {
            id: cause.id,
            actor: cause.actor,
            correlation_id: trigger,
            traceparent: None,
        };
        let reply = send_command(
            &self.nats,
            &self.config.tenant,
            "vm",
            command.action(),
            &meta,
            command.body(),
        )
        .await
        .map_err(|e| e.to_string())?;
        match reply {
            CommandReply::Accepted { .. } => Ok(()),
            CommandReply::Rejected(rejection) => {
                Err(format!("{} was rejected: {rejection}", command.action()))
            }
        }
    }

    fn create(&self, vm_id: Uuid) -> VmCommand {
        VmCommand::Create(CreateVm {
            vm_id: Some(vm_id),
            ..CreateVm::with_plan(
                self.config.name.clone(),
                self.config.plan,
                self.config.image.clone(),
            )
        })
    }

    /// Gives the demo a fresh VM; returns its id, or why not.
    async fn renew(&self, trigger: Uuid, current: Uuid) -> Result<Uuid, (Uuid, String)> {
        let vm = self
            .vms
            .load(&self.config.tenant, current)
            .await
            .map_err(|e| (current, e.to_string()))?;
        let target = |vm_id| VmTarget {
            vm_id,
            expected_version: None,
        };
        match vm.state.status {
            None => {
                self.command(trigger, "create", &self.create(current))
                    .await
                    .map_err(|e| (current, e))?;
                Ok(current)
            }
            Some(VmStatus::Running | VmStatus::Stopped) => {
                self.command(trigger, "recreate", &VmCommand::Recreate(target(current)))
                    .await
                    .map_err(|e| (current, e))?;
                Ok(current)
            }
            // A degraded demo VM is not worth saving: destroy it and start afresh.
            Some(VmStatus::Failed | VmStatus::Degraded | VmStatus::Destroyed) => {
                if vm.state.status != Some(VmStatus::Destroyed) {
                    self.command(trigger, "destroy", &VmCommand::Destroy(target(current)))
                        .await
                        .map_err(|e| (current, e))?;
                }
                let fresh = Uuid::new_v5(&trigger, b"vm");
                self.command(trigger, "create", &self.create(fresh))
                    .await
                    .map_err(|e| (fresh, e))?;
                Ok(fresh)
            }
            // Something is already under way (a reset, a start): wait for its outcome.
            Some(_) => Ok(current),
        }
    }

    async fn record(&self, trigger: Uuid, step: &str, event: DemoEvent) -> Result<(), ReactError> {
        let tenant = &self.config.tenant;
        let id = demo_id(tenant);
        let cause = Self::step_cause(trigger, step);
        execute(Demo::KIND, id, || async {
            let loaded = self
                .demos
                .load(tenant, id)
                .await
                .map_err(ReactError::transient)?;
            if loaded.applied.contains_key(&cause.id) {
                return Ok(Decision::done(()));
            }
            let changes = AtomicAppend::new(&cause).add(
                &self.demos,
                tenant,
                id,
                &loaded,
                std::slice::from_ref(&event),
            );
            Ok(Decision::append(changes, ()))
        })
        .await
    }

    async fn reset(
        &self,
        trigger: Uuid,
        fired_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), ReactError> {
        let demo = self
            .demos
            .load(&self.config.tenant, demo_id(&self.config.tenant))
            .await
            .map_err(ReactError::transient)?;
        let finished = [
            Self::step_cause(trigger, "succeeded").id,
            Self::step_cause(trigger, "failed").id,
        ];
        if finished.iter().any(|id| demo.applied.contains_key(id)) {
            return Ok(());
        }
        let current = demo.state.vm_id.unwrap_or_else(|| self.first_vm_id());
        let started = Instant::now();
        let elapsed_ms = || {
            let since_fire = (chrono::Utc::now() - fired_at).num_milliseconds();
            u64::try_from(since_fire).unwrap_or_else(|_| started.elapsed().as_millis() as u64)
        };
        let outcome = match self.renew(trigger, current).await {
            Ok(vm_id) => {
                self.record(
                    trigger,
                    "started",
                    DemoEvent::ResetStarted(DemoResetStarted { trigger, vm_id }),
                )
                .await?;
                self.wait_running(vm_id)
                    .await
                    .map(|()| vm_id)
                    .map_err(|e| (vm_id, e))
            }
            Err(failure) => Err(failure),
        };
        match outcome {
            Ok(vm_id) => {
                let duration_ms = elapsed_ms();
                tracing::info!(%vm_id, duration_ms, "demo reset succeeded");
                let done = DemoResetSucceeded {
                    trigger,
                    vm_id,
                    duration_ms,
                };
                self.record(trigger, "succeeded", DemoEvent::ResetSucceeded(done))
                    .await
            }
            Err((vm_id, reason)) => {
                tracing::warn!(%vm_id, %reason, "demo reset failed");
                let failed = DemoResetFailed {
                    trigger,
                    vm_id,
                    reason,
                    duration_ms: elapsed_ms(),
                };
                self.record(trigger, "failed", DemoEvent::ResetFailed(failed))
                    .await
            }
        }
    }

    /// Waits for the VM's status to say `running` (or `failed`, which ends the wait).
    async fn wait_running(&self, vm_id: Uuid) -> Result<(), String> {
        let subject = status_subject(&self.config.tenant, StatusKind::Vm, &vm_id.to_string())
            .map_err(|e| e.to_string())?;
        let since = self
            .vms
            .load(&self.config.tenant, vm_id)
            .await
            .map_err(|e| e.to_string())?
            .version;
        let settled = |s: &Status<VmState>| {
            s.version >= since
                && matches!(
                    s.state.status,
                    VmStatus::Running | VmStatus::Failed | VmStatus::Degraded
                )
        };
        let status = wait_for_status(&self.nats, &subject, self.config.timeout, settled)
            .await
            .map_err(|e| e.to_string())?;
        match status.state.status {
            VmStatus::Running => Ok(()),
            _ => Err(status.reason().unwrap_or("the demo vm failed").to_owned()),
        }
    }
}

#[async_trait]
impl Reactor for DemoReset {
    fn name(&self) -> String {
        "provisioner-demo-reset".into()
    }

    fn filter_subjects(&self) -> Vec<String> {
        let schedule = schedule_id(&TenantId::system(), RESET_SCHEDULE);
        vec![event_subject(&TenantId::system(), "schedule", schedule)]
    }

    async fn react(&self, event: &StoredEvent) -> Result<(), ReactError> {
        match event.decode::<ScheduleEvent>() {
            Ok(ScheduleEvent::Fired(fired)) => self.reset(event.meta.id, fired.fired_at).await,
            _ => Ok(()),
        }
    }
}
