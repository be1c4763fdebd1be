//! Per-tenant quotas: the provisioner-owned `usage` aggregate (`evt.<tenant>.usage.<id>`)
//! and the operator command `cmd.system.tenant.set_quota`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::command::{parse_body, CommandSet, Rejection};
use crate::domain_events;
use crate::ids::TenantId;

/// The aggregate kind of a tenant's usage, as it appears in subjects.
pub const AGGREGATE: &str = "usage";
/// The command kind operators use for tenants: `cmd.system.tenant.<action>`.
pub const TENANT_COMMANDS: &str = "tenant";

/// The id of a tenant's usage aggregate: one per tenant, derived from its id.
pub fn usage_id(tenant: &TenantId) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("berth.usage.{tenant}").as_bytes(),
    )
}

/// What a tenant may hold at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub vms: u32,
    pub vcpus: u32,
    pub memory_mb: u32,
    pub disk_gb: u32,
}

/// The tiers berth sells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// 1 VM, 2 vCPU, 4 GB memory, 20 GB disk.
    Free,
    /// 3 VMs, 4 vCPU, 8 GB memory, 160 GB disk.
    Pro,
}

impl Tier {
    pub fn limits(self) -> Limits {
        match self {
            Self::Free => Limits {
                vms: 1,
                vcpus: 2,
                memory_mb: 4096,
                disk_gb: 20,
            },
            Self::Pro => Limits {
                vms: 3,
                vcpus: 4,
                memory_mb: 8192,
                disk_gb: 160,
            },
        }
    }
}

/// Per-tenant changes to a tier's limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_gb: Option<u32>,
}

impl LimitOverrides {
    pub fn apply(self, limits: Limits) -> Limits {
        Limits {
            vms: self.vms.unwrap_or(limits.vms),
            vcpus: self.vcpus.unwrap_or(limits.vcpus),
            memory_mb: self.memory_mb.unwrap_or(limits.memory_mb),
            disk_gb: self.disk_gb.unwrap_or(limits.disk_gb),
        }
    }
}

/// `tenant.set_quota`: an operator sets a tenant's tier and overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetQuota {
    pub tenant: TenantId,
    pub tier: Tier,
    #[serde(default)]
    pub overrides: LimitOverrides,
}

/// Every tenant command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantCommand {
    SetQuota(SetQuota),
}

impl CommandSet for TenantCommand {
    fn decode(action: &str, body: &[u8]) -> Result<Self, Rejection> {
        match action {
            "set_quota" => Ok(Self::SetQuota(parse_body(action, body)?)),
            other => Err(Rejection::invalid(format!(
                "unknown tenant action {:?}; expected set_quota",
                other.chars().take(40).collect::<String>()
            ))),
        }
    }
    fn aggregate_id(&self, _command_id: Uuid) -> Uuid {
        match self {
            Self::SetQuota(set) => usage_id(&set.tenant),
        }
    }
    fn expected_version(&self) -> Option<u64> {
        None
    }
    fn action(&self) -> &'static str {
        "set_quota"
    }
}

impl TenantCommand {
    pub fn body(&self) -> Vec<u8> {
        match self {
            Self::SetQuota(set) => serde_json::to_vec(set).expect("commands are plain data"),
        }
    }
}

/// A tenant's tier and limits changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct QuotaSet {
    pub tier: Tier,
    pub limits: Limits,
}

/// Resources held for one VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Reserved {
    pub vm_id: Uuid,
    pub vcpus: u32,
    pub memory_mb: u32,
    pub disk_gb: u32,
}

/// The resources of one VM are free again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Released {
    pub vm_id: Uuid,
}

domain_events! {
    /// Everything that happens to a tenant's usage.
    pub enum UsageEvent {
        QuotaSet(QuotaSet) = "berth.usage.quota_set.v1",
        Reserved(Reserved) = "berth.usage.reserved.v1",
        Released(Released) = "berth.usage.released.v1",
    }
}
