//! Reconciliation: compares what the provider really runs with what the log says.
//!
//! - A VM that is `running` or `stopped` but whose machine the provider no longer has is
//!   recorded as `vm.lost`; the reactor then makes the machine again on the same server
//!   and starts it if it should run (the recovery policy: the desired state wins).
//! - A machine no live VM owns (no VM at all, or one that is `destroyed` or `failed`) is
//!   recorded once as `orphan.detected`, and removed only when asked
//!   (`clean_orphans`, `berth orphans clean`), then `orphan.removed`.
//!
//! The `vms` projection only nominates suspects; every verdict is checked against the
//! aggregate and the provider right before it is appended with the aggregate's expected
//! version, so a VM that moved meanwhile (a create finishing, a destroy in flight) is
//! left alone. Runs on every fire of the built-in `reconcile` schedule (every minute),
//! on `cmd.system.provisioner.reconcile`, and every `--reconcile-every-secs` when set
//! (for a provisioner without a scheduler).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use berth_runtime::reactor::{ReactError, Reactor};
use berth_runtime::store::{Aggregate, Cause, Loaded, NoCommand, Repository, StoredEvent};
use berth_runtime::Runtime;
use berth_schemas::orphan::{
    orphan_id, LostVm, OrphanDetected, OrphanEvent, OrphanRemoved, Reconcile, ReconcileReport,
    RECONCILE_SCHEDULE, RECONCILE_SUBJECT,
};
use berth_schemas::schedule::{schedule_id, ScheduleEvent};
use berth_schemas::subjects::event_subject;
use berth_schemas::vm::{VmEvent, VmLost, VmStatus};
use berth_schemas::{Actor, Rejection, TenantId};
use sqlx::PgPool;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::placement::system;
use crate::provider::{machine_name, Machine, VmProvider};
use crate::server::Server;
use crate::vm::Vm;

/// A machine no live VM owns, as folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Orphan {
    /// Detected and not removed since.
    pub present: bool,
}

impl Aggregate for Orphan {
    const KIND: &'static str = berth_schemas::orphan::AGGREGATE;
    type Command = NoCommand;
    type Event = OrphanEvent;

    fn apply(&mut self, event: &OrphanEvent) {
        self.present = matches!(event, OrphanEvent::Detected(_));
    }

    fn decide(&self, command: &NoCommand) -> Result<Vec<OrphanEvent>, Rejection> {
        match *command {}
    }
}

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

/// A VM the projection believes has a machine at this provider.
struct Expected {
    tenant: String,
    status: String,
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

    /// One reconciliation; `clean_orphans` also removes the orphans found.
    pub async fn run(&self, clean_orphans: bool) -> anyhow::Result<ReconcileReport> {
        let _one_at_a_time = self.running.lock().await;
        let machines = self.provider.list().await?;
        let expected = self.expected().await?;
        let mut report = ReconcileReport {
            provider: self.provider.name().to_owned(),
            machines: machines.len(),
            vms_checked: expected
                .values()
                .filter(|vm| is_settled_with_machine(&vm.status))
                .count(),
            ..ReconcileReport::default()
        };
        let present: HashSet<&str> = machines.iter().map(|m| m.name.as_str()).collect();
        for (id, vm) in &expected {
            if !is_settled_with_machine(&vm.status) || present.contains(machine_name(*id).as_str())
            {
                continue;
            }
            match self.record_lost(&vm.tenant, *id).await {
                Ok(Some(lost)) => report.lost.push(lost),
                Ok(None) => {}
                Err(e) => report.errors.push(format!("vm {id}: {e:#}")),
            }
        }
        for machine in &machines {
            match self.orphan_reason(machine, &expected).await {
                Ok(None) => {}
                Ok(Some((vm_id, reason))) => {
                    report.orphans.push(machine.name.clone());
                    if let Err(e) = self.record_orphan(machine, vm_id, reason).await {
                        report.errors.push(format!("{}: {e:#}", machine.name));
                    }
                    if clean_orphans {
                        match self.remove_orphan(machine).await {
                            Ok(()) => report.removed.push(machine.name.clone()),
                            Err(e) => report.errors.push(format!("{}: {e:#}", machine.name)),
                        }
                    }
                }
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

    /// VMs placed on this provider's servers, by id, from the `vms` projection. The
    /// servers come from the log (a projection of them may lag behind).
    async fn expected(&self) -> anyhow::Result<HashMap<Uuid, Expected>> {
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
            .map(|(id, tenant, status)| (id, Expected { tenant, status }))
            .collect())
    }

    /// Records `vm.lost` if the VM still says it has a machine and the provider still
    /// has none.
    async fn record_lost(&self, tenant: &str, id: Uuid) -> anyhow::Result<Option<LostVm>> {
        let tenant = TenantId::parse(tenant)?;
        let loaded = self.vms.load(&tenant, id).await?;
        let settled = matches!(
            loaded.state.status,
            Some(VmStatus::Running | VmStatus::Stopped)
        );
        let name = machine_name(id);
        if !settled || self.provider.inspect(&name).await?.is_some() {
            return Ok(None);
        }
        let lost = VmEvent::Lost(VmLost {
            provider_ref: name.clone(),
            reason: format!(
                "the {} provider has no machine {name}",
                self.provider.name()
            ),
        });
        let cause = cause(id, &format!("lost@{}", loaded.version));
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

    /// Why a machine is an orphan (and the VM its name points at), or `None` if a live
    /// VM owns it.
    async fn orphan_reason(
        &self,
        machine: &Machine,
        expected: &HashMap<Uuid, Expected>,
    ) -> anyhow::Result<Option<(Option<Uuid>, String)>> {
        let Some(vm_id) = machine
            .name
            .strip_prefix("berth-vm-")
            .and_then(|id| Uuid::parse_str(id).ok())
        else {
            return Ok(Some((None, "its name names no vm".into())));
        };
        if expected
            .get(&vm_id)
            .is_some_and(|vm| !matches!(vm.status.as_str(), "destroyed" | "failed"))
        {
            return Ok(None);
        }
        // The projection may be behind: the log decides.
        let tenant = match expected.get(&vm_id) {
            Some(vm) => Some(TenantId::parse(&vm.tenant)?),
            None => self.vms.store().tenant_of(Vm::KIND, vm_id).await?,
        };
        let Some(tenant) = tenant else {
            return Ok(Some((Some(vm_id), "no vm with this id exists".into())));
        };
        let status = self.vms.load(&tenant, vm_id).await?.state.status;
        Ok(match status {
            Some(VmStatus::Destroyed) => Some((Some(vm_id), "its vm is destroyed".into())),
            Some(VmStatus::Failed) => Some((
                Some(vm_id),
                "its vm failed and released its resources".into(),
            )),
            _ => None,
        })
    }

    async fn record_orphan(
        &self,
        machine: &Machine,
        vm_id: Option<Uuid>,
        reason: String,
    ) -> anyhow::Result<()> {
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

    async fn remove_orphan(&self, machine: &Machine) -> anyhow::Result<()> {
        self.provider.destroy(&machine.name).await?;
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
    ) -> anyhow::Result<()> {
        let cause = cause(id, &format!("{what}@{}", loaded.version));
        match self
            .orphans
            .append(&system(), id, loaded, &cause, vec![event])
            .await
        {
            Ok(_) | Err(berth_runtime::store::AppendError::Duplicate) => Ok(()),
            Err(e) => Err(anyhow::anyhow!("recording the orphan: {e}")),
        }
    }
}

/// Running or stopped VMs have a machine; other states are in flux or have none.
fn is_settled_with_machine(status: &str) -> bool {
    matches!(status, "running" | "stopped")
}

fn cause(id: Uuid, label: &str) -> Cause {
    let cause_id = Uuid::new_v5(&id, label.as_bytes());
    Cause {
        id: cause_id,
        actor: Actor::service("provisioner"),
        correlation_id: cause_id,
        traceparent: None,
    }
}

/// Reconciles every `every` until shutdown (the first run after one period).
pub async fn every(rt: &Runtime, reconciler: &Reconciler, every: Duration) -> anyhow::Result<()> {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = rt.shutdown.cancelled() => return Ok(()),
            _ = ticks.tick() => {
                if let Err(e) = reconciler.run(false).await {
                    tracing::warn!(error = %format!("{e:#}"), "reconciliation failed; it runs again next period");
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
            .map_err(|e| ReactError::Transient(format!("{e:#}")))
    }
}

/// Answers `cmd.system.provisioner.reconcile` with a [`ReconcileReport`] (or a
/// rejection), one replica per request.
pub async fn serve(rt: &Runtime, reconciler: &Reconciler) -> anyhow::Result<()> {
    berth_runtime::requests::serve(
        rt,
        RECONCILE_SUBJECT,
        "berth-provisioner",
        |_, body| async move {
            let answer = match Reconcile::decode(&body) {
                Err(rejection) => serde_json::to_vec(&rejection),
                Ok(asked) => match reconciler.run(asked.clean_orphans).await {
                    Ok(report) => serde_json::to_vec(&report),
                    Err(e) => serde_json::to_vec(&Rejection::new(
                        berth_schemas::RejectionCode::Unavailable,
                        format!("reconciliation failed: {e:#}"),
                    )),
                },
            };
            answer.expect("reports and rejections serialize")
        },
    )
    .await?;
    Ok(())
}
