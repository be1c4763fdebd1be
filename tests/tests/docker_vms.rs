//! VMs on the real Docker engine through the whole provisioner: commands, placement on
//! the engine's server, the reactor and the provider — and a provisioner killed in the
//! middle of creates. Needs `infra/docker-up.sh` and `infra/build-test-image.sh` (CI's
//! `infra/install-deps.sh` runs both); without them these tests fail, they never skip.

use berth_tests::docker::engine;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use berth_provisioner::docker::{
    DockerConfig, DockerProvider, CAPABILITIES, LABEL_MANAGED, LABEL_TENANT, PIDS_LIMIT,
};
use berth_provisioner::ProvisionerConfig;
use berth_runtime::EventStore;
use berth_schemas::vm::{CreateVm, ExecVm, Plan, ResizeVm, VmCommand, VmStatus, VmTarget};
use berth_schemas::{CommandReply, TenantId};
use berth_tests::{
    accepted_id, docker_server, eventually, fast_settings, meta, tenant, ChildService, TestEnv,
};
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use bollard::Docker;
use futures::future::join_all;
use uuid::Uuid;

const IMAGE: &str = "berth/busybox:test";
const BINARY: &str = env!("CARGO_BIN_EXE_provisioner-under-test");

/// A tenant of its own per test, so tests sharing the engine see only their containers.
fn unique_tenant(prefix: &str) -> TenantId {
    tenant(&format!(
        "{prefix}-{}",
        &Uuid::now_v7().simple().to_string()[20..]
    ))
}

/// Every berth container of `tenant`, by VM id label.
async fn containers_of(
    docker: &Docker,
    tenant: &TenantId,
) -> anyhow::Result<Vec<bollard::models::ContainerSummary>> {
    let filters = HashMap::from([(
        "label".to_owned(),
        vec![
            format!("{LABEL_MANAGED}=true"),
            format!("{LABEL_TENANT}={tenant}"),
        ],
    )]);
    Ok(docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await?)
}

/// Removes what a failed test left behind.
async fn remove_all(docker: &Docker, tenant: &TenantId) -> anyhow::Result<()> {
    for container in containers_of(docker, tenant).await? {
        if let Some(id) = container.id {
            docker
                .remove_container(
                    &id,
                    Some(RemoveContainerOptionsBuilder::new().force(true).build()),
                )
                .await?;
        }
    }
    Ok(())
}

fn target(vm_id: Uuid) -> VmTarget {
    VmTarget {
        vm_id,
        expected_version: None,
    }
}

fn small(name: &str) -> VmCommand {
    VmCommand::Create(CreateVm::with_plan(name, Plan::Small, IMAGE))
}

#[tokio::test]
async fn the_whole_lifecycle_on_docker_with_limits_and_exec() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let docker = engine().await;
    let provider = DockerProvider::connect(DockerConfig {
        host_name: "docker-lifecycle".into(),
        network_mode: Some("none".into()),
    })
    .await?;
    let config = ProvisionerConfig {
        servers: vec![docker_server("docker-lifecycle")],
        ..ProvisionerConfig::default()
    };
    let service = env
        .provisioner_on(fast_settings(), Arc::new(provider), config)
        .await?;
    let acme = unique_tenant("dk");

    let vm = accepted_id(&env.send(&acme, &meta(), &small("web")).await?).expect("accepted");
    env.wait_vm_status(&acme, vm, VmStatus::Running).await?;
    let name = format!("berth-vm-{vm}");
    let inspected = docker.inspect_container(&name, None).await?;
    let host = inspected.host_config.clone().unwrap_or_default();
    assert_eq!(host.nano_cpus, Some(1_000_000_000), "1 vCPU");
    assert_eq!(host.memory, Some(1024 * 1024 * 1024), "1 GB");
    assert_eq!(host.pids_limit, Some(PIDS_LIMIT), "the pids limit");
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
    let mut added = host.cap_add.clone().unwrap_or_default();
    added.sort();
    assert_eq!(added, CAPABILITIES.map(str::to_owned).to_vec());
    assert_eq!(
        host.security_opt,
        Some(vec!["no-new-privileges".to_owned()])
    );
    assert_eq!(inspected.state.and_then(|s| s.running), Some(true));

    let exec = VmCommand::Exec(ExecVm {
        vm_id: vm,
        command: vec!["echo".into(), "hello from the vm".into()],
        timeout_secs: None,
    });
    let CommandReply::Accepted {
        output: Some(output),
        events,
        ..
    } = env.send(&acme, &meta(), &exec).await?
    else {
        panic!("exec was not answered with output");
    };
    assert_eq!(
        (output.exit_code, output.stdout.as_str()),
        (0, "hello from the vm\n")
    );
    assert_eq!(events[0].event_type, "berth.vm.executed.v1");

    env.send(&acme, &meta(), &VmCommand::Stop(target(vm)))
        .await?;
    env.wait_vm_status(&acme, vm, VmStatus::Stopped).await?;
    let running = |c: bollard::models::ContainerInspectResponse| c.state.and_then(|s| s.running);
    assert_eq!(
        running(docker.inspect_container(&name, None).await?),
        Some(false)
    );
    let refused = env.send(&acme, &meta(), &exec).await?;
    assert_eq!(
        refused.rejection().map(|r| r.code.as_str()),
        Some("invalid_state")
    );

    let resize = VmCommand::Resize(ResizeVm {
        vm_id: vm,
        expected_version: None,
        plan: Some(Plan::Medium),
        vcpus: None,
        memory_mb: None,
        disk_gb: None,
    });
    assert!(accepted_id(&env.send(&acme, &meta(), &resize).await?).is_some());
    eventually(
        "the container to get the medium size",
        Duration::from_secs(60),
        || async {
            let host = docker
                .inspect_container(&name, None)
                .await?
                .host_config
                .unwrap_or_default();
            Ok(
                (host.nano_cpus == Some(2_000_000_000) && host.memory == Some(4096 * 1024 * 1024))
                    .then_some(()),
            )
        },
    )
    .await?;
    env.wait_vm_status(&acme, vm, VmStatus::Stopped).await?;

    env.send(&acme, &meta(), &VmCommand::Start(target(vm)))
        .await?;
    env.wait_vm_status(&acme, vm, VmStatus::Running).await?;
    assert_eq!(
        running(docker.inspect_container(&name, None).await?),
        Some(true)
    );

    env.send(&acme, &meta(), &VmCommand::Destroy(target(vm)))
        .await?;
    env.wait_vm_status(&acme, vm, VmStatus::Destroyed).await?;
    assert!(
        containers_of(&docker, &acme).await?.is_empty(),
        "the container is gone"
    );
    service.stop().await
}

#[tokio::test]
async fn a_provisioner_killed_during_docker_creates_converges_without_duplicates(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let docker = engine().await;
    let acme = unique_tenant("kill");
    let args = [
        "--provider",
        "docker",
        "--docker-network",
        "none",
        "--docker-server",
        "docker-kill",
        "--max-provisions",
        "4",
        "--ack-wait-secs",
        "2",
        "--backoff-ms",
        "50",
    ];
    let child = ChildService::start_provisioner(&env, BINARY, &args)?;
    env.wait_for_service("berth-vm").await?;
    env.wait_for_service("berth-server").await?;
    let commands: Vec<_> = (0..8)
        .map(|n| (meta(), small(&format!("vm-{n}"))))
        .collect();
    let sends = join_all(commands.iter().map(|(m, c)| env.send(&acme, m, c)));
    let killer = async {
        eventually(
            "the first containers to exist",
            Duration::from_secs(60),
            || async { Ok((!containers_of(&docker, &acme).await?.is_empty()).then_some(())) },
        )
        .await?;
        child.kill().await
    };
    let (replies, killed) = tokio::join!(sends, killer);
    killed?;
    assert!(
        replies
            .iter()
            .any(|r| matches!(r, Ok(CommandReply::Accepted { .. }))),
        "{replies:?}"
    );

    let child = ChildService::start_provisioner(&env, BINARY, &args)?;
    // A create whose reply the kill swallowed may still have been appended: the log,
    // not the replies, says which VMs exist.
    let vms = EventStore::new(env.js.clone(), "EVENTS")
        .aggregate_ids(&acme, "vm")
        .await?;
    assert!(
        vms.len()
            >= replies
                .iter()
                .filter(|r| matches!(r, Ok(CommandReply::Accepted { .. })))
                .count()
    );
    for vm in &vms {
        env.wait_vm_status(&acme, *vm, VmStatus::Running).await?;
    }
    let containers = containers_of(&docker, &acme).await?;
    let mut per_vm: HashMap<String, usize> = HashMap::new();
    for container in &containers {
        let name = container.names.clone().unwrap_or_default().join(",");
        assert_eq!(
            container.state.as_ref().map(|s| s.to_string()).as_deref(),
            Some("running"),
            "{name}"
        );
        *per_vm.entry(name).or_default() += 1;
    }
    assert_eq!(
        containers.len(),
        vms.len(),
        "one container per vm: {per_vm:?}"
    );
    assert!(per_vm.values().all(|n| *n == 1));
    child.kill().await?;
    remove_all(&docker, &acme).await
}
