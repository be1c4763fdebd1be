//! Pods on the real Docker engine with the image `berth/busybox:test`: a file written
//! into the volume survives `pod.restart`, `pod.reset` needs confirmation and then wipes
//! it, `pod.delete` keeps the named volume or removes it as asked, and pods debug finds
//! a container and a volume made behind berth's back. Pod containers are hardened (pids
//! limit, capabilities, no-new-privileges) and labelled with their tenant and id;
//! ownership across tenants is `resource_ownership.rs`.
//!
//! Needs a running engine (`infra/docker-up.sh`) and the image
//! (`infra/build-test-image.sh`); `infra/install-deps.sh` does both.

use berth_tests::docker::engine;
use berth_tests::docker::sh;
use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use berth_pod_lifecycle::docker::{DockerRuntime, DockerRuntimeConfig, LABEL_SCOPE};
use berth_pod_lifecycle::runtime::{volume_name, workload_name, LABEL_MANAGED};
use berth_provisioner::docker::{CAPABILITIES, PIDS_LIMIT};
use berth_schemas::pod::{
    DebugPods, DeletePod, PodCommand, PodStatus, PodTarget, PodsReport, ResetPod,
};
use berth_schemas::subjects::PODS_DEBUG_SUBJECT;
use berth_schemas::RejectionCode;
use berth_tests::pods::{busybox_overrides, pod_config, TEST_IMAGE};
use berth_tests::{fast_settings, tenant, TestEnv};
use bollard::models::{ContainerCreateBody, VolumeCreateRequest};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use bollard::Docker;
use uuid::Uuid;

const MOUNT: &str = "/home/node/.n8n";

/// The runtime in a scope of its own, so parallel tests never see each other's pods.
async fn runtime(scope: &str) -> Arc<DockerRuntime> {
    let runtime = DockerRuntime::connect(DockerRuntimeConfig {
        scope: scope.into(),
        network_mode: Some("none".into()),
    })
    .await
    .expect("the Docker engine");
    Arc::new(runtime)
}

async fn volume_exists(docker: &Docker, name: &str) -> bool {
    docker.inspect_volume(name).await.is_ok()
}

fn target(pod_id: Uuid) -> PodTarget {
    PodTarget {
        pod_id,
        expected_version: None,
    }
}

fn delete(pod_id: Uuid, keep_volume: bool) -> PodCommand {
    PodCommand::Delete(DeletePod {
        pod_id,
        keep_volume,
        expected_version: None,
    })
}

async fn debug(env: &TestEnv, clean_orphans: bool) -> anyhow::Result<PodsReport> {
    let body = serde_json::to_vec(&DebugPods { clean_orphans })?;
    let reply = berth_runtime::client::request(&env.client, PODS_DEBUG_SUBJECT, body).await?;
    serde_json::from_slice(&reply.payload).context("a pods report")
}

#[tokio::test]
async fn a_volume_survives_restart_is_wiped_by_a_confirmed_reset_and_kept_or_removed_on_delete(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let docker = engine().await;
    let scope = format!("test-{}", Uuid::now_v7().simple());
    let pods = env
        .pod_lifecycle(
            fast_settings(),
            runtime(&scope).await,
            pod_config(busybox_overrides()),
        )
        .await?;
    let acme = tenant("acme");
    let id = env.create_pod(&acme, "flows", "n8n", "basic").await?;
    env.wait_pod_status(&acme, id, PodStatus::Running).await?;
    let container = workload_name(id);
    let inspected = docker.inspect_container(&container, None).await?;
    let host = inspected.host_config.clone().unwrap_or_default();
    assert_eq!(
        host.memory,
        Some(512 * 1024 * 1024),
        "the variant's memory limit"
    );
    assert_eq!(host.nano_cpus, Some(500_000_000), "the variant's CPU limit");
    assert_eq!(host.pids_limit, Some(PIDS_LIMIT), "the pids limit");
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
    let mut added = host.cap_add.clone().unwrap_or_default();
    added.sort();
    assert_eq!(added, CAPABILITIES.map(str::to_owned).to_vec());
    assert_eq!(
        host.security_opt,
        Some(vec!["no-new-privileges".to_owned()])
    );
    assert_eq!(host.network_mode.as_deref(), Some("none"));
    let labels = inspected
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    assert_eq!(labels.get("berth.tenant").map(String::as_str), Some("acme"));
    assert_eq!(labels.get("berth.id"), Some(&id.to_string()));
    let volume_labels = docker.inspect_volume(&volume_name(id)).await?.labels;
    assert_eq!(
        volume_labels.get("berth.tenant").map(String::as_str),
        Some("acme")
    );
    assert_eq!(volume_labels.get("berth.id"), Some(&id.to_string()));
    assert_eq!(
        inspected
            .config
            .as_ref()
            .and_then(|c| c.image.clone())
            .as_deref(),
        Some(TEST_IMAGE)
    );
    let env_vars = inspected.config.and_then(|c| c.env).unwrap_or_default();
    assert!(
        env_vars.contains(&"N8N_HOST=flows.acme.pods.test".to_owned()),
        "{env_vars:?}"
    );

    sh(
        &docker,
        &container,
        &format!("echo precious > {MOUNT}/data.txt"),
    )
    .await?;
    env.pod_command_until(&acme, &PodCommand::Restart(target(id)), PodStatus::Running)
        .await?;
    assert_eq!(
        sh(&docker, &container, &format!("cat {MOUNT}/data.txt"))
            .await?
            .trim(),
        "precious"
    );

    let unconfirmed = PodCommand::Reset(ResetPod {
        pod_id: id,
        confirm: false,
        expected_version: None,
    });
    let reply = env.send_pod(&acme, &unconfirmed).await?;
    assert_eq!(
        reply.rejection().map(|r| r.code),
        Some(RejectionCode::Invalid)
    );
    assert_eq!(
        sh(&docker, &container, &format!("cat {MOUNT}/data.txt"))
            .await?
            .trim(),
        "precious"
    );

    let confirmed = PodCommand::Reset(ResetPod {
        pod_id: id,
        confirm: true,
        expected_version: None,
    });
    env.pod_command_until(&acme, &confirmed, PodStatus::Running)
        .await?;
    let listing = sh(&docker, &container, &format!("ls -A {MOUNT}")).await?;
    assert_eq!(listing.trim(), "", "the reset volume is empty");

    let other = env.create_pod(&acme, "blog", "ghost", "basic").await?;
    env.wait_pod_status(&acme, other, PodStatus::Running)
        .await?;
    env.send_pod(&acme, &delete(id, true)).await?;
    env.send_pod(&acme, &delete(other, false)).await?;
    env.wait_pod_status(&acme, id, PodStatus::Deleted).await?;
    env.wait_pod_status(&acme, other, PodStatus::Deleted)
        .await?;
    assert!(
        docker.inspect_container(&container, None).await.is_err(),
        "the container is gone"
    );
    assert!(
        volume_exists(&docker, &volume_name(id)).await,
        "keep_volume=true keeps it"
    );
    assert!(
        !volume_exists(&docker, &volume_name(other)).await,
        "keep_volume=false removes it"
    );

    docker
        .remove_volume(
            &volume_name(id),
            None::<bollard::query_parameters::RemoveVolumeOptions>,
        )
        .await?;
    pods.stop().await
}

#[tokio::test]
async fn pods_debug_finds_a_container_and_a_volume_made_behind_berths_back() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let docker = engine().await;
    let scope = format!("test-{}", Uuid::now_v7().simple());
    let pods = env
        .pod_lifecycle(
            fast_settings(),
            runtime(&scope).await,
            pod_config(busybox_overrides()),
        )
        .await?;
    let acme = tenant("acme");
    let live = env.create_pod(&acme, "flows", "n8n", "basic").await?;
    env.wait_pod_status(&acme, live, PodStatus::Running).await?;

    let labels = HashMap::from([
        (LABEL_MANAGED.to_owned(), "true".to_owned()),
        (LABEL_SCOPE.to_owned(), scope.clone()),
    ]);
    let stray_volume = volume_name(Uuid::now_v7());
    docker
        .create_volume(VolumeCreateRequest {
            name: Some(stray_volume.clone()),
            labels: Some(labels.clone()),
            ..Default::default()
        })
        .await?;
    let stray_container = workload_name(Uuid::now_v7());
    docker
        .create_container(
            Some(
                CreateContainerOptionsBuilder::new()
                    .name(&stray_container)
                    .build(),
            ),
            ContainerCreateBody {
                image: Some(TEST_IMAGE.into()),
                labels: Some(labels),
                ..Default::default()
            },
        )
        .await?;

    let report = debug(&env, false).await?;
    let mut orphans: Vec<_> = report
        .orphans
        .iter()
        .map(|o| (o.kind.clone(), o.name.clone()))
        .collect();
    orphans.sort();
    let mut expected = vec![
        ("volume".to_owned(), stray_volume.clone()),
        ("workload".to_owned(), stray_container.clone()),
    ];
    expected.sort();
    assert_eq!(
        orphans, expected,
        "exactly the two strays, not the live pod"
    );
    let side = report
        .pods
        .iter()
        .find(|p| p.pod_id == live)
        .context("the live pod")?;
    assert_eq!(
        (side.runtime_status.as_str(), side.volume_present),
        ("healthy", true)
    );

    assert_eq!(debug(&env, true).await?.removed.len(), 2);
    assert!(docker
        .inspect_container(&stray_container, None)
        .await
        .is_err());
    assert!(!volume_exists(&docker, &stray_volume).await);
    assert!(
        docker
            .inspect_container(&workload_name(live), None)
            .await
            .is_ok(),
        "the live pod stays"
    );

    env.send_pod(&acme, &delete(live, false)).await?;
    env.wait_pod_status(&acme, live, PodStatus::Deleted).await?;
    let leftover = docker
        .remove_container(
            &stray_container,
            Some(RemoveContainerOptionsBuilder::new().force(true).build()),
        )
        .await;
    assert!(leftover.is_err(), "nothing left to remove");
    pods.stop().await
}
