//! The public demo instance's daily reset: the provisioner's process manager records
//! each reset on the `demo` aggregate (`evt.<tenant>.demo.<id>`, one per demo tenant).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain_events;
use crate::ids::TenantId;

/// The aggregate kind, as it appears in subjects.
pub const AGGREGATE: &str = "demo";
/// The built-in schedule (tenant `system`) whose fires reset the demo.
pub const RESET_SCHEDULE: &str = "demo-reset";

/// The id of a tenant's demo record.
pub fn demo_id(tenant: &TenantId) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("berth.demo.{tenant}").as_bytes(),
    )
}

/// A reset began, for the schedule fire `trigger`, on the VM `vm_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DemoResetStarted {
    pub trigger: Uuid,
    pub vm_id: Uuid,
}

/// The demo VM runs again, fresh; `duration_ms` from the fire to `running`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DemoResetSucceeded {
    pub trigger: Uuid,
    pub vm_id: Uuid,
    pub duration_ms: u64,
}

/// The reset did not bring the demo VM back; why, for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DemoResetFailed {
    pub trigger: Uuid,
    pub vm_id: Uuid,
    pub reason: String,
    pub duration_ms: u64,
}

domain_events! {
    /// Everything that happens to a demo.
    pub enum DemoEvent {
        ResetStarted(DemoResetStarted) = "berth.demo.reset_started.v1",
        ResetSucceeded(DemoResetSucceeded) = "berth.demo.reset_succeeded.v1",
        ResetFailed(DemoResetFailed) = "berth.demo.reset_failed.v1",
    }
}
