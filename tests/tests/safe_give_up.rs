//! Failure never destroys what a customer owns (DESIGN §7), with the sim provider and the
//! sim pod runtime behind a switchboard of faults this file turns on and off:
//! - a running VM whose stop fails for good, or transiently for longer than
//!   `max_deliver`, is left `degraded` with its machine, quota and capacity; it recovers
//!   on `retry` (or on its own once the outage ends), and a `destroy` of a degraded VM
//!   releases its quota and capacity only once the provider confirmed the destroy;
//! - a failed provision is undone exactly once, and its release waits for the destroy;
//! - a provider call that hangs is abandoned at its deadline and retried, and a call
//!   waiting in line for a provider slot is not redelivered (deliveries are counted);
//! - a pod whose restart fails keeps its volume's data and is `degraded`; a pod whose
//!   first deploy fails is undone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use berth_pod_lifecycle::runtime::{Health, PodRuntime, RuntimeError, RuntimeObject, WorkloadSpec};
use berth_pod_lifecycle::sim::SimRuntime;
use berth_provisioner::provider::{
    ExecOutput, Machine, MachineSpec, PowerState, ProviderError, VmProvider,
};
use berth_provisioner::reactor::Concurrency;
use berth_provisioner::server::Server;
use berth_provisioner::sim::{SimConfig, SimProvider};
use berth_provisioner::usage::Usage;
use berth_provisioner::ProvisionerConfig;
use berth_runtime::client::wait_for_status;
use berth_runtime::store::{Aggregate, EventStore, Repository};
use berth_runtime::Settings;
use berth_schemas::pod::{PodCommand, PodStatus, PodTarget};
use berth_schemas::server::server_id;
use berth_schemas::status::{Status, VmState};
use berth_schemas::subjects::{event_subject, status_subject, StatusKind};
use berth_schemas::usage::{usage_id, Tier};
use berth_schemas::vm::{VmCommand, VmStatus, VmTarget};
use berth_schemas::{CommandReply, TenantId};
use berth_tests::pods::pod_config;
use berth_tests::{eventually, fast_settings, meta, sim_datacenter, tenant, TestEnv};
use chrono::{DateTime, Utc};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

/// What to do to the next calls of one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Fail for good, before acting.
    Broken,
    /// Act, then fail for good: the call leaves something half made.
    BrokenAfterActing,
    /// Fail transiently, before acting (an outage), until healed.
    Outage,
    /// Never answer, once.
    HangOnce,
}

/// Faults per operation, and what the calls met.
#[derive(Default)]
struct Switchboard {
    faults: Mutex<HashMap<&'static str, Fault>>,
    calls: Mutex<HashMap<&'static str, usize>>,
    /// Hanging calls that were dropped before they answered.
    abandoned: AtomicUsize,
}

/// Counts a hanging call as abandoned when it is dropped.
struct Abandoned<'a>(&'a AtomicUsize);

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Switchboard {
    fn set(&self, operation: &'static str, fault: Fault) {
        self.faults.lock().unwrap().insert(operation, fault);
    }

    fn heal(&self, operation: &'static str) {
        self.faults.lock().unwrap().remove(operation);
    }

    fn calls(&self, operation: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .get(operation)
            .copied()
            .unwrap_or(0)
    }

    /// Counts the call and applies a fault that strikes before it acts; returns whether
    /// it should fail after acting.
    async fn before(&self, operation: &'static str) -> Result<bool, String> {
        *self.calls.lock().unwrap().entry(operation).or_default() += 1;
        let fault = self.faults.lock().unwrap().get(operation).copied();
        match fault {
            None => Ok(false),
            Some(Fault::BrokenAfterActing) => Ok(true),
            Some(Fault::Broken) => Err(format!("injected fault: {operation} is broken")),
            Some(Fault::Outage) => Err(format!("injected outage: {operation} timed out")),
            Some(Fault::HangOnce) => {
                self.heal(operation);
                let _abandoned = Abandoned(&self.abandoned);
                std::future::pending::<()>().await;
                unreachable!("a pending future never answers")
            }
        }
    }

    fn outage(&self, operation: &str) -> bool {
        matches!(
            self.faults.lock().unwrap().get(operation),
            Some(Fault::Outage)
        )
    }
}

/// The sim provider behind the switchboard.
struct FaultySim {
    sim: Arc<SimProvider>,
    faults: Arc<Switchboard>,
}

impl FaultySim {
    async fn call<T>(
        &self,
        operation: &'static str,
        call: impl std::future::Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        let after = match self.faults.before(operation).await {
            Ok(after) => after,
            Err(reason) if self.faults.outage(operation) => {
                return Err(ProviderError::Transient(reason))
            }
            Err(reason) => return Err(ProviderError::Permanent(reason)),
        };
        let result = call.await;
        if after && result.is_ok() {
            return Err(ProviderError::Permanent(format!(
                "injected fault: {operation} broke after it acted"
            )));
        }
        result
    }
}

#[async_trait]
impl VmProvider for FaultySim {
    fn name(&self) -> &'static str {
        self.sim.name()
    }
    async fn create(&self, spec: &MachineSpec) -> Result<Machine, ProviderError> {
        self.call("create", self.sim.create(spec)).await
    }
    async fn start(&self, tenant: &TenantId, name: &str) -> Result<(), ProviderError> {
        self.call("start", self.sim.start(tenant, name)).await
    }
    async fn stop(&self, tenant: &TenantId, name: &str) -> Result<(), ProviderError> {
        self.call("stop", self.sim.stop(tenant, name)).await
    }
    async fn restart(&self, tenant: &TenantId, name: &str) -> Result<(), ProviderError> {
        self.call("restart", self.sim.restart(tenant, name)).await
    }
    async fn resize(&self, spec: &MachineSpec) -> Result<(), ProviderError> {
        self.call("resize", self.sim.resize(spec)).await
    }
    async fn destroy(&self, tenant: &TenantId, name: &str) -> Result<(), ProviderError> {
        self.call("destroy", self.sim.destroy(tenant, name)).await
    }
    async fn inspect(&self, name: &str) -> Result<Option<Machine>, ProviderError> {
        self.sim.inspect(name).await
    }
    async fn list(&self) -> Result<Vec<Machine>, ProviderError> {
        self.sim.list().await
    }
    async fn exec(
        &self,
        tenant: &TenantId,
        name: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, ProviderError> {
        self.sim.exec(tenant, name, command, timeout).await
    }
    async fn remove_orphan(&self, machine: &Machine) -> Result<(), ProviderError> {
        self.sim.remove_orphan(machine).await
    }
}

fn faulty_sim(latency: Duration) -> (Arc<SimProvider>, Arc<Switchboard>, Arc<FaultySim>) {
    let sim = Arc::new(SimProvider::new(SimConfig {
        latency,
        ..SimConfig::default()
    }));
    let faults = Arc::new(Switchboard::default());
    let provider = Arc::new(FaultySim {
        sim: sim.clone(),
        faults: faults.clone(),
    });
    (sim, faults, provider)
}

fn with_pro_quota() -> ProvisionerConfig {
    ProvisionerConfig {
        default_limits: Some(Tier::Pro.limits()),
        ..sim_datacenter()
    }
}

fn repository<A: Aggregate>(env: &TestEnv) -> Repository<A> {
    Repository::new(EventStore::new(env.js.clone(), "EVENTS"), "test")
}

/// Allocations on the default sim servers, summed.
async fn allocated(env: &TestEnv) -> anyhow::Result<usize> {
    let servers = repository::<Server>(env);
    let mut total = 0;
    for n in 1..=4 {
        let id = server_id(&format!("sim-host-{n}"));
        let server = servers.load(&TenantId::system(), id).await?;
        total += server.state.allocations.len();
    }
    Ok(total)
}

async fn reserved(env: &TestEnv, tenant: &TenantId) -> anyhow::Result<usize> {
    let usage = repository::<Usage>(env)
        .load(tenant, usage_id(tenant))
        .await?;
    Ok(usage.state.reservations.len())
}

/// How many events of each type the subjects matching `subject` hold.
async fn event_counts(env: &TestEnv, subject: &str) -> anyhow::Result<HashMap<String, usize>> {
    let mut counts = HashMap::new();
    for event in EventStore::new(env.js.clone(), "EVENTS")
        .read(subject, 0)
        .await?
    {
        *counts.entry(event.meta.event_type).or_default() += 1;
    }
    Ok(counts)
}

fn vm_target(vm_id: Uuid) -> VmTarget {
    VmTarget {
        vm_id,
        expected_version: None,
    }
}

/// Sends a VM command that must be accepted; returns the version after it.
async fn accepted(env: &TestEnv, tenant: &TenantId, command: &VmCommand) -> anyhow::Result<u64> {
    match env.send(tenant, &meta(), command).await? {
        CommandReply::Accepted { version, .. } => Ok(version),
        rejected => anyhow::bail!("{} was rejected: {rejected:?}", command.action()),
    }
}

/// Waits until the VM's status is `wanted` at `version` or later.
async fn vm_status_after(
    env: &TestEnv,
    tenant: &TenantId,
    id: Uuid,
    wanted: VmStatus,
    version: u64,
) -> anyhow::Result<Status<VmState>> {
    let subject = status_subject(tenant, StatusKind::Vm, &id.to_string())?;
    Ok(
        wait_for_status(&env.client, &subject, WAIT, |s: &Status<VmState>| {
            s.state.status == wanted && s.version >= version
        })
        .await?,
    )
}

async fn machine_power(sim: &SimProvider, vm: Uuid) -> anyhow::Result<Option<PowerState>> {
    let name = berth_provisioner::provider::machine_name(vm);
    Ok(sim.inspect(&name).await?.map(|machine| machine.power))
}

#[tokio::test]
async fn a_vm_whose_stop_fails_for_good_is_degraded_keeps_everything_and_recovers_on_retry(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let (sim, faults, provider) = faulty_sim(Duration::ZERO);
    let service = env
        .provisioner_on(fast_settings(), provider, with_pro_quota())
        .await?;
    let acme = tenant("acme");
    let vm = env.create(&acme, "web").await?;
    env.wait_vm_status(&acme, vm, VmStatus::Running).await?;
    assert_eq!(
        (reserved(&env, &acme).await?, allocated(&env).await?),
        (1, 1)
    );

    faults.set("stop", Fault::Broken);
    let version = accepted(&env, &acme, &VmCommand::Stop(vm_target(vm))).await?;
    let status = vm_status_after(&env, &acme, vm, VmStatus::Degraded, version).await?;
    let reason = status.reason().unwrap_or_default();
    assert!(
        reason.starts_with("stop failed after 1 attempt: injected fault: stop is broken"),
        "{reason}"
    );
    assert_eq!(
        machine_power(&sim, vm).await?,
        Some(PowerState::Running),
        "the machine is left as it was"
    );
    assert_eq!(
        (reserved(&env, &acme).await?, allocated(&env).await?),
        (1, 1),
        "quota and capacity stay held"
    );
    // The permanent failure went to the DLQ, with the original headers.
    let letter = env
        .js
        .get_stream("DLQ")
        .await?
        .direct_get_last_for_subject("dlq.provisioner-vm")
        .await?;
    let header = |name: &str| letter.headers.get(name).map(|v| v.as_str().to_owned());
    assert!(header("Berth-Dlq-Error")
        .unwrap_or_default()
        .contains("injected fault"));
    assert_eq!(
        header("Berth-Dlq-Subject"),
        Some(event_subject(&acme, "vm", vm))
    );
    assert_eq!(header("Berth-Dlq-Deliveries").as_deref(), Some("1"));
    assert!(
        header("ce-id").is_some(),
        "the original headers travel with it"
    );
    // Restart and resize need a VM that is where it was asked to be.
    for refused in [
        VmCommand::Restart(vm_target(vm)),
        VmCommand::Recreate(vm_target(vm)),
    ] {
        let reply = env.send(&acme, &meta(), &refused).await?;
        assert!(reply.rejection().is_some(), "{refused:?}: {reply:?}");
    }

    // The provider recovers; retry asks for the stop again.
    faults.heal("stop");
    let version = accepted(&env, &acme, &VmCommand::Retry(vm_target(vm))).await?;
    vm_status_after(&env, &acme, vm, VmStatus::Stopped, version).await?;
    assert_eq!(machine_power(&sim, vm).await?, Some(PowerState::Stopped));
    assert_eq!(
        (reserved(&env, &acme).await?, allocated(&env).await?),
        (1, 1)
    );

    // A start that fails for good degrades it again; a destroy that fails a while
    // releases nothing until the provider has confirmed it.
    faults.set("start", Fault::Broken);
    let version = accepted(&env, &acme, &VmCommand::Start(vm_target(vm))).await?;
    vm_status_after(&env, &acme, vm, VmStatus::Degraded, version).await?;
    faults.set("destroy", Fault::Outage);
    let destroys = faults.calls("destroy");
    let version = accepted(&env, &acme, &VmCommand::Destroy(vm_target(vm))).await?;
    eventually("destroy to fail a few times", WAIT, || async {
        Ok((faults.calls("destroy") >= destroys + 3).then_some(()))
    })
    .await?;
    assert_eq!(
        (reserved(&env, &acme).await?, allocated(&env).await?),
        (1, 1),
        "nothing is released before the destroy is confirmed"
    );
    assert!(machine_power(&sim, vm).await?.is_some());
    faults.heal("destroy");
    vm_status_after(&env, &acme, vm, VmStatus::Destroyed, version).await?;
    assert_eq!(machine_power(&sim, vm).await?, None);
    eventually("the release", WAIT, || async {
        Ok((reserved(&env, &acme).await? == 0 && allocated(&env).await? == 0).then_some(()))
    })
    .await?;
    service.stop().await
}

#[tokio::test]
async fn a_stop_failing_transiently_past_max_deliver_degrades_the_vm_and_is_retried_until_it_works(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let (sim, faults, provider) = faulty_sim(Duration::ZERO);
    let settings = Settings {
        reactor_max_deliver: 3,
        ..fast_settings()
    };
    let service = env
        .provisioner_on(settings, provider, with_pro_quota())
        .await?;
    let acme = tenant("acme");
    let vm = env.create(&acme, "web").await?;
    env.wait_vm_status(&acme, vm, VmStatus::Running).await?;

    faults.set("stop", Fault::Outage);
    let version = accepted(&env, &acme, &VmCommand::Stop(vm_target(vm))).await?;
    let status = vm_status_after(&env, &acme, vm, VmStatus::Degraded, version).await?;
    let reason = status.reason().unwrap_or_default();
    assert!(
        reason.starts_with("stop failing after 3 attempts, still retrying: injected outage"),
        "{reason}"
    );
    assert_eq!(machine_power(&sim, vm).await?, Some(PowerState::Running));
    assert_eq!(
        (reserved(&env, &acme).await?, allocated(&env).await?),
        (1, 1)
    );
    // Still tried, well past max_deliver, and never dead-lettered for it.
    eventually("the stop to be tried again and again", WAIT, || async {
        Ok((faults.calls("stop") >= 12).then_some(()))
    })
    .await?;
    let letters = berth_runtime::dlq::list(&env.js, Some("provisioner-vm")).await?;
    assert!(letters.is_empty(), "{letters:?}");
    // A longer outage is told again at twice and four times max_deliver, no more often.
    let degraded = event_counts(&env, &event_subject(&acme, "vm", vm))
        .await?
        .get("berth.vm.degraded.v1")
        .copied();
    assert!(matches!(degraded, Some(1..=3)), "{degraded:?}");

    // The outage ends: the VM gets where it was asked to be, no command needed.
    faults.heal("stop");
    vm_status_after(&env, &acme, vm, VmStatus::Stopped, version).await?;
    assert_eq!(machine_power(&sim, vm).await?, Some(PowerState::Stopped));
    assert_eq!(
        (reserved(&env, &acme).await?, allocated(&env).await?),
        (1, 1)
    );
    service.stop().await
}

#[tokio::test]
async fn a_failed_provision_is_undone_once_and_released_only_after_the_destroy_is_confirmed(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let (sim, faults, provider) = faulty_sim(Duration::ZERO);
    let service = env
        .provisioner_on(fast_settings(), provider, with_pro_quota())
        .await?;
    let acme = tenant("acme");
    // The create makes the machine and then fails: a half-made machine. Its removal
    // fails for a while.
    faults.set("create", Fault::BrokenAfterActing);
    faults.set("destroy", Fault::Outage);
    let vm = env.create(&acme, "web").await?;
    eventually("the undo's destroy to fail a few times", WAIT, || async {
        Ok((faults.calls("destroy") >= 3).then_some(()))
    })
    .await?;
    assert!(
        machine_power(&sim, vm).await?.is_some(),
        "the half-made machine is still there"
    );
    assert_eq!(
        (reserved(&env, &acme).await?, allocated(&env).await?),
        (1, 1),
        "the release waits for the destroy"
    );
    let vms = repository::<berth_provisioner::vm::Vm>(&env);
    let status = vms.load(&acme, vm).await?.state.status;
    assert_ne!(status, Some(berth_schemas::vm::VmStatus::Failed));

    faults.heal("destroy");
    let status = env.wait_vm_status(&acme, vm, VmStatus::Failed).await?;
    let reason = status.reason().unwrap_or_default();
    assert!(
        reason.starts_with("provision failed: injected fault: create broke after it acted"),
        "{reason}"
    );
    assert!(sim.list().await?.is_empty(), "no half-made machine is left");
    eventually("the release", WAIT, || async {
        Ok((reserved(&env, &acme).await? == 0 && allocated(&env).await? == 0).then_some(()))
    })
    .await?;
    // Undone exactly once: one failure, one release of the quota, one of the capacity.
    let vm_events = event_counts(&env, &event_subject(&acme, "vm", vm)).await?;
    assert_eq!(
        vm_events.get("berth.vm.failed.v1"),
        Some(&1),
        "{vm_events:?}"
    );
    let usage = event_counts(&env, &event_subject(&acme, "usage", usage_id(&acme))).await?;
    assert_eq!(usage.get("berth.usage.released.v1"), Some(&1), "{usage:?}");
    let deallocated: usize = {
        let mut total = 0;
        for n in 1..=4 {
            let subject = event_subject(
                &TenantId::system(),
                "server",
                server_id(&format!("sim-host-{n}")),
            );
            total += event_counts(&env, &subject)
                .await?
                .get("berth.server.deallocated.v1")
                .copied()
                .unwrap_or(0);
        }
        total
    };
    assert_eq!(deallocated, 1);
    service.stop().await
}

/// Deliveries the VM reactor's consumer has made, once it has nothing in hand.
async fn deliveries_when_quiet(env: &TestEnv) -> anyhow::Result<u64> {
    let stream = env.js.get_stream("EVENTS").await?;
    eventually("the vm reactor to be quiet", WAIT, || async {
        let info = stream.consumer_info("provisioner-vm").await?;
        Ok((info.num_ack_pending == 0 && info.num_pending == 0)
            .then_some(info.delivered.consumer_sequence))
    })
    .await
}

/// How many events the VMs' subjects hold, together.
async fn vm_events(env: &TestEnv, tenant: &TenantId, vms: &[Uuid]) -> anyhow::Result<u64> {
    let mut total = 0;
    for vm in vms {
        total += event_counts(env, &event_subject(tenant, "vm", *vm))
            .await?
            .values()
            .sum::<usize>() as u64;
    }
    Ok(total)
}

#[tokio::test]
async fn a_call_that_hangs_is_abandoned_at_its_deadline_and_retried_without_a_redelivery(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let (sim, faults, provider) = faulty_sim(Duration::ZERO);
    let ack_wait = Duration::from_secs(2);
    let settings = Settings {
        reactor_ack_wait: ack_wait,
        ..fast_settings()
    };
    let service = env
        .provisioner_on(settings, provider, sim_datacenter())
        .await?;
    let acme = tenant("acme");
    let vm = env.create(&acme, "web").await?;
    env.wait_vm_status(&acme, vm, VmStatus::Running).await?;
    let delivered = deliveries_when_quiet(&env).await?;
    let events = vm_events(&env, &acme, &[vm]).await?;

    faults.set("stop", Fault::HangOnce);
    let started = Instant::now();
    let version = accepted(&env, &acme, &VmCommand::Stop(vm_target(vm))).await?;
    vm_status_after(&env, &acme, vm, VmStatus::Stopped, version).await?;
    let took = started.elapsed();
    assert_eq!(
        faults.abandoned.load(Ordering::SeqCst),
        1,
        "the hung call was dropped"
    );
    assert_eq!(faults.calls("stop"), 2, "and tried again");
    assert_eq!(machine_power(&sim, vm).await?, Some(PowerState::Stopped));
    assert!(
        took >= berth_runtime::reactor::call_deadline_for(ack_wait),
        "stopped after {took:?}, before the deadline"
    );
    // stop_requested twice (the hung attempt, then its retry) and stopped once: the
    // message was never redelivered for its ack wait while the call hung.
    let new_events = vm_events(&env, &acme, &[vm]).await? - events;
    let deliveries = deliveries_when_quiet(&env).await? - delivered;
    assert_eq!(new_events, 2);
    assert_eq!(deliveries, new_events + 1, "one retry, no redelivery");
    service.stop().await
}

#[tokio::test]
async fn waiting_in_line_for_a_provider_slot_spends_no_delivery() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    // Each stop takes 0.4–1.2 s, one at a time: the last of four waits longer than the
    // 2 s ack wait, yet below the 1.5 s call deadline each time.
    let (_sim, _faults, provider) = faulty_sim(Duration::from_millis(800));
    let settings = Settings {
        reactor_ack_wait: Duration::from_secs(2),
        ..fast_settings()
    };
    let config = ProvisionerConfig {
        concurrency: Concurrency {
            provisions: 4,
            control_ops: 1,
        },
        ..sim_datacenter()
    };
    let service = env.provisioner_on(settings, provider, config).await?;
    let acme = tenant("acme");
    let mut vms = Vec::new();
    for n in 0..4 {
        vms.push(env.create(&acme, &format!("vm-{n}")).await?);
    }
    for vm in &vms {
        env.wait_vm_status(&acme, *vm, VmStatus::Running).await?;
    }
    let delivered = deliveries_when_quiet(&env).await?;
    let events = vm_events(&env, &acme, &vms).await?;

    let started = Instant::now();
    let stops: Vec<VmCommand> = vms
        .iter()
        .map(|vm| VmCommand::Stop(vm_target(*vm)))
        .collect();
    futures::future::try_join_all(stops.iter().map(|stop| accepted(&env, &acme, stop))).await?;
    for vm in &vms {
        env.wait_vm_status(&acme, *vm, VmStatus::Stopped).await?;
    }
    let took = started.elapsed();
    let new_events = vm_events(&env, &acme, &vms).await? - events;
    let deliveries = deliveries_when_quiet(&env).await? - delivered;
    assert_eq!(new_events, 8, "a stop_requested and a stopped per vm");
    assert_eq!(
        deliveries, new_events,
        "every event delivered once although the stops took {took:?} in line"
    );
    service.stop().await
}

/// The sim pod runtime behind the switchboard.
struct FaultyPods {
    sim: Arc<SimRuntime>,
    faults: Arc<Switchboard>,
}

impl FaultyPods {
    async fn call<T>(
        &self,
        operation: &'static str,
        call: impl std::future::Future<Output = Result<T, RuntimeError>>,
    ) -> Result<T, RuntimeError> {
        match self.faults.before(operation).await {
            Ok(_) => call.await,
            Err(reason) if self.faults.outage(operation) => Err(RuntimeError::Transient(reason)),
            Err(reason) => Err(RuntimeError::Permanent(reason)),
        }
    }
}

#[async_trait]
impl PodRuntime for FaultyPods {
    fn name(&self) -> &'static str {
        self.sim.name()
    }
    async fn ensure_volume(&self, spec: &WorkloadSpec) -> Result<String, RuntimeError> {
        self.call("ensure_volume", self.sim.ensure_volume(spec))
            .await
    }
    async fn delete_volume(&self, tenant: &TenantId, pod_id: Uuid) -> Result<(), RuntimeError> {
        self.call("delete_volume", self.sim.delete_volume(tenant, pod_id))
            .await
    }
    async fn deploy(&self, spec: &WorkloadSpec, replicas: u32) -> Result<String, RuntimeError> {
        self.call("deploy", self.sim.deploy(spec, replicas)).await
    }
    async fn restart(&self, spec: &WorkloadSpec) -> Result<(), RuntimeError> {
        self.call("restart", self.sim.restart(spec)).await
    }
    async fn scale(&self, spec: &WorkloadSpec, replicas: u32) -> Result<(), RuntimeError> {
        self.call("scale", self.sim.scale(spec, replicas)).await
    }
    async fn delete_workload(&self, tenant: &TenantId, pod_id: Uuid) -> Result<(), RuntimeError> {
        self.call("delete_workload", self.sim.delete_workload(tenant, pod_id))
            .await
    }
    async fn health(&self, spec: &WorkloadSpec) -> Result<Health, RuntimeError> {
        self.sim.health(spec).await
    }
    async fn logs(
        &self,
        tenant: &TenantId,
        pod_id: Uuid,
        tail: Option<u32>,
        since: Option<DateTime<Utc>>,
    ) -> Result<String, RuntimeError> {
        self.sim.logs(tenant, pod_id, tail, since).await
    }
    async fn inventory(&self) -> Result<Vec<RuntimeObject>, RuntimeError> {
        self.sim.inventory().await
    }
    async fn remove(&self, object: &RuntimeObject) -> Result<(), RuntimeError> {
        self.sim.remove(object).await
    }
}

const DATA: &str = "/home/node/.n8n/workflows.json";

#[tokio::test]
async fn a_pod_whose_restart_fails_keeps_its_data_and_is_degraded() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let sim = Arc::new(SimRuntime::default());
    let faults = Arc::new(Switchboard::default());
    let runtime = Arc::new(FaultyPods {
        sim: sim.clone(),
        faults: faults.clone(),
    });
    let pods = env
        .pod_lifecycle(fast_settings(), runtime, pod_config(Default::default()))
        .await?;
    let acme = tenant("acme");
    let id = env.create_pod(&acme, "flows", "n8n", "basic").await?;
    env.wait_pod_status(&acme, id, PodStatus::Running).await?;
    sim.write_file(id, DATA, "[1, 2, 3]")?;

    faults.set("restart", Fault::Broken);
    let restart = PodCommand::Restart(PodTarget {
        pod_id: id,
        expected_version: None,
    });
    let status = env
        .pod_command_until(&acme, &restart, PodStatus::Degraded)
        .await?;
    let reason = status.reason().unwrap_or_default();
    assert!(
        reason.starts_with("restart failed after 1 attempt: injected fault: restart is broken"),
        "{reason}"
    );
    assert_eq!(sim.read_file(id, DATA).as_deref(), Some("[1, 2, 3]"));
    assert_eq!(sim.replicas(id), Some(1), "the workload is still there");
    assert_eq!(faults.calls("delete_workload"), 0);
    assert_eq!(faults.calls("delete_volume"), 0);

    // Its owner restarts it again once the runtime works.
    faults.heal("restart");
    env.pod_command_until(&acme, &restart, PodStatus::Running)
        .await?;
    assert_eq!(sim.read_file(id, DATA).as_deref(), Some("[1, 2, 3]"));
    pods.stop().await
}

#[tokio::test]
async fn a_pod_whose_first_deploy_fails_is_undone() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let sim = Arc::new(SimRuntime::default());
    let faults = Arc::new(Switchboard::default());
    let runtime = Arc::new(FaultyPods {
        sim: sim.clone(),
        faults: faults.clone(),
    });
    let pods = env
        .pod_lifecycle(fast_settings(), runtime, pod_config(Default::default()))
        .await?;
    let acme = tenant("acme");
    // The volume is made, then the workload is refused: half a pod.
    faults.set("deploy", Fault::Broken);
    let id = env.create_pod(&acme, "flows", "n8n", "basic").await?;
    let status = env.wait_pod_status(&acme, id, PodStatus::Failed).await?;
    let reason = status.reason().unwrap_or_default();
    assert!(
        reason.starts_with("deploy failed: injected fault: deploy is broken"),
        "{reason}"
    );
    assert!(!sim.has_volume(id), "the half-made volume is removed");
    assert_eq!(sim.replicas(id), None);
    let events = event_counts(&env, &event_subject(&acme, "pod", id)).await?;
    assert_eq!(events.get("berth.pod.failed.v1"), Some(&1), "{events:?}");
    pods.stop().await
}
