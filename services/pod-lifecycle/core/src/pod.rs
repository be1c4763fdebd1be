//! The `pod` aggregate: pure `decide` and `apply`, and [`Step`], the runtime step a
//! pod's state calls for.

use std::collections::BTreeMap;

use berth_schemas::aggregate::{Aggregate, Context};
use berth_schemas::pod::{
    PodCommand, PodConfigUpdated, PodDegraded, PodDeleteRequested, PodEvent, PodExpired, PodFailed,
    PodReplicas, PodRequested, PodRestartRequested, PodStatus, PodStep, GRACE_DAYS,
};
use berth_schemas::{Rejection, RejectionCode};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Automatic restarts remembered for the per-hour limit.
const REMEMBERED_RESTARTS: usize = 32;

/// A pod as folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pod {
    /// `None` until the pod is requested.
    pub status: Option<PodStatus>,
    pub spec: Option<PodRequested>,
    /// The environment overrides in force.
    pub env: BTreeMap<String, String>,
    /// 1 to run, 0 to keep only the volume.
    pub desired_replicas: u32,
    /// The runtime holds the pod's volume and workload.
    pub deployed: bool,
    pub runtime: Option<String>,
    pub workload: Option<String>,
    pub volume: Option<String>,
    /// Set while the subscription has ended and the grace period runs.
    pub expired: Option<PodExpired>,
    /// For a pending or done delete.
    pub keep_volume: bool,
    /// Healthy at least once (the notifier's "service ready").
    pub ever_healthy: bool,
    /// When health monitoring restarted the pod, newest last.
    pub automatic_restarts: Vec<DateTime<Utc>>,
    /// Why the pod is not where it was asked to be.
    pub reason: Option<String>,
    /// While `degraded`: the step that fails, and whether berth still retries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<PodDegraded>,
}

/// What a decision needs besides the pod and the command.
#[derive(Debug, Clone)]
pub struct Decision {
    pub now: DateTime<Utc>,
    /// A create's catalog entry, resolved by the command service.
    pub requested: Option<PodRequested>,
}

impl Pod {
    /// The status a pod at rest with 0 replicas has.
    fn at_rest(&self) -> PodStatus {
        if self.expired.is_some() {
            PodStatus::Expired
        } else {
            PodStatus::Stopped
        }
    }

    /// After a step that leaves the workload at the desired replicas.
    fn settled(&self) -> PodStatus {
        if self.desired_replicas == 1 {
            PodStatus::Starting
        } else {
            self.at_rest()
        }
    }

    /// Automatic restarts within the hour before `now`.
    pub fn restarts_in_hour(&self, now: DateTime<Utc>) -> usize {
        self.automatic_restarts
            .iter()
            .filter(|at| now - **at < Duration::hours(1))
            .count()
    }

    pub fn decide_with(
        &self,
        command: &PodCommand,
        decision: &Decision,
    ) -> Result<Vec<PodEvent>, Rejection> {
        use PodStatus::*;
        let Some(status) = self.status else {
            return match (command, &decision.requested) {
                (PodCommand::Create(_), Some(requested)) => {
                    Ok(vec![PodEvent::Requested(requested.clone())])
                }
                (PodCommand::Create(_), None) => Err(Rejection::invalid(
                    "a create needs its catalog entry resolved",
                )),
                _ => Err(Rejection::new(RejectionCode::NotFound, "no such pod")),
            };
        };
        let refuse = |hint: &str| {
            Err(Rejection::invalid_state(format!(
                "cannot {} a pod that is {status}{hint}",
                command_action(command)
            )))
        };
        let live = matches!(
            status,
            Running | Unhealthy | Starting | Stopped | Failed | Degraded
        );
        match command {
            PodCommand::Create(_) => Err(Rejection::new(
                RejectionCode::Conflict,
                "a pod with this id already exists",
            )),
            PodCommand::Restart(_) => match status {
                Running | Unhealthy | Starting | Failed | Degraded if self.deployed => {
                    Ok(vec![PodEvent::RestartRequested(PodRestartRequested {
                        automatic: false,
                        at: decision.now,
                        reason: None,
                    })])
                }
                Stopped => refuse("; scale it to 1 to run it"),
                Expired => refuse("; renew its subscription first"),
                _ => refuse(""),
            },
            PodCommand::Reset(reset) => {
                if !reset.confirm {
                    return Err(Rejection::invalid(
                        "a reset deletes all of the pod's data; send it again with \"confirm\": true",
                    ));
                }
                match status {
                    _ if live && self.deployed => Ok(vec![PodEvent::ResetRequested(PodStep {})]),
                    Expired => refuse("; renew its subscription first"),
                    _ => refuse(""),
                }
            }
            PodCommand::Scale(scale) => match status {
                Expired => refuse("; renew its subscription first"),
                Running | Unhealthy | Starting | Failed if scale.replicas == 1 => Ok(Vec::new()),
                Stopped if scale.replicas == 0 => Ok(Vec::new()),
                _ if live => Ok(vec![PodEvent::ScaleRequested(PodReplicas {
                    replicas: scale.replicas,
                })]),
                _ => refuse(""),
            },
            PodCommand::UpdateConfig(update) => match status {
                _ if update.env == self.env => Ok(Vec::new()),
                _ if live || status == Expired => {
                    Ok(vec![PodEvent::ConfigUpdated(PodConfigUpdated {
                        env: update.env.clone(),
                    })])
                }
                _ => refuse(""),
            },
            PodCommand::Expire(end) | PodCommand::Cancel(end) => match status {
                _ if self.expired.is_some() => Ok(Vec::new()),
                Deleting | Deleted => refuse(""),
                _ => {
                    let expired_at = end.at.unwrap_or(decision.now);
                    Ok(vec![PodEvent::Expired(PodExpired {
                        why: if matches!(command, PodCommand::Cancel(_)) {
                            "cancelled".into()
                        } else {
                            "expired".into()
                        },
                        expired_at,
                        purge_after: expired_at + Duration::days(GRACE_DAYS),
                    })])
                }
            },
            PodCommand::Renew(_) => match status {
                Deleting | Deleted => refuse("; its data is gone"),
                _ if self.expired.is_none() => Ok(Vec::new()),
                _ => Ok(vec![PodEvent::Renewed(PodStep {})]),
            },
            PodCommand::Purge(purge) => match &self.expired {
                Some(expired)
                    if status == Expired
                        && expired.expired_at == purge.expired_at
                        && decision.now >= expired.purge_after =>
                {
                    Ok(vec![PodEvent::DeleteRequested(PodDeleteRequested {
                        keep_volume: false,
                        reason: Some(format!(
                            "the grace period of {GRACE_DAYS} days after the subscription {} is over",
                            expired.why
                        )),
                    })])
                }
                // Renewed, expired again later, or not due: nothing to purge.
                _ => Ok(Vec::new()),
            },
            PodCommand::Delete(delete) => match status {
                Deleting | Deleted => refuse(""),
                _ => Ok(vec![PodEvent::DeleteRequested(PodDeleteRequested {
                    keep_volume: delete.keep_volume,
                    reason: None,
                })]),
            },
            PodCommand::Logs(_) => match status {
                Deleted | Requested => refuse(""),
                _ => Ok(Vec::new()),
            },
        }
    }

    /// What health monitoring records for what it saw; `None` when nothing changed.
    /// An unhealthy pod is restarted automatically at most `max_per_hour` times an hour,
    /// each after `backoff(n)` since the previous automatic restart; then it has failed.
    pub fn on_health(
        &self,
        healthy: Result<(), String>,
        now: DateTime<Utc>,
        max_per_hour: usize,
        backoff: impl Fn(usize) -> Duration,
    ) -> Vec<PodEvent> {
        use PodStatus::*;
        match (self.status, healthy) {
            (Some(Starting | Unhealthy), Ok(())) => vec![PodEvent::Healthy(PodStep {})],
            (Some(Starting | Running), Err(reason)) => {
                vec![PodEvent::Unhealthy(berth_schemas::pod::PodReason {
                    reason: Some(reason),
                })]
            }
            (Some(Unhealthy), Err(reason)) => {
                let recent = self.restarts_in_hour(now);
                if recent >= max_per_hour {
                    return vec![PodEvent::Failed(PodFailed {
                        operation: "health".into(),
                        reason: format!(
                            "still unhealthy after {recent} automatic restarts within an hour: {reason}"
                        ),
                    })];
                }
                let waited_enough = self
                    .automatic_restarts
                    .last()
                    .is_none_or(|last| now - *last >= backoff(recent));
                if !waited_enough {
                    return Vec::new();
                }
                vec![PodEvent::RestartRequested(PodRestartRequested {
                    automatic: true,
                    at: now,
                    reason: Some(reason),
                })]
            }
            _ => Vec::new(),
        }
    }
}

fn command_action(command: &PodCommand) -> &'static str {
    use berth_schemas::CommandSet;
    command.action()
}

impl Aggregate for Pod {
    const KIND: &'static str = berth_schemas::pod::AGGREGATE;
    type Command = PodCommand;
    type Event = PodEvent;

    fn apply(&mut self, event: &PodEvent) {
        use PodStatus::*;
        match event {
            PodEvent::Requested(spec) => {
                self.status = Some(Requested);
                self.env = spec.env.clone();
                self.spec = Some(spec.clone());
                self.desired_replicas = 1;
            }
            PodEvent::Deployed(deployed) => {
                self.deployed = true;
                self.runtime = Some(deployed.runtime.clone());
                self.workload = Some(deployed.workload.clone());
                self.volume = Some(deployed.volume.clone());
                self.status = Some(self.settled());
                self.reason = None;
            }
            PodEvent::Healthy(_) => {
                self.status = Some(Running);
                self.ever_healthy = true;
                self.reason = None;
            }
            PodEvent::Unhealthy(unhealthy) => {
                self.status = Some(Unhealthy);
                self.reason.clone_from(&unhealthy.reason);
            }
            PodEvent::RestartRequested(restart) => {
                self.status = Some(Restarting);
                if restart.automatic {
                    self.automatic_restarts.push(restart.at);
                    let excess = self
                        .automatic_restarts
                        .len()
                        .saturating_sub(REMEMBERED_RESTARTS);
                    self.automatic_restarts.drain(..excess);
                }
            }
            PodEvent::ResetRequested(_) => self.status = Some(Resetting),
            PodEvent::ScaleRequested(scale) => {
                self.desired_replicas = scale.replicas;
                self.status = Some(Scaling);
            }
            PodEvent::ConfigUpdated(update) => {
                self.env = update.env.clone();
                self.status = Some(Reconfiguring);
            }
            PodEvent::Restarted(_) | PodEvent::Reset(_) | PodEvent::Reconfigured(_) => {
                self.status = Some(self.settled());
                self.reason = None;
            }
            PodEvent::Scaled(scaled) => {
                self.desired_replicas = scaled.replicas;
                self.status = Some(self.settled());
                self.reason = None;
            }
            PodEvent::Expired(expired) => {
                self.expired = Some(expired.clone());
                self.desired_replicas = 0;
                self.status = Some(match self.status {
                    Some(Requested) => Requested,
                    Some(Stopped) => Expired,
                    _ => Scaling,
                });
            }
            PodEvent::Renewed(_) => {
                self.expired = None;
                self.desired_replicas = 1;
                self.status = Some(if self.deployed { Scaling } else { Requested });
            }
            PodEvent::DeleteRequested(delete) => {
                self.keep_volume = delete.keep_volume;
                self.status = Some(Deleting);
            }
            PodEvent::Deleted(deleted) => {
                self.keep_volume = deleted.volume_kept;
                self.deployed = false;
                self.status = Some(Deleted);
                self.reason = None;
            }
            PodEvent::Failed(failed) => {
                self.status = Some(Failed);
                self.reason = Some(format!("{} failed: {}", failed.operation, failed.reason));
            }
            PodEvent::Degraded(degraded) => {
                self.status = Some(Degraded);
                self.reason = Some(degraded_reason(degraded));
                self.degraded = Some(degraded.clone());
            }
        }
        if self.status != Some(Degraded) {
            self.degraded = None;
        }
    }

    fn decide(&self, command: &PodCommand, context: &Context) -> Result<Vec<PodEvent>, Rejection> {
        self.decide_with(
            command,
            &Decision {
                now: context.now,
                requested: None,
            },
        )
    }
}

/// The runtime step a pod needs next to get where it was asked to be, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Make the volume and the workload.
    Deploy,
    Restart,
    /// Delete the workload and the volume, make both again.
    Reset,
    Scale,
    /// Redeploy the workload with the new environment; the volume stays.
    Reconfigure,
    Delete,
}

impl Step {
    /// Every step.
    pub const ALL: [Self; 6] = [
        Self::Deploy,
        Self::Restart,
        Self::Reset,
        Self::Scale,
        Self::Reconfigure,
        Self::Delete,
    ];

    pub fn next(pod: &Pod) -> Option<Self> {
        use PodStatus::*;
        match pod.status? {
            Requested => Some(Self::Deploy),
            Restarting => Some(Self::Restart),
            Resetting => Some(Self::Reset),
            Scaling => Some(Self::Scale),
            Reconfiguring => Some(Self::Reconfigure),
            Deleting => Some(Self::Delete),
            // Still retried on its own after a transient failure; else it waits for its
            // owner.
            Degraded => pod
                .degraded
                .as_ref()
                .filter(|degraded| degraded.retrying)
                .and_then(|degraded| Self::from_operation(&degraded.step)),
            Starting | Running | Unhealthy | Stopped | Expired | Deleted | Failed => None,
        }
    }

    /// The step named `operation` (as in [`Self::operation`]).
    pub fn from_operation(operation: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|step| step.operation() == operation)
    }

    /// Whether a failure of this step for good, on `pod`, leaves only a half-made pod
    /// to undo: a first deploy, which never ran and holds no data yet. Any other
    /// step's failure leaves the workload and the volume alone, the pod `degraded`.
    pub fn undone_on_failure(self, pod: &Pod) -> bool {
        self == Self::Deploy && !pod.deployed
    }

    pub fn operation(self) -> &'static str {
        match self {
            Self::Deploy => "deploy",
            Self::Restart => "restart",
            Self::Reset => "reset",
            Self::Scale => "scale",
            Self::Reconfigure => "reconfigure",
            Self::Delete => "delete",
        }
    }
}

/// The event recording that a runtime step keeps failing, the pod left as it is.
pub fn degraded(step: Step, reason: &str, attempts: i64, retrying: bool) -> PodEvent {
    PodEvent::Degraded(PodDegraded {
        step: step.operation().to_owned(),
        reason: reason.chars().take(500).collect(),
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        retrying,
    })
}

/// What a degraded pod's status says.
fn degraded_reason(degraded: &PodDegraded) -> String {
    let attempts = match degraded.attempts {
        1 => "1 attempt".to_owned(),
        n => format!("{n} attempts"),
    };
    if degraded.retrying {
        format!(
            "{} failing after {attempts}, still retrying: {}",
            degraded.step, degraded.reason
        )
    } else {
        format!(
            "{} failed after {attempts}: {}; the pod and its data are left as they are",
            degraded.step, degraded.reason
        )
    }
}

/// The event recording that a runtime step failed for good.
pub fn failed(step: Step, reason: &str) -> PodEvent {
    PodEvent::Failed(PodFailed {
        operation: step.operation().to_owned(),
        reason: reason.chars().take(500).collect(),
    })
}

#[cfg(test)]
mod tests;
