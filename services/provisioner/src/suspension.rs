//! The provisioner's side of account events: a suspended tenant's running VMs are
//! stopped and, on resumption, exactly those started again (the rule in
//! [`berth_adapters::suspension`]); the tier of an account is also the tenant's quota,
//! so `account.opened` and `account.tier_set` set it.

use std::sync::Arc;

use async_trait::async_trait;
use berth_adapters::suspension::{settled, Suspendable, Suspension, SuspensionFollower};
use berth_runtime::commands::execute_on;
use berth_runtime::reactor::{ReactError, Reactor};
use berth_runtime::store::{Cause, Repository, StoredEvent};
use berth_schemas::billing::AccountEvent;
use berth_schemas::subjects::event_filter;
use berth_schemas::usage::{LimitOverrides, SetQuota, TenantCommand, Tier};
use berth_schemas::vm::{VmCommand, VmStatus, VmTarget};
use berth_schemas::TenantId;
use uuid::Uuid;

use crate::usage::Usage;
use crate::vm::Vm;

/// Follows account events for the provisioner.
pub struct OnAccount {
    suspension: SuspensionFollower<Vms>,
    usage: Arc<Repository<Usage>>,
}

impl OnAccount {
    pub fn new(
        vms: Arc<Repository<Vm>>,
        usage: Arc<Repository<Usage>>,
        suspensions: Repository<Suspension>,
    ) -> Self {
        Self {
            suspension: SuspensionFollower::new("provisioner", Vms(vms), suspensions),
            usage,
        }
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
        let cause = self.suspension.cause(event, "vms:tier");
        execute_on(&self.usage, tenant, &cause, &command)
            .await
            .map(|_| ())
            .map_err(ReactError::transient)
    }
}

/// A tenant's VMs, as a suspension sees them.
pub struct Vms(Arc<Repository<Vm>>);

#[async_trait]
impl Suspendable for Vms {
    fn scope(&self) -> &'static str {
        "vms"
    }

    async fn running(&self, tenant: &TenantId) -> Result<Vec<Uuid>, ReactError> {
        let transient = |e: berth_runtime::Error| ReactError::transient(e);
        let mut running = Vec::new();
        let ids = self
            .0
            .store()
            .aggregate_ids(tenant, berth_schemas::vm::AGGREGATE)
            .await
            .map_err(transient)?;
        for vm_id in ids {
            let vm = self.0.load(tenant, vm_id).await.map_err(transient)?;
            // A degraded VM's machine may be running: stop it too.
            if matches!(
                vm.state.status,
                Some(
                    VmStatus::Running
                        | VmStatus::Starting
                        | VmStatus::Restarting
                        | VmStatus::Degraded
                )
            ) {
                running.push(vm_id);
            }
        }
        Ok(running)
    }

    async fn set_paused(
        &self,
        tenant: &TenantId,
        vm_id: Uuid,
        pause: bool,
        cause: &Cause,
    ) -> Result<(), ReactError> {
        let target = VmTarget {
            vm_id,
            expected_version: None,
        };
        let command = if pause {
            VmCommand::Stop(target)
        } else {
            VmCommand::Start(target)
        };
        settled(
            tenant,
            vm_id,
            execute_on(&self.0, tenant, cause, &command).await,
        )
    }

    fn label(&self, vm_id: Uuid, pause: bool) -> String {
        let action = if pause { "stop" } else { "start" };
        format!("{action}:{vm_id}")
    }
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
        let account = event
            .decode::<AccountEvent>()
            .map_err(ReactError::permanent)?;
        match &account {
            AccountEvent::Opened(opened) => self.set_tier(event, &tenant, opened.tier).await,
            AccountEvent::TierSet(set) => self.set_tier(event, &tenant, set.tier).await,
            other => self.suspension.follow(event, other).await,
        }
    }
}
