//! A create is reserve quota → place on a server → provider create → start. A permanent
//! failure while the machine is half made (placement, the provider's create) undoes the
//! steps before it; once the machine exists, a failure leaves it (and its quota and
//! capacity) alone and the VM `degraded` (DESIGN §7). A step that runs twice (its reply
//! lost after it acted, so it is repeated) doubles nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use berth_provisioner::provider::VmProvider;
use berth_provisioner::server::Server;
use berth_provisioner::sim::{SimConfig, SimProvider};
use berth_provisioner::usage::Usage;
use berth_provisioner::vm::Vm;
use berth_provisioner::ProvisionerConfig;
use berth_runtime::store::{EventStore, Repository};
use berth_runtime::Settings;
use berth_schemas::server::server_id;
use berth_schemas::subjects::event_subject;
use berth_schemas::usage::{usage_id, Tier};
use berth_schemas::vm::{CreateVm, Plan, VmCommand, VmStatus, VmTarget};
use berth_schemas::TenantId;
use berth_tests::{accepted_id, eventually, fast_settings, meta, sim_datacenter, tenant, TestEnv};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

fn repository<A: berth_runtime::store::Aggregate>(env: &TestEnv) -> Repository<A> {
    Repository::new(EventStore::new(env.js.clone(), "EVENTS"), "test")
}

/// What the default sim servers hold, summed.
async fn allocated(env: &TestEnv) -> anyhow::Result<usize> {
    let servers = repository::<Server>(env);
    let mut total = 0;
    for n in 1..=4 {
        let id = server_id(&format!("sim-host-{n}"));
        total += servers
            .load(&TenantId::system(), id)
            .await?
            .state
            .allocations
            .len();
    }
    Ok(total)
}

async fn reserved(env: &TestEnv, tenant: &TenantId) -> anyhow::Result<usize> {
    let usage = repository::<Usage>(env);
    Ok(usage
        .load(tenant, usage_id(tenant))
        .await?
        .state
        .reservations
        .len())
}

async fn settled(env: &TestEnv, tenant: &TenantId, id: Uuid) -> anyhow::Result<Vm> {
    let vms = repository::<Vm>(env);
    eventually(&format!("vm {id} to settle"), WAIT, || async {
        let vm = vms.load(tenant, id).await?.state.clone();
        Ok(vm.status.filter(|s| s.is_settled()).map(|_| vm))
    })
    .await
}

fn with_pro_quota() -> ProvisionerConfig {
    ProvisionerConfig {
        default_limits: Some(Tier::Pro.limits()),
        ..sim_datacenter()
    }
}

#[tokio::test]
async fn a_permanent_failure_before_the_machine_exists_unwinds_the_steps_before_it(
) -> anyhow::Result<()> {
    // (the failing step, how it is made to fail, the reason the VM shows)
    let cases: [(&str, Option<&str>, Option<&str>, &str); 2] = [
        (
            "place",
            None,
            Some("nowhere"),
            "placement failed: no active sim server in region nowhere",
        ),
        (
            "create",
            Some("create"),
            None,
            "provision failed: simulated fault: create",
        ),
    ];
    for (step, broken, region, reason) in cases {
        let env = TestEnv::start().await?;
        let sim = Arc::new(SimProvider::new(SimConfig {
            latency: Duration::ZERO,
            broken: broken.into_iter().map(str::to_owned).collect(),
            ..SimConfig::default()
        }));
        let service = env
            .provisioner_on(fast_settings(), sim.clone(), with_pro_quota())
            .await?;
        let acme = tenant("acme");
        let create = VmCommand::Create(CreateVm {
            region: region.map(str::to_owned),
            ..CreateVm::with_plan("web", Plan::Small, "debian-12")
        });
        let vm = accepted_id(&env.send(&acme, &meta(), &create).await?).expect("accepted");
        let failed = settled(&env, &acme, vm).await?;
        assert_eq!(failed.status, Some(VmStatus::Failed), "{step}");
        let shown = failed.reason.unwrap_or_default();
        assert!(shown.starts_with(reason), "{step}: {shown}");
        assert_eq!(
            reserved(&env, &acme).await?,
            0,
            "{step}: the quota is released"
        );
        assert_eq!(
            allocated(&env).await?,
            0,
            "{step}: the server capacity is released"
        );
        assert!(
            sim.list().await?.is_empty(),
            "{step}: no half-made machine is left"
        );
        // The status people see says why, and the failed VM can still be destroyed.
        let status = env.wait_vm_status(&acme, vm, VmStatus::Failed).await?;
        assert_eq!(status.reason(), Some(shown.as_str()), "{step}");
        let destroy = VmCommand::Destroy(VmTarget {
            vm_id: vm,
            expected_version: None,
        });
        assert!(accepted_id(&env.send(&acme, &meta(), &destroy).await?).is_some());
        env.wait_vm_status(&acme, vm, VmStatus::Destroyed).await?;
        service.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_permanent_failure_to_start_leaves_the_new_machine_its_quota_and_capacity(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let sim = Arc::new(SimProvider::new(SimConfig {
        latency: Duration::ZERO,
        broken: vec!["start".into()],
        ..SimConfig::default()
    }));
    let service = env
        .provisioner_on(fast_settings(), sim.clone(), with_pro_quota())
        .await?;
    let acme = tenant("acme");
    let create = VmCommand::Create(CreateVm::with_plan("web", Plan::Small, "debian-12"));
    let vm = accepted_id(&env.send(&acme, &meta(), &create).await?).expect("accepted");
    let degraded = settled(&env, &acme, vm).await?;
    assert_eq!(degraded.status, Some(VmStatus::Degraded));
    let shown = degraded.reason.unwrap_or_default();
    assert!(
        shown.starts_with("start failed after 1 attempt: simulated fault: start"),
        "{shown}"
    );
    assert_eq!(sim.list().await?.len(), 1, "the machine is kept");
    assert_eq!(reserved(&env, &acme).await?, 1, "the quota stays held");
    assert_eq!(allocated(&env).await?, 1, "the capacity stays held");
    let status = env.wait_vm_status(&acme, vm, VmStatus::Degraded).await?;
    assert_eq!(status.reason(), Some(shown.as_str()));
    // A destroy removes the machine, and only then gives the quota and capacity back.
    let destroy = VmCommand::Destroy(VmTarget {
        vm_id: vm,
        expected_version: None,
    });
    assert!(accepted_id(&env.send(&acme, &meta(), &destroy).await?).is_some());
    env.wait_vm_status(&acme, vm, VmStatus::Destroyed).await?;
    assert!(sim.list().await?.is_empty());
    assert_eq!(reserved(&env, &acme).await?, 0);
    assert_eq!(allocated(&env).await?, 0);
    service.stop().await
}

#[tokio::test]
async fn steps_that_run_twice_because_their_replies_were_lost_double_nothing() -> anyhow::Result<()>
{
    let env = TestEnv::start().await?;
    // A third of the provider's replies are lost after the call acted: the reactor repeats
    // calls that already took effect.
    let sim = Arc::new(SimProvider::new(SimConfig {
        latency: Duration::ZERO,
        lost_reply_rate: 0.35,
        ..SimConfig::default()
    }));
    let settings = Settings {
        reactor_max_deliver: 40,
        ..fast_settings()
    };
    let service = env
        .provisioner_on(settings, sim.clone(), sim_datacenter())
        .await?;
    let acme = tenant("acme");
    let mut vms = Vec::new();
    for n in 0..12 {
        vms.push(env.create(&acme, &format!("vm-{n}")).await?);
    }
    for vm in &vms {
        let vm = settled(&env, &acme, *vm).await?;
        assert_eq!(vm.status, Some(VmStatus::Running), "{:?}", vm.reason);
    }
    assert_eq!(sim.list().await?.len(), vms.len(), "one machine per vm");
    assert_eq!(allocated(&env).await?, vms.len(), "one allocation per vm");
    assert_eq!(
        reserved(&env, &acme).await?,
        vms.len(),
        "one reservation per vm"
    );
    let store = EventStore::new(env.js.clone(), "EVENTS");
    for vm in &vms {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for event in store.read(&event_subject(&acme, "vm", *vm), 0).await? {
            *counts.entry(event.meta.event_type).or_default() += 1;
        }
        for event_type in [
            "berth.vm.placed.v1",
            "berth.vm.provisioned.v1",
            "berth.vm.started.v1",
        ] {
            assert_eq!(counts.get(event_type), Some(&1), "{vm}: {counts:?}");
        }
    }
    service.stop().await
}

#[tokio::test]
async fn provider_calls_stay_within_the_processes_concurrency_limits() -> anyhow::Result<()> {
    use berth_provisioner::reactor::Concurrency;
    let env = TestEnv::start().await?;
    let sim = Arc::new(SimProvider::new(SimConfig {
        latency: Duration::from_millis(60),
        ..SimConfig::default()
    }));
    let config = ProvisionerConfig {
        concurrency: Concurrency {
            provisions: 2,
            control_ops: 3,
        },
        ..sim_datacenter()
    };
    let service = env
        .provisioner_on(fast_settings(), sim.clone(), config)
        .await?;
    let acme = tenant("acme");
    let names: Vec<String> = (0..10).map(|n| format!("vm-{n}")).collect();
    let vms =
        futures::future::try_join_all(names.iter().map(|name| env.create(&acme, name))).await?;
    for vm in &vms {
        env.wait_vm_status(&acme, *vm, VmStatus::Running).await?;
    }
    assert_eq!(
        sim.max_in_flight("create"),
        2,
        "creates are bounded by --max-provisions"
    );
    let stops: Vec<_> = vms
        .iter()
        .map(|vm| {
            let stop = VmCommand::Stop(VmTarget {
                vm_id: *vm,
                expected_version: None,
            });
            (meta(), stop)
        })
        .collect();
    futures::future::try_join_all(stops.iter().map(|(m, stop)| env.send(&acme, m, stop))).await?;
    for vm in &vms {
        env.wait_vm_status(&acme, *vm, VmStatus::Stopped).await?;
    }
    let stops_at_once = sim.max_in_flight("stop");
    assert!(
        (1..=3).contains(&stops_at_once),
        "stops in flight at once: {stops_at_once}"
    );
    assert!(sim.max_in_flight("start") <= 3);
    service.stop().await
}
