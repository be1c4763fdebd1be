//! Reconciliation: `cmd.system.provisioner.reconcile` (request/reply) and the `orphan`
//! aggregate (`evt.system.orphan.<id>`), a machine at a provider that no live VM owns.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::command::{parse_body, Rejection};
use crate::domain_events;

/// The aggregate kind, as it appears in subjects.
pub const AGGREGATE: &str = "orphan";

/// The built-in schedule (tenant `system`, every minute) whose fires reconcile.
pub const RECONCILE_SCHEDULE: &str = "reconcile";

/// The id of an orphan: one per provider and machine name.
pub fn orphan_id(provider: &str, machine: &str) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("berth.orphan.{provider}.{machine}").as_bytes(),
    )
}

/// The body of a reconcile request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reconcile {
    /// Also remove the orphans found (default false: report only).
    #[serde(default)]
    pub clean_orphans: bool,
}

impl Reconcile {
    pub fn decode(body: &[u8]) -> Result<Self, Rejection> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        parse_body("reconcile", body)
    }
}

/// A VM whose machine the provider no longer has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LostVm {
    pub tenant: String,
    pub vm_id: Uuid,
}

/// What one reconciliation found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReconcileReport {
    pub provider: String,
    /// Machines the provider reports.
    pub machines: usize,
    /// VMs that should have a machine at this provider.
    pub vms_checked: usize,
    /// VMs recorded as `lost` by this run (they are made again).
    pub lost: Vec<LostVm>,
    /// Machines no live VM owns.
    pub orphans: Vec<String>,
    /// Orphans removed by this run.
    pub removed: Vec<String>,
    /// What could not be checked or done, for people.
    pub errors: Vec<String>,
}

/// A machine no live VM owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrphanDetected {
    pub provider: String,
    pub machine: String,
    pub host: String,
    /// The VM the machine's name points at, if it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_id: Option<Uuid>,
    /// Why it counts as an orphan, for people.
    pub reason: String,
}

/// The orphan's machine was removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrphanRemoved {
    pub machine: String,
}

domain_events! {
    /// Everything that happens to an orphan.
    pub enum OrphanEvent {
        Detected(OrphanDetected) = "berth.orphan.detected.v1",
        Removed(OrphanRemoved) = "berth.orphan.removed.v1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_body_reports_and_unknown_fields_are_refused() {
        assert_eq!(Reconcile::decode(b"").unwrap(), Reconcile::default());
        assert!(
            Reconcile::decode(br#"{"clean_orphans":true}"#)
                .unwrap()
                .clean_orphans
        );
        assert!(Reconcile::decode(br#"{"clean":true}"#).is_err());
    }
}
