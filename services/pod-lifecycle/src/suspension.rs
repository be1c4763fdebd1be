//! pod-lifecycle's side of account events: a suspended tenant's running pods are scaled
//! to 0 (volumes kept) and, on resumption, exactly those scaled to 1 again (the rule in
//! [`berth_adapters::suspension`]).

use std::sync::Arc;

use async_trait::async_trait;
use berth_adapters::suspension::{settled, Suspendable, Suspension, SuspensionFollower};
use berth_runtime::clock::Clock;
use berth_runtime::commands::execute_with;
use berth_runtime::reactor::{ReactError, Reactor};
use berth_runtime::store::{Cause, Repository, StoredEvent};
use berth_schemas::billing::AccountEvent;
use berth_schemas::pod::{PodCommand, PodStatus, ScalePod};
use berth_schemas::subjects::event_filter;
use berth_schemas::TenantId;
use uuid::Uuid;

use crate::pod::{Decision, Pod};

/// Follows account events for pod-lifecycle.
pub struct OnAccount(SuspensionFollower<Pods>);

impl OnAccount {
    pub fn new(
        pods: Arc<Repository<Pod>>,
        suspensions: Repository<Suspension>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self(SuspensionFollower::new(
            "pod-lifecycle",
            Pods { pods, clock },
            suspensions,
        ))
    }
}

/// A tenant's pods, as a suspension sees them.
pub struct Pods {
    pods: Arc<Repository<Pod>>,
    clock: Arc<dyn Clock>,
}

#[async_trait]
impl Suspendable for Pods {
    fn scope(&self) -> &'static str {
        "pods"
    }

    async fn running(&self, tenant: &TenantId) -> Result<Vec<Uuid>, ReactError> {
        let transient = |e: berth_runtime::Error| ReactError::transient(e);
        let mut running = Vec::new();
        let ids = self
            .pods
            .store()
            .aggregate_ids(tenant, berth_schemas::pod::AGGREGATE)
            .await
            .map_err(transient)?;
        for pod_id in ids {
            let pod = self.pods.load(tenant, pod_id).await.map_err(transient)?;
            let up = matches!(
                pod.state.status,
                Some(PodStatus::Running | PodStatus::Starting | PodStatus::Unhealthy)
            );
            if up && pod.state.desired_replicas == 1 {
                running.push(pod_id);
            }
        }
        Ok(running)
    }

    async fn set_paused(
        &self,
        tenant: &TenantId,
        pod_id: Uuid,
        pause: bool,
        cause: &Cause,
    ) -> Result<(), ReactError> {
        let command = PodCommand::Scale(ScalePod {
            pod_id,
            replicas: u32::from(!pause),
            expected_version: None,
        });
        let decision = Decision {
            now: self.clock.now(),
            requested: None,
        };
        let outcome = execute_with(&self.pods, tenant, pod_id, cause, None, |pod| {
            pod.decide_with(&command, &decision)
        })
        .await;
        settled(tenant, pod_id, outcome)
    }

    fn label(&self, pod_id: Uuid, pause: bool) -> String {
        format!("scale-{}:{pod_id}", u32::from(!pause))
    }
}

#[async_trait]
impl Reactor for OnAccount {
    fn name(&self) -> String {
        "pod-lifecycle-accounts".into()
    }

    fn filter_subjects(&self) -> Vec<String> {
        vec![event_filter(berth_schemas::billing::ACCOUNT)]
    }

    async fn react(&self, event: &StoredEvent) -> Result<(), ReactError> {
        let account = event
            .decode::<AccountEvent>()
            .map_err(ReactError::permanent)?;
        self.0.follow(event, &account).await
    }
}
