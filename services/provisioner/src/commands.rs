//! The provisioner's command services: `cmd.<tenant>.vm.*` and `cmd.system.tenant.*`.

use std::sync::Arc;

use async_trait::async_trait;
use berth_runtime::commands::{
    check_expected_version, contention_pause, execute_on, recorded_reply, too_much_contention,
    unavailable, CommandService, MAX_ATTEMPTS,
};
use berth_runtime::store::Aggregate;
use berth_runtime::store::{AppendError, Cause, Repository};
use berth_schemas::ids::SYSTEM_TENANT;
use berth_schemas::usage::{usage_id, Limits, Reserved, TenantCommand};
use berth_schemas::vm::{CreateVm, VmCommand};
use berth_schemas::{CommandReply, CommandSet, Rejection, RejectionCode, TenantId};

use crate::usage::Usage;
use crate::vm::Vm;

/// VM commands; a create reserves quota in the same atomic append.
pub struct VmCommands {
    pub vms: Arc<Repository<Vm>>,
    pub usage: Arc<Repository<Usage>>,
    /// Limits of tenants without a quota of their own (`None`: unlimited).
    pub default_limits: Option<Limits>,
}

#[async_trait]
impl CommandService for VmCommands {
    type Command = VmCommand;

    fn kind(&self) -> &'static str {
        berth_schemas::vm::AGGREGATE
    }

    async fn execute(
        &self,
        tenant: &TenantId,
        cause: &Cause,
        command: &VmCommand,
    ) -> Result<CommandReply, Rejection> {
        match command {
            VmCommand::Create(create) => self.create(tenant, cause, command, create).await,
            other => execute_on(&self.vms, tenant, cause, other).await,
        }
    }
}

impl VmCommands {
    async fn create(
        &self,
        tenant: &TenantId,
        cause: &Cause,
        command: &VmCommand,
        create: &CreateVm,
    ) -> Result<CommandReply, Rejection> {
        let id = command.aggregate_id(cause.id);
        let usage_id = usage_id(tenant);
        // Every create of a tenant reserves on its usage aggregate: queue them here.
        let _queued = self.usage.lock(usage_id).await;
        for attempt in 0..MAX_ATTEMPTS {
            let vm = self.vms.load(tenant, id).await.map_err(unavailable)?;
            if let Some(reply) = recorded_reply(&vm, id, cause) {
                return Ok(reply);
            }
            check_expected_version(Vm::KIND, id, &vm, command.expected_version())?;
            let vm_events = vm.state.decide(command)?;
            let spec = create.requested()?;
            let usage = self
                .usage
                .load(tenant, usage_id)
                .await
                .map_err(unavailable)?;
            let wanted = Reserved {
                vm_id: id,
                vcpus: spec.vcpus,
                memory_mb: spec.memory_mb,
                disk_gb: spec.disk_gb,
            };
            let usage_events = usage.state.reserve(wanted, self.default_limits)?;
            let vm_append = self.vms.prepare(tenant, id, &vm, cause, &vm_events, 0);
            let usage_append = self.usage.prepare(
                tenant,
                usage_id,
                &usage,
                cause,
                &usage_events,
                vm_events.len(),
            );
            let store = self.vms.store();
            match store
                .append_all(vec![vm_append.clone(), usage_append.clone()])
                .await
            {
                Ok(sequences) => {
                    let appended = self
                        .vms
                        .appended(&vm, cause, vm_append, &sequences[0])
                        .map_err(unavailable)?;
                    self.usage
                        .appended(&usage, cause, usage_append, &sequences[1])
                        .map_err(unavailable)?;
                    return Ok(CommandReply::Accepted {
                        aggregate_id: id,
                        version: appended.version,
                        events: appended.events,
                    });
                }
                Err(AppendError::Store(e)) => return Err(unavailable(e)),
                // A conflict, a duplicate or a busy server: reload and decide again.
                Err(_) => contention_pause(attempt).await,
            }
        }
        Err(too_much_contention(Vm::KIND, id))
    }
}

/// Operator commands on tenants: only on `cmd.system.tenant.*`.
pub struct TenantCommands {
    pub usage: Arc<Repository<Usage>>,
}

#[async_trait]
impl CommandService for TenantCommands {
    type Command = TenantCommand;

    fn kind(&self) -> &'static str {
        berth_schemas::usage::TENANT_COMMANDS
    }

    async fn execute(
        &self,
        tenant: &TenantId,
        cause: &Cause,
        command: &TenantCommand,
    ) -> Result<CommandReply, Rejection> {
        if tenant.as_str() != SYSTEM_TENANT {
            return Err(Rejection::new(
                RejectionCode::Forbidden,
                "tenant commands are for operators: send them to cmd.system.tenant.<action>",
            ));
        }
        match command {
            TenantCommand::SetQuota(set) => {
                execute_on(&self.usage, &set.tenant, cause, command).await
            }
        }
    }
}
