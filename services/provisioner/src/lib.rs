//! berth-provisioner: VMs from command to running machine.
//!
//! - [`vm`]: the `vm` aggregate — pure `decide`/`apply`, and [`vm::Step`], the provider
//!   step a VM's state calls for.
//! - [`provider`]: the [`provider::VmProvider`] trait; [`sim`] is the simulated
//!   datacenter (the Docker provider implements the same trait).
//! - [`reactor`]: the level-triggered reactor that drives the provider.
//! - [`projection`]: the `vms` read model and `status.<tenant>.vm.<id>`.
//! - [`query`]: `query.<scope>.vm|server.*` from those projections.
//! - [`usage`]: per-tenant quotas; [`commands`]: the command services (a VM create
//!   reserves quota in the same atomic append).
//! - [`server`]: hosts and their capacity; [`placement`]: best fit, allocated in the
//!   same atomic append as the VM's `placed`; [`servers_projection`]: `servers`.
//!
//! - [`suspension`]: stops a suspended tenant's VMs and starts them on resumption; an
//!   account's tier sets the tenant's quota.
//!
//! [`run`] serves `cmd.*.vm.*`, `cmd.system.tenant.*` and `cmd.system.server.*`, runs
//! the reactor and the `vms`, `servers` and `audit_log` projections until shutdown.

pub mod cli;
pub mod commands;
pub mod demo;
pub mod docker;
pub mod error;
pub mod placement;
pub mod projection;
pub mod provider;
pub mod query;
pub mod reactor;
pub mod reconcile;
pub use berth_provisioner_core::server;
pub mod servers_projection;
pub mod sim;
pub mod suspension;
pub use berth_provisioner_core::usage;
pub use berth_provisioner_core::vm;

use std::sync::Arc;
use std::time::Duration;

use berth_runtime::audit::AuditLog;
use berth_runtime::commands::{execute_on, serve as serve_commands, CommandHandler};
use berth_runtime::store::{Cause, Repository};
use berth_runtime::{projection as projections, reactor as reactors, Runtime};
use berth_schemas::server::{RegisterServer, ServerCommand};
use berth_schemas::usage::Limits;
use berth_schemas::{Actor, TenantId};
use futures::TryFutureExt;
use uuid::Uuid;

use crate::commands::{ServerCommands, TenantCommands, VmCommands};
use crate::demo::{DemoConfig, DemoReset};
pub use crate::error::{Error, Result};
use crate::projection::VmsProjection;
use crate::provider::VmProvider;
use crate::reactor::{Concurrency, Repositories, VmReactor};
use crate::reconcile::{OnSchedule, Reconciler};
use crate::server::Server;
use crate::servers_projection::ServersProjection;
use crate::usage::Usage;
use crate::vm::Vm;

/// How the provisioner behaves beyond the runtime's settings.
#[derive(Debug, Clone, Default)]
pub struct ProvisionerConfig {
    /// Limits of tenants that have no quota of their own; `None` is unlimited.
    pub default_limits: Option<Limits>,
    /// Servers this provisioner registers at start (idempotent; a server registered
    /// before with another spec is left as it is, with a warning).
    pub servers: Vec<RegisterServer>,
    pub concurrency: Concurrency,
    /// How often to compare the provider with the log on its own timer (for a provisioner
    /// without a scheduler); it also reconciles on every fire of the `reconcile` schedule
    /// and when asked.
    pub reconcile_every: Option<Duration>,
    /// The public demo, reset on every fire of the `demo-reset` schedule.
    pub demo: Option<DemoConfig>,
}

/// Runs the provisioner until `rt.shutdown` is cancelled.
pub async fn run(
    rt: Runtime,
    provider: Arc<dyn VmProvider>,
    config: ProvisionerConfig,
) -> Result<()> {
    let vms = Arc::new(Repository::<Vm>::new(rt.store.clone(), rt.service));
    let usage = Arc::new(Repository::<Usage>::new(rt.store.clone(), rt.service));
    let servers = Arc::new(Repository::<Server>::new(rt.store.clone(), rt.service));
    register_servers(&servers, &config.servers).await;
    let vm_commands = VmCommands {
        vms: vms.clone(),
        usage: usage.clone(),
        servers: servers.clone(),
        provider: provider.clone(),
        default_limits: config.default_limits,
    };
    let vm_handler = Arc::new(CommandHandler::new(Arc::new(vm_commands), &rt));
    let tenant_handler = Arc::new(CommandHandler::new(
        Arc::new(TenantCommands {
            usage: usage.clone(),
        }),
        &rt,
    ));
    let server_handler = Arc::new(CommandHandler::new(
        Arc::new(ServerCommands {
            servers: servers.clone(),
        }),
        &rt,
    ));
    let repos = Repositories {
        vms,
        usage,
        servers,
    };
    let reconciler = Arc::new(Reconciler::new(
        repos.vms.clone(),
        repos.servers.clone(),
        provider.clone(),
        rt.db.clone(),
    ));
    let on_schedule = Arc::new(OnSchedule {
        reconciler: reconciler.clone(),
    });
    let demo_reset = config
        .demo
        .clone()
        .map(|demo| Arc::new(DemoReset::new(demo, repos.vms.clone(), rt.nats.clone())));
    let on_account = Arc::new(suspension::OnAccount::new(
        repos.vms.clone(),
        repos.usage.clone(),
        Repository::new(rt.store.clone(), rt.service),
    ));
    let reactor = Arc::new(VmReactor::new(repos, provider, config.concurrency));
    let resetting_demo = async {
        match demo_reset {
            Some(demo_reset) => Ok(reactors::run(&rt, demo_reset).await?),
            None => Ok(()),
        }
    };
    let reconciling = async {
        let serving = reconcile::serve(&rt, &reconciler);
        let periodic = async {
            match config.reconcile_every {
                Some(period) => reconcile::every(&rt, &reconciler, period).await,
                None => Ok(()),
            }
        };
        let scheduled = async { Ok(reactors::run(&rt, on_schedule).await?) };
        tokio::try_join!(serving, periodic, scheduled).map(|_| ())
    };
    tokio::try_join!(
        serve_commands(&rt, vm_handler).err_into(),
        serve_commands(&rt, tenant_handler).err_into(),
        serve_commands(&rt, server_handler).err_into(),
        reactors::run(&rt, reactor).err_into(),
        reactors::run(&rt, on_account).err_into(),
        projections::run(&rt, Arc::new(VmsProjection)).err_into(),
        projections::run(&rt, Arc::new(ServersProjection)).err_into(),
        projections::run(&rt, Arc::new(AuditLog)).err_into(),
        query::serve(&rt).err_into(),
        reconciling,
        resetting_demo,
    )?;
    Ok(())
}

/// Registers the configured servers; a repeat with the same spec changes nothing.
async fn register_servers(servers: &Repository<Server>, specs: &[RegisterServer]) {
    for spec in specs {
        let command = ServerCommand::Register(spec.clone());
        let body = String::from_utf8_lossy(&command.body()).into_owned();
        let id = Uuid::new_v5(
            &Uuid::NAMESPACE_OID,
            format!("berth.register.{body}").as_bytes(),
        );
        let cause = Cause {
            id,
            actor: Actor::service("provisioner"),
            correlation_id: id,
            traceparent: None,
        };
        match execute_on(servers, &TenantId::system(), &cause, &command).await {
            Ok(_) => {
                tracing::info!(server = %spec.name, region = %spec.region, vcpus = spec.vcpus, memory_mb = spec.memory_mb, "server registered")
            }
            Err(rejection) => {
                tracing::warn!(server = %spec.name, %rejection, "server not registered")
            }
        }
    }
}
