//! The pod reactor: drives the runtime until each pod is where it was asked to be.
//!
//! Level-triggered like the provisioner's VM reactor: whatever event woke it, it loads
//! the pod, performs the one runtime step its state calls for, appends the outcome with
//! optimistic concurrency and looks again. Runtime calls are idempotent, and appended
//! event ids derive from the waking event, the step and the version, so redelivery
//! repeats nothing. Besides the steps it keeps each pod's grace timer at the scheduler:
//! set on `expired`, cancelled on `renewed` and `deleted`.

use std::sync::Arc;

use async_trait::async_trait;
use berth_runtime::locks::KeyedLocks;
use berth_runtime::reactor::{ReactError, Reactor};
use berth_runtime::store::{AppendError, Cause, Loaded, Repository, StoredEvent};
use berth_schemas::pod::{
    grace_timer_key, PodDeleted, PodDeployed, PodEvent, PodExpired, PodReplicas, PodStep, PurgePod,
};
use berth_schemas::schedule::{Action, SetTimer, TimerCommand, TimerTarget};
use berth_schemas::subjects::{event_filter, EventSubject};
use berth_schemas::Actor;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::pod::{failed, Pod, Step};
use crate::runtime::{PodRuntime, RuntimeError, WorkloadSpec};
use crate::specs::Specs;

/// At most this many steps per wake-up.
const MAX_STEPS: usize = 8;

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
    pub fn new(
        pods: Arc<Repository<Pod>>,
        runtime: Arc<dyn PodRuntime>,
        specs: Arc<Specs>,
        nats: async_nats::Client,
        max_runtime_calls: usize,
    ) -> Self {
        Self {
            pods,
            runtime,
            specs,
            nats,
            locks: KeyedLocks::default(),
            slots: Semaphore::new(max_runtime_calls.max(1)),
        }
    }

    fn cause(event: &StoredEvent, label: &str, version: u64) -> Cause {
        Cause {
            id: Uuid::new_v5(&event.meta.id, format!("{label}@{version}").as_bytes()),
            actor: Actor::service("pod-lifecycle"),
            correlation_id: event.meta.correlation_id,
            traceparent: event.meta.traceparent.clone(),
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

    async fn reconcile(
        &self,
        event: &StoredEvent,
        target: &EventSubject,
    ) -> Result<(), ReactError> {
        for _ in 0..MAX_STEPS {
            let loaded = self
                .pods
                .load(&target.tenant, target.id)
                .await
                .map_err(|e| ReactError::Transient(e.to_string()))?;
            let Some(step) = Step::next(&loaded.state) else {
                return Ok(());
            };
            let outcome = self
                .perform(step, &loaded.state, target)
                .await
                .map_err(|e| match e {
                    RuntimeError::Transient(reason) => ReactError::Transient(reason),
                    other => ReactError::Permanent(other.to_string()),
                })?;
            let cause = Self::cause(event, &format!("{step:?}"), loaded.version);
            // Appended, or someone moved the pod first: the next look decides what is left.
            if let Err(AppendError::Store(e)) = self.append(target, &loaded, &cause, outcome).await
            {
                return Err(ReactError::Transient(e.to_string()));
            }
        }
        Err(ReactError::Transient(format!(
            "pod {} still needs work after {MAX_STEPS} steps",
            target.id
        )))
    }

    async fn append(
        &self,
        target: &EventSubject,
        loaded: &Loaded<Pod>,
        cause: &Cause,
        outcome: PodEvent,
    ) -> Result<(), AppendError> {
        self.pods
            .append(&target.tenant, target.id, loaded, cause, vec![outcome])
            .await
            .map(|_| ())
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
        let decoded: PodEvent = event
            .decode()
            .map_err(|e| ReactError::Permanent(e.to_string()))?;
        let target = EventSubject::parse(&event.subject).ok_or_else(|| {
            ReactError::Permanent(format!("not a pod event subject: {}", event.subject))
        })?;
        self.keep_grace_timer(event, &target, &decoded).await?;
        if is_outcome(&decoded) {
            return Ok(());
        }
        let _guard = self.locks.lock(target.id).await;
        self.reconcile(event, &target).await
    }

    async fn give_up(&self, event: &StoredEvent, error: &str) {
        let Some(target) = EventSubject::parse(&event.subject) else {
            return;
        };
        let _guard = self.locks.lock(target.id).await;
        let Ok(loaded) = self.pods.load(&target.tenant, target.id).await else {
            return;
        };
        let Some(step) = Step::next(&loaded.state) else {
            return;
        };
        let cause = Self::cause(event, "give-up", loaded.version);
        if let Err(e) = self
            .append(&target, &loaded, &cause, failed(step, error))
            .await
        {
            tracing::warn!(pod = %target.id, error = %e, "could not record the pod's failure");
        }
    }
}
