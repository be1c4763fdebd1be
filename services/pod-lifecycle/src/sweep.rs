//! The grace sweep: on every fire of the built-in `grace-sweep` schedule, every expired
//! pod whose grace period is over is purged (pod and volume deleted). Each pod's own
//! grace timer normally does this on the day; the sweep is the safety net for a timer
//! that was never set (the scheduler was down) or a pod restored from an old log.

use std::sync::Arc;

use async_trait::async_trait;
use berth_runtime::clock::Clock;
use berth_runtime::commands::execute_with;
use berth_runtime::reactor::{ReactError, Reactor};
use berth_runtime::store::{Cause, Repository, StoredEvent};
use berth_schemas::pod::{PodCommand, PurgePod, GRACE_SWEEP_SCHEDULE};
use berth_schemas::schedule::{schedule_id, ScheduleEvent};
use berth_schemas::subjects::event_subject;
use berth_schemas::{Actor, TenantId};
use sqlx::PgPool;
use uuid::Uuid;

use crate::pod::{Decision, Pod};
use crate::projection;

/// Purges pods past their grace period on each `grace-sweep` fire.
pub struct GraceSweep {
    pub pods: Arc<Repository<Pod>>,
    pub db: PgPool,
    pub clock: Arc<dyn Clock>,
}

#[async_trait]
impl Reactor for GraceSweep {
    fn name(&self) -> String {
        "pod-lifecycle-grace-sweep".into()
    }

    fn filter_subjects(&self) -> Vec<String> {
        let system = TenantId::system();
        vec![event_subject(
            &system,
            "schedule",
            schedule_id(&system, GRACE_SWEEP_SCHEDULE),
        )]
    }

    async fn react(&self, event: &StoredEvent) -> Result<(), ReactError> {
        let Ok(ScheduleEvent::Fired(_)) = event.decode::<ScheduleEvent>() else {
            return Ok(());
        };
        let now = self.clock.now();
        let due = projection::purge_due(&self.db, now)
            .await
            .map_err(|e| ReactError::transient_because("db", e.to_string()))?;
        for (tenant, pod_id) in due {
            let loaded = self
                .pods
                .load(&tenant, pod_id)
                .await
                .map_err(ReactError::transient)?;
            let Some(expired) = &loaded.state.expired else {
                continue;
            };
            let purge = PodCommand::Purge(PurgePod {
                pod_id,
                expired_at: expired.expired_at,
            });
            let cause_id = Uuid::new_v5(&event.meta.id, pod_id.as_bytes());
            let cause = Cause {
                id: cause_id,
                actor: Actor::service("pod-lifecycle"),
                correlation_id: event.meta.correlation_id,
                traceparent: event.meta.traceparent.clone(),
            };
            let decision = Decision {
                now,
                requested: None,
            };
            if let Err(rejection) = execute_with(&self.pods, &tenant, pod_id, &cause, None, |pod| {
                pod.decide_with(&purge, &decision)
            })
            .await
            {
                tracing::warn!(pod = %pod_id, %rejection, "grace sweep could not purge the pod");
            }
        }
        Ok(())
    }
}
