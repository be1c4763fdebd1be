//! The provisioner's command services: `cmd.<tenant>.vm.*` and `cmd.system.tenant.*`.
//! A create or resize changes the tenant's usage in the same atomic append.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_runtime::commands::{
    execute_across, execute_on, recorded_reply, unavailable, CommandService,
};
use berth_runtime::store::{Aggregate, AtomicAppend, Cause, Repository};
use berth_schemas::ids::SYSTEM_TENANT;
use berth_schemas::server::{Allocation, ServerCommand};
use berth_schemas::usage::{usage_id, Limits, Reserved, TenantCommand, UsageEvent};
use berth_schemas::vm::{ExecOutput, ExecVm, VmCommand, VmEvent, VmExecuted};
use berth_schemas::{CommandReply, CommandSet, Rejection, RejectionCode, TenantId};

use crate::placement::system;
use crate::provider::{machine_name, ProviderError, VmProvider};
use crate::server::Server;
use crate::usage::Usage;
use crate::vm::Vm;

/// How a command changes a tenant's usage: [`Usage::reserve`] or [`Usage::resize`].
type UsageChange = fn(&Usage, Reserved, Option<Limits>) -> Result<Vec<UsageEvent>, Rejection>;

/// VM commands; a create or resize changes the quota reservation in the same atomic append.
pub struct VmCommands {
    pub vms: Arc<Repository<Vm>>,
    pub usage: Arc<Repository<Usage>>,
    pub servers: Arc<Repository<Server>>,
    /// Runs `vm.exec`.
    pub provider: Arc<dyn VmProvider>,
    /// Limits of tenants without a quota of their own (`None`: unlimited).
    pub default_limits: Option<Limits>,
}

#[async_trait]
impl CommandService for VmCommands {
    type Command = VmCommand;
    type Output = ExecOutput;

    fn kind(&self) -> &'static str {
        berth_schemas::vm::AGGREGATE
    }

    async fn execute(
        &self,
        tenant: &TenantId,
        cause: &Cause,
        command: &VmCommand,
    ) -> Result<CommandReply<ExecOutput>, Rejection> {
        let reply = match command {
            VmCommand::Create(create) => {
                let spec = create.requested()?;
                let size = (spec.vcpus, spec.memory_mb, spec.disk_gb);
                self.with_reservation(tenant, cause, command, size, Usage::reserve)
                    .await
            }
            VmCommand::Resize(resize) => {
                let size = resize.new_size()?;
                let size = (size.vcpus, size.memory_mb, size.disk_gb);
                self.with_reservation(tenant, cause, command, size, Usage::resize)
                    .await
            }
            VmCommand::Exec(exec) => return self.exec(tenant, cause, command, exec).await,
            other => execute_on(&self.vms, tenant, cause, other).await,
        };
        reply.map(CommandReply::with_no_output)
    }
}

/// Output beyond this many bytes per stream is cut from an exec reply.
const MAX_EXEC_OUTPUT: usize = 64 * 1024;

impl VmCommands {
    /// Runs a command in a running VM, records `executed` (without the output) and
    /// answers with the output. A repeated command id is answered from the record and
    /// not run again.
    async fn exec(
        &self,
        tenant: &TenantId,
        cause: &Cause,
        command: &VmCommand,
        exec: &ExecVm,
    ) -> Result<CommandReply<ExecOutput>, Rejection> {
        let id = exec.vm_id;
        let _queued = self.vms.lock(id).await;
        let vm = self.vms.load(tenant, id).await.map_err(unavailable)?;
        if let Some(reply) = recorded_reply(&vm, id, cause) {
            return Ok(reply.with_no_output());
        }
        vm.state
            .decide(command, &cause.context(chrono::Utc::now()))?;
        let timeout = Duration::from_secs(
            exec.timeout_secs
                .unwrap_or(ExecVm::DEFAULT_TIMEOUT_SECS)
                .into(),
        );
        let mut output = self
            .provider
            .exec(tenant, &machine_name(id), &exec.command, timeout)
            .await
            .map_err(|e| match e {
                ProviderError::Transient(reason) => {
                    Rejection::new(RejectionCode::Unavailable, reason)
                }
                other => Rejection::invalid_state(other.to_string()),
            })?;
        truncate(&mut output.stdout);
        truncate(&mut output.stderr);
        let executed = VmEvent::Executed(VmExecuted {
            command: exec.command.join(" ").chars().take(200).collect(),
            exit_code: output.exit_code,
        });
        // Recorded even if the VM moved meanwhile: the command did run.
        let reply = execute_across(&self.vms, tenant, id, cause, None, |vm| {
            let executed = executed.clone();
            async move { Ok(AtomicAppend::new(cause).add(&self.vms, tenant, id, &vm, &[executed])) }
        })
        .await?;
        let mut reply = reply.with_no_output();
        if let CommandReply::Accepted { output: answer, .. } = &mut reply {
            *answer = Some(output);
        }
        Ok(reply)
    }
}

fn truncate(text: &mut String) {
    if text.len() > MAX_EXEC_OUTPUT {
        let mut end = MAX_EXEC_OUTPUT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

impl VmCommands {
    /// Decides a command that changes what the VM holds of the tenant's quota: the VM's
    /// events and the usage change (`reserve` or `resize`) go out in one atomic batch.
    async fn with_reservation(
        &self,
        tenant: &TenantId,
        cause: &Cause,
        command: &VmCommand,
        (vcpus, memory_mb, disk_gb): (u32, u32, u32),
        change: UsageChange,
    ) -> Result<CommandReply, Rejection> {
        let id = command.aggregate_id(cause.id);
        let usage_id = usage_id(tenant);
        // Every reservation of a tenant goes through its usage aggregate: queue them here.
        let _queued = self.usage.lock(usage_id).await;
        let expected_version = command.expected_version();
        execute_across(
            &self.vms,
            tenant,
            id,
            cause,
            expected_version,
            |vm| async move {
                let vm_events = vm
                    .state
                    .decide(command, &cause.context(chrono::Utc::now()))?;
                let usage = self
                    .usage
                    .load(tenant, usage_id)
                    .await
                    .map_err(unavailable)?;
                let wanted = Reserved {
                    vm_id: id,
                    vcpus,
                    memory_mb,
                    disk_gb,
                };
                let usage_events = change(&usage.state, wanted, self.default_limits)?;
                // A resize also needs room on the VM's server (a create is placed later).
                let server = match (command, vm.state.server_id) {
                    (VmCommand::Resize(_), Some(server_id)) => Some((
                        server_id,
                        self.servers
                            .load(&system(), server_id)
                            .await
                            .map_err(unavailable)?,
                    )),
                    _ => None,
                };
                let mut changes = AtomicAppend::new(cause)
                    .add(&self.vms, tenant, id, &vm, &vm_events)
                    .add(&self.usage, tenant, usage_id, &usage, &usage_events);
                if let Some((server_id, server)) = &server {
                    let allocation = Allocation {
                        vm_id: id,
                        vcpus,
                        memory_mb,
                        disk_gb,
                    };
                    let allocate = server.state.allocate(allocation)?;
                    changes = changes.add(&self.servers, &system(), *server_id, server, &allocate);
                }
                Ok(changes)
            },
        )
        .await
    }
}

/// Operator commands on tenants: only on `cmd.system.tenant.*`.
pub struct TenantCommands {
    pub usage: Arc<Repository<Usage>>,
}

#[async_trait]
impl CommandService for TenantCommands {
    type Command = TenantCommand;
    type Output = ();

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

/// Operator commands on servers: only on `cmd.system.server.*`.
pub struct ServerCommands {
    pub servers: Arc<Repository<Server>>,
}

#[async_trait]
impl CommandService for ServerCommands {
    type Command = ServerCommand;
    type Output = ();

    fn kind(&self) -> &'static str {
        berth_schemas::server::AGGREGATE
    }

    async fn execute(
        &self,
        tenant: &TenantId,
        cause: &Cause,
        command: &ServerCommand,
    ) -> Result<CommandReply, Rejection> {
        if tenant.as_str() != SYSTEM_TENANT {
            return Err(Rejection::new(
                RejectionCode::Forbidden,
                "server commands are for operators: send them to cmd.system.server.<action>",
            ));
        }
        execute_on(&self.servers, tenant, cause, command).await
    }
}
