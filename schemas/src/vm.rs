//! VM commands (`cmd.<tenant>.vm.<action>`) and events (`evt.<tenant>.vm.<id>`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::command::{parse_body, Rejection};
use crate::domain_events;
use crate::ids::validate_slug;

/// The aggregate kind, as it appears in subjects.
pub const AGGREGATE: &str = "vm";

/// `vm.create`: ask for a new VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVm {
    /// The new VM's id (UUID); defaults to the command id, so a retried command
    /// always names the same VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_id: Option<Uuid>,
    /// A name unique enough for people: `^[a-z0-9][a-z0-9-]{0,62}$`.
    pub name: String,
    /// A size by name; or give `vcpus`, `memory_mb` and `disk_gb` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// 1 to 64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u32>,
    /// 128 to 262144.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    /// 1 to 4096.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_gb: Option<u32>,
    /// Where to run it, e.g. `eu-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The image to boot, 1 to 255 printable characters.
    pub image: String,
    /// Start the VM once it is provisioned (default true).
    #[serde(default = "yes")]
    pub start: bool,
}

fn yes() -> bool {
    true
}

/// The sizes berth sells by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    /// 1 vCPU, 1 GB memory, 10 GB disk.
    Small,
    /// 2 vCPU, 4 GB memory, 40 GB disk.
    Medium,
    /// 4 vCPU, 8 GB memory, 80 GB disk.
    Large,
}

impl Plan {
    /// `(vcpus, memory_mb, disk_gb)`.
    pub fn size(self) -> (u32, u32, u32) {
        match self {
            Self::Small => (1, 1024, 10),
            Self::Medium => (2, 4096, 40),
            Self::Large => (4, 8192, 80),
        }
    }
}

impl CreateVm {
    /// A create by plan.
    pub fn with_plan(name: impl Into<String>, plan: Plan, image: impl Into<String>) -> Self {
        Self {
            vm_id: None,
            name: name.into(),
            plan: Some(plan),
            vcpus: None,
            memory_mb: None,
            disk_gb: None,
            region: None,
            image: image.into(),
            start: true,
        }
    }

    /// A create with explicit sizes.
    pub fn with_size(
        name: impl Into<String>,
        vcpus: u32,
        memory_mb: u32,
        disk_gb: u32,
        image: impl Into<String>,
    ) -> Self {
        Self {
            vm_id: None,
            name: name.into(),
            plan: None,
            vcpus: Some(vcpus),
            memory_mb: Some(memory_mb),
            disk_gb: Some(disk_gb),
            region: None,
            image: image.into(),
            start: true,
        }
    }

    /// `(vcpus, memory_mb, disk_gb)`, from the plan or the explicit sizes.
    pub fn size(&self) -> Result<(u32, u32, u32), Rejection> {
        resolve_size(self.plan, self.vcpus, self.memory_mb, self.disk_gb)
    }

    /// The event that records this request.
    pub fn requested(&self) -> Result<VmRequested, Rejection> {
        let (vcpus, memory_mb, disk_gb) = self.size()?;
        Ok(VmRequested {
            name: self.name.clone(),
            vcpus,
            memory_mb,
            disk_gb,
            image: self.image.clone(),
            plan: self.plan,
            region: self.region.clone(),
        })
    }
}

/// `(vcpus, memory_mb, disk_gb)` from a plan or from all three explicit sizes, bounded.
pub fn resolve_size(
    plan: Option<Plan>,
    vcpus: Option<u32>,
    memory_mb: Option<u32>,
    disk_gb: Option<u32>,
) -> Result<(u32, u32, u32), Rejection> {
    let size = match (plan, vcpus, memory_mb, disk_gb) {
        (Some(plan), None, None, None) => plan.size(),
        (None, Some(vcpus), Some(memory_mb), Some(disk_gb)) => (vcpus, memory_mb, disk_gb),
        (Some(_), ..) => {
            return Err(Rejection::invalid(
                "give a plan or explicit sizes, not both",
            ))
        }
        _ => {
            return Err(Rejection::invalid(
                "give a plan (small, medium, large) or all of vcpus, memory_mb and disk_gb",
            ))
        }
    };
    bounded("vcpus", size.0, 1, 64)?;
    bounded("memory_mb", size.1, 128, 262_144)?;
    bounded("disk_gb", size.2, 1, 4096)?;
    Ok(size)
}

/// `vm.resize`: give a stopped VM a new size (the disk can only grow).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResizeVm {
    pub vm_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_gb: Option<u32>,
}

impl ResizeVm {
    /// The new size, as recorded in `resize_requested`.
    pub fn new_size(&self) -> Result<VmSize, Rejection> {
        let (vcpus, memory_mb, disk_gb) =
            resolve_size(self.plan, self.vcpus, self.memory_mb, self.disk_gb)?;
        Ok(VmSize {
            vcpus,
            memory_mb,
            disk_gb,
            plan: self.plan,
        })
    }
}

/// A VM's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VmSize {
    pub vcpus: u32,
    pub memory_mb: u32,
    pub disk_gb: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
}

/// `vm.start`, `vm.stop`, `vm.restart`, `vm.destroy`, `vm.retry`: act on one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmTarget {
    pub vm_id: Uuid,
    /// Apply only if the VM is still at this version (its last event's stream sequence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<u64>,
}

/// `vm.exec`: run a command in a running VM and answer with its exit code and output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecVm {
    pub vm_id: Uuid,
    /// Program and arguments (no shell): 1 to 64 items of at most 4096 bytes.
    pub command: Vec<String>,
    /// 1 to 300 seconds (default 30); a command still running then is `unavailable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u32>,
}

impl ExecVm {
    pub const DEFAULT_TIMEOUT_SECS: u32 = 30;

    fn validate(&self) -> Result<(), Rejection> {
        if self.command.is_empty() || self.command.len() > 64 {
            return Err(Rejection::invalid("command must hold 1 to 64 items"));
        }
        if self
            .command
            .iter()
            .any(|arg| arg.len() > 4096 || arg.contains('\0'))
        {
            return Err(Rejection::invalid(
                "command items must be at most 4096 bytes, without NUL",
            ));
        }
        if self.command[0].is_empty() {
            return Err(Rejection::invalid("the program must not be empty"));
        }
        bounded(
            "timeout_secs",
            self.timeout_secs.unwrap_or(Self::DEFAULT_TIMEOUT_SECS),
            1,
            300,
        )
    }
}

/// What a command run in a VM printed (each stream cut at 64 KiB) and returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// Every VM command, decoded from its action and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmCommand {
    Create(CreateVm),
    Start(VmTarget),
    Stop(VmTarget),
    Restart(VmTarget),
    /// Destroy the machine and provision a fresh one under the same id (running).
    Recreate(VmTarget),
    Resize(ResizeVm),
    Destroy(VmTarget),
    Exec(ExecVm),
    /// Ask a `degraded` VM to try its failed step again.
    Retry(VmTarget),
}

impl VmCommand {
    /// Every action, as in `cmd.<tenant>.vm.<action>`.
    pub const ACTIONS: [&'static str; 9] = [
        "create", "start", "stop", "restart", "recreate", "resize", "destroy", "exec", "retry",
    ];

    pub fn decode(action: &str, body: &[u8]) -> Result<Self, Rejection> {
        let command = match action {
            "create" => Self::Create(parse_body(action, body)?),
            "start" => Self::Start(parse_body(action, body)?),
            "stop" => Self::Stop(parse_body(action, body)?),
            "restart" => Self::Restart(parse_body(action, body)?),
            "recreate" => Self::Recreate(parse_body(action, body)?),
            "resize" => Self::Resize(parse_body(action, body)?),
            "destroy" => Self::Destroy(parse_body(action, body)?),
            "exec" => Self::Exec(parse_body(action, body)?),
            "retry" => Self::Retry(parse_body(action, body)?),
            other => {
                return Err(Rejection::invalid(format!(
                    "unknown vm action {:?}; expected one of {}",
                    other.chars().take(40).collect::<String>(),
                    Self::ACTIONS.join(", ")
                )))
            }
        };
        command.validate()?;
        Ok(command)
    }

    pub fn action(&self) -> &'static str {
        match self {
            Self::Create(_) => "create",
            Self::Start(_) => "start",
            Self::Stop(_) => "stop",
            Self::Restart(_) => "restart",
            Self::Recreate(_) => "recreate",
            Self::Resize(_) => "resize",
            Self::Destroy(_) => "destroy",
            Self::Exec(_) => "exec",
            Self::Retry(_) => "retry",
        }
    }

    /// The VM this command is about; a create without `vm_id` names the command id.
    pub fn vm_id(&self, command_id: Uuid) -> Uuid {
        match self {
            Self::Create(create) => create.vm_id.unwrap_or(command_id),
            Self::Resize(resize) => resize.vm_id,
            Self::Exec(exec) => exec.vm_id,
            Self::Start(t)
            | Self::Stop(t)
            | Self::Restart(t)
            | Self::Recreate(t)
            | Self::Destroy(t)
            | Self::Retry(t) => t.vm_id,
        }
    }

    pub fn expected_version(&self) -> Option<u64> {
        match self {
            Self::Create(_) | Self::Exec(_) => None,
            Self::Resize(resize) => resize.expected_version,
            Self::Start(t)
            | Self::Stop(t)
            | Self::Restart(t)
            | Self::Recreate(t)
            | Self::Destroy(t)
            | Self::Retry(t) => t.expected_version,
        }
    }

    pub fn body(&self) -> Vec<u8> {
        let encoded = match self {
            Self::Create(create) => serde_json::to_vec(create),
            Self::Resize(resize) => serde_json::to_vec(resize),
            Self::Exec(exec) => serde_json::to_vec(exec),
            Self::Start(t)
            | Self::Stop(t)
            | Self::Restart(t)
            | Self::Recreate(t)
            | Self::Destroy(t)
            | Self::Retry(t) => serde_json::to_vec(t),
        };
        encoded.expect("commands are plain data")
    }

    fn validate(&self) -> Result<(), Rejection> {
        let create = match self {
            Self::Create(create) => create,
            Self::Resize(resize) => return resize.new_size().map(|_| ()),
            Self::Exec(exec) => return exec.validate(),
            _ => return Ok(()),
        };
        validate_slug("vm name", &create.name, 63)
            .map_err(|e| Rejection::invalid(e.to_string()))?;
        create.size()?;
        if let Some(region) = &create.region {
            validate_slug("region", region, 63).map_err(|e| Rejection::invalid(e.to_string()))?;
        }
        if create.image.is_empty()
            || create.image.len() > 255
            || create
                .image
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(Rejection::invalid(
                "image must hold 1 to 255 characters without whitespace",
            ));
        }
        Ok(())
    }
}

fn bounded(field: &str, value: u32, min: u32, max: u32) -> Result<(), Rejection> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(Rejection::invalid(format!(
            "{field} must be between {min} and {max}, got {value}"
        )))
    }
}

/// The size and image of a VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VmRequested {
    pub name: String,
    pub vcpus: u32,
    pub memory_mb: u32,
    pub disk_gb: u32,
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// The VM has a place: capacity on `host` is reserved for it (the server's
/// `allocated` is in the same atomic append).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VmPlaced {
    pub provider: String,
    pub server_id: Uuid,
    /// The server's name.
    pub host: String,
}

/// Legacy: a provider took the VM in hand. Logs written before placement existed hold
/// it; it is read (as `placed` without a server) and never written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VmProvisioningStarted {
    pub provider: String,
}

/// No server can take the VM; its quota is released in the same atomic append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VmPlacementFailed {
    /// Why, for people: what was asked and what the best server had free.
    pub reason: String,
}

/// A command ran in the VM (`vm.exec`); the output is not kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VmExecuted {
    /// The program and arguments, cut at 200 characters.
    pub command: String,
    pub exit_code: i64,
}

/// Reconciliation found the VM's machine gone at the provider; it is made again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VmLost {
    /// The machine the provider no longer has.
    pub provider_ref: String,
    /// What was seen, for people.
    pub reason: String,
}

/// The provider made the machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VmProvisioned {
    pub provider: String,
    /// The host the machine runs on.
    pub host: String,
    /// The provider's own name for the machine (`berth-vm-<id>`).
    pub provider_ref: String,
}

/// A step that has nothing to say but that it happened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Empty {}

/// The VM cannot get where it was asked to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VmFailed {
    /// What was being done: `provision`, `start`, `stop`, `restart`, `destroy`.
    pub operation: String,
    /// Why, for people.
    pub reason: String,
}

/// A step on a VM keeps failing, and the VM is left as it is: nothing it has is
/// destroyed, its quota and its server's capacity stay held. Only a half-made machine
/// (a failed `provision` or `recreate`) is undone instead, and then the VM has `failed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VmDegraded {
    /// The step that fails: `start`, `stop`, `restart`, `resize`, `destroy`; or, while a
    /// transient failure is still retried, `place`, `provision` or `recreate`.
    pub step: String,
    /// The last error, for people.
    pub reason: String,
    /// Attempts so far.
    pub attempts: u32,
    /// berth keeps retrying on its own (a transient failure, with capped back-off);
    /// otherwise the VM waits for `retry`, `start`, `stop` or `destroy`.
    #[serde(default)]
    pub retrying: bool,
}

/// `vm.retry` asked a degraded VM to try its failed step again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VmRetryRequested {
    /// The step tried again (the degraded VM's `step`).
    pub step: String,
}

domain_events! {
    /// Everything that happens to a VM.
    pub enum VmEvent {
        Requested(VmRequested) = "berth.vm.requested.v1",
        StartRequested(Empty) = "berth.vm.start_requested.v1",
        Placed(VmPlaced) = "berth.vm.placed.v1",
        /// Legacy, read only.
        ProvisioningStarted(VmProvisioningStarted) = "berth.vm.provisioning_started.v1",
        PlacementFailed(VmPlacementFailed) = "berth.vm.placement_failed.v1",
        Provisioned(VmProvisioned) = "berth.vm.provisioned.v1",
        Started(Empty) = "berth.vm.started.v1",
        StopRequested(Empty) = "berth.vm.stop_requested.v1",
        Stopped(Empty) = "berth.vm.stopped.v1",
        RestartRequested(Empty) = "berth.vm.restart_requested.v1",
        Restarted(Empty) = "berth.vm.restarted.v1",
        RecreateRequested(Empty) = "berth.vm.recreate_requested.v1",
        Recreated(VmProvisioned) = "berth.vm.recreated.v1",
        ResizeRequested(VmSize) = "berth.vm.resize_requested.v1",
        Resized(Empty) = "berth.vm.resized.v1",
        DestroyRequested(Empty) = "berth.vm.destroy_requested.v1",
        Destroyed(Empty) = "berth.vm.destroyed.v1",
        Failed(VmFailed) = "berth.vm.failed.v1",
        Lost(VmLost) = "berth.vm.lost.v1",
        Executed(VmExecuted) = "berth.vm.executed.v1",
        Degraded(VmDegraded) = "berth.vm.degraded.v1",
        RetryRequested(VmRetryRequested) = "berth.vm.retry_requested.v1",
    }
}

/// Where a VM is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VmStatus {
    Requested,
    Provisioning,
    Starting,
    Running,
    Stopping,
    Stopped,
    Restarting,
    Recreating,
    Resizing,
    Destroying,
    Destroyed,
    Failed,
    /// A step keeps failing; the VM is left as it is (see [`VmDegraded`]).
    Degraded,
}

impl VmStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Provisioning => "provisioning",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Restarting => "restarting",
            Self::Recreating => "recreating",
            Self::Resizing => "resizing",
            Self::Destroying => "destroying",
            Self::Destroyed => "destroyed",
            Self::Failed => "failed",
            Self::Degraded => "degraded",
        }
    }

    /// A state the VM stays in until someone asks for something else (a degraded VM
    /// whose failure is transient may still recover on its own).
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            Self::Running | Self::Stopped | Self::Destroyed | Self::Failed | Self::Degraded
        )
    }
}

impl std::fmt::Display for VmStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for VmStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(s.to_owned()))
            .map_err(|_| format!("unknown vm status {s:?}"))
    }
}

impl crate::command::CommandSet for VmCommand {
    fn decode(action: &str, body: &[u8]) -> Result<Self, Rejection> {
        VmCommand::decode(action, body)
    }
    fn aggregate_id(&self, command_id: Uuid) -> Uuid {
        self.vm_id(command_id)
    }
    fn expected_version(&self) -> Option<u64> {
        VmCommand::expected_version(self)
    }
    fn action(&self) -> &'static str {
        VmCommand::action(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::RejectionCode;
    use crate::event::DomainEvent;

    fn create_body() -> serde_json::Value {
        serde_json::json!({"name": "web", "vcpus": 2, "memory_mb": 2048, "disk_gb": 20, "image": "debian-12"})
    }

    #[test]
    fn plans_or_sizes_but_not_both() {
        let by_plan = br#"{"name":"web","plan":"medium","image":"debian-12"}"#;
        let VmCommand::Create(create) = VmCommand::decode("create", by_plan).unwrap() else {
            panic!()
        };
        assert_eq!(create.requested().unwrap().memory_mb, 4096);
        let both = br#"{"name":"web","plan":"small","vcpus":2,"image":"debian-12"}"#;
        assert_eq!(
            VmCommand::decode("create", both).unwrap_err().code,
            RejectionCode::Invalid
        );
        let partial = br#"{"name":"web","vcpus":2,"image":"debian-12"}"#;
        assert_eq!(
            VmCommand::decode("create", partial).unwrap_err().code,
            RejectionCode::Invalid
        );
        let huge = br#"{"name":"web","plan":"huge","image":"debian-12"}"#;
        assert_eq!(
            VmCommand::decode("create", huge).unwrap_err().code,
            RejectionCode::Invalid
        );
    }

    #[test]
    fn create_defaults_to_starting() {
        let body = serde_json::to_vec(&create_body()).unwrap();
        let VmCommand::Create(create) = VmCommand::decode("create", &body).unwrap() else {
            panic!("not a create");
        };
        assert!(create.start);
    }

    #[test]
    fn bad_commands_are_invalid() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("create", b"{not json".to_vec()),
            ("create", br#"{"name":"web","vcpus":2,"memory_mb":2048,"disk_gb":20,"image":"x","colour":"red"}"#.to_vec()),
            ("create", br#"{"name":"web","name":"web2","vcpus":2,"memory_mb":2048,"disk_gb":20,"image":"x"}"#.to_vec()),
            ("create", br#"{"name":"Web","vcpus":2,"memory_mb":2048,"disk_gb":20,"image":"x"}"#.to_vec()),
            ("create", br#"{"name":"web","vcpus":0,"memory_mb":2048,"disk_gb":20,"image":"x"}"#.to_vec()),
            ("create", br#"{"name":"web","vcpus":2,"memory_mb":2048,"disk_gb":20,"image":"a b"}"#.to_vec()),
            ("start", br#"{"vm_id":"not-a-uuid"}"#.to_vec()),
            ("explode", b"{}".to_vec()),
        ];
        for (action, body) in cases {
            let rejection = VmCommand::decode(action, &body).unwrap_err();
            assert_eq!(
                rejection.code,
                RejectionCode::Invalid,
                "{action} {}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    #[test]
    fn events_round_trip_by_type() {
        let event = VmEvent::Failed(VmFailed {
            operation: "start".into(),
            reason: "host gone".into(),
        });
        let decoded = VmEvent::decode(event.event_type(), &event.to_json()).unwrap();
        assert_eq!(decoded, event);
        assert!(VmEvent::decode("berth.vm.exploded.v1", b"{}").is_err());
    }
}
