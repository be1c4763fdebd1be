//! berth-provisioner: VMs from command to running machine.
//!
//! - [`vm`]: the `vm` aggregate — pure `decide`/`apply`, and [`vm::Step`], the provider
//!   step a VM's state calls for.
//! - [`provider`]: the [`provider::VmProvider`] trait; [`sim`] is the simulated
//!   datacenter (the Docker provider implements the same trait).
//! - [`reactor`]: the level-triggered reactor that drives the provider.
//! - [`projection`]: the `vms` read model and `status.<tenant>.vm.<id>`.
//! - [`usage`]: per-tenant quotas; [`commands`]: the command services (a VM create
//!   reserves quota in the same atomic append).
//!
//! [`run`] serves `cmd.*.vm.*`, runs the reactor and the `vms` and `audit_log`
//! projections until shutdown.

pub mod cli;
pub mod commands;
pub mod projection;
pub mod provider;
pub mod reactor;
pub mod sim;
pub mod usage;
pub mod vm;

use std::sync::Arc;

use berth_runtime::audit::AuditLog;
use berth_runtime::commands::{serve as serve_commands, CommandHandler};
use berth_runtime::store::Repository;
use berth_runtime::{projection as projections, reactor as reactors, Runtime};
use berth_schemas::usage::Limits;

use crate::commands::{TenantCommands, VmCommands};
use crate::projection::VmsProjection;
use crate::provider::VmProvider;
use crate::reactor::VmReactor;
use crate::usage::Usage;
use crate::vm::Vm;

/// How the provisioner behaves beyond the runtime's settings.
#[derive(Debug, Clone, Default)]
pub struct ProvisionerConfig {
    /// Limits of tenants that have no quota of their own; `None` is unlimited.
    pub default_limits: Option<Limits>,
}

/// Runs the provisioner until `rt.shutdown` is cancelled.
pub async fn run(
    rt: Runtime,
    provider: Arc<dyn VmProvider>,
    config: ProvisionerConfig,
) -> anyhow::Result<()> {
    let vms = Arc::new(Repository::<Vm>::new(rt.store.clone(), rt.service));
    let usage = Arc::new(Repository::<Usage>::new(rt.store.clone(), rt.service));
    let vm_commands = VmCommands {
        vms: vms.clone(),
        usage: usage.clone(),
        default_limits: config.default_limits,
    };
    let vm_handler = Arc::new(CommandHandler::new(
        Arc::new(vm_commands),
        rt.settings.max_command_bytes,
    ));
    let tenant_handler = Arc::new(CommandHandler::new(
        Arc::new(TenantCommands {
            usage: usage.clone(),
        }),
        rt.settings.max_command_bytes,
    ));
    let reactor = Arc::new(VmReactor::new(vms, usage, provider));
    tokio::try_join!(
        serve_commands(&rt, vm_handler),
        serve_commands(&rt, tenant_handler),
        reactors::run(&rt, reactor),
        projections::run(&rt, Arc::new(VmsProjection)),
        projections::run(&rt, Arc::new(AuditLog)),
    )?;
    Ok(())
}
