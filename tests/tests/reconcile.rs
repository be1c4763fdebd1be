//! Reconciliation: machines lost behind berth's back are recorded and made again;
//! machines no VM owns are reported once and removed only when asked. On the simulated
//! datacenter and on the real Docker engine.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use berth_provisioner::docker::{DockerConfig, DockerProvider, LABEL_HOST, LABEL_MANAGED};
use berth_provisioner::provider::VmProvider;
use berth_provisioner::sim::SimProvider;
use berth_provisioner::ProvisionerConfig;
use berth_runtime::store::{EventStore, StoredEvent};
use berth_schemas::orphan::{orphan_id, ReconcileReport};
use berth_schemas::subjects::{event_subject, RECONCILE_SUBJECT};
use berth_schemas::vm::{CreateVm, Plan, VmCommand, VmStatus};
use berth_schemas::TenantId;
use berth_tests::{
    accepted_id, docker_server, eventually, fast_settings, instant_sim, meta, sim_datacenter,
    tenant, TestEnv,
};
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use bollard::Docker;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

async fn reconcile(env: &TestEnv, clean_orphans: bool) -> anyhow::Result<ReconcileReport> {
    let body = serde_json::to_vec(&serde_json::json!({ "clean_orphans": clean_orphans }))?;
    let reply = berth_runtime::client::request(&env.client, RECONCILE_SUBJECT, body).await?;
    Ok(serde_json::from_slice(&reply.payload)?)
}

async fn events_of(env: &TestEnv, subject: &str) -> anyhow::Result<Vec<StoredEvent>> {
    Ok(EventStore::new(env.js.clone(), "EVENTS")
        .read(subject, 0)
        .await?)
}

fn types(events: &[StoredEvent]) -> Vec<&str> {
    events.iter().map(|e| e.meta.event_type.as_str()).collect()
}

#[tokio::test]
async fn a_lost_machine_is_made_again_and_a_stray_one_is_an_orphan_until_cleaned(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let sim = Arc::new(SimProvider::new(instant_sim()));
    let service = env
        .provisioner_on(fast_settings(), sim.clone(), sim_datacenter())
        .await?;
    let acme = tenant("acme");
    let vm = env.create(&acme, "web").await?;
    env.wait_vm_status(&acme, vm, VmStatus::Running).await?;
    let machine = format!("berth-vm-{vm}");

    let quiet = reconcile(&env, false).await?;
    assert!(
        quiet.lost.is_empty() && quiet.orphans.is_empty(),
        "{quiet:?}"
    );
    assert_eq!((quiet.machines, quiet.vms_checked), (1, 1));

    assert!(sim.lose(&machine), "the sim had the machine");
    let report = reconcile(&env, false).await?;
    assert_eq!(
        report.lost.iter().map(|l| l.vm_id).collect::<Vec<_>>(),
        vec![vm]
    );
    eventually("the lost machine to be made again", WAIT, || async {
        Ok(sim
            .inspect(&machine)
            .await?
            .filter(|m| m.power == berth_provisioner::provider::PowerState::Running))
    })
    .await?;
    env.wait_vm_status(&acme, vm, VmStatus::Running).await?;
    let history = events_of(&env, &event_subject(&acme, "vm", vm)).await?;
    let tail: Vec<&str> = types(&history).into_iter().rev().take(3).collect();
    assert_eq!(
        tail,
        [
            "berth.vm.started.v1",
            "berth.vm.provisioned.v1",
            "berth.vm.lost.v1"
        ]
    );

    let stray = format!("berth-vm-{}", Uuid::now_v7());
    sim.start_stray(&stray, "sim-host-1");
    for _ in 0..2 {
        let report = reconcile(&env, false).await?;
        assert_eq!(report.orphans, vec![stray.clone()], "{report:?}");
        assert!(report.removed.is_empty() && report.lost.is_empty());
    }
    let orphan_subject = event_subject(&TenantId::system(), "orphan", orphan_id("sim", &stray));
    assert_eq!(
        types(&events_of(&env, &orphan_subject).await?),
        ["berth.orphan.detected.v1"],
        "reported once"
    );
    assert!(
        sim.inspect(&stray).await?.is_some(),
        "reporting removes nothing"
    );

    let cleaned = reconcile(&env, true).await?;
    assert_eq!(cleaned.removed, vec![stray.clone()]);
    assert!(sim.inspect(&stray).await?.is_none());
    assert_eq!(
        types(&events_of(&env, &orphan_subject).await?),
        ["berth.orphan.detected.v1", "berth.orphan.removed.v1"]
    );
    assert!(
        sim.inspect(&machine).await?.is_some(),
        "the vm's own machine stays"
    );

    let refused = berth_runtime::client::request(
        &env.client,
        RECONCILE_SUBJECT,
        br#"{"clean":true}"#.to_vec(),
    )
    .await?;
    let rejection: berth_schemas::Rejection = serde_json::from_slice(&refused.payload)?;
    assert_eq!(rejection.code.as_str(), "invalid");
    service.stop().await
}

#[tokio::test]
async fn on_docker_a_removed_container_comes_back_and_a_hand_made_one_is_reported(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let docker = Docker::connect_with_defaults()?.negotiate_version().await?;
    let server = format!("docker-rec-{}", &Uuid::now_v7().simple().to_string()[24..]);
    let provider = DockerProvider::connect(DockerConfig {
        host_name: server.clone(),
        network_mode: Some("none".into()),
    })
    .await?;
    let config = ProvisionerConfig {
        servers: vec![docker_server(&server)],
        // The periodic loop, not a request, finds the drift here.
        reconcile_every: Some(Duration::from_millis(300)),
        ..ProvisionerConfig::default()
    };
    let service = env
        .provisioner_on(fast_settings(), Arc::new(provider), config)
        .await?;
    let acme = tenant(&format!(
        "rec-{}",
        &Uuid::now_v7().simple().to_string()[24..]
    ));
    let create = VmCommand::Create(CreateVm::with_plan(
        "web",
        Plan::Small,
        "berth/busybox:test",
    ));
    let vm = accepted_id(&env.send(&acme, &meta(), &create).await?).expect("accepted");
    env.wait_vm_status(&acme, vm, VmStatus::Running).await?;
    let name = format!("berth-vm-{vm}");
    let first_id = docker.inspect_container(&name, None).await?.id;

    let force = RemoveContainerOptionsBuilder::new().force(true).build();
    docker.remove_container(&name, Some(force.clone())).await?;
    let lost_and_back = eventually("the container to be made again", WAIT, || async {
        let history = events_of(&env, &event_subject(&acme, "vm", vm)).await?;
        let lost = types(&history).contains(&"berth.vm.lost.v1");
        let running = match docker.inspect_container(&name, None).await {
            Ok(c) => c.state.and_then(|s| s.running) == Some(true) && c.id != first_id,
            Err(_) => false,
        };
        Ok((lost && running).then_some(()))
    })
    .await;
    lost_and_back?;
    env.wait_vm_status(&acme, vm, VmStatus::Running).await?;

    let stray = format!("stray-{}", Uuid::now_v7().simple());
    let labels = HashMap::from([
        (LABEL_MANAGED.to_owned(), "true".to_owned()),
        (LABEL_HOST.to_owned(), server.clone()),
    ]);
    docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(&stray).build()),
            ContainerCreateBody {
                image: Some("berth/busybox:test".into()),
                labels: Some(labels),
                host_config: Some(bollard::models::HostConfig {
                    network_mode: Some("none".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await?;
    docker.start_container(&stray, None).await?;
    let orphan_subject = event_subject(&TenantId::system(), "orphan", orphan_id("docker", &stray));
    let detected = eventually("the hand-made container to be reported", WAIT, || async {
        let events = events_of(&env, &orphan_subject).await?;
        Ok((!events.is_empty()).then_some(events))
    })
    .await?;
    assert_eq!(types(&detected), ["berth.orphan.detected.v1"]);
    assert!(
        docker.inspect_container(&stray, None).await.is_ok(),
        "reported, not removed"
    );

    let cleaned = reconcile(&env, true).await?;
    assert_eq!(cleaned.removed, vec![stray.clone()], "{cleaned:?}");
    assert!(docker.inspect_container(&stray, None).await.is_err());
    docker.remove_container(&name, Some(force)).await?;
    service.stop().await
}

#[tokio::test]
async fn the_built_in_reconcile_schedule_drives_reconciliation() -> anyhow::Result<()> {
    use berth_schemas::schedule::{ScheduleCommand, ScheduleTarget};
    use berth_schemas::CommandSet;
    let env = TestEnv::start().await?;
    let scheduler = env.scheduler(fast_settings()).await?;
    let sim = Arc::new(SimProvider::new(instant_sim()));
    let service = env
        .provisioner_on(fast_settings(), sim.clone(), sim_datacenter())
        .await?;
    let acme = tenant("acme");
    let vm = env.create(&acme, "web").await?;
    env.wait_vm_status(&acme, vm, VmStatus::Running).await?;
    assert!(sim.lose(&format!("berth-vm-{vm}")));

    // Fire the every-minute schedule now rather than wait for the minute.
    let fire = ScheduleCommand::FireNow(ScheduleTarget {
        name: berth_schemas::orphan::RECONCILE_SCHEDULE.into(),
    });
    let reply = berth_runtime::client::send_command(
        &env.client,
        &TenantId::system(),
        "schedule",
        fire.action(),
        &meta(),
        fire.body(),
    )
    .await?;
    assert!(accepted_id(&reply).is_some(), "{reply:?}");
    eventually(
        "the fire to record the vm lost and make it again",
        WAIT,
        || async {
            let history = events_of(&env, &event_subject(&acme, "vm", vm)).await?;
            let lost = types(&history).contains(&"berth.vm.lost.v1");
            let back = sim.inspect(&format!("berth-vm-{vm}")).await?.is_some();
            Ok((lost && back).then_some(()))
        },
    )
    .await?;
    env.wait_vm_status(&acme, vm, VmStatus::Running).await?;
    service.stop().await?;
    scheduler.stop().await
}
