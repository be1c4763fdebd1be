//! What queries answer with: one row of each read model as people see it (the owning
//! service's projection table, field for field and in its order), the service catalog,
//! and a rendered notification.
//!
//! Each owning service checks in a test that its own rows read back as these unchanged.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::TenantId;

/// A VM (`vm.list`, `vm.get`), as also published on `status.<tenant>.vm.<id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmRow {
    pub id: Uuid,
    pub tenant: TenantId,
    pub name: String,
    pub status: String,
    pub desired_running: bool,
    pub vcpus: i32,
    pub memory_mb: i32,
    pub disk_gb: i32,
    pub image: String,
    pub plan: Option<String>,
    pub region: Option<String>,
    pub host: Option<String>,
    pub provider_ref: Option<String>,
    pub reason: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A server with its capacity used and free (`server.list`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerRow {
    pub id: Uuid,
    pub name: String,
    pub region: String,
    pub provider: String,
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

/// A pod (`pod.list`, `pod.get`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PodRow {
    pub id: Uuid,
    pub tenant: TenantId,
    pub name: String,
    pub service: String,
    pub variant: String,
    pub subscription_id: Option<Uuid>,
    pub status: String,
    pub replicas: i32,
    pub runtime: Option<String>,
    pub image: String,
    pub volume_mb: i32,
    pub reason: Option<String>,
    pub purge_after: Option<DateTime<Utc>>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A pod volume (`volume.list`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeRow {
    pub pod_id: Uuid,
    pub tenant: TenantId,
    pub claim_name: String,
    /// `pending`, `bound`, `recreating`, `kept` (its pod deleted), `deleted`.
    pub status: String,
    pub size_mb: i32,
    pub mount_path: String,
    pub storage_class: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// A billing account (`account.list`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountRow {
    pub tenant: TenantId,
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

/// A subscription (`subscription.list`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionRow {
    pub id: Uuid,
    pub tenant: TenantId,
    pub product: String,
    pub variant: String,
    pub price_minor: i64,
    pub currency: String,
    /// `active`, `cancelled` (ends at the period end) or `expired`.
    pub status: String,
    pub period_end: Option<DateTime<Utc>>,
    pub version: i64,
}

/// One hour of a VM's usage (`usage.list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageRow {
    pub vm_id: Uuid,
    pub tenant: TenantId,
    pub hour: DateTime<Utc>,
    pub seconds: i32,
    pub plan: String,
}

/// An invoice (`invoice.list`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InvoiceRow {
    pub id: Uuid,
    pub tenant: TenantId,
    pub number: String,
    pub month: String,
    pub currency: String,
    pub total_minor: i64,
    /// `open`, `overdue` or `paid`.
    pub status: String,
    pub issued_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub lines: serde_json::Value,
}

/// A cron schedule or a one-shot timer (`schedule.list`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRow {
    pub id: Uuid,
    pub tenant: TenantId,
    pub name: String,
    /// `cron` or `at`.
    pub kind: String,
    /// The cron expression and zone, or the instant.
    pub timing: String,
    pub status: String,
    pub fires: i64,
    pub last_due: Option<DateTime<Utc>>,
    /// As of the last event: the next due time after `last_due` (or after creation).
    pub next_due: Option<DateTime<Utc>>,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
}

/// A mail or webhook post (`notification.list`, `notification.get`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationRow {
    pub id: Uuid,
    pub tenant: TenantId,
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

/// What a notification template rendered (`notification.preview`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The service catalog pods are made from (`catalog.get`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub version: u32,
    pub services: BTreeMap<String, CatalogService>,
}

impl Catalog {
    /// The names of its services, as a sentence's list.
    pub fn names(&self) -> String {
        self.services.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// One app of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogService {
    pub description: String,
    pub image: String,
    pub port: u16,
    pub command: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub health: CatalogProbe,
    pub volume: CatalogVolume,
    pub variants: BTreeMap<String, CatalogVariant>,
    /// The non-root user id the image runs as, if the catalog names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<u32>,
}

/// A health check: `{"http": "/path"}` or `{"command": [..]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CatalogProbe {
    Http(String),
    Command(Vec<String>),
}

/// Where an app's volume is mounted and how it is shared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogVolume {
    pub mount_path: String,
    pub access_mode: String,
    pub storage_class: Option<String>,
}

/// A size of an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogVariant {
    pub volume_mb: u32,
    pub cpu_request_millis: u32,
    pub cpu_limit_millis: u32,
    pub memory_request_mb: u32,
    pub memory_limit_mb: u32,
}
