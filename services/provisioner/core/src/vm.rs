//! The `vm` aggregate: pure `decide` and `apply`.

use berth_schemas::aggregate::{Aggregate, Context};
use berth_schemas::vm::{
    CreateVm, Empty, VmCommand, VmDegraded, VmEvent, VmFailed, VmProvisioned, VmRequested,
    VmRetryRequested, VmStatus,
};
use berth_schemas::{Rejection, RejectionCode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A VM as folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vm {
    /// `None` until the VM is requested.
    pub status: Option<VmStatus>,
    pub spec: Option<VmRequested>,
    /// Whether the VM should be running once it can be.
    pub desired_running: bool,
    /// The server whose capacity the VM holds, once placed.
    #[serde(default)]
    pub server_id: Option<Uuid>,
    pub host: Option<String>,
    pub provider_ref: Option<String>,
    /// Why the VM is not where it was asked to be.
    pub reason: Option<String>,
    /// While `degraded`: the step that fails, and whether berth still retries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<VmDegraded>,
}

impl Aggregate for Vm {
    const KIND: &'static str = berth_schemas::vm::AGGREGATE;
    type Command = VmCommand;
    type Event = VmEvent;

    fn apply(&mut self, event: &VmEvent) {
        use VmStatus::*;
        match event {
            VmEvent::Requested(spec) => {
                self.status = Some(Requested);
                self.spec = Some(spec.clone());
            }
            VmEvent::StartRequested(_) => {
                self.desired_running = true;
                if matches!(self.status, Some(Stopped | Degraded)) {
                    self.status = Some(Starting);
                }
            }
            VmEvent::Placed(placed) => {
                self.server_id = Some(placed.server_id);
                self.host = Some(placed.host.clone());
                self.status = Some(Provisioning);
                self.reason = None;
            }
            VmEvent::ProvisioningStarted(_) => self.status = Some(Provisioning),
            VmEvent::PlacementFailed(failed) => {
                self.status = Some(Failed);
                self.reason = Some(format!("placement failed: {}", failed.reason));
            }
            // The machine is made again on the same server, then started if wanted.
            VmEvent::Lost(_) => self.status = Some(Provisioning),
            VmEvent::Executed(_) => {}
            VmEvent::Provisioned(provisioned) => {
                self.host = Some(provisioned.host.clone());
                self.provider_ref = Some(provisioned.provider_ref.clone());
                self.reason = None;
                self.status = Some(if self.desired_running {
                    Starting
                } else {
                    Stopped
                });
            }
            VmEvent::Started(_) | VmEvent::Restarted(_) => {
                self.status = Some(Running);
                self.reason = None;
            }
            VmEvent::StopRequested(_) => {
                self.desired_running = false;
                self.status = Some(Stopping);
            }
            VmEvent::Stopped(_) => {
                self.status = Some(Stopped);
                self.reason = None;
            }
            VmEvent::RestartRequested(_) => self.status = Some(Restarting),
            VmEvent::RecreateRequested(_) => {
                self.desired_running = true;
                self.status = Some(Recreating);
            }
            VmEvent::ResizeRequested(size) => {
                if let Some(spec) = &mut self.spec {
                    spec.vcpus = size.vcpus;
                    spec.memory_mb = size.memory_mb;
                    spec.disk_gb = size.disk_gb;
                    spec.plan = size.plan;
                }
                self.status = Some(Resizing);
            }
            VmEvent::Resized(_) => {
                self.status = Some(Stopped);
                self.reason = None;
            }
            VmEvent::Recreated(machine) => {
                self.host = Some(machine.host.clone());
                self.provider_ref = Some(machine.provider_ref.clone());
                self.status = Some(Running);
                self.reason = None;
            }
            VmEvent::DestroyRequested(_) => {
                self.desired_running = false;
                self.status = Some(Destroying);
            }
            VmEvent::Destroyed(_) => {
                self.status = Some(Destroyed);
                self.reason = None;
            }
            VmEvent::Failed(failed) => {
                self.status = Some(Failed);
                self.reason = Some(format!("{} failed: {}", failed.operation, failed.reason));
            }
            VmEvent::Degraded(degraded) => {
                self.status = Some(Degraded);
                self.reason = Some(degraded_reason(degraded));
                self.degraded = Some(degraded.clone());
            }
            VmEvent::RetryRequested(retry) => {
                if let Some(step) = Step::from_operation(&retry.step) {
                    self.status = Some(step.pending_status());
                    self.reason = None;
                }
            }
        }
        if self.status != Some(Degraded) {
            self.degraded = None;
        }
    }

    fn decide(&self, command: &VmCommand, _context: &Context) -> Result<Vec<VmEvent>, Rejection> {
        use VmStatus::*;
        let Some(status) = self.status else {
            return match command {
                VmCommand::Create(create) => created(create),
                _ => Err(Rejection::new(RejectionCode::NotFound, "no such vm")),
            };
        };
        let refuse = || {
            Err(Rejection::invalid_state(format!(
                "cannot {} a vm that is {status}",
                command.action()
            )))
        };
        match command {
            VmCommand::Create(_) => Err(Rejection::new(
                RejectionCode::Conflict,
                "a vm with this id already exists",
            )),
            VmCommand::Start(_) => match status {
                Stopped | Degraded => Ok(vec![VmEvent::StartRequested(Empty {})]),
                Requested | Provisioning if !self.desired_running => {
                    Ok(vec![VmEvent::StartRequested(Empty {})])
                }
                _ => refuse(),
            },
            VmCommand::Stop(_) => match status {
                Running | Starting | Restarting | Degraded => {
                    Ok(vec![VmEvent::StopRequested(Empty {})])
                }
                _ => refuse(),
            },
            VmCommand::Resize(resize) => match status {
                Stopped => {
                    let size = resize.new_size()?;
                    let disk = self.spec.as_ref().map_or(0, |s| s.disk_gb);
                    if size.disk_gb < disk {
                        return Err(Rejection::invalid(format!(
                            "disks only grow: {disk} GB cannot become {} GB",
                            size.disk_gb
                        )));
                    }
                    Ok(vec![VmEvent::ResizeRequested(size)])
                }
                _ => refuse(),
            },
            VmCommand::Recreate(_) => match status {
                // Quota is held by running and stopped VMs; a failed one gave it back.
                Running | Stopped => Ok(vec![VmEvent::RecreateRequested(Empty {})]),
                _ => refuse(),
            },
            VmCommand::Restart(_) => match status {
                Running => Ok(vec![VmEvent::RestartRequested(Empty {})]),
                _ => refuse(),
            },
            // The command service runs it, then records `executed`.
            VmCommand::Exec(_) => match status {
                Running => Ok(Vec::new()),
                _ => refuse(),
            },
            VmCommand::Destroy(_) => match status {
                Destroying | Destroyed => refuse(),
                _ => Ok(vec![VmEvent::DestroyRequested(Empty {})]),
            },
            // The step that failed, asked for again.
            VmCommand::Retry(_) => match (&self.degraded, status) {
                (Some(degraded), Degraded) => Ok(vec![VmEvent::RetryRequested(VmRetryRequested {
                    step: degraded.step.clone(),
                })]),
                _ => refuse(),
            },
        }
    }
}

fn created(create: &CreateVm) -> Result<Vec<VmEvent>, Rejection> {
    let mut events = vec![VmEvent::Requested(create.requested()?)];
    if create.start {
        events.push(VmEvent::StartRequested(Empty {}));
    }
    Ok(events)
}

/// The provider step a VM needs next to get where it was asked to be, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Choose a server and reserve its capacity (before the provider is called).
    Place,
    Provision,
    Start,
    Stop,
    Restart,
    /// Destroy the machine and make a fresh one, started.
    Recreate,
    /// Give the stopped machine its new size.
    Resize,
    Destroy,
}

impl Step {
    /// Every step, in the order a VM's life meets them.
    pub const ALL: [Self; 8] = [
        Self::Place,
        Self::Provision,
        Self::Start,
        Self::Stop,
        Self::Restart,
        Self::Recreate,
        Self::Resize,
        Self::Destroy,
    ];

    pub fn next(vm: &Vm) -> Option<Self> {
        use VmStatus::*;
        match vm.status? {
            Requested => Some(Self::Place),
            Provisioning => Some(Self::Provision),
            Starting => Some(Self::Start),
            Stopping => Some(Self::Stop),
            Restarting => Some(Self::Restart),
            Recreating => Some(Self::Recreate),
            Resizing => Some(Self::Resize),
            Destroying => Some(Self::Destroy),
            // Still retried on its own after a transient failure; else it waits for
            // `retry`, `start`, `stop` or `destroy`.
            Degraded => vm
                .degraded
                .as_ref()
                .filter(|degraded| degraded.retrying)
                .and_then(|degraded| Self::from_operation(&degraded.step)),
            Running | Stopped | Destroyed | Failed => None,
        }
    }

    /// The step named `operation` (as in [`Self::operation`]).
    pub fn from_operation(operation: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|step| step.operation() == operation)
    }

    /// The status of a VM that waits for this step.
    pub fn pending_status(self) -> VmStatus {
        match self {
            Self::Place => VmStatus::Requested,
            Self::Provision => VmStatus::Provisioning,
            Self::Start => VmStatus::Starting,
            Self::Stop => VmStatus::Stopping,
            Self::Restart => VmStatus::Restarting,
            Self::Recreate => VmStatus::Recreating,
            Self::Resize => VmStatus::Resizing,
            Self::Destroy => VmStatus::Destroying,
        }
    }

    /// Whether a failure of this step for good leaves a half-made machine to undo (the
    /// VM then fails and gives back its quota and capacity); any other step's failure
    /// leaves the VM as it is, `degraded`.
    pub fn undone_on_failure(self) -> bool {
        matches!(self, Self::Place | Self::Provision | Self::Recreate)
    }

    pub fn operation(self) -> &'static str {
        match self {
            Self::Place => "place",
            Self::Provision => "provision",
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Restart => "restart",
            Self::Recreate => "recreate",
            Self::Resize => "resize",
            Self::Destroy => "destroy",
        }
    }
}

/// The event recording that a provider step failed for good.
pub fn failed(step: Step, reason: &str) -> VmEvent {
    VmEvent::Failed(VmFailed {
        operation: step.operation().to_owned(),
        reason: reason.chars().take(500).collect(),
    })
}

/// The event recording that a provider step keeps failing, the VM left as it is.
pub fn degraded(step: Step, reason: &str, attempts: i64, retrying: bool) -> VmEvent {
    VmEvent::Degraded(VmDegraded {
        step: step.operation().to_owned(),
        reason: reason.chars().take(500).collect(),
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        retrying,
    })
}

/// What a degraded VM's status says.
fn degraded_reason(degraded: &VmDegraded) -> String {
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
            "{} failed after {attempts}: {}; the vm is left as it is (retry, start, stop or destroy it)",
            degraded.step, degraded.reason
        )
    }
}

/// The event recording that a provider made the machine.
pub fn provisioned(provider: &str, host: String, provider_ref: String) -> VmEvent {
    VmEvent::Provisioned(VmProvisioned {
        provider: provider.to_owned(),
        host,
        provider_ref,
    })
}

#[cfg(test)]
mod tests;
