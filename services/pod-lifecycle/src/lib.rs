//! berth-pod-lifecycle: app pods from the service catalog, each with a persistent volume.
//!
//! - [`catalog`]: the services and variants berth sells (`catalog.json`), with env
//!   templates and per-pod derived secrets; [`specs`] turns a pod into a workload spec.
//! - [`pod`]: the `pod` aggregate — pure `decide`/`apply`, and [`pod::Step`], the
//!   runtime step a pod's state calls for.
//! - [`runtime`]: the [`runtime::PodRuntime`] trait; [`sim`], [`docker`] and
//!   [`kubernetes`] implement it.
//! - [`reactor`]: drives the runtime and keeps each pod's grace timer at the scheduler;
//!   [`health`]: health monitoring with automatic restarts; [`sweep`]: the daily grace
//!   sweep; [`debug`]: pods beside the runtime, orphans; [`suspension`]: a suspended
//!   account's pods scaled to 0 and back; [`subscriptions`]: pods follow their
//!   subscription (expired, cancelled, renewed).
//! - [`commands`]: `cmd.<tenant>.pod.*`; [`slots`]: the per-tenant cap on live pods,
//!   held at create; [`projection`]: `pods` and `volumes`; [`query`]: `query.*.pod|volume|catalog.*`.
//!
//! [`run`] serves all of it until shutdown.

pub mod catalog;
pub mod cli;
pub mod commands;
pub mod debug;
pub mod docker;
pub mod error;
pub mod health;
pub mod kubernetes;
pub use berth_pod_lifecycle_core::pod;
pub mod projection;
pub mod query;
pub mod reactor;
pub mod runtime;
pub mod sim;
pub mod slots;
pub mod specs;
pub mod subscriptions;
pub mod suspension;
pub mod sweep;

use std::sync::Arc;

use berth_runtime::clock::{Clock, SystemClock};
use berth_runtime::commands::{serve as serve_commands, CommandHandler};
use berth_runtime::store::Repository;
use berth_runtime::{projection as projections, reactor as reactors, Runtime};
use futures::TryFutureExt;

use crate::commands::PodCommands;
use crate::debug::Inspector;
pub use crate::error::{Error, Result};
use crate::health::{HealthMonitor, HealthPolicy};
use crate::pod::Pod;
use crate::projection::PodsProjection;
use crate::reactor::PodReactor;
use crate::runtime::PodRuntime;
use crate::slots::PodCaps;
use crate::specs::Specs;
use crate::sweep::GraceSweep;

/// How pod-lifecycle behaves beyond the runtime's settings.
#[derive(Clone)]
pub struct PodLifecycleConfig {
    pub specs: Specs,
    pub health: HealthPolicy,
    /// Runtime calls in flight at once in this process.
    pub max_runtime_calls: usize,
    /// Decides expiry and grace times; a manual clock in tests.
    pub clock: Arc<dyn Clock>,
    /// The most live pods a tenant may have ([`MAX_TENANT_PODS`]; lower in tests).
    ///
    /// [`MAX_TENANT_PODS`]: berth_schemas::pod::MAX_TENANT_PODS
    pub max_pods_per_tenant: usize,
}

impl PodLifecycleConfig {
    pub fn new(specs: Specs) -> Self {
        Self {
            specs,
            health: HealthPolicy::default(),
            max_runtime_calls: 8,
            clock: Arc::new(SystemClock),
            max_pods_per_tenant: berth_schemas::pod::MAX_TENANT_PODS,
        }
    }
}

/// Runs pod-lifecycle until `rt.shutdown` is cancelled.
pub async fn run(
    rt: Runtime,
    runtime: Arc<dyn PodRuntime>,
    config: PodLifecycleConfig,
) -> crate::Result<()> {
    let pods = Arc::new(Repository::<Pod>::new(rt.store.clone(), rt.service));
    let specs = Arc::new(config.specs.clone());
    let commands = Arc::new(CommandHandler::new(
        Arc::new(PodCommands {
            pods: pods.clone(),
            caps: PodCaps {
                pods: pods.clone(),
                slots: Arc::new(Repository::new(rt.store.clone(), rt.service)),
                cap: config.max_pods_per_tenant,
            },
            specs: specs.clone(),
            runtime: runtime.clone(),
            clock: config.clock.clone(),
        }),
        &rt,
    ));
    let reactor = Arc::new(PodReactor::new(
        pods.clone(),
        runtime.clone(),
        specs.clone(),
        rt.nats.clone(),
        config.max_runtime_calls,
    ));
    let monitor = HealthMonitor {
        pods: pods.clone(),
        runtime: runtime.clone(),
        specs: specs.clone(),
        clock: config.clock.clone(),
        policy: config.health,
    };
    let inspector = Inspector {
        pods: pods.clone(),
        runtime,
        specs,
        db: rt.db.clone(),
    };
    let on_account = Arc::new(suspension::OnAccount::new(
        pods.clone(),
        Repository::new(rt.store.clone(), rt.service),
        config.clock.clone(),
    ));
    let on_subscription = Arc::new(subscriptions::OnSubscription {
        pods: pods.clone(),
        clock: config.clock.clone(),
    });
    let sweep = Arc::new(GraceSweep {
        pods,
        db: rt.db.clone(),
        clock: config.clock.clone(),
    });
    let side_tasks =
        async { tokio::try_join!(monitor.run(&rt), debug::serve(&rt, &inspector)).map(|_| ()) };
    tokio::try_join!(
        serve_commands(&rt, commands).err_into(),
        reactors::run(&rt, reactor).err_into(),
        reactors::run(&rt, sweep).err_into(),
        reactors::run(&rt, on_account).err_into(),
        reactors::run(&rt, on_subscription).err_into(),
        projections::run(&rt, Arc::new(PodsProjection)).err_into(),
        query::serve(&rt, &config.specs.catalog).err_into(),
        side_tasks,
    )?;
    Ok(())
}
