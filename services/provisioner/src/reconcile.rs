//! Reconciliation: compares what the provider really runs with what the log says.
//!
//! - A VM that is `running` or `stopped` but whose machine the provider no longer has is
//!   recorded as `vm.lost`; the reactor then makes the machine again on the same server
//!   and starts it if it should run (the recovery policy: the desired state wins).
//! - A machine no live VM owns (no VM at all, or one that is `destroyed` or `failed`) is
//!   recorded once as `orphan.detected`, and removed only when asked
//!   (`clean_orphans`, `berth orphans clean`), then `orphan.removed`.
//!
//! Ownership goes by tenant and id, never by id alone (see [`crate::provider`]): a
//! machine belongs to the VM with its id *in the tenant the provider recorded for it*.
//! So a machine of tenant `b` named after tenant `a`'s live VM is `b`'s orphan (and
//! removable, on `b`'s behalf: no live VM of `b` owns it), never `a`'s machine; `a`'s VM
//! whose name is held by another tenant's machine is reported as a conflict rather than
//! lost (it could not be made again while the other machine holds the name). A machine
//! with no recorded owner whose id is a live VM's is reported but never removed: an
//! operator decides. [`judge`] is the rule, without I/O.
//!
//! The `vms` projection only nominates suspects; every verdict is checked against the
//! aggregate and the provider right before it is appended with the aggregate's expected
//! version, so a VM that moved meanwhile (a create finishing, a destroy in flight) is
//! left alone. Runs on every fire of the built-in `reconcile` schedule (every minute),
//! on `cmd.system.provisioner.reconcile`, and every `--reconcile-every-secs` when set
//! (for a provisioner without a scheduler).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use berth_runtime::reactor::{ReactError, Reactor};
use berth_runtime::store::{Aggregate, Cause, Loaded, Repository, StoredEvent};
use berth_runtime::Runtime;
use berth_schemas::orphan::{
    orphan_id, LostVm, OrphanDetected, OrphanEvent, OrphanRemoved, Reconcile, ReconcileReport,
    RECONCILE_SCHEDULE,
};
use berth_schemas::schedule::{schedule_id, ScheduleEvent};
use berth_schemas::subjects::{event_subject, RECONCILE_SUBJECT};
use berth_schemas::vm::{VmEvent, VmLost, VmStatus};
use berth_schemas::{Actor, TenantId};
use sqlx::PgPool;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::placement::system;
use crate::provider::{machine_name, vm_id_in, Machine, VmProvider};
use crate::server::Server;
use crate::vm::Vm;

pub use berth_provisioner_core::orphan::Orphan;

/// Compares the provider with the log.
pub struct Reconciler {
    vms: Arc<Repository<Vm>>,
    servers: Arc<Repository<Server>>,
    orphans: Repository<Orphan>,
    provider: Arc<dyn VmProvider>,
    db: PgPool,
    /// One run at a time in this process.
    running: Mutex<()>,
}

/// The VMs the projection believes have a machine at this provider, by tenant and id,
/// with their status.
type Expected = HashMap<(String, Uuid), String>;

/// What reconciliation makes of one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A live VM of the machine's own tenant owns it.
    Owned,
    /// No live VM of its own tenant owns it. `removable`: `orphans clean` may remove it;
    /// otherwise it is a conflict an operator must look at.
    Orphan {
        vm_id: Option<Uuid>,
        reason: String,
        removable: bool,
    },
}

/// Whether a VM in `status` still owns its machine.
fn is_live(status: Option<VmStatus>) -> bool {
    status.is_some_and(|s| !matches!(s, VmStatus::Destroyed | VmStatus::Failed))
}

/// The rule: `own` is the status of the VM with the machine's id in the machine's own
/// tenant (`None`: there is none, or the machine records no tenant), `live_elsewhere` a
/// tenant other than the machine's whose VM with that id is live.
pub fn judge(
    machine: &Machine,
    own: Option<VmStatus>,
    live_elsewhere: Option<&TenantId>,
) -> Verdict {
    let Some(vm_id) = vm_id_in(&machine.name) else {
        return Verdict::Orphan {
            vm_id: None,
            reason: "its name names no vm".into(),
            removable: true,
        };
    };
    let orphan = |reason: String, removable| Verdict::Orphan {
        vm_id: Some(vm_id),
        reason,
        removable,
    };
    let Some(tenant) = &machine.tenant else {
        return match live_elsewhere {
            Some(other) => orphan(
                format!("conflict: it records no owning tenant, but tenant {other}'s vm {vm_id} is live; left for an operator, never given to tenant {other} nor removed"),
                false,
            ),
            None => orphan("it records no owning tenant and no live vm has its id".into(), true),
        };
    };
    if is_live(own) {
        return Verdict::Owned;
    }
    let whose = match live_elsewhere {
        Some(other) => format!(
            " (tenant {other}'s live vm with this id is another tenant's and never owns it)"
        ),
        None => String::new(),
    };
    let reason = match own {
        None => format!("tenant {tenant} has no vm with its id{whose}"),
        Some(VmStatus::Destroyed) => format!("its vm (tenant {tenant}) is destroyed{whose}"),
        Some(_) => format!("its vm (tenant {tenant}) failed and released its resources{whose}"),
    };
    orphan(reason, true)
}

impl Reconciler {
    pub fn new(
        vms: Arc<Repository<Vm>>,
        servers: Arc<Repository<Server>>,
        provider: Arc<dyn VmProvider>,
        db: PgPool,
    ) -> Self {
        Self {
            orphans: Repository::new(vms.store().clone(), "provisioner"),
            vms,
            servers,
            provider,
            db,
            running: Mutex::new(()),
        }
    }

    /// One reconciliation; `clean_orphans` also removes the orphans found, each only on
    /// its own tenant's behalf (a conflict is reported, never removed).
    pub async fn run(&self, clean_orphans: bool) -> Result<ReconcileReport> {
        let _one_at_a_time = self.running.lock().await;
        let machines = self.provider.list().await?;
        let expected = self.expected().await?;
        let mut report = ReconcileReport {
            provider: self.provider.name().to_owned(),
            machines: machines.len(),
            vms_checked: expected
                .values()
                .filter(|status| is_settled_with_machine(status))
                .count(),
            ..ReconcileReport::default()
        };
        let by_name: HashMap<&str, &Machine> =
            machines.iter().map(|m| (m.name.as_str(), m)).collect();
        for ((tenant, id), status) in &expected {
            if !is_settled_with_machine(status) {
                continue;
            }
            match by_name.get(machine_name(*id).as_str()) {
                Some(machine) if machine.tenant.as_deref() == Some(tenant.as_str()) => continue,
                Some(machine) => {
                    let holder = match machine.tenant.as_deref() {
                        Some(other) => format!("tenant {other}'s machine"),
                        None => "a machine with no owning tenant".to_owned(),
                    };
                    report.errors.push(format!(
                        "vm {id} (tenant {tenant}): conflict: its machine name is held by {holder}; not made again while it is"
                    ));
                    continue;
                }
                None => {}
            }
            match self.record_lost(tenant, *id).await {
                Ok(Some(lost)) => report.lost.push(lost),
                Ok(None) => {}
                Err(e) => report.errors.push(format!("vm {id}: {e:#}")),
            }
        }
        for machine in &machines {
            let (vm_id, reason, removable) = match self.verdict(machine, &expected).await {
                Ok(Verdict::Owned) => continue,
                Ok(Verdict::Orphan {
                    vm_id,
                    reason,
                    removable,
                }) => (vm_id, reason, removable),
                Err(e) => {
                    report.errors.push(format!("{}: {e:#}", machine.name));
                    continue;
                }
            };
            report.orphans.push(machine.name.clone());
            if let Err(e) = self.record_orphan(machine, vm_id, reason.clone()).await {
                report.errors.push(format!("{}: {e:#}", machine.name));
            }
            if !clean_orphans {
                continue;
            }
            if !removable {
                report
                    .errors
                    .push(format!("{}: not removed: {reason}", machine.name));
                continue;
            }
            match self.remove_orphan(machine).await {
                Ok(()) => report.removed.push(machine.name.clone()),
                Err(e) => report.errors.push(format!("{}: {e:#}", machine.name)),
            }
        }
        if !report.lost.is_empty() || !report.orphans.is_empty() {
            tracing::warn!(
                lost = report.lost.len(),
                orphans = report.orphans.len(),
                removed = report.removed.len(),
                "reconciliation found drift"
            );
        }
        Ok(report)
    }

    /// VMs placed on this provider's servers, by tenant and id, from the `vms`
    /// projection. The servers come from the log (a projection of them may lag behind).
    async fn expected(&self) -> Result<Expected> {
        let mut hosts = Vec::new();
        for id in self
            .servers
            .store()
            .aggregate_ids(&system(), Server::KIND)
            .await?
        {
            let server = self.servers.load(&system(), id).await?;
            if server
                .state
                .spec
                .as_ref()
                .is_some_and(|s| s.provider == self.provider.name())
            {
                hosts.push(server.state.name().to_owned());
            }
        }
        let rows: Vec<(Uuid, String, String)> =
            sqlx::query_as("SELECT id, tenant, status FROM vms.vms WHERE host = ANY($1)")
                .bind(&hosts)
                .fetch_all(&self.db)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(id, tenant, status)| ((tenant, id), status))
            .collect())
    }

    /// Records `vm.lost` if the VM still says it has a machine and the provider still
    /// has none of any tenant by its name.
    async fn record_lost(&self, tenant: &str, id: Uuid) -> Result<Option<LostVm>> {
        let tenant = TenantId::parse(tenant)?;
        let loaded = self.vms.load(&tenant, id).await?;
        let settled = matches!(
            loaded.state.status,
            Some(VmStatus::Running | VmStatus::Stopped)
        );
        let name = machine_name(id);
        if !settled {
            return Ok(None);
        }
        if let Some(machine) = self.provider.inspect(&name).await? {
            // Ours: not lost. Another's: a conflict, and making ours again would fail.
            machine.check_owner(&tenant)?;
            return Ok(None);
        }
        let lost = VmEvent::Lost(VmLost {
            provider_ref: name.clone(),
            reason: format!(
                "the {} provider has no machine {name}",
                self.provider.name()
            ),
        });
        let cause = Cause::derived(id, &format!("lost@{}", loaded.version), provisioner());
        match self
            .vms
            .append(&tenant, id, &loaded, &cause, vec![lost])
            .await
        {
            Ok(_) => {
                tracing::warn!(vm = %id, %tenant, "vm lost its machine; it will be made again");
                Ok(Some(LostVm {
                    tenant: tenant.to_string(),
                    vm_id: id,
                }))
            }
            // The VM moved meanwhile: the next run looks again.
            Err(berth_runtime::store::AppendError::Store(e)) => Err(e.into()),
            Err(_) => Ok(None),
        }
    }

    /// [`judge`]s a machine. The projection answers for its own tenant's live VMs; for
    /// anything else the log decides (the projection may be behind).
    async fn verdict(&self, machine: &Machine, expected: &Expected) -> Result<Verdict> {
        let Some(vm_id) = vm_id_in(&machine.name) else {
            return Ok(judge(machine, None, None));
        };
        let own_tenant = machine
            .tenant
            .as_deref()
            .and_then(|tenant| TenantId::parse(tenant).ok());
        if let Some(tenant) = &own_tenant {
            let row = expected.get(&(tenant.to_string(), vm_id));
            if row.is_some_and(|status| !matches!(status.as_str(), "destroyed" | "failed")) {
                return Ok(Verdict::Owned);
            }
        }
        let mut own = None;
        let mut live_elsewhere = None;
        for tenant in self.vms.store().owners(Vm::KIND, vm_id).await? {
            let status = self.vms.load(&tenant, vm_id).await?.state.status;
            if Some(&tenant) == own_tenant.as_ref() {
                own = status;
            } else if is_live(status) {
                live_elsewhere = Some(tenant);
            }
        }
        Ok(judge(machine, own, live_elsewhere.as_ref()))
    }

    async fn record_orphan(
        &self,
        machine: &Machine,
        vm_id: Option<Uuid>,
        reason: String,
    ) -> Result<()> {
        let id = orphan_id(self.provider.name(), &machine.name);
        let loaded = self.orphans.load(&system(), id).await?;
        if loaded.state.present {
            return Ok(());
        }
        let detected = OrphanEvent::Detected(OrphanDetected {
            provider: self.provider.name().to_owned(),
            machine: machine.name.clone(),
            host: machine.host.clone(),
            vm_id,
            reason,
        });
        self.append_orphan(id, &loaded, "detected", detected).await
    }

    async fn remove_orphan(&self, machine: &Machine) -> Result<()> {
        self.provider.remove_orphan(machine).await?;
        let id = orphan_id(self.provider.name(), &machine.name);
        let loaded = self.orphans.load(&system(), id).await?;
        let removed = OrphanEvent::Removed(OrphanRemoved {
            machine: machine.name.clone(),
        });
        self.append_orphan(id, &loaded, "removed", removed).await
    }

    async fn append_orphan(
        &self,
        id: Uuid,
        loaded: &Loaded<Orphan>,
        what: &str,
        event: OrphanEvent,
    ) -> Result<()> {
        let cause = Cause::derived(id, &format!("{what}@{}", loaded.version), provisioner());
        match self
            .orphans
            .append(&system(), id, loaded, &cause, vec![event])
            .await
        {
            Ok(_) | Err(berth_runtime::store::AppendError::Duplicate) => Ok(()),
            Err(e) => Err(Error::Append(e)),
        }
    }
}

/// Running or stopped VMs have a machine; other states are in flux or have none.
fn is_settled_with_machine(status: &str) -> bool {
    matches!(status, "running" | "stopped")
}

/// Who records what a reconciliation finds.
fn provisioner() -> Actor {
    Actor::service("provisioner")
}

/// Reconciles every `every` until shutdown (the first run after one period).
pub async fn every(rt: &Runtime, reconciler: &Reconciler, every: Duration) -> Result<()> {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = rt.shutdown.cancelled() => return Ok(()),
            _ = ticks.tick() => {
                if let Err(e) = reconciler.run(false).await {
                    tracing::warn!(error = %e, error.code = e.code(), "reconciliation failed; it runs again next period");
                }
            }
        }
    }
}

/// Reconciles on every fire of the built-in `reconcile` schedule: the durable consumer
/// hands each fire to one replica. A fire delivered long after it happened (the
/// provisioner was down) is skipped: the next one is due within a minute.
pub struct OnSchedule {
    pub reconciler: Arc<Reconciler>,
}

#[async_trait::async_trait]
impl Reactor for OnSchedule {
    fn name(&self) -> String {
        "provisioner-reconcile".into()
    }

    fn filter_subjects(&self) -> Vec<String> {
        let schedule = schedule_id(&TenantId::system(), RECONCILE_SCHEDULE);
        vec![event_subject(&TenantId::system(), "schedule", schedule)]
    }

    async fn react(&self, event: &StoredEvent) -> Result<(), ReactError> {
        let Ok(ScheduleEvent::Fired(fired)) = event.decode::<ScheduleEvent>() else {
            return Ok(());
        };
        if chrono::Utc::now() - fired.fired_at > chrono::Duration::minutes(2) {
            return Ok(());
        }
        self.reconciler
            .run(false)
            .await
            .map(|_| ())
            .map_err(ReactError::transient)
    }
}

/// Answers `cmd.system.provisioner.reconcile` with a [`ReconcileReport`] (or a
/// rejection), one replica per request.
pub async fn serve(rt: &Runtime, reconciler: &Reconciler) -> Result<()> {
    let decode = |_: &str, body: &[u8]| Reconcile::decode(body);
    berth_runtime::requests::serve(rt, RECONCILE_SUBJECT, decode, |asked| async move {
        reconciler
            .run(asked.clean_orphans)
            .await
            .map_err(|e| Error::Reconcile(Box::new(e)))
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::PowerState;

    fn machine(id: Uuid, tenant: Option<&str>) -> Machine {
        Machine {
            name: machine_name(id),
            host: "sim-host-1".into(),
            power: PowerState::Running,
            tenant: tenant.map(str::to_owned),
        }
    }

    fn tenant(name: &str) -> TenantId {
        TenantId::parse(name).unwrap()
    }

    fn removable(verdict: &Verdict) -> Option<bool> {
        match verdict {
            Verdict::Owned => None,
            Verdict::Orphan { removable, .. } => Some(*removable),
        }
    }

    #[test]
    fn a_machine_belongs_to_the_live_vm_of_its_own_tenant_only() {
        let id = Uuid::now_v7();
        let a = tenant("a");
        // a's machine, a's VM running: owned, whatever else has the id.
        let ours = machine(id, Some("a"));
        assert_eq!(judge(&ours, Some(VmStatus::Running), None), Verdict::Owned);
        // b's destroyed VM with the same id never makes a's machine an orphan …
        assert_eq!(
            judge(&ours, Some(VmStatus::Stopped), Some(&tenant("b"))),
            Verdict::Owned
        );
        // … and a's live VM never makes b's machine a's: it is b's orphan, removable
        // on b's behalf.
        let theirs = machine(id, Some("b"));
        let verdict = judge(&theirs, None, Some(&a));
        assert_eq!(removable(&verdict), Some(true), "{verdict:?}");
        let Verdict::Orphan { reason, .. } = verdict else {
            unreachable!()
        };
        assert!(reason.contains("tenant b has no vm"), "{reason}");
        assert_eq!(
            removable(&judge(&theirs, Some(VmStatus::Destroyed), Some(&a))),
            Some(true)
        );
        assert_eq!(
            removable(&judge(&theirs, Some(VmStatus::Failed), None)),
            Some(true)
        );
    }

    #[test]
    fn a_machine_without_an_owner_is_removable_only_when_no_tenant_has_a_live_vm_with_its_id() {
        let id = Uuid::now_v7();
        let stray = machine(id, None);
        assert_eq!(removable(&judge(&stray, None, None)), Some(true));
        let conflict = judge(&stray, None, Some(&tenant("a")));
        assert_eq!(removable(&conflict), Some(false), "{conflict:?}");
        let named_otherwise = Machine {
            name: "stray-1".into(),
            ..machine(id, Some("a"))
        };
        assert_eq!(
            judge(&named_otherwise, Some(VmStatus::Running), None),
            Verdict::Orphan {
                vm_id: None,
                reason: "its name names no vm".into(),
                removable: true
            }
        );
    }
}
