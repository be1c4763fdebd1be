//! Pod commands (`cmd.<tenant>.pod.<action>`) and events (`evt.<tenant>.pod.<id>`).
//!
//! A pod is one instance of a catalog service (n8n, Ghost, WordPress) with a persistent
//! volume. `restart` keeps the volume's data, `reset` wipes it (only with
//! `confirm: true`), `scale` to 0 keeps it; `expire`/`cancel` (the subscription ended)
//! scale to 0 and start a grace period, after which `purge` deletes pod and volume unless
//! a `renew` came first. Operators send the same commands to `cmd.system.pod.<action>`
//! and may act on any tenant's pod.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::command::{parse_body, CommandSet, Rejection};
use crate::domain_events;
use crate::ids::validate_slug;

/// The aggregate kind, as it appears in subjects.
pub const AGGREGATE: &str = "pod";
/// The built-in schedule whose fires delete pods whose grace period is over (a safety net
/// behind each pod's own grace timer).
pub const GRACE_SWEEP_SCHEDULE: &str = "grace-sweep";
/// Days an expired or cancelled pod keeps its volume before it is deleted.
pub const GRACE_DAYS: i64 = 60;

/// The grace timer of a pod (`timer.set` key).
pub fn grace_timer_key(pod_id: Uuid) -> String {
    format!("pod-grace-{pod_id}")
}

/// `pod.create`: a new instance of a catalog service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePod {
    /// Defaults to the command id, so a retried command names the same pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_id: Option<Uuid>,
    /// `^[a-z0-9][a-z0-9-]{0,62}$`; also the instance's host name label.
    pub name: String,
    /// A catalog service, e.g. `n8n`.
    pub service: String,
    /// One of the service's variants, e.g. `basic`.
    pub variant: String,
    /// The billing subscription the pod belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<Uuid>,
    /// Environment overrides on top of the catalog's (configuration, not secrets).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// `pod.restart`, `pod.renew`: act on one pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PodTarget {
    pub pod_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<u64>,
}

/// `pod.reset`: delete the volume's data and start afresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPod {
    pub pod_id: Uuid,
    /// Must be `true`: a reset destroys the pod's data.
    #[serde(default)]
    pub confirm: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<u64>,
}

/// `pod.scale`: 0 stops the pod (the volume stays), 1 runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScalePod {
    pub pod_id: Uuid,
    pub replicas: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<u64>,
}

/// `pod.delete`: remove the pod, and its volume unless `keep_volume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeletePod {
    pub pod_id: Uuid,
    pub keep_volume: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<u64>,
}

/// `pod.update_config`: replace the environment overrides; the pod restarts with them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePodConfig {
    pub pod_id: Uuid,
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<u64>,
}

/// `pod.expire`, `pod.cancel`: the subscription ended; scale to 0, keep the volume for
/// the grace period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EndPod {
    pub pod_id: Uuid,
    /// When the subscription ended; defaults to when the command is handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
}

/// `pod.purge`: the grace period of the expiry at `expired_at` is over; deletes pod and
/// volume if the pod is still expired from then (sent by the pod's grace timer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgePod {
    pub pod_id: Uuid,
    pub expired_at: DateTime<Utc>,
}

/// `pod.logs`: the workload's recent output, in the reply (nothing is recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PodLogs {
    pub pod_id: Uuid,
    /// Only the last lines: 1 to 10000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
}

/// A `pods debug` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DebugPods {
    /// Also remove the orphaned workloads and volumes found.
    #[serde(default)]
    pub clean_orphans: bool,
}

impl DebugPods {
    pub fn decode(body: &[u8]) -> Result<Self, Rejection> {
        if body.is_empty() {
            return Ok(Self::default());
        }
        parse_body("debug", body)
    }
}

/// A pod as berth records it beside what its runtime has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PodSideBySide {
    pub pod_id: Uuid,
    pub tenant: String,
    pub name: String,
    /// The recorded status.
    pub status: String,
    /// What the runtime says: `healthy`, `starting`, `unhealthy: …`, `stopped`, `missing`.
    pub runtime_status: String,
    /// Whether the runtime has the pod's volume.
    pub volume_present: bool,
}

/// A workload or volume at the runtime that no live pod owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RuntimeOrphan {
    /// `workload` or `volume`.
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Why it counts as an orphan.
    pub why: String,
}

/// The answer to [`DebugPods`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PodsReport {
    /// `sim`, `docker`, `kubernetes`.
    pub runtime: String,
    pub pods: Vec<PodSideBySide>,
    pub orphans: Vec<RuntimeOrphan>,
    /// Orphans removed by this request.
    pub removed: Vec<RuntimeOrphan>,
}

/// Every pod command, decoded from its action and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodCommand {
    Create(CreatePod),
    Restart(PodTarget),
    Reset(ResetPod),
    Scale(ScalePod),
    Delete(DeletePod),
    UpdateConfig(UpdatePodConfig),
    Expire(EndPod),
    Cancel(EndPod),
    Renew(PodTarget),
    Purge(PurgePod),
    Logs(PodLogs),
}

impl PodCommand {
    /// Every action, as in `cmd.<tenant>.pod.<action>`.
    pub const ACTIONS: [&'static str; 11] = [
        "create",
        "restart",
        "reset",
        "scale",
        "delete",
        "update_config",
        "expire",
        "cancel",
        "renew",
        "purge",
        "logs",
    ];

    pub fn pod_id(&self, command_id: Uuid) -> Uuid {
        match self {
            Self::Create(create) => create.pod_id.unwrap_or(command_id),
            Self::Restart(t) | Self::Renew(t) => t.pod_id,
            Self::Reset(reset) => reset.pod_id,
            Self::Scale(scale) => scale.pod_id,
            Self::Delete(delete) => delete.pod_id,
            Self::UpdateConfig(update) => update.pod_id,
            Self::Expire(end) | Self::Cancel(end) => end.pod_id,
            Self::Purge(purge) => purge.pod_id,
            Self::Logs(logs) => logs.pod_id,
        }
    }

    pub fn body(&self) -> Vec<u8> {
        let encoded = match self {
            Self::Create(c) => serde_json::to_vec(c),
            Self::Restart(t) | Self::Renew(t) => serde_json::to_vec(t),
            Self::Reset(c) => serde_json::to_vec(c),
            Self::Scale(c) => serde_json::to_vec(c),
            Self::Delete(c) => serde_json::to_vec(c),
            Self::UpdateConfig(c) => serde_json::to_vec(c),
            Self::Expire(c) | Self::Cancel(c) => serde_json::to_vec(c),
            Self::Purge(c) => serde_json::to_vec(c),
            Self::Logs(c) => serde_json::to_vec(c),
        };
        encoded.expect("commands are plain data")
    }

    fn validate(&self) -> Result<(), Rejection> {
        let invalid = |e: crate::ids::InvalidToken| Rejection::invalid(e.to_string());
        match self {
            Self::Create(create) => {
                validate_slug("pod name", &create.name, 63).map_err(invalid)?;
                validate_slug("service", &create.service, 63).map_err(invalid)?;
                validate_slug("variant", &create.variant, 63).map_err(invalid)?;
                validate_env(&create.env)
            }
            Self::UpdateConfig(update) => validate_env(&update.env),
            Self::Scale(scale) if scale.replicas > 1 => Err(Rejection::invalid(format!(
                "replicas must be 0 or 1, got {}",
                scale.replicas
            ))),
            Self::Logs(logs) if logs.tail.is_some_and(|tail| !(1..=10_000).contains(&tail)) => {
                Err(Rejection::invalid("tail must be between 1 and 10000"))
            }
            _ => Ok(()),
        }
    }
}

/// At most 64 variables; names like shell variables, values up to 4096 bytes without NUL.
fn validate_env(env: &BTreeMap<String, String>) -> Result<(), Rejection> {
    if env.len() > 64 {
        return Err(Rejection::invalid("at most 64 environment variables"));
    }
    for (name, value) in env {
        let good_name = !name.is_empty()
            && name.len() <= 128
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !good_name {
            return Err(Rejection::invalid(format!(
                "environment variable names hold A-Z, a-z, 0-9 and '_' and do not start with a digit: {:?}",
                name.chars().take(40).collect::<String>()
            )));
        }
        if value.len() > 4096 || value.contains('\0') {
            return Err(Rejection::invalid(format!(
                "the value of {name} must be at most 4096 bytes, without NUL"
            )));
        }
    }
    Ok(())
}

impl CommandSet for PodCommand {
    fn decode(action: &str, body: &[u8]) -> Result<Self, Rejection> {
        let command = match action {
            "create" => Self::Create(parse_body(action, body)?),
            "restart" => Self::Restart(parse_body(action, body)?),
            "reset" => Self::Reset(parse_body(action, body)?),
            "scale" => Self::Scale(parse_body(action, body)?),
            "delete" => Self::Delete(parse_body(action, body)?),
            "update_config" => Self::UpdateConfig(parse_body(action, body)?),
            "expire" => Self::Expire(parse_body(action, body)?),
            "cancel" => Self::Cancel(parse_body(action, body)?),
            "renew" => Self::Renew(parse_body(action, body)?),
            "purge" => Self::Purge(parse_body(action, body)?),
            "logs" => Self::Logs(parse_body(action, body)?),
            other => {
                return Err(Rejection::invalid(format!(
                    "unknown pod action {:?}; expected one of {}",
                    other.chars().take(40).collect::<String>(),
                    Self::ACTIONS.join(", ")
                )))
            }
        };
        command.validate()?;
        Ok(command)
    }

    fn aggregate_id(&self, command_id: Uuid) -> Uuid {
        self.pod_id(command_id)
    }

    fn expected_version(&self) -> Option<u64> {
        match self {
            Self::Restart(t) | Self::Renew(t) => t.expected_version,
            Self::Reset(c) => c.expected_version,
            Self::Scale(c) => c.expected_version,
            Self::Delete(c) => c.expected_version,
            Self::UpdateConfig(c) => c.expected_version,
            Self::Create(_)
            | Self::Expire(_)
            | Self::Cancel(_)
            | Self::Purge(_)
            | Self::Logs(_) => None,
        }
    }

    fn action(&self) -> &'static str {
        match self {
            Self::Create(_) => "create",
            Self::Restart(_) => "restart",
            Self::Reset(_) => "reset",
            Self::Scale(_) => "scale",
            Self::Delete(_) => "delete",
            Self::UpdateConfig(_) => "update_config",
            Self::Expire(_) => "expire",
            Self::Cancel(_) => "cancel",
            Self::Renew(_) => "renew",
            Self::Purge(_) => "purge",
            Self::Logs(_) => "logs",
        }
    }
}

/// A pod's volume as asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PodVolume {
    pub size_mb: u32,
    pub mount_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// `ReadWriteOnce` or `ReadWriteMany`.
    pub access_mode: String,
}

/// CPU in thousandths of a core and memory in MiB, requested and limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PodResources {
    pub cpu_request_millis: u32,
    pub cpu_limit_millis: u32,
    pub memory_request_mb: u32,
    pub memory_limit_mb: u32,
}

/// The pod as created: the catalog entry resolved at that moment, so later catalog
/// changes of size, image or volume never change an existing pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PodRequested {
    pub name: String,
    pub service: String,
    pub variant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<Uuid>,
    pub image: String,
    pub port: u16,
    pub resources: PodResources,
    pub volume: PodVolume,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// The runtime made the pod's volume and workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PodDeployed {
    /// `sim`, `docker`, `kubernetes`.
    pub runtime: String,
    pub workload: String,
    pub volume: String,
    pub replicas: u32,
}

/// Why something was asked, for people.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PodReason {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A restart was asked for: by a person, or by health monitoring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PodRestartRequested {
    /// Asked by health monitoring, not a person.
    #[serde(default)]
    pub automatic: bool,
    /// When, for the restarts-per-hour limit.
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The pod's replicas: asked for, or done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PodReplicas {
    pub replicas: u32,
}

/// The environment overrides were replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PodConfigUpdated {
    pub env: BTreeMap<String, String>,
}

/// The subscription ended: the pod goes to 0 replicas and keeps its volume until
/// `purge_after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PodExpired {
    /// `expired` or `cancelled`.
    pub why: String,
    pub expired_at: DateTime<Utc>,
    pub purge_after: DateTime<Utc>,
}

/// Deletion was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PodDeleteRequested {
    pub keep_volume: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The pod is gone from the runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PodDeleted {
    pub volume_kept: bool,
}

/// The pod cannot get where it was asked to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PodFailed {
    /// `deploy`, `restart`, `reset`, `scale`, `reconfigure`, `delete`, `health`.
    pub operation: String,
    pub reason: String,
}

/// A step that has nothing to say but that it happened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PodStep {}

/// A step on a pod keeps failing, and the pod is left as it is: its workload and its
/// volume (with the customer's data) are never removed for it. Only a failed first
/// deploy is undone instead, and then the pod has `failed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PodDegraded {
    /// The step that fails: `restart`, `reset`, `scale`, `reconfigure`, `delete`; or,
    /// while a transient failure is still retried, `deploy`.
    pub step: String,
    /// The last error, for people.
    pub reason: String,
    /// Attempts so far.
    pub attempts: u32,
    /// berth keeps retrying on its own (a transient failure, with capped back-off);
    /// otherwise the pod waits for its owner to restart, scale, reconfigure or delete it.
    #[serde(default)]
    pub retrying: bool,
}

domain_events! {
    /// Everything that happens to a pod.
    pub enum PodEvent {
        Requested(PodRequested) = "berth.pod.requested.v1",
        Deployed(PodDeployed) = "berth.pod.deployed.v1",
        Healthy(PodStep) = "berth.pod.healthy.v1",
        Unhealthy(PodReason) = "berth.pod.unhealthy.v1",
        RestartRequested(PodRestartRequested) = "berth.pod.restart_requested.v1",
        Restarted(PodStep) = "berth.pod.restarted.v1",
        ResetRequested(PodStep) = "berth.pod.reset_requested.v1",
        Reset(PodStep) = "berth.pod.reset.v1",
        ScaleRequested(PodReplicas) = "berth.pod.scale_requested.v1",
        Scaled(PodReplicas) = "berth.pod.scaled.v1",
        ConfigUpdated(PodConfigUpdated) = "berth.pod.config_updated.v1",
        Reconfigured(PodStep) = "berth.pod.reconfigured.v1",
        Expired(PodExpired) = "berth.pod.expired.v1",
        Renewed(PodStep) = "berth.pod.renewed.v1",
        DeleteRequested(PodDeleteRequested) = "berth.pod.delete_requested.v1",
        Deleted(PodDeleted) = "berth.pod.deleted.v1",
        Failed(PodFailed) = "berth.pod.failed.v1",
        Degraded(PodDegraded) = "berth.pod.degraded.v1",
    }
}

/// Where a pod is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PodStatus {
    Requested,
    /// Running, not yet healthy.
    Starting,
    /// Running and healthy.
    Running,
    Unhealthy,
    Restarting,
    Resetting,
    Reconfiguring,
    Scaling,
    /// Scaled to 0 by its owner; the volume stays.
    Stopped,
    /// Scaled to 0 because the subscription ended; deleted after the grace period.
    Expired,
    Deleting,
    Deleted,
    Failed,
    /// A step keeps failing; the pod is left as it is (see [`PodDegraded`]).
    Degraded,
}

impl PodStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Unhealthy => "unhealthy",
            Self::Restarting => "restarting",
            Self::Resetting => "resetting",
            Self::Reconfiguring => "reconfiguring",
            Self::Scaling => "scaling",
            Self::Stopped => "stopped",
            Self::Expired => "expired",
            Self::Deleting => "deleting",
            Self::Deleted => "deleted",
            Self::Failed => "failed",
            Self::Degraded => "degraded",
        }
    }
}

impl std::fmt::Display for PodStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PodStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(s.to_owned()))
            .map_err(|_| format!("unknown pod status {s:?}"))
    }
}

/// The aggregate kind that counts the live pods of a tenant:
/// `evt.<tenant>.pod_slots.<pod_slots_id(tenant)>`.
pub const POD_SLOTS_AGGREGATE: &str = "pod_slots";

/// A tenant has at most this many live pods (created and not yet deleted); `system` has
/// no pods. Counted by its [`POD_SLOTS_AGGREGATE`] aggregate.
pub const MAX_TENANT_PODS: usize = 50;

/// The id of a tenant's [`POD_SLOTS_AGGREGATE`]: one per tenant.
pub fn pod_slots_id(tenant: &crate::ids::TenantId) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("berth.pod-slots.{tenant}").as_bytes(),
    )
}

/// A pod was created and holds one of its tenant's slots (appended in the same atomic
/// batch as its `pod.requested`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PodSlotHeld {
    pub pod_id: Uuid,
}

/// These pods were found deleted when the tenant's count had reached its cap: their
/// slots are free again (appended in the same atomic batch as the hold that needed
/// them). A pod's deletion appends nothing here; its slot is released lazily.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PodSlotsReleased {
    pub pod_ids: Vec<Uuid>,
}

domain_events! {
    /// The slots a tenant's pods hold: held at create, released lazily once deleted.
    pub enum PodSlotEvent {
        Held(PodSlotHeld) = "berth.pod_slots.held.v1",
        Released(PodSlotsReleased) = "berth.pod_slots.released.v1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::RejectionCode;

    #[test]
    fn bad_commands_are_invalid() {
        let cases: [(&str, &[u8]); 8] = [
            ("create", b"{not json"),
            (
                "create",
                br#"{"name":"blog","service":"ghost","variant":"basic","colour":"red"}"#,
            ),
            (
                "create",
                br#"{"name":"Blog","service":"ghost","variant":"basic"}"#,
            ),
            (
                "create",
                br#"{"name":"blog","service":"gh.st","variant":"basic"}"#,
            ),
            (
                "create",
                br#"{"name":"blog","service":"ghost","variant":"basic","env":{"1X":"y"}}"#,
            ),
            (
                "scale",
                br#"{"pod_id":"0190f5d2-0000-7000-8000-000000000000","replicas":2}"#,
            ),
            ("reset", br#"{"pod_id":"nope","confirm":true}"#),
            ("explode", b"{}"),
        ];
        for (action, body) in cases {
            assert_eq!(
                PodCommand::decode(action, body).unwrap_err().code,
                RejectionCode::Invalid,
                "{action} {}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn reset_without_confirm_decodes_as_unconfirmed() {
        let body = br#"{"pod_id":"0190f5d2-0000-7000-8000-000000000000"}"#;
        let PodCommand::Reset(reset) = PodCommand::decode("reset", body).unwrap() else {
            panic!("not a reset")
        };
        assert!(!reset.confirm);
    }
}
