//! Per-tenant quotas, enforced at command time through the `usage` aggregate.

use std::time::Duration;

use berth_provisioner::sim::SimConfig;
use berth_provisioner::usage::Usage;
use berth_provisioner::ProvisionerConfig;
use berth_runtime::client::{send_command, wait_for_status};
use berth_runtime::store::Repository;
use berth_runtime::{EventStore, Settings};
use berth_schemas::status::{Status, VmState};
use berth_schemas::subjects::{event_subject, status_subject, StatusKind};
use berth_schemas::usage::{usage_id, LimitOverrides, SetQuota, TenantCommand, Tier};
use berth_schemas::vm::{VmCommand, VmStatus, VmTarget};
use berth_schemas::{CommandReply, RejectionCode, TenantId};
use berth_tests::{
    accepted_id, create_vm, eventually, fast_settings, instant_sim, meta, sim_datacenter, tenant,
    TestEnv,
};
use futures::future::join_all;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

fn free_by_default() -> ProvisionerConfig {
    ProvisionerConfig {
        default_limits: Some(Tier::Free.limits()),
        ..sim_datacenter()
    }
}

async fn set_quota(
    env: &TestEnv,
    to: &TenantId,
    sent_as: &TenantId,
    tier: Tier,
    overrides: LimitOverrides,
) -> anyhow::Result<CommandReply> {
    let command = TenantCommand::SetQuota(SetQuota {
        tenant: to.clone(),
        tier,
        overrides,
    });
    Ok(send_command(
        &env.client,
        sent_as,
        "tenant",
        "set_quota",
        &meta(),
        command.body(),
    )
    .await?)
}

#[tokio::test]
async fn the_free_tiers_second_vm_is_refused_and_destroying_frees_the_quota() -> anyhow::Result<()>
{
    let env = TestEnv::start().await?;
    let service = env
        .provisioner_with(fast_settings(), instant_sim(), free_by_default())
        .await?;
    let acme = tenant("acme");
    let first = accepted_id(&env.send(&acme, &meta(), &create_vm("one")).await?)
        .expect("the first vm fits the free tier");
    let second = env.send(&acme, &meta(), &create_vm("two")).await?;
    let rejection = second.rejection().expect("the second vm must be refused");
    assert_eq!(rejection.code, RejectionCode::QuotaExceeded);
    assert!(
        rejection.message.contains("1 allowed"),
        "{}",
        rejection.message
    );

    // Another tenant has its own quota.
    assert!(accepted_id(
        &env.send(&tenant("globex"), &meta(), &create_vm("one"))
            .await?
    )
    .is_some());

    env.wait_vm_status(&acme, first, VmStatus::Running).await?;
    env.send(
        &acme,
        &meta(),
        &VmCommand::Destroy(VmTarget {
            vm_id: first,
            expected_version: None,
        }),
    )
    .await?;
    env.wait_vm_status(&acme, first, VmStatus::Destroyed)
        .await?;
    assert!(
        accepted_id(&env.send(&acme, &meta(), &create_vm("two")).await?).is_some(),
        "destroying freed the quota"
    );
    service.stop().await
}

#[tokio::test]
async fn only_operators_set_quotas_and_overrides_apply() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let service = env
        .provisioner_with(fast_settings(), instant_sim(), free_by_default())
        .await?;
    let acme = tenant("acme");
    let forbidden = set_quota(&env, &acme, &acme, Tier::Pro, LimitOverrides::default()).await?;
    assert_eq!(
        forbidden.rejection().map(|r| r.code),
        Some(RejectionCode::Forbidden)
    );

    let set = set_quota(
        &env,
        &acme,
        &TenantId::system(),
        Tier::Free,
        LimitOverrides {
            vms: Some(2),
            ..Default::default()
        },
    )
    .await?;
    assert!(accepted_id(&set).is_some(), "{set:?}");
    assert!(accepted_id(&env.send(&acme, &meta(), &create_vm("one")).await?).is_some());
    assert!(accepted_id(&env.send(&acme, &meta(), &create_vm("two")).await?).is_some());
    let third = env.send(&acme, &meta(), &create_vm("three")).await?;
    assert_eq!(
        third.rejection().map(|r| r.code),
        Some(RejectionCode::QuotaExceeded)
    );
    service.stop().await
}

#[tokio::test]
async fn forty_concurrent_creates_never_exceed_the_quota_and_leave_no_stray_reservation(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let service = env
        .provisioner_with(fast_settings(), instant_sim(), free_by_default())
        .await?;
    let acme = tenant("acme");
    set_quota(
        &env,
        &acme,
        &TenantId::system(),
        Tier::Pro,
        LimitOverrides::default(),
    )
    .await?;
    let commands: Vec<_> = (0..40)
        .map(|i| (meta(), create_vm(&format!("vm-{i}"))))
        .collect();
    let replies = join_all(commands.iter().map(|(m, c)| env.send(&acme, m, c))).await;
    let mut winners = Vec::new();
    for reply in replies {
        let reply = reply?;
        match accepted_id(&reply) {
            Some(id) => winners.push(id),
            None => assert!(
                matches!(
                    reply.rejection().map(|r| r.code),
                    Some(RejectionCode::QuotaExceeded | RejectionCode::Conflict)
                ),
                "{reply:?}"
            ),
        }
    }
    assert_eq!(winners.len(), 3, "the pro tier holds 3 VMs");
    let store = EventStore::new(env.js.clone(), "EVENTS");
    let usage = Repository::<Usage>::new(store.clone(), "test")
        .load(&acme, usage_id(&acme))
        .await?;
    let mut reserved: Vec<Uuid> = usage.state.reservations.keys().copied().collect();
    reserved.sort();
    winners.sort();
    assert_eq!(
        reserved, winners,
        "reservations are exactly the accepted VMs"
    );
    for ((command_meta, command), _) in commands.iter().zip(0..) {
        let id = command.vm_id(command_meta.id);
        let exists = !store
            .read(&event_subject(&acme, "vm", id), 0)
            .await?
            .is_empty();
        assert_eq!(
            exists,
            winners.contains(&id),
            "vm {id}: a refused create left events, or an accepted one none"
        );
    }
    service.stop().await
}

#[tokio::test]
async fn a_vm_that_fails_for_good_gives_its_quota_back() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    // For good: a create that can never work. (A transient failure is never given up
    // on; the VM stays degraded with its quota until it is destroyed.)
    let failing = SimConfig {
        latency: Duration::ZERO,
        broken: vec!["create".into()],
        ..SimConfig::default()
    };
    let settings = Settings {
        reactor_max_deliver: 2,
        ..fast_settings()
    };
    let service = env
        .provisioner_with(settings, failing, free_by_default())
        .await?;
    let acme = tenant("acme");
    let id = accepted_id(&env.send(&acme, &meta(), &create_vm("doomed")).await?).expect("accepted");
    env.wait_vm_status(&acme, id, VmStatus::Failed).await?;
    let usage = Repository::<Usage>::new(EventStore::new(env.js.clone(), "EVENTS"), "test");
    eventually(
        "the failed vm's reservation to be released",
        WAIT,
        || async {
            Ok(usage
                .load(&acme, usage_id(&acme))
                .await?
                .state
                .reservations
                .is_empty()
                .then_some(()))
        },
    )
    .await?;
    assert!(accepted_id(&env.send(&acme, &meta(), &create_vm("again")).await?).is_some());
    service.stop().await
}

#[tokio::test]
async fn resize_needs_a_stopped_vm_and_rechecks_the_quota() -> anyhow::Result<()> {
    use berth_schemas::vm::{Plan, ResizeVm};
    let env = TestEnv::start().await?;
    let service = env
        .provisioner_with(fast_settings(), instant_sim(), free_by_default())
        .await?;
    let acme = tenant("acme");
    let id = accepted_id(&env.send(&acme, &meta(), &create_vm("web")).await?).expect("accepted");
    env.wait_vm_status(&acme, id, VmStatus::Running).await?;
    let resize = |plan| {
        VmCommand::Resize(ResizeVm {
            vm_id: id,
            expected_version: None,
            plan: Some(plan),
            vcpus: None,
            memory_mb: None,
            disk_gb: None,
        })
    };
    let running = env.send(&acme, &meta(), &resize(Plan::Medium)).await?;
    assert_eq!(
        running.rejection().map(|r| r.code),
        Some(RejectionCode::InvalidState)
    );

    env.send(
        &acme,
        &meta(),
        &VmCommand::Stop(VmTarget {
            vm_id: id,
            expected_version: None,
        }),
    )
    .await?;
    env.wait_vm_status(&acme, id, VmStatus::Stopped).await?;
    // The free tier allows 2 vCPUs, 4 GB, 20 GB: large (4 / 8 GB / 80 GB) does not fit.
    let too_big = env.send(&acme, &meta(), &resize(Plan::Large)).await?;
    assert_eq!(
        too_big.rejection().map(|r| r.code),
        Some(RejectionCode::QuotaExceeded)
    );
    let resized = env
        .send(
            &acme,
            &meta(),
            &VmCommand::Resize(ResizeVm {
                vm_id: id,
                expected_version: None,
                plan: None,
                vcpus: Some(2),
                memory_mb: Some(4096),
                disk_gb: Some(20),
            }),
        )
        .await?;
    let CommandReply::Accepted { version, .. } = resized else {
        panic!("{resized:?}")
    };
    let subject = status_subject(&acme, StatusKind::Vm, &id.to_string())?;
    let status = wait_for_status(&env.client, &subject, WAIT, |s: &Status<VmState>| {
        s.version > version && s.state.status == VmStatus::Stopped
    })
    .await?;
    assert_eq!((status.state.vcpus, status.state.memory_mb), (2, 4096));
    let usage = Repository::<Usage>::new(EventStore::new(env.js.clone(), "EVENTS"), "test")
        .load(&acme, usage_id(&acme))
        .await?;
    assert_eq!(
        usage.state.in_use().vcpus,
        2,
        "the reservation moved to the new size"
    );
    service.stop().await
}
