//! `projection.<name>.<op>`: what operators ask of the service that runs projection
//! `<name>` — rebuild it, its status, apply a parked event again. The replies are the
//! runtime's reports (`berth_runtime::projection::RebuildReport`,
//! `berth_runtime::parked::{ProjectionStatus, Retried}`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The first token of every request about a projection.
pub const PROJECTION: &str = "projection";

/// Every projection, in the order `berth status` shows them: the Postgres schema each
/// owns and the name its owner answers `projection.<name>.<op>` for.
pub const PROJECTIONS: &[&str] = &[
    "vms",
    "servers",
    "schedules",
    "pods",
    "billing",
    "notifications",
    "audit_log",
];

/// Rebuild the projection into a shadow schema and, unless a dry run, swap it in: a
/// [`RebuildRequest`], answered with the runtime's `RebuildReport`.
pub const REBUILD: &str = "rebuild";
/// Its position and faults: an [`EmptyRequest`](super::EmptyRequest), answered with the
/// runtime's `ProjectionStatus`.
pub const STATUS: &str = "status";
/// Apply a parked event again: a [`RetryParked`], answered with the runtime's `Retried`.
pub const RETRY: &str = "retry";

pub use crate::subjects::projection_subject;

/// A rebuild.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RebuildRequest {
    /// Build and compare, but keep the live schema.
    pub dry_run: bool,
    /// An inbox (`_INBOX…`) to publish [`RebuildProgress`] to while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
}

/// How far a rebuild is, published about twice a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RebuildProgress {
    pub applied: u64,
    pub total: u64,
    pub elapsed_ms: u64,
}

/// The parked event to apply again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryParked {
    pub sequence: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_projection_has_its_subjects() {
        for name in PROJECTIONS {
            assert_eq!(
                projection_subject(name, REBUILD).unwrap(),
                format!("projection.{name}.rebuild")
            );
        }
        assert!(projection_subject("vms.*", STATUS).is_err());
    }
}
