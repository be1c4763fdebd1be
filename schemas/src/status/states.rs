//! One state type per [`StatusKind`]: the row a projection keeps, as people see it.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::StatusState;
use crate::pod::PodStatus;
use crate::subjects::StatusKind;
use crate::vm::VmStatus;

/// One VM: a row of `vms.vms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VmState {
    pub id: Uuid,
    pub tenant: String,
    pub name: String,
    /// `degraded` when a step keeps failing, the reason naming the step and the attempts.
    pub status: VmStatus,
    pub desired_running: bool,
    pub vcpus: i32,
    pub memory_mb: i32,
    pub disk_gb: i32,
    pub image: String,
    pub plan: Option<String>,
    pub region: Option<String>,
    pub host: Option<String>,
    pub provider_ref: Option<String>,
    /// Why the VM is not where it was asked to be.
    pub reason: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl StatusState for VmState {
    const KIND: StatusKind = StatusKind::Vm;
    type Id = Uuid;

    fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
}

/// One server VMs are placed on, with its capacity used and free: a row of
/// `vms.servers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServerState {
    pub id: Uuid,
    pub name: String,
    pub region: String,
    pub provider: String,
    /// `active`, `draining` (keeps its VMs, takes no new ones) or `decommissioned`.
    pub status: String,
    pub vms: i64,
    pub capacity_vcpus: i64,
    pub capacity_memory_mb: i64,
    pub capacity_disk_gb: i64,
    pub used_vcpus: i64,
    pub used_memory_mb: i64,
    pub used_disk_gb: i64,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
}

impl StatusState for ServerState {
    const KIND: StatusKind = StatusKind::Server;
    type Id = Uuid;
}

/// One app pod: a row of `pods.pods`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PodState {
    pub id: Uuid,
    pub tenant: String,
    pub name: String,
    pub service: String,
    pub variant: String,
    pub subscription_id: Option<Uuid>,
    pub status: PodStatus,
    pub replicas: i32,
    pub runtime: Option<String>,
    pub image: String,
    pub volume_mb: i32,
    /// Why the pod is not where it was asked to be.
    pub reason: Option<String>,
    /// When an expired pod's volume is deleted.
    pub purge_after: Option<DateTime<Utc>>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl StatusState for PodState {
    const KIND: StatusKind = StatusKind::Pod;
    type Id = Uuid;

    fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
}

/// One schedule or one-shot timer with its last and next due times: a row of
/// `schedules.schedules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ScheduleState {
    pub id: Uuid,
    pub tenant: String,
    pub name: String,
    /// `cron` or `at`.
    pub kind: String,
    /// The cron expression and zone, or the instant.
    pub timing: String,
    /// `active`, `paused`, `done` (a one-shot timer that fired) or `deleted`.
    pub status: String,
    pub fires: i64,
    pub last_due: Option<DateTime<Utc>>,
    /// As of the last event: the next due time after `last_due` (or after creation).
    pub next_due: Option<DateTime<Utc>>,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
}

impl StatusState for ScheduleState {
    const KIND: StatusKind = StatusKind::Schedule;
    type Id = Uuid;
}

/// One mail or webhook post with its attempts: a row of `notifications.notifications`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NotificationState {
    pub id: Uuid,
    pub tenant: String,
    pub rule: String,
    pub channel: String,
    pub recipient: String,
    pub source_event_id: Uuid,
    pub source_event_type: String,
    /// `pending`, `retrying`, `sent` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

impl StatusState for NotificationState {
    const KIND: StatusKind = StatusKind::Notification;
    type Id = Uuid;
}

/// One tenant's billing account (its id is the UUID v5 of the tenant): a row of
/// `billing.accounts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AccountState {
    pub tenant: String,
    pub name: String,
    pub billing_email: String,
    pub tier: String,
    pub currency: String,
    /// `active`, `suspended` or `closed`.
    pub status: String,
    pub balance_due_minor: i64,
    pub open_invoices: i32,
    pub version: i64,
}

impl StatusState for AccountState {
    const KIND: StatusKind = StatusKind::Account;
    type Id = Uuid;
}

/// One issued invoice, without its lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InvoiceState {
    pub id: Uuid,
    pub tenant: String,
    pub number: String,
    /// `YYYY-MM`.
    pub month: String,
    pub currency: String,
    pub total_minor: i64,
    /// `open`, `overdue` or `paid`.
    pub status: String,
    pub issued_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
}

impl StatusState for InvoiceState {
    const KIND: StatusKind = StatusKind::Invoice;
    type Id = Uuid;
}

/// One monthly pod subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubscriptionState {
    pub id: Uuid,
    pub tenant: String,
    pub product: String,
    pub variant: String,
    pub price_minor: i64,
    pub currency: String,
    /// `active`, `cancelled` (ends at the period end) or `expired`.
    pub status: String,
    pub period_end: Option<DateTime<Utc>>,
}

impl StatusState for SubscriptionState {
    const KIND: StatusKind = StatusKind::Subscription;
    type Id = Uuid;
}

/// How a projection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// Applying every event.
    Ok,
    /// Going on, with events parked.
    Degraded,
    /// Stuck on a transient error it keeps retrying.
    Retrying,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
            Self::Retrying => "retrying",
        }
    }
}

/// A projection's faults (tenant `system`, id the projection's name), published whenever
/// they change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProjectionHealth {
    pub status: HealthState,
    /// Parked events waiting for an operator (skipped ones not counted).
    pub parked: u64,
    /// The last waiting parked event's sequence in `EVENTS`.
    pub sequence: Option<u64>,
    /// The error being retried, else the last parked event's error.
    pub reason: Option<String>,
}

impl StatusState for ProjectionHealth {
    const KIND: StatusKind = StatusKind::Projection;
    type Id = String;

    fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
}
