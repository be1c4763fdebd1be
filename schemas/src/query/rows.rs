//! What queries answer with beyond the status states: rows of read models that publish
//! no status (volumes, usage) or carry more than their status (subscriptions, invoices),
//! the service catalog, and a rendered notification. VMs, servers, pods, schedules,
//! notifications and accounts are answered as their [`crate::status`] states, so a list
//! and a live status of the same thing are one type.
//!
//! Each owning service checks in a test that its own rows read back as these unchanged.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::TenantId;

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
