//! Health monitoring: every interval, each pod that should be running is checked at
//! its runtime, and what changed is recorded: `healthy` (the first one is the notifier's
//! "service ready"), `unhealthy`, an automatic `restart_requested` with back-off, at most
//! [`HealthPolicy::max_restarts_per_hour`] an hour, then `failed`.
//!
//! Which pods to check comes from the `pods` projection; the decision is taken on the
//! aggregate, loaded fresh, and appended with optimistic concurrency, so two replicas
//! monitoring at once record each change once.

use std::sync::Arc;
use std::time::Duration;

use berth_runtime::clock::Clock;
use berth_runtime::store::{Cause, Repository};
use berth_runtime::Runtime;
use berth_schemas::{Actor, TenantId};
use futures::StreamExt;
use uuid::Uuid;

use crate::pod::Pod;
use crate::projection;
use crate::runtime::{Health, PodRuntime};
use crate::specs::Specs;

/// How health monitoring behaves.
#[derive(Debug, Clone, Copy)]
pub struct HealthPolicy {
    /// How often every pod is checked.
    pub interval: Duration,
    pub max_restarts_per_hour: usize,
    /// The wait after the first automatic restart; doubled for each further one.
    pub backoff_base: Duration,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            max_restarts_per_hour: 3,
            backoff_base: Duration::from_secs(30),
        }
    }
}

/// Checks pods until shutdown.
pub struct HealthMonitor {
    pub pods: Arc<Repository<Pod>>,
    pub runtime: Arc<dyn PodRuntime>,
    pub specs: Arc<Specs>,
    pub clock: Arc<dyn Clock>,
    pub policy: HealthPolicy,
}

impl HealthMonitor {
    pub async fn run(&self, rt: &Runtime) -> crate::Result<()> {
        // The first check after one interval: the projection is ready by then.
        let first = tokio::time::Instant::now() + self.policy.interval;
        let mut ticks = tokio::time::interval_at(first, self.policy.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = rt.shutdown.cancelled() => return Ok(()),
                _ = ticks.tick() => {}
            }
            match projection::watched(&rt.db).await {
                Ok(pods) => {
                    futures::stream::iter(pods)
                        .for_each_concurrent(8, |(tenant, id)| async move {
                            if let Err(e) = self.check(&tenant, id).await {
                                tracing::warn!(pod = %id, error = %e, error.code = e.code(), "health check failed to run");
                            }
                        })
                        .await
                }
                Err(e) => tracing::warn!(error = %e, "could not list the pods to check"),
            }
        }
    }

    /// Checks one pod and records what changed.
    pub async fn check(&self, tenant: &TenantId, id: Uuid) -> crate::Result<()> {
        let loaded = self.pods.load(tenant, id).await?;
        let spec = self.specs.workload(tenant, id, &loaded.state)?;
        let seen = match self.runtime.health(&spec).await? {
            Health::Healthy => Ok(()),
            Health::Starting => return Ok(()),
            Health::Unhealthy(reason) => Err(reason),
            Health::Stopped => Err("the workload is not running".to_owned()),
            Health::Missing => Err("the workload is missing at the runtime".to_owned()),
        };
        let base = self.policy.backoff_base;
        let events = loaded.state.on_health(
            seen,
            self.clock.now(),
            self.policy.max_restarts_per_hour,
            |n| {
                chrono::Duration::from_std(base * (1 << n.min(10))).unwrap_or(chrono::Duration::MAX)
            },
        );
        if events.is_empty() {
            return Ok(());
        }
        let cause_id = Uuid::new_v5(&id, format!("health@{}", loaded.version).as_bytes());
        let cause = Cause {
            id: cause_id,
            actor: Actor::service("pod-lifecycle"),
            correlation_id: cause_id,
            traceparent: None,
        };
        // A conflict means the pod moved meanwhile: the next tick looks again.
        if let Err(e) = self.pods.append(tenant, id, &loaded, &cause, events).await {
            tracing::debug!(pod = %id, error = %e, "health outcome not recorded");
        }
        Ok(())
    }
}
