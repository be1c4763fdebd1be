//! Suspension: when billing suspends an account, the tenant's running pods are scaled to
//! 0 (volumes kept); when it resumes the account, exactly those are scaled to 1 again.
//! What was scaled down is recorded in `evt.<tenant>.suspension.<id>`; command ids derive
//! from the account event, so redelivery repeats nothing.

use std::sync::Arc;

use async_trait::async_trait;
use berth_runtime::clock::Clock;
use berth_runtime::commands::execute_with;
use berth_runtime::reactor::{ReactError, Reactor};
use berth_runtime::store::{Cause, Repository, StoredEvent};
use berth_schemas::billing::AccountEvent;
use berth_schemas::pod::{PodCommand, PodStatus, ScalePod};
use berth_schemas::subjects::event_filter;
use berth_schemas::suspension::{
    suspension_id, SuspensionApplied, SuspensionEvent, SuspensionLifted,
};
use berth_schemas::{Actor, RejectionCode, TenantId};
use uuid::Uuid;

use crate::pod::{Decision, Pod};

/// What pod-lifecycle scaled down for a suspension: the same record the provisioner
/// keeps for its VMs.
pub use berth_provisioner::suspension::Suspension;

/// Follows account events for pod-lifecycle.
pub struct OnAccount {
    pub pods: Arc<Repository<Pod>>,
    pub suspensions: Repository<Suspension>,
    pub clock: Arc<dyn Clock>,
}

fn cause(event: &StoredEvent, label: &str) -> Cause {
    Cause {
        id: Uuid::new_v5(&event.meta.id, label.as_bytes()),
        actor: Actor::service("pod-lifecycle"),
        correlation_id: event.meta.correlation_id,
        traceparent: event.meta.traceparent.clone(),
    }
}

fn transient(error: impl std::fmt::Display) -> ReactError {
    ReactError::Transient(error.to_string())
}

impl OnAccount {
    async fn scale(
        &self,
        event: &StoredEvent,
        tenant: &TenantId,
        pod_id: Uuid,
        replicas: u32,
    ) -> Result<(), ReactError> {
        let command = PodCommand::Scale(ScalePod {
            pod_id,
            replicas,
            expected_version: None,
        });
        let decision = Decision {
            now: self.clock.now(),
            requested: None,
        };
        let label = format!("scale-{replicas}:{pod_id}");
        let outcome = execute_with(
            &self.pods,
            tenant,
            pod_id,
            &cause(event, &label),
            None,
            |pod| pod.decide_with(&command, &decision),
        )
        .await;
        match outcome {
            Err(rejection) if rejection.code == RejectionCode::Unavailable => {
                Err(transient(rejection))
            }
            Err(rejection) => {
                tracing::info!(%tenant, pod = %pod_id, %rejection, "suspension left a pod as it is");
                Ok(())
            }
            Ok(_) => Ok(()),
        }
    }

    async fn record(
        &self,
        event: &StoredEvent,
        tenant: &TenantId,
        what: SuspensionEvent,
    ) -> Result<(), ReactError> {
        let id = suspension_id(tenant, "pods");
        execute_with(
            &self.suspensions,
            tenant,
            id,
            &cause(event, "pods:record"),
            None,
            |_| Ok(vec![what.clone()]),
        )
        .await
        .map(|_| ())
        .map_err(transient)
    }

    async fn suspend(&self, event: &StoredEvent, tenant: &TenantId) -> Result<(), ReactError> {
        let record = self
            .suspensions
            .load(tenant, suspension_id(tenant, "pods"))
            .await
            .map_err(transient)?;
        if record.applied.contains_key(&cause(event, "pods:record").id) {
            return Ok(());
        }
        let mut stopped = Vec::new();
        for pod_id in self
            .pods
            .store()
            .aggregate_ids(tenant, berth_schemas::pod::AGGREGATE)
            .await
            .map_err(transient)?
        {
            let pod = self.pods.load(tenant, pod_id).await.map_err(transient)?;
            let running = matches!(
                pod.state.status,
                Some(PodStatus::Running | PodStatus::Starting | PodStatus::Unhealthy)
            );
            if running && pod.state.desired_replicas == 1 {
                self.scale(event, tenant, pod_id, 0).await?;
                stopped.push(pod_id);
            }
        }
        tracing::info!(%tenant, pods = stopped.len(), "account suspended: pods scaled to 0");
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
            .load(tenant, suspension_id(tenant, "pods"))
            .await
            .map_err(transient)?;
        if !record.state.active {
            return Ok(());
        }
        let stopped = record.state.stopped.clone();
        for pod_id in &stopped {
            self.scale(event, tenant, *pod_id, 1).await?;
        }
        tracing::info!(%tenant, pods = stopped.len(), "account resumed: pods scaled to 1");
        self.record(
            event,
            tenant,
            SuspensionEvent::Lifted(SuspensionLifted { started: stopped }),
        )
        .await
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
        let tenant = event.meta.tenant.clone();
        match event
            .decode::<AccountEvent>()
            .map_err(|e| ReactError::Permanent(e.to_string()))?
        {
            AccountEvent::Suspended(_) => self.suspend(event, &tenant).await,
            AccountEvent::Resumed(_) => self.resume(event, &tenant).await,
            _ => Ok(()),
        }
    }
}
