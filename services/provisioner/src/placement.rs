//! Placement: best fit by free capacity among the active servers of the VM's provider
//! and region.
//!
//! The stream's subject index says which servers exist (never behind the log, unlike a
//! projection); the `server` aggregates say what is free. Candidates are ranked by
//! their cached folds (no round trip), and the chosen
//! one is loaded fresh before its capacity is allocated — in the same atomic append as
//! the VM's `placed`, with the server's expected sequence — so a stale cache can cost a
//! retry but never an overcommit. Placements in one process queue behind one lock, so
//! they do not race each other for the same best-fit server.

use std::sync::Arc;

use berth_runtime::store::{Loaded, Repository};
use berth_schemas::server::{Allocation, ServerEvent};
use berth_schemas::vm::VmRequested;
use berth_schemas::TenantId;
use tokio::sync::{Mutex, MutexGuard};
use uuid::Uuid;

use berth_runtime::store::Aggregate;

use crate::server::{Server, ServerStatus};

/// A server chosen for a VM, with the allocation to append.
pub struct Chosen {
    pub server_id: Uuid,
    pub server: Arc<Loaded<Server>>,
    pub allocate: Vec<ServerEvent>,
}

/// The outcome of looking for a place.
pub enum Placement {
    Chosen(Chosen),
    /// No server can take the VM; why, for people.
    NoFit(String),
}

/// Chooses servers for VMs.
pub struct Placer {
    servers: Arc<Repository<Server>>,
    provider: &'static str,
    queue: Mutex<()>,
}

impl Placer {
    pub fn new(servers: Arc<Repository<Server>>, provider: &'static str) -> Self {
        Self {
            servers,
            provider,
            queue: Mutex::new(()),
        }
    }

    /// Held from choosing until the allocation is appended.
    pub async fn queue(&self) -> MutexGuard<'_, ()> {
        self.queue.lock().await
    }

    /// Finds the best-fitting server for the VM.
    pub async fn place(&self, vm_id: Uuid, spec: &VmRequested) -> berth_runtime::Result<Placement> {
        let wanted = Allocation {
            vm_id,
            vcpus: spec.vcpus,
            memory_mb: spec.memory_mb,
            disk_gb: spec.disk_gb,
        };
        let region = spec.region.as_deref();
        let ids = self
            .servers
            .store()
            .aggregate_ids(&system(), Server::KIND)
            .await?;
        let mut eligible = 0;
        // Ranked by what this process last saw; then once more from the log, in case
        // other processes freed capacity or registered servers since.
        for fresh in [false, true] {
            eligible = 0;
            let mut ranked = Vec::with_capacity(ids.len());
            for id in &ids {
                let server = match self.servers.cached_state(&system(), *id) {
                    Some(server) if !fresh => server,
                    _ => self.servers.load(&system(), *id).await?,
                };
                if !self.eligible(&server.state, region) {
                    continue;
                }
                eligible += 1;
                if server.state.allocate(wanted).is_ok() {
                    ranked.push((best_fit_key(&server.state, &wanted), *id));
                }
            }
            ranked.sort();
            for (_, id) in ranked {
                let server = self.servers.load(&system(), id).await?;
                if let Ok(allocate) = server.state.allocate(wanted) {
                    return Ok(Placement::Chosen(Chosen {
                        server_id: id,
                        server,
                        allocate,
                    }));
                }
            }
        }
        let region = region.map_or(String::new(), |region| format!(" in region {region}"));
        Ok(Placement::NoFit(if eligible == 0 {
            format!("no active {} server{region}", self.provider)
        } else {
            format!(
                "none of the {eligible} active {} servers{region} has {} vCPU, {} MB memory and {} GB disk free",
                self.provider, spec.vcpus, spec.memory_mb, spec.disk_gb
            )
        }))
    }

    /// An active server of this provider, in the region if one is asked for.
    fn eligible(&self, server: &Server, region: Option<&str>) -> bool {
        server.status == ServerStatus::Active
            && server.spec.as_ref().is_some_and(|spec| {
                spec.provider == self.provider && region.is_none_or(|r| spec.region == r)
            })
    }
}

/// Servers live under the `system` tenant.
pub fn system() -> TenantId {
    TenantId::system()
}

/// Best fit: the server left with the least free vCPU, then memory, after placing. (A
/// server that already holds the VM — another replica placed it first — ranks first.)
fn best_fit_key(server: &Server, wanted: &Allocation) -> (u64, u64, u64) {
    let free = server.free();
    (
        free.vcpus.saturating_sub(wanted.vcpus.into()),
        free.memory_mb.saturating_sub(wanted.memory_mb.into()),
        free.disk_gb.saturating_sub(wanted.disk_gb.into()),
    )
}
