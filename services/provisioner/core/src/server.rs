//! The `server` aggregate: a host's capacity and the VMs holding part of it.
//!
//! Allocations are appended in the same atomic batch as the VM event that needs them
//! (`placed`, `resize_requested`) with the server's expected sequence, so two placements
//! deciding on the same free capacity cannot both land: one meets a conflict, reloads
//! and decides again. That is what makes overcommit impossible across replicas.

use std::collections::BTreeMap;

use berth_schemas::aggregate::{Aggregate, Context};
use berth_schemas::server::{
    Allocation, Deallocation, ServerChanged, ServerCommand, ServerEvent, ServerRegistered,
};
use berth_schemas::{Rejection, RejectionCode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a server is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerStatus {
    /// Not registered yet.
    #[default]
    Unknown,
    Active,
    /// Keeps its VMs, takes no new ones.
    Draining,
    Decommissioned,
}

impl ServerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Active => "active",
            Self::Draining => "draining",
            Self::Decommissioned => "decommissioned",
        }
    }
}

/// vCPUs, MB of memory, GB of disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub vcpus: u64,
    pub memory_mb: u64,
    pub disk_gb: u64,
}

impl Resources {
    pub fn of(allocation: &Allocation) -> Self {
        Self {
            vcpus: allocation.vcpus.into(),
            memory_mb: allocation.memory_mb.into(),
            disk_gb: allocation.disk_gb.into(),
        }
    }

    fn fits_in(self, free: Resources) -> bool {
        self.vcpus <= free.vcpus && self.memory_mb <= free.memory_mb && self.disk_gb <= free.disk_gb
    }
}

/// A server as folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Server {
    pub status: ServerStatus,
    pub spec: Option<ServerRegistered>,
    pub allocations: BTreeMap<Uuid, Allocation>,
}

impl Aggregate for Server {
    const KIND: &'static str = berth_schemas::server::AGGREGATE;
    type Command = ServerCommand;
    type Event = ServerEvent;

    fn apply(&mut self, event: &ServerEvent) {
        match event {
            ServerEvent::Registered(spec) => {
                self.status = ServerStatus::Active;
                self.spec = Some(spec.clone());
            }
            ServerEvent::Drained(_) => self.status = ServerStatus::Draining,
            ServerEvent::Undrained(_) => self.status = ServerStatus::Active,
            ServerEvent::Decommissioned(_) => self.status = ServerStatus::Decommissioned,
            ServerEvent::Allocated(allocation) => {
                self.allocations.insert(allocation.vm_id, *allocation);
            }
            ServerEvent::Deallocated(deallocation) => {
                self.allocations.remove(&deallocation.vm_id);
            }
        }
    }

    fn decide(
        &self,
        command: &ServerCommand,
        _context: &Context,
    ) -> Result<Vec<ServerEvent>, Rejection> {
        use ServerStatus::*;
        let refuse = || {
            Err(Rejection::invalid_state(format!(
                "cannot {} a server that is {}",
                berth_schemas::CommandSet::action(command),
                self.status.as_str()
            )))
        };
        match (command, self.status) {
            (ServerCommand::Register(register), Unknown) => {
                Ok(vec![ServerEvent::Registered(register.clone())])
            }
            (ServerCommand::Register(register), _) if self.spec.as_ref() == Some(register) => {
                Ok(Vec::new())
            }
            (ServerCommand::Register(_), _) => Err(Rejection::new(
                RejectionCode::Conflict,
                "a server with this name is registered with another spec",
            )),
            (_, Unknown) => Err(Rejection::new(RejectionCode::NotFound, "no such server")),
            (ServerCommand::Drain(_), Active) => Ok(vec![ServerEvent::Drained(ServerChanged {})]),
            (ServerCommand::Undrain(_), Draining) => {
                Ok(vec![ServerEvent::Undrained(ServerChanged {})])
            }
            (ServerCommand::Decommission(_), Active | Draining) => {
                if self.allocations.is_empty() {
                    Ok(vec![ServerEvent::Decommissioned(ServerChanged {})])
                } else {
                    Err(Rejection::invalid_state(format!(
                        "the server still hosts {} VMs: drain it and move or destroy them first",
                        self.allocations.len()
                    )))
                }
            }
            _ => refuse(),
        }
    }
}

impl Server {
    pub fn name(&self) -> &str {
        self.spec.as_ref().map_or("", |s| s.name.as_str())
    }

    /// What the server can sell: physical size times the overcommit ratios.
    pub fn capacity(&self) -> Resources {
        let Some(spec) = &self.spec else {
            return Resources::default();
        };
        Resources {
            vcpus: (f64::from(spec.vcpus) * spec.cpu_overcommit).floor() as u64,
            memory_mb: (f64::from(spec.memory_mb) * spec.memory_overcommit).floor() as u64,
            disk_gb: spec.disk_gb.into(),
        }
    }

    pub fn used(&self) -> Resources {
        self.allocations
            .values()
            .fold(Resources::default(), |sum, a| Resources {
                vcpus: sum.vcpus + u64::from(a.vcpus),
                memory_mb: sum.memory_mb + u64::from(a.memory_mb),
                disk_gb: sum.disk_gb + u64::from(a.disk_gb),
            })
    }

    pub fn free(&self) -> Resources {
        let (capacity, used) = (self.capacity(), self.used());
        Resources {
            vcpus: capacity.vcpus.saturating_sub(used.vcpus),
            memory_mb: capacity.memory_mb.saturating_sub(used.memory_mb),
            disk_gb: capacity.disk_gb.saturating_sub(used.disk_gb),
        }
    }

    /// Allocates capacity to a VM (replacing what it held, for a resize), or says why not.
    pub fn allocate(&self, wanted: Allocation) -> Result<Vec<ServerEvent>, Rejection> {
        if self.allocations.get(&wanted.vm_id) == Some(&wanted) {
            return Ok(Vec::new());
        }
        let resizing = self.allocations.contains_key(&wanted.vm_id);
        if self.status != ServerStatus::Active && !resizing {
            return Err(Rejection::new(
                RejectionCode::NoCapacity,
                format!(
                    "server {} is {} and takes no new VMs",
                    self.name(),
                    self.status.as_str()
                ),
            ));
        }
        let mut without = self.clone();
        without.allocations.remove(&wanted.vm_id);
        let free = without.free();
        if !Resources::of(&wanted).fits_in(free) {
            return Err(Rejection::new(
                RejectionCode::NoCapacity,
                format!(
                    "server {} has {} vCPU, {} MB, {} GB free; {} vCPU, {} MB, {} GB wanted",
                    self.name(),
                    free.vcpus,
                    free.memory_mb,
                    free.disk_gb,
                    wanted.vcpus,
                    wanted.memory_mb,
                    wanted.disk_gb
                ),
            ));
        }
        Ok(vec![ServerEvent::Allocated(wanted)])
    }

    /// Frees what a VM held, if anything.
    pub fn deallocate(&self, vm_id: Uuid) -> Vec<ServerEvent> {
        if self.allocations.contains_key(&vm_id) {
            vec![ServerEvent::Deallocated(Deallocation { vm_id })]
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use berth_schemas::server::{RegisterServer, ServerTarget};

    fn context() -> Context {
        Context::at(chrono::Utc::now())
    }

    fn register(vcpus: u32, cpu_overcommit: f64) -> ServerCommand {
        ServerCommand::Register(RegisterServer {
            name: "h1".into(),
            region: "eu-1".into(),
            provider: "sim".into(),
            vcpus,
            memory_mb: 8192,
            disk_gb: 100,
            cpu_overcommit,
            memory_overcommit: 1.0,
        })
    }

    fn target() -> ServerTarget {
        ServerTarget {
            name: "h1".into(),
            expected_version: None,
        }
    }

    fn given(events: Vec<ServerEvent>) -> Server {
        let mut server = Server::default();
        for event in &events {
            server.apply(event);
        }
        server
    }

    fn wanted(vcpus: u32, memory_mb: u32) -> Allocation {
        Allocation {
            vm_id: Uuid::now_v7(),
            vcpus,
            memory_mb,
            disk_gb: 10,
        }
    }

    fn with(server: &Server, events: Vec<ServerEvent>) -> Server {
        let mut next = server.clone();
        for event in &events {
            next.apply(event);
        }
        next
    }

    #[test]
    fn overcommit_multiplies_cpu_and_nothing_fits_past_capacity() {
        let server = given(
            Server::default()
                .decide(&register(4, 2.0), &context())
                .unwrap(),
        );
        assert_eq!(server.capacity().vcpus, 8);
        let first = server.allocate(wanted(6, 4096)).unwrap();
        let server = with(&server, first);
        let refused = server.allocate(wanted(3, 1024)).unwrap_err();
        assert_eq!(refused.code, RejectionCode::NoCapacity);
        assert!(refused.message.contains("2 vCPU"), "{}", refused.message);
        assert!(server.allocate(wanted(2, 4096)).is_ok());
        assert!(
            server.allocate(wanted(2, 4097)).is_err(),
            "memory is not overcommitted"
        );
    }

    #[test]
    fn a_resize_replaces_the_allocation_and_allocating_twice_is_a_no_op() {
        let server = given(
            Server::default()
                .decide(&register(4, 1.0), &context())
                .unwrap(),
        );
        let vm = wanted(3, 1024);
        let server = with(&server, server.allocate(vm).unwrap());
        assert!(server.allocate(vm).unwrap().is_empty());
        let bigger = Allocation { vcpus: 4, ..vm };
        assert!(
            server.allocate(bigger).is_ok(),
            "the vm's own 3 vCPU count as free"
        );
        let too_big = Allocation { vcpus: 5, ..vm };
        assert!(server.allocate(too_big).is_err());
        let freed = with(&server, server.deallocate(vm.vm_id));
        assert_eq!(freed.used(), Resources::default());
        assert!(freed.deallocate(vm.vm_id).is_empty());
    }

    #[test]
    fn drained_servers_take_no_new_vms_and_only_empty_ones_retire() {
        let server = given(
            Server::default()
                .decide(&register(4, 1.0), &context())
                .unwrap(),
        );
        let vm = wanted(1, 1024);
        let server = with(&server, server.allocate(vm).unwrap());
        let server = with(
            &server,
            server
                .decide(&ServerCommand::Drain(target()), &context())
                .unwrap(),
        );
        assert_eq!(
            server.allocate(wanted(1, 1024)).unwrap_err().code,
            RejectionCode::NoCapacity
        );
        let refused = server
            .decide(&ServerCommand::Decommission(target()), &context())
            .unwrap_err();
        assert_eq!(refused.code, RejectionCode::InvalidState);
        let empty = with(&server, server.deallocate(vm.vm_id));
        assert!(empty
            .decide(&ServerCommand::Decommission(target()), &context())
            .is_ok());
        assert_eq!(
            server
                .decide(&ServerCommand::Drain(target()), &context())
                .unwrap_err()
                .code,
            RejectionCode::InvalidState
        );
    }

    #[test]
    fn registering_again_is_idempotent_but_not_with_another_spec() {
        let server = given(
            Server::default()
                .decide(&register(4, 1.0), &context())
                .unwrap(),
        );
        assert!(server
            .decide(&register(4, 1.0), &context())
            .unwrap()
            .is_empty());
        assert_eq!(
            server
                .decide(&register(8, 1.0), &context())
                .unwrap_err()
                .code,
            RejectionCode::Conflict
        );
        assert_eq!(
            Server::default()
                .decide(&ServerCommand::Drain(target()), &context())
                .unwrap_err()
                .code,
            RejectionCode::NotFound
        );
    }
}
