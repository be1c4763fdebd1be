//! Subscription rules: the pods created for a subscription follow it. `expired` expires
//! them (scaled to 0, volume kept for the grace period), an immediate `cancelled` cancels
//! them, `renewed` brings expired ones back with their data. The pods are found in the
//! log by the subscription id they were created with; command ids derive from the
//! subscription event, so redelivery repeats nothing.

use std::sync::Arc;

use async_trait::async_trait;
use berth_runtime::clock::Clock;
use berth_runtime::commands::execute_with;
use berth_runtime::reactor::{ReactError, Reactor};
use berth_runtime::store::{Cause, Repository, StoredEvent};
use berth_schemas::billing::SubscriptionEvent;
use berth_schemas::pod::{EndPod, PodCommand, PodTarget};
use berth_schemas::subjects::event_filter;
use berth_schemas::{Actor, CommandSet, RejectionCode};
use uuid::Uuid;

use crate::pod::{Decision, Pod};

/// Applies subscription events to their pods.
pub struct OnSubscription {
    pub pods: Arc<Repository<Pod>>,
    pub clock: Arc<dyn Clock>,
}

#[async_trait]
impl Reactor for OnSubscription {
    fn name(&self) -> String {
        "pod-lifecycle-subscriptions".into()
    }

    fn filter_subjects(&self) -> Vec<String> {
        vec![event_filter(berth_schemas::billing::SUBSCRIPTION)]
    }

    async fn react(&self, event: &StoredEvent) -> Result<(), ReactError> {
        let decoded: SubscriptionEvent = event.decode().map_err(ReactError::permanent)?;
        let command = |pod_id: Uuid| match &decoded {
            SubscriptionEvent::Expired(ended) => Some(PodCommand::Expire(EndPod {
                pod_id,
                at: Some(ended.at),
            })),
            SubscriptionEvent::Cancelled(cancelled) if !cancelled.at_period_end => {
                Some(PodCommand::Cancel(EndPod {
                    pod_id,
                    at: Some(cancelled.ends_at),
                }))
            }
            SubscriptionEvent::Renewed(_) => Some(PodCommand::Renew(PodTarget {
                pod_id,
                expected_version: None,
            })),
            _ => None,
        };
        if command(Uuid::nil()).is_none() {
            return Ok(());
        }
        let tenant = &event.meta.tenant;
        let subscription = event.meta.subject;
        let store = self.pods.store();
        let pod_ids = store
            .aggregate_ids(tenant, berth_schemas::pod::AGGREGATE)
            .await
            .map_err(ReactError::transient)?;
        for pod_id in pod_ids {
            let pod = self
                .pods
                .load(tenant, pod_id)
                .await
                .map_err(ReactError::transient)?;
            let belongs =
                pod.state.spec.as_ref().and_then(|s| s.subscription_id) == Some(subscription);
            let Some(command) = command(pod_id).filter(|_| belongs) else {
                continue;
            };
            let id = Uuid::new_v5(
                &event.meta.id,
                format!("{}:{pod_id}", command.action()).as_bytes(),
            );
            let cause = Cause {
                id,
                actor: Actor::service("pod-lifecycle"),
                correlation_id: event.meta.correlation_id,
                traceparent: event.meta.traceparent.clone(),
            };
            let decision = Decision {
                now: self.clock.now(),
                requested: None,
            };
            let outcome = execute_with(&self.pods, tenant, pod_id, &cause, None, |pod| {
                pod.decide_with(&command, &decision)
            })
            .await;
            match outcome {
                Err(rejection) if rejection.code == RejectionCode::Unavailable => {
                    return Err(ReactError::transient(rejection))
                }
                Err(rejection) => {
                    tracing::info!(pod = %pod_id, %rejection, "subscription event left the pod as it is")
                }
                Ok(_) => {}
            }
        }
        Ok(())
    }
}
