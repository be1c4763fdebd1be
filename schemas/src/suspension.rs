//! What a suspended account's services did about it, so that a resumption undoes exactly
//! that: `evt.<tenant>.suspension.<id>`, one aggregate per tenant and service (the
//! provisioner's for VMs, pod-lifecycle's for pods).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain_events;
use crate::ids::TenantId;

/// The aggregate kind, as it appears in subjects.
pub const AGGREGATE: &str = "suspension";

/// The suspension record of `what` (`vms`, `pods`) of a tenant.
pub fn suspension_id(tenant: &TenantId, what: &str) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("berth.suspension.{tenant}.{what}").as_bytes(),
    )
}

/// The account was suspended: these were stopped (VMs) or scaled to 0 (pods).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SuspensionApplied {
    pub stopped: Vec<Uuid>,
}

/// The account was resumed: these were started (or scaled to 1) again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SuspensionLifted {
    pub started: Vec<Uuid>,
}

domain_events! {
    /// A service's answer to an account's suspension.
    pub enum SuspensionEvent {
        Applied(SuspensionApplied) = "berth.suspension.applied.v1",
        Lifted(SuspensionLifted) = "berth.suspension.lifted.v1",
    }
}
