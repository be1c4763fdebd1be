//! Servers and placement: best fit on servers with capacity, drain and decommission, and
//! the invariant that no server and no tenant is ever over its limits — under
//! concurrent creates served by two provisioner replicas.

use std::collections::HashMap;
use std::time::Duration;

use berth_provisioner::server::Server;
use berth_provisioner::sim::SimServers;
use berth_provisioner::usage::Usage;
use berth_provisioner::vm::Vm;
use berth_provisioner::ProvisionerConfig;
use berth_runtime::client::send_command;
use berth_runtime::store::{Aggregate, Repository, StoredEvent};
use berth_runtime::EventStore;
use berth_schemas::server::{server_id, RegisterServer, ServerCommand, ServerEvent, ServerTarget};
use berth_schemas::subjects::event_subject;
use berth_schemas::usage::{usage_id, LimitOverrides, SetQuota, TenantCommand, Tier};
use berth_schemas::vm::{CreateVm, Plan, ResizeVm, VmCommand, VmStatus, VmTarget};
use berth_schemas::{CommandReply, RejectionCode, TenantId};
use berth_tests::{accepted_id, eventually, fast_settings, instant_sim, meta, tenant, TestEnv};
use futures::future::join_all;
use futures::StreamExt;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

async fn server_command(
    env: &TestEnv,
    as_tenant: &TenantId,
    command: ServerCommand,
) -> anyhow::Result<CommandReply> {
    use berth_schemas::CommandSet;
    Ok(send_command(
        &env.client,
        as_tenant,
        "server",
        command.action(),
        &meta(),
        command.body(),
    )
    .await?)
}

fn register(name: &str, region: &str, vcpus: u32) -> ServerCommand {
    ServerCommand::Register(RegisterServer {
        name: name.into(),
        region: region.into(),
        provider: "sim".into(),
        vcpus,
        memory_mb: 8192,
        disk_gb: 200,
        cpu_overcommit: 1.0,
        memory_overcommit: 1.0,
    })
}

fn target(name: &str) -> ServerTarget {
    ServerTarget {
        name: name.into(),
        expected_version: None,
    }
}

/// A provisioner with no servers of its own: the test registers them.
fn no_servers() -> ProvisionerConfig {
    ProvisionerConfig::default()
}

fn vm_target(vm_id: Uuid) -> VmTarget {
    VmTarget {
        vm_id,
        expected_version: None,
    }
}

async fn load_vm(env: &TestEnv, tenant: &TenantId, id: Uuid) -> anyhow::Result<Vm> {
    let vms = Repository::<Vm>::new(EventStore::new(env.js.clone(), "EVENTS"), "test");
    Ok(vms.load(tenant, id).await?.state.clone())
}

/// Every event on `filter`, in stream order.
async fn all_events(env: &TestEnv, filter: &str) -> anyhow::Result<Vec<StoredEvent>> {
    use async_nats::jetstream::consumer::pull::OrderedConfig;
    let last = env.last_sequence_of(filter).await?;
    let mut events = Vec::new();
    if last == 0 {
        return Ok(events);
    }
    let stream = env.js.get_stream("EVENTS").await?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: filter.to_owned(),
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        let event = StoredEvent::from_jetstream(&message?)?;
        let done = event.sequence >= last;
        events.push(event);
        if done {
            break;
        }
    }
    Ok(events)
}

#[tokio::test]
async fn two_hundred_concurrent_creates_on_two_replicas_never_overcommit_a_server_or_a_quota(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    // Two replicas share the command queue group and the reactor's durable consumer.
    let first = env
        .provisioner_with(fast_settings(), instant_sim(), no_servers())
        .await?;
    let second = env
        .provisioner_with(fast_settings(), instant_sim(), no_servers())
        .await?;
    let system = TenantId::system();
    // 5 servers, 3 to 6 vCPU each: 22 vCPU in all for 200 one-vCPU VMs.
    let capacity: HashMap<Uuid, u64> = [3, 4, 4, 5, 6]
        .iter()
        .enumerate()
        .map(|(n, vcpus)| (server_id(&format!("host-{n}")), *vcpus))
        .collect();
    for (n, vcpus) in [3, 4, 4, 5, 6].iter().enumerate() {
        let reply = server_command(
            &env,
            &system,
            register(&format!("host-{n}"), "eu-1", *vcpus),
        )
        .await?;
        assert!(accepted_id(&reply).is_some(), "{reply:?}");
    }
    // acme: pro (3 VMs); globex: 8 VMs; initech: no VM limit to speak of.
    let quotas = [("acme", 3u32), ("globex", 8), ("initech", 500)];
    for (name, vms) in quotas {
        let command = TenantCommand::SetQuota(SetQuota {
            tenant: tenant(name),
            tier: Tier::Pro,
            overrides: LimitOverrides {
                vms: Some(vms),
                vcpus: Some(vms),
                memory_mb: Some(vms * 1024),
                disk_gb: Some(vms * 10),
            },
        });
        let reply = send_command(
            &env.client,
            &system,
            "tenant",
            "set_quota",
            &meta(),
            command.body(),
        )
        .await?;
        assert!(accepted_id(&reply).is_some(), "{reply:?}");
    }

    let creates = (0..200).map(|n| {
        let (name, _) = quotas[n % 3];
        let env = &env;
        async move {
            let create = VmCommand::Create(CreateVm {
                region: Some("eu-1".into()),
                ..CreateVm::with_plan(format!("vm-{n}"), Plan::Small, "debian-12")
            });
            let reply = env.send(&tenant(name), &meta(), &create).await?;
            anyhow::Ok((name, reply))
        }
    });
    let replies = join_all(creates).await;
    let mut accepted: Vec<(&str, Uuid)> = Vec::new();
    for reply in replies {
        let (name, reply) = reply?;
        match &reply {
            CommandReply::Accepted { aggregate_id, .. } => accepted.push((name, *aggregate_id)),
            CommandReply::Rejected(rejection) => {
                assert_eq!(
                    rejection.code,
                    RejectionCode::QuotaExceeded,
                    "{rejection:?}"
                );
            }
        }
    }
    for (name, vms) in quotas {
        let count = accepted.iter().filter(|(t, _)| *t == name).count();
        assert!(
            count as u32 <= vms,
            "{name} got {count} VMs, its quota is {vms}"
        );
    }

    // Every accepted VM settles: running, or failed because no server had room.
    let mut running = HashMap::<Uuid, u64>::new();
    for (name, id) in &accepted {
        let vm = eventually(&format!("vm {id} to settle"), WAIT, || async {
            let vm = load_vm(&env, &tenant(name), *id).await?;
            Ok(vm.status.filter(|s| s.is_settled()).map(|_| vm))
        })
        .await?;
        match vm.status {
            Some(VmStatus::Running) => {
                *running
                    .entry(vm.server_id.expect("a running vm is placed"))
                    .or_default() += 1;
            }
            Some(VmStatus::Failed) => {
                let reason = vm.reason.unwrap_or_default();
                assert!(
                    reason.starts_with("placement failed: none of the 5"),
                    "{reason}"
                );
            }
            other => panic!("vm {id} settled as {other:?}"),
        }
    }
    let total_capacity: u64 = capacity.values().sum();
    assert_eq!(
        running.values().sum::<u64>(),
        total_capacity.min(accepted.len() as u64),
        "every server is filled before a placement fails"
    );

    // No server was over capacity at any point of its history, and at the end each
    // holds exactly the running VMs placed on it.
    for (id, cap) in &capacity {
        let mut server = Server::default();
        for event in all_events(&env, &event_subject(&TenantId::system(), "server", *id)).await? {
            server.apply(&event.decode::<ServerEvent>()?);
            assert!(
                server.used().vcpus <= *cap,
                "server {id} overcommitted: {:?}",
                server.used()
            );
        }
        assert_eq!(
            server.allocations.len() as u64,
            running.get(id).copied().unwrap_or(0)
        );
    }
    // Each tenant's reservations are exactly its running VMs (failed ones gave theirs back).
    let usage = Repository::<Usage>::new(EventStore::new(env.js.clone(), "EVENTS"), "test");
    for (name, _) in quotas {
        let held = usage
            .load(&tenant(name), usage_id(&tenant(name)))
            .await?
            .state
            .reservations
            .len();
        let mut live = 0;
        for (_, id) in accepted.iter().filter(|(t, _)| *t == name) {
            live += usize::from(
                load_vm(&env, &tenant(name), *id).await?.status == Some(VmStatus::Running),
            );
        }
        assert_eq!(held, live, "{name}'s reservations");
    }
    // The projection agrees once it has caught up.
    eventually("the servers projection to match the log", WAIT, || async {
        let rows = berth_provisioner::servers_projection::list(&first.db).await?;
        let matches = rows.len() == 5
            && rows.iter().all(|row| {
                row.used_vcpus as u64 == running.get(&row.id).copied().unwrap_or(0)
                    && row.used_vcpus <= row.capacity_vcpus
            });
        Ok(matches.then_some(()))
    })
    .await?;
    second.stop().await?;
    first.stop().await
}

#[tokio::test]
async fn placement_is_best_fit_honours_drain_and_only_empty_servers_retire() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let service = env
        .provisioner_with(fast_settings(), instant_sim(), no_servers())
        .await?;
    let system = TenantId::system();
    let acme = tenant("acme");

    let forbidden = server_command(&env, &acme, register("rogue", "eu-1", 8)).await?;
    assert_eq!(
        forbidden.rejection().map(|r| r.code),
        Some(RejectionCode::Forbidden)
    );

    for (name, vcpus) in [("roomy", 16), ("snug", 2)] {
        assert!(
            accepted_id(&server_command(&env, &system, register(name, "eu-1", vcpus)).await?)
                .is_some()
        );
    }
    // Best fit: the small VM goes where it leaves the least room over.
    let first = env.create(&acme, "first").await?;
    env.wait_vm_status(&acme, first, VmStatus::Running).await?;
    assert_eq!(
        load_vm(&env, &acme, first).await?.host.as_deref(),
        Some("snug")
    );

    // Drained servers take no new VMs; the one on it stays.
    assert!(accepted_id(
        &server_command(&env, &system, ServerCommand::Drain(target("snug"))).await?
    )
    .is_some());
    let second = env.create(&acme, "second").await?;
    env.wait_vm_status(&acme, second, VmStatus::Running).await?;
    assert_eq!(
        load_vm(&env, &acme, second).await?.host.as_deref(),
        Some("roomy")
    );
    assert!(accepted_id(
        &server_command(&env, &system, ServerCommand::Drain(target("roomy"))).await?
    )
    .is_some());
    let third = env.create(&acme, "third").await?;
    let failed = env.wait_vm_status(&acme, third, VmStatus::Failed).await?;
    let reason = failed.reason().unwrap_or_default();
    assert_eq!(reason, "placement failed: no active sim server");

    let busy = server_command(&env, &system, ServerCommand::Decommission(target("snug"))).await?;
    assert_eq!(
        busy.rejection().map(|r| r.code),
        Some(RejectionCode::InvalidState)
    );
    env.send(&acme, &meta(), &VmCommand::Destroy(vm_target(first)))
        .await?;
    env.wait_vm_status(&acme, first, VmStatus::Destroyed)
        .await?;
    let retired =
        server_command(&env, &system, ServerCommand::Decommission(target("snug"))).await?;
    assert!(accepted_id(&retired).is_some(), "{retired:?}");
    service.stop().await
}

#[tokio::test]
async fn regions_resizes_and_capacity_come_back_on_destroy() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let service = env
        .provisioner_with(fast_settings(), instant_sim(), no_servers())
        .await?;
    let system = TenantId::system();
    let acme = tenant("acme");
    assert!(
        accepted_id(&server_command(&env, &system, register("only", "eu-1", 3)).await?).is_some()
    );

    let elsewhere = VmCommand::Create(CreateVm {
        region: Some("us-1".into()),
        ..CreateVm::with_plan("far", Plan::Small, "debian-12")
    });
    let far = accepted_id(&env.send(&acme, &meta(), &elsewhere).await?).expect("accepted");
    let failed = env.wait_vm_status(&acme, far, VmStatus::Failed).await?;
    assert_eq!(
        failed.reason(),
        Some("placement failed: no active sim server in region us-1")
    );

    let vm = env.create(&acme, "near").await?;
    env.wait_vm_status(&acme, vm, VmStatus::Running).await?;
    env.send(&acme, &meta(), &VmCommand::Stop(vm_target(vm)))
        .await?;
    env.wait_vm_status(&acme, vm, VmStatus::Stopped).await?;
    let resize = |plan| {
        VmCommand::Resize(ResizeVm {
            vm_id: vm,
            expected_version: None,
            plan: Some(plan),
            vcpus: None,
            memory_mb: None,
            disk_gb: None,
        })
    };
    // large is 4 vCPU: more than the 3 the server has.
    let refused = env.send(&acme, &meta(), &resize(Plan::Large)).await?;
    assert_eq!(
        refused.rejection().map(|r| r.code),
        Some(RejectionCode::NoCapacity),
        "{refused:?}"
    );
    let resized = env.send(&acme, &meta(), &resize(Plan::Medium)).await?;
    assert!(accepted_id(&resized).is_some(), "{resized:?}");
    env.wait_vm_status(&acme, vm, VmStatus::Stopped).await?;
    let servers = Repository::<Server>::new(EventStore::new(env.js.clone(), "EVENTS"), "test");
    let used = servers.load(&system, server_id("only")).await?.state.used();
    assert_eq!(
        (used.vcpus, used.memory_mb),
        (2, 4096),
        "the allocation moved with the resize"
    );

    env.send(&acme, &meta(), &VmCommand::Destroy(vm_target(vm)))
        .await?;
    env.wait_vm_status(&acme, vm, VmStatus::Destroyed).await?;
    let server = servers.load(&system, server_id("only")).await?;
    assert!(
        server.state.allocations.is_empty(),
        "destroy gave the capacity back"
    );
    service.stop().await
}

/// The default sim servers a provisioner registers at start are registered once, however
/// often it starts.
#[tokio::test]
async fn servers_registered_at_start_are_registered_once() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let config = || ProvisionerConfig {
        servers: SimServers {
            count: 2,
            ..SimServers::default()
        }
        .specs(),
        ..ProvisionerConfig::default()
    };
    env.provisioner_with(fast_settings(), instant_sim(), config())
        .await?
        .stop()
        .await?;
    env.provisioner_with(fast_settings(), instant_sim(), config())
        .await?
        .stop()
        .await?;
    let events = all_events(&env, "evt.system.server.*").await?;
    assert_eq!(events.len(), 2, "{events:?}");
    Ok(())
}
