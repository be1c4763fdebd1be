//! berth-provisioner: VMs from command to running machine.
//!
//! - [`vm`]: the `vm` aggregate — pure `decide`/`apply`, and [`vm::Step`], the provider
//!   step a VM's state calls for.
//! - [`provider`]: the [`provider::VmProvider`] trait; [`sim`] is the simulated
//!   datacenter (the Docker provider implements the same trait).
//! - [`reactor`]: the level-triggered reactor that drives the provider.
//! - [`projection`]: the `vms` read model and `status.<tenant>.vm.<id>`.
//!
//! [`run`] serves `cmd.*.vm.*`, runs the reactor and the `vms` and `audit_log`
//! projections until shutdown.

pub mod cli;
pub mod projection;
pub mod provider;
pub mod reactor;
pub mod sim;
pub mod vm;

use std::sync::Arc;

use berth_runtime::audit::AuditLog;
use berth_runtime::commands::{self, CommandHandler};
use berth_runtime::store::Repository;
use berth_runtime::{projection as projections, reactor as reactors, Runtime};

use crate::projection::VmsProjection;
use crate::provider::VmProvider;
use crate::reactor::VmReactor;
use crate::vm::Vm;

/// Runs the provisioner until `rt.shutdown` is cancelled.
pub async fn run(rt: Runtime, provider: Arc<dyn VmProvider>) -> anyhow::Result<()> {
    let repository = Arc::new(Repository::<Vm>::new(rt.store.clone(), rt.service));
    let handler = Arc::new(CommandHandler::new(
        repository.clone(),
        rt.settings.max_command_bytes,
    ));
    let reactor = Arc::new(VmReactor::new(repository, provider));
    tokio::try_join!(
        commands::serve(&rt, handler),
        reactors::run(&rt, reactor),
        projections::run(&rt, Arc::new(VmsProjection)),
        projections::run(&rt, Arc::new(AuditLog)),
    )?;
    Ok(())
}
