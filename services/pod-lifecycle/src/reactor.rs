//! The pod reactor: drives the runtime until each pod is where it was asked to be.
//!
//! A [`Controller`] ([`berth_runtime::controller`]), like the provisioner's VM reactor:
//! whatever event woke it, it loads the pod, performs the one runtime step its state
//! calls for ([`Step`]), appends the outcome with optimistic concurrency and looks again.
//! Runtime calls are idempotent, and appended event ids derive from the waking event, the
//! step and the version, so redelivery repeats nothing. Besides the steps it keeps each pod's grace timer at the scheduler:
//! set on `expired`, cancelled on `renewed` and `deleted`.
//!
//! # When a step keeps failing (DESIGN §7: failure never destroys what a customer owns)
//!
//! Every runtime call has a deadline below the consumer's ack wait ([`WithDeadlines`]),
//! a call past it being a transient failure. Transient failures are retried with capped
//! back-off and never dead-lettered; after `max_deliver` attempts the pod is marked
//! `degraded` (still retrying). A step that fails for good leaves the pod's workload and
//! volume — its data — alone and marks it `degraded` with the reason; only a failed first
//! deploy is undone (workload and volume removed, confirmed, then `failed`). Recording
//! either is retried until it is in the log.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use berth_runtime::controller::{self, Controller};
use berth_runtime::locks::KeyedLocks;
use berth_runtime::reactor::{within_deadline, Failure, ReactError, Reactor};
use berth_runtime::store::{AtomicAppend, Cause, Loaded, Repository, StoredEvent};
use berth_schemas::pod::{
    grace_timer_key, PodDeleted, PodDeployed, PodEvent, PodExpired, PodReplicas, PodStep, PurgePod,
};
use berth_schemas::schedule::{Action, SetTimer, TimerCommand, TimerTarget};
use berth_schemas::subjects::{event_filter, EventSubject};
use berth_schemas::{Actor, TenantId};
use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::pod::{degraded, failed, Pod, Step};
use crate::runtime::{
    volume_name, workload_name, Health, PodRuntime, RuntimeError, RuntimeObject, WorkloadSpec,
};
use crate::specs::Specs;

/// Reconciles pods with their runtime.
pub struct PodReactor {
    pods: Arc<Repository<Pod>>,
    runtime: Arc<dyn PodRuntime>,
    specs: Arc<Specs>,
    nats: async_nats::Client,
    locks: KeyedLocks,
    slots: Semaphore,
}

impl PodReactor {
    /// The reactor's every runtime call gets a deadline ([`WithDeadlines`]).
    pub fn new(
        pods: Arc<Repository<Pod>>,
        runtime: Arc<dyn PodRuntime>,
        specs: Arc<Specs>,
        nats: async_nats::Client,
        max_runtime_calls: usize,
    ) -> Self {
        Self {
            pods,
            runtime: Arc::new(WithDeadlines(runtime)),
            specs,
            nats,
            locks: KeyedLocks::default(),
            slots: Semaphore::new(max_runtime_calls.max(1)),
        }
    }

    /// Deploys the volume and the workload at the desired replicas.
    async fn deploy(
        &self,
        spec: &WorkloadSpec,
        replicas: u32,
    ) -> Result<PodDeployed, RuntimeError> {
        let volume = self.runtime.ensure_volume(spec).await?;
        let workload = self.runtime.deploy(spec, replicas).await?;
        Ok(PodDeployed {
            runtime: self.runtime.name().to_owned(),
            workload,
            volume,
            replicas,
        })
    }

    async fn perform(
        &self,
        step: Step,
        pod: &Pod,
        target: &EventSubject,
    ) -> Result<PodEvent, RuntimeError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| RuntimeError::Transient("pod-lifecycle is stopping".into()))?;
        let tenant = &target.tenant;
        let spec = self.specs.workload(&target.tenant, target.id, pod)?;
        let replicas = pod.desired_replicas;
        Ok(match step {
            Step::Deploy => PodEvent::Deployed(self.deploy(&spec, replicas).await?),
            Step::Restart => {
                match self.runtime.restart(&spec).await {
                    // The workload is gone: make it again, from the same volume.
                    Err(RuntimeError::NotFound(_)) => {
                        self.deploy(&spec, 1).await?;
                    }
                    other => other?,
                }
                PodEvent::Restarted(PodStep {})
            }
            Step::Reset => {
                self.runtime.delete_workload(tenant, target.id).await?;
                self.runtime.delete_volume(tenant, target.id).await?;
                self.deploy(&spec, replicas).await?;
                PodEvent::Reset(PodStep {})
            }
            Step::Scale => {
                match self.runtime.scale(&spec, replicas).await {
                    Err(RuntimeError::NotFound(_)) if replicas == 0 => {}
                    Err(RuntimeError::NotFound(_)) => {
                        self.deploy(&spec, replicas).await?;
                    }
                    other => other?,
                }
                PodEvent::Scaled(PodReplicas { replicas })
            }
            Step::Reconfigure => {
                self.deploy(&spec, replicas).await?;
                PodEvent::Reconfigured(PodStep {})
            }
            Step::Delete => {
                self.runtime.delete_workload(tenant, target.id).await?;
                if !pod.keep_volume {
                    self.runtime.delete_volume(tenant, target.id).await?;
                }
                PodEvent::Deleted(PodDeleted {
                    volume_kept: pod.keep_volume,
                })
            }
        })
    }

    /// Removes what a failed first deploy may have half made: the workload, then the
    /// volume (it never held the customer's data). `Ok` only once the runtime confirmed
    /// it, or holds nothing of the tenant's under the pod's names (another tenant's
    /// objects are never touched); anything else is transient: the give-up is tried again.
    async fn remove_half_made(&self, tenant: &TenantId, pod_id: Uuid) -> Result<(), ReactError> {
        let workload = self.runtime.delete_workload(tenant, pod_id).await;
        let volume = self.runtime.delete_volume(tenant, pod_id).await;
        let errors: Vec<String> = [workload, volume]
            .into_iter()
            .filter_map(Result::err)
            .map(|e| e.to_string())
            .collect();
        if errors.is_empty() {
            return Ok(());
        }
        let names = [workload_name(pod_id), volume_name(pod_id)];
        let left: Vec<RuntimeObject> = self
            .runtime
            .inventory()
            .await
            .map_err(|e| {
                ReactError::transient_because(
                    e.code(),
                    format!(
                        "the half-made pod {pod_id} is not removed yet: {}; nor could the runtime be listed: {e}",
                        errors.join("; ")
                    ),
                )
            })?
            .into_iter()
            .filter(|object| {
                names.contains(&object.name) && object.tenant.as_deref() == Some(tenant.as_str())
            })
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        Err(ReactError::transient_because(
            "not_removed",
            format!(
                "the half-made pod {pod_id} is not removed yet: {}",
                errors.join("; ")
            ),
        ))
    }

    /// The pod's outcome, to be appended under `cause`.
    fn outcome(
        &self,
        target: &EventSubject,
        loaded: &Arc<Loaded<Pod>>,
        cause: &Cause,
        outcome: PodEvent,
    ) -> AtomicAppend<'_> {
        AtomicAppend::new(cause).add(&self.pods, &target.tenant, target.id, loaded, &[outcome])
    }

    async fn keep_grace_timer(
        &self,
        event: &StoredEvent,
        target: &EventSubject,
        decoded: &PodEvent,
    ) -> Result<(), ReactError> {
        let key = grace_timer_key(target.id);
        match decoded {
            PodEvent::Expired(PodExpired {
                expired_at,
                purge_after,
                ..
            }) => {
                let purge = PurgePod {
                    pod_id: target.id,
                    expired_at: *expired_at,
                };
                let set = TimerCommand::Set(SetTimer {
                    key,
                    at: Some(*purge_after),
                    after_secs: None,
                    action: Action::Command {
                        tenant: target.tenant.clone(),
                        aggregate: berth_schemas::pod::AGGREGATE.into(),
                        action: "purge".into(),
                        body: serde_json::to_value(&purge).expect("commands are plain data"),
                    },
                    payload: serde_json::json!({"pod_id": target.id, "purpose": "delete the pod and its volume after the grace period"}),
                });
                berth_runtime::client::send_timer(&self.nats, event, "pod-lifecycle", &set).await
            }
            PodEvent::Renewed(_) | PodEvent::Deleted(_) => {
                berth_runtime::client::send_timer(
                    &self.nats,
                    event,
                    "pod-lifecycle",
                    &TimerCommand::Cancel(TimerTarget { key }),
                )
                .await
            }
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl Controller for PodReactor {
    type Aggregate = Pod;
    type Step = Step;
    const MAX_STEPS: usize = 8;

    fn actor(&self) -> Actor {
        Actor::service("pod-lifecycle")
    }

    fn repository(&self) -> &Repository<Pod> {
        &self.pods
    }

    fn locks(&self) -> &KeyedLocks {
        &self.locks
    }

    fn next_step(pod: &Pod) -> Option<Step> {
        Step::next(pod)
    }

    async fn act<'a>(
        &'a self,
        target: &EventSubject,
        loaded: &Arc<Loaded<Pod>>,
        step: Step,
        cause: &Cause,
    ) -> Result<AtomicAppend<'a>, ReactError> {
        let outcome = self
            .perform(step, &loaded.state, target)
            .await
            .map_err(|e| match e {
                RuntimeError::Transient(_) => ReactError::transient(e),
                other => ReactError::permanent(other),
            })?;
        Ok(self.outcome(target, loaded, cause, outcome))
    }

    async fn fail<'a>(
        &'a self,
        target: &EventSubject,
        loaded: &Arc<Loaded<Pod>>,
        step: Step,
        failure: &Failure,
        cause: &Cause,
    ) -> Result<AtomicAppend<'a>, ReactError> {
        let outcome = if !failure.retrying && step.undone_on_failure(&loaded.state) {
            self.remove_half_made(&target.tenant, target.id).await?;
            tracing::warn!(pod = %target.id, error = %failure.error, "the pod's first deploy failed; what it half made is removed");
            failed(step, &failure.error)
        } else {
            tracing::warn!(pod = %target.id, ?step, error = %failure.error, attempts = failure.attempts, retrying = failure.retrying, "the pod is degraded; its workload and volume are left as they are");
            degraded(step, &failure.error, failure.attempts, failure.retrying)
        };
        Ok(self.outcome(target, loaded, cause, outcome))
    }
}

/// Events this reactor or health monitoring append: they need no step of their own.
fn is_outcome(event: &PodEvent) -> bool {
    matches!(
        event,
        PodEvent::Deployed(_)
            | PodEvent::Healthy(_)
            | PodEvent::Unhealthy(_)
            | PodEvent::Restarted(_)
            | PodEvent::Reset(_)
            | PodEvent::Scaled(_)
            | PodEvent::Reconfigured(_)
            | PodEvent::Failed(_)
            | PodEvent::Degraded(_)
    )
}

#[async_trait]
impl Reactor for PodReactor {
    fn name(&self) -> String {
        "pod-lifecycle-pod".into()
    }

    fn filter_subjects(&self) -> Vec<String> {
        vec![event_filter(berth_schemas::pod::AGGREGATE)]
    }

    async fn react(&self, event: &StoredEvent) -> Result<(), ReactError> {
        let decoded: PodEvent = event.decode().map_err(ReactError::permanent)?;
        let target = EventSubject::parse(&event.subject).ok_or_else(|| {
            ReactError::permanent_because(
                "invalid_subject",
                format!("not a pod event subject: {}", event.subject),
            )
        })?;
        self.keep_grace_timer(event, &target, &decoded).await?;
        if is_outcome(&decoded) {
            return Ok(());
        }
        controller::settle(self, event, &target).await
    }

    /// A pod's step is never abandoned for transience alone.
    fn retries_transient_forever(&self) -> bool {
        true
    }

    async fn record_failure(
        &self,
        event: &StoredEvent,
        failure: &Failure,
    ) -> Result<(), ReactError> {
        controller::record_failure(self, event, failure).await
    }
}

/// A runtime whose every call has a deadline: in a reaction, below its consumer's ack
/// wait ([`berth_runtime::reactor::call_deadline`]). A call that does not answer in time
/// is dropped and reported as [`RuntimeError::Transient`], to be tried again; calls are
/// idempotent, so one that still took effect is found by the next.
pub struct WithDeadlines(pub Arc<dyn PodRuntime>);

impl WithDeadlines {
    async fn within<T>(
        &self,
        operation: &str,
        call: impl Future<Output = Result<T, RuntimeError>>,
    ) -> Result<T, RuntimeError> {
        within_deadline(call).await.unwrap_or_else(|deadline| {
            tracing::warn!(
                operation,
                ?deadline,
                "a runtime call did not answer in time; abandoned"
            );
            Err(RuntimeError::Transient(format!(
                "{operation} did not answer within {deadline:?}; abandoned, to be tried again"
            )))
        })
    }
}

#[async_trait]
impl PodRuntime for WithDeadlines {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    async fn ensure_volume(&self, spec: &WorkloadSpec) -> Result<String, RuntimeError> {
        let what = format!("making volume {}", spec.volume_name());
        self.within(&what, self.0.ensure_volume(spec)).await
    }

    async fn delete_volume(&self, tenant: &TenantId, pod_id: Uuid) -> Result<(), RuntimeError> {
        let what = format!("deleting volume {}", volume_name(pod_id));
        self.within(&what, self.0.delete_volume(tenant, pod_id))
            .await
    }

    async fn deploy(&self, spec: &WorkloadSpec, replicas: u32) -> Result<String, RuntimeError> {
        let what = format!("deploying {}", spec.workload_name());
        self.within(&what, self.0.deploy(spec, replicas)).await
    }

    async fn restart(&self, spec: &WorkloadSpec) -> Result<(), RuntimeError> {
        let what = format!("restarting {}", spec.workload_name());
        self.within(&what, self.0.restart(spec)).await
    }

    async fn scale(&self, spec: &WorkloadSpec, replicas: u32) -> Result<(), RuntimeError> {
        let what = format!("scaling {}", spec.workload_name());
        self.within(&what, self.0.scale(spec, replicas)).await
    }

    async fn delete_workload(&self, tenant: &TenantId, pod_id: Uuid) -> Result<(), RuntimeError> {
        let what = format!("deleting {}", workload_name(pod_id));
        self.within(&what, self.0.delete_workload(tenant, pod_id))
            .await
    }

    async fn health(&self, spec: &WorkloadSpec) -> Result<Health, RuntimeError> {
        let what = format!("checking the health of {}", spec.workload_name());
        self.within(&what, self.0.health(spec)).await
    }

    async fn logs(
        &self,
        tenant: &TenantId,
        pod_id: Uuid,
        tail: Option<u32>,
        since: Option<DateTime<Utc>>,
    ) -> Result<String, RuntimeError> {
        let what = format!("reading the logs of {}", workload_name(pod_id));
        self.within(&what, self.0.logs(tenant, pod_id, tail, since))
            .await
    }

    async fn inventory(&self) -> Result<Vec<RuntimeObject>, RuntimeError> {
        self.within("listing the runtime's objects", self.0.inventory())
            .await
    }

    async fn remove(&self, object: &RuntimeObject) -> Result<(), RuntimeError> {
        let what = format!("removing {}", object.what());
        self.within(&what, self.0.remove(object)).await
    }
}
