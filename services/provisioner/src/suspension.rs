//! Suspension: when billing suspends an account, the tenant's running VMs are stopped;
//! when it resumes the account, exactly those are started again (a VM its owner stopped
//! stays stopped). What was stopped is recorded in `evt.<tenant>.suspension.<id>`, and
//! every command id derives from the account event, so redelivery repeats nothing.
//! The tier of an account is also the tenant's quota: `account.opened` and
//! `account.tier_set` set it.

use std::sync::Arc;

use async_trait::async_trait;
use berth_runtime::commands::{execute_on, execute_with};
use berth_runtime::reactor::{ReactError, Reactor};
use berth_runtime::store::{Aggregate, Cause, NoCommand, Repository, StoredEvent};
use berth_schemas::billing::AccountEvent;
use berth_schemas::subjects::event_filter;
use berth_schemas::suspension::{
    suspension_id, SuspensionApplied, SuspensionEvent, SuspensionLifted,
};
use berth_schemas::usage::{LimitOverrides, SetQuota, TenantCommand, Tier};
use berth_schemas::vm::{VmCommand, VmStatus, VmTarget};
use berth_schemas::{Actor, Rejection, TenantId};
use uuid::Uuid;

use crate::usage::Usage;
use crate::vm::Vm;

/// What a service stopped for a suspension (the provisioner's VMs, pod-lifecycle's pods).
#[derive(Debug, Clone, Default)]
pub struct Suspension {
    pub stopped: Vec<Uuid>,
    pub active: bool,
}

impl Aggregate for Suspension {
    const KIND: &'static str = berth_schemas::suspension::AGGREGATE;
    type Command = NoCommand;
    type Event = SuspensionEvent;

    fn apply(&mut self, event: &SuspensionEvent) {
        match event {
            SuspensionEvent::Applied(applied) => {
                self.stopped.clone_from(&applied.stopped);
                self.active = true;
            }
            SuspensionEvent::Lifted(_) => {
                self.stopped.clear();
                self.active = false;
            }
        }
    }

    fn decide(&self, command: &NoCommand) -> Result<Vec<SuspensionEvent>, Rejection> {
        match *command {}
    }
}

/// Follows account events for the provisioner.
pub struct OnAccount {
    pub vms: Arc<Repository<Vm>>,
    pub usage: Arc<Repository<Usage>>,
    pub suspensions: Repository<Suspension>,
}

fn cause(event: &StoredEvent, label: &str) -> Cause {
    Cause {
        id: Uuid::new_v5(&event.meta.id, label.as_bytes()),
        actor: Actor::service("provisioner"),
        correlation_id: event.meta.correlation_id,
        traceparent: event.meta.traceparent.clone(),
    }
}

impl OnAccount {
    async fn vm_command(
        &self,
        event: &StoredEvent,
        tenant: &TenantId,
        command: VmCommand,
    ) -> Result<(), ReactError> {
        let label = format!("{}:{}", command.action(), command.vm_id(Uuid::nil()));
        // Refusals (the VM moved on meanwhile) are the VM's answer, not a failure.
        if let Err(rejection) = execute_on(&self.vms, tenant, &cause(event, &label), &command).await
        {
            if rejection.code == berth_schemas::RejectionCode::Unavailable {
                return Err(ReactError::Transient(rejection.to_string()));
            }
            tracing::info!(%tenant, %rejection, "suspension left a vm as it is");
        }
        Ok(())
    }

    async fn record(
        &self,
        event: &StoredEvent,
        tenant: &TenantId,
        what: SuspensionEvent,
    ) -> Result<(), ReactError> {
        let id = suspension_id(tenant, "vms");
        let recorded = execute_with(
            &self.suspensions,
            tenant,
            id,
            &cause(event, "vms:record"),
            None,
            |_| Ok(vec![what.clone()]),
        )
        .await;
        recorded
            .map(|_| ())
            .map_err(|r| ReactError::Transient(r.to_string()))
    }

    async fn suspend(&self, event: &StoredEvent, tenant: &TenantId) -> Result<(), ReactError> {
        let record = self
            .suspensions
            .load(tenant, suspension_id(tenant, "vms"))
            .await
            .map_err(transient)?;
        if record.applied.contains_key(&cause(event, "vms:record").id) {
            return Ok(());
        }
        let mut stopped = Vec::new();
        for vm_id in self
            .vms
            .store()
            .aggregate_ids(tenant, berth_schemas::vm::AGGREGATE)
            .await
            .map_err(transient)?
        {
            let vm = self.vms.load(tenant, vm_id).await.map_err(transient)?;
            if matches!(
                vm.state.status,
                // A degraded VM's machine may be running: stop it too.
                Some(
                    VmStatus::Running
                        | VmStatus::Starting
                        | VmStatus::Restarting
                        | VmStatus::Degraded
                )
            ) {
                self.vm_command(
                    event,
                    tenant,
                    VmCommand::Stop(VmTarget {
                        vm_id,
                        expected_version: None,
                    }),
                )
                .await?;
                stopped.push(vm_id);
            }
        }
        tracing::info!(%tenant, vms = stopped.len(), "account suspended: vms stopped");
        self.record(
            event,
            tenant,
            SuspensionEvent::Applied(SuspensionApplied { stopped }),
        )
        .await
    }

    async fn resume(&self, event: &StoredEvent, tenant: &TenantId) -> Result<(), ReactError> {
        let record = self
            .suspensions
            .load(tenant, suspension_id(tenant, "vms"))
            .await
            .map_err(transient)?;
        if !record.state.active {
            return Ok(());
        }
        let stopped = record.state.stopped.clone();
        for vm_id in &stopped {
            let start = VmCommand::Start(VmTarget {
                vm_id: *vm_id,
                expected_version: None,
            });
            self.vm_command(event, tenant, start).await?;
        }
        tracing::info!(%tenant, vms = stopped.len(), "account resumed: vms started");
        self.record(
            event,
            tenant,
            SuspensionEvent::Lifted(SuspensionLifted { started: stopped }),
        )
        .await
    }

    async fn set_tier(
        &self,
        event: &StoredEvent,
        tenant: &TenantId,
        tier: Tier,
    ) -> Result<(), ReactError> {
        let command = TenantCommand::SetQuota(SetQuota {
            tenant: tenant.clone(),
            tier,
            overrides: LimitOverrides::default(),
        });
        let outcome = execute_on(&self.usage, tenant, &cause(event, "vms:tier"), &command).await;
        outcome
            .map(|_| ())
            .map_err(|r| ReactError::Transient(r.to_string()))
    }
}

fn transient(error: berth_runtime::Error) -> ReactError {
    ReactError::Transient(error.to_string())
}

#[async_trait]
impl Reactor for OnAccount {
    fn name(&self) -> String {
        "provisioner-accounts".into()
    }

    fn filter_subjects(&self) -> Vec<String> {
        vec![event_filter(berth_schemas::billing::ACCOUNT)]
    }

    async fn react(&self, event: &StoredEvent) -> Result<(), ReactError> {
        let tenant = event.meta.tenant.clone();
        match event
            .decode::<AccountEvent>()
            .map_err(|e| ReactError::Permanent(e.to_string()))?
        {
            AccountEvent::Suspended(_) => self.suspend(event, &tenant).await,
            AccountEvent::Resumed(_) => self.resume(event, &tenant).await,
            AccountEvent::Opened(opened) => self.set_tier(event, &tenant, opened.tier).await,
            AccountEvent::TierSet(set) => self.set_tier(event, &tenant, set.tier).await,
            _ => Ok(()),
        }
    }
}
