//! Servers (hosts VMs are placed on): operator commands `cmd.system.server.<action>` and
//! events `evt.system.server.<id>`. A server's capacity is reserved and released by the
//! provisioner in the same atomic append as the VM events that need it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::command::{parse_body, CommandSet, Rejection};
use crate::domain_events;
use crate::ids::validate_slug;

/// The aggregate kind, as it appears in subjects.
pub const AGGREGATE: &str = "server";

/// The id of a server: one per name, derived from it, so registering twice names the
/// same server.
pub fn server_id(name: &str) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("berth.server.{name}").as_bytes(),
    )
}

/// `server.register`: a host joins the pool VMs are placed on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterServer {
    /// `^[a-z0-9][a-z0-9-]{0,62}$`, unique: the server's id derives from it.
    pub name: String,
    /// e.g. `eu-1`.
    pub region: String,
    /// The provider that runs its machines: `sim`, `docker`.
    pub provider: String,
    /// 1 to 4096.
    pub vcpus: u32,
    /// 512 to 67108864.
    pub memory_mb: u32,
    /// 1 to 1048576.
    pub disk_gb: u32,
    /// vCPUs sold per physical vCPU, 1.0 to 16.0 (default 1.0).
    #[serde(default = "one")]
    pub cpu_overcommit: f64,
    /// Memory sold per physical MB, 1.0 to 4.0 (default 1.0).
    #[serde(default = "one")]
    pub memory_overcommit: f64,
}

fn one() -> f64 {
    1.0
}

/// `server.drain` / `server.decommission`: by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerTarget {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<u64>,
}

/// Every server command.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerCommand {
    Register(RegisterServer),
    /// No new placements; the VMs on it stay.
    Drain(ServerTarget),
    /// Placements resume.
    Undrain(ServerTarget),
    /// Retire an empty server.
    Decommission(ServerTarget),
}

impl ServerCommand {
    pub fn name(&self) -> &str {
        match self {
            Self::Register(register) => &register.name,
            Self::Drain(t) | Self::Undrain(t) | Self::Decommission(t) => &t.name,
        }
    }

    pub fn body(&self) -> Vec<u8> {
        let encoded = match self {
            Self::Register(register) => serde_json::to_vec(register),
            Self::Drain(t) | Self::Undrain(t) | Self::Decommission(t) => serde_json::to_vec(t),
        };
        encoded.expect("commands are plain data")
    }

    fn validate(&self) -> Result<(), Rejection> {
        validate_slug("server name", self.name(), 63)
            .map_err(|e| Rejection::invalid(e.to_string()))?;
        let Self::Register(register) = self else {
            return Ok(());
        };
        validate_slug("region", &register.region, 63)
            .map_err(|e| Rejection::invalid(e.to_string()))?;
        validate_slug("provider", &register.provider, 32)
            .map_err(|e| Rejection::invalid(e.to_string()))?;
        let bounds = [
            ("vcpus", register.vcpus, 1, 4096),
            ("memory_mb", register.memory_mb, 512, 64 * 1024 * 1024),
            ("disk_gb", register.disk_gb, 1, 1024 * 1024),
        ];
        for (field, value, min, max) in bounds {
            if !(min..=max).contains(&value) {
                return Err(Rejection::invalid(format!(
                    "{field} must be between {min} and {max}, got {value}"
                )));
            }
        }
        let ratios = [
            ("cpu_overcommit", register.cpu_overcommit, 16.0),
            ("memory_overcommit", register.memory_overcommit, 4.0),
        ];
        for (field, ratio, max) in ratios {
            if !(1.0..=max).contains(&ratio) {
                return Err(Rejection::invalid(format!(
                    "{field} must be between 1.0 and {max}, got {ratio}"
                )));
            }
        }
        Ok(())
    }
}

impl CommandSet for ServerCommand {
    fn decode(action: &str, body: &[u8]) -> Result<Self, Rejection> {
        let command = match action {
            "register" => Self::Register(parse_body(action, body)?),
            "drain" => Self::Drain(parse_body(action, body)?),
            "undrain" => Self::Undrain(parse_body(action, body)?),
            "decommission" => Self::Decommission(parse_body(action, body)?),
            other => {
                return Err(Rejection::invalid(format!(
                    "unknown server action {:?}; expected register, drain, undrain or decommission",
                    other.chars().take(40).collect::<String>()
                )))
            }
        };
        command.validate()?;
        Ok(command)
    }

    fn aggregate_id(&self, _command_id: Uuid) -> Uuid {
        server_id(self.name())
    }

    fn expected_version(&self) -> Option<u64> {
        match self {
            Self::Register(_) => None,
            Self::Drain(t) | Self::Undrain(t) | Self::Decommission(t) => t.expected_version,
        }
    }

    fn action(&self) -> &'static str {
        match self {
            Self::Register(_) => "register",
            Self::Drain(_) => "drain",
            Self::Undrain(_) => "undrain",
            Self::Decommission(_) => "decommission",
        }
    }
}

/// A server joined the pool.
pub type ServerRegistered = RegisterServer;

/// Resources of one server held by one VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Allocation {
    pub vm_id: Uuid,
    pub vcpus: u32,
    pub memory_mb: u32,
    pub disk_gb: u32,
}

/// The resources one VM held on the server are free again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Deallocation {
    pub vm_id: Uuid,
}

/// A step that has nothing to say but that it happened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ServerChanged {}

domain_events! {
    /// Everything that happens to a server.
    pub enum ServerEvent {
        Registered(ServerRegistered) = "berth.server.registered.v1",
        Drained(ServerChanged) = "berth.server.drained.v1",
        Undrained(ServerChanged) = "berth.server.undrained.v1",
        Decommissioned(ServerChanged) = "berth.server.decommissioned.v1",
        /// Written with the VM's `placed` (or `resize_requested`) in one atomic append.
        Allocated(Allocation) = "berth.server.allocated.v1",
        /// Written with the VM's `destroyed` or `failed` in one atomic append.
        Deallocated(Deallocation) = "berth.server.deallocated.v1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::RejectionCode;

    #[test]
    fn register_defaults_and_bounds() {
        let ok = br#"{"name":"h1","region":"eu-1","provider":"sim","vcpus":8,"memory_mb":16384,"disk_gb":500}"#;
        let ServerCommand::Register(register) = ServerCommand::decode("register", ok).unwrap()
        else {
            panic!("not a register")
        };
        assert_eq!(register.cpu_overcommit, 1.0);
        let bad = [
            br#"{"name":"h1","region":"eu-1","provider":"sim","vcpus":0,"memory_mb":16384,"disk_gb":500}"#.as_slice(),
            br#"{"name":"h1","region":"eu-1","provider":"sim","vcpus":8,"memory_mb":16384,"disk_gb":500,"cpu_overcommit":0.5}"#,
            br#"{"name":"H 1","region":"eu-1","provider":"sim","vcpus":8,"memory_mb":16384,"disk_gb":500}"#,
            br#"{"name":"h1","region":"eu.*","provider":"sim","vcpus":8,"memory_mb":16384,"disk_gb":500}"#,
            br#"{"name":"h1","region":"eu-1","provider":"sim","vcpus":8,"memory_mb":16384,"disk_gb":500,"gpu":1}"#,
        ];
        for body in bad {
            assert_eq!(
                ServerCommand::decode("register", body).unwrap_err().code,
                RejectionCode::Invalid,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn the_id_derives_from_the_name() {
        let drain = ServerCommand::decode("drain", br#"{"name":"h1"}"#).unwrap();
        assert_eq!(drain.aggregate_id(Uuid::now_v7()), server_id("h1"));
        assert_ne!(server_id("h1"), server_id("h2"));
    }
}
