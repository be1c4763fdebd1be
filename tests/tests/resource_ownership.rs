//! Provider and runtime resources never cross tenants, on the real Docker engine.
//!
//! Machine, container and volume names are keyed by the aggregate id alone, and two
//! tenants can each hold an aggregate with the same id (the command layer refuses such
//! a create; a race, or an event forced into the log, still could). These tests make
//! exactly that situation — by calling the provider and the runtime directly with one id
//! for two tenants, and by appending tenant `b`'s aggregate with tenant `a`'s id straight
//! to the log — and check that `b` can neither adopt, stop, restart, resize, exec in nor
//! destroy `a`'s machine, nor adopt, mount, restart, stop, read or wipe `a`'s pod and
//! volume: `a`'s container keeps running and its volume keeps its data. Orphan cleaning
//! (`orphans clean`, `pods debug --clean`) with two tenants removes only what no live VM
//! or pod of *its own* tenant owns.
//!
//! The same rules on the simulators are unit tests (`sim.rs` of both crates). Needs a
//! running engine (`infra/docker-up.sh`) and the image (`infra/build-test-image.sh`).

use berth_tests::docker::engine;
use berth_tests::docker::sh;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_pod_lifecycle::catalog::Catalog;
use berth_pod_lifecycle::docker::{DockerRuntime, DockerRuntimeConfig, LABEL_SCOPE};
use berth_pod_lifecycle::pod::Pod;
use berth_pod_lifecycle::runtime::{
    volume_name, workload_name, AccessMode, HealthCheck, HealthProbe, PodRuntime, Resources,
    RuntimeError, VolumeSpec, WorkloadSpec,
};
use berth_provisioner::docker::{DockerConfig, DockerProvider, LABEL_MANAGED};
use berth_provisioner::provider::{MachineSpec, ProviderError, VmProvider};
use berth_provisioner::vm::Vm;
use berth_provisioner::ProvisionerConfig;
use berth_runtime::store::{Cause, EventStore, Repository, StoredEvent};
use berth_schemas::orphan::ReconcileReport;
use berth_schemas::pod::{CreatePod, DebugPods, PodEvent, PodStatus, PodsReport};
use berth_schemas::subjects::{event_subject, PODS_DEBUG_SUBJECT, RECONCILE_SUBJECT};
use berth_schemas::vm::{CreateVm, Plan, VmCommand, VmEvent, VmRequested, VmStatus};
use berth_schemas::{Actor, TenantId};
use berth_tests::pods::{busybox_overrides, pod_config};
use berth_tests::{accepted_id, docker_server, eventually, fast_settings, meta, TestEnv};
use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{RemoveContainerOptionsBuilder, RemoveVolumeOptions};
use bollard::Docker;
use futures::FutureExt;
use uuid::Uuid;

const IMAGE: &str = "berth/busybox:test";
const EXEC_TIMEOUT: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(60);

/// Two tenants of their own per test, so tests sharing the engine never meet.
fn two_tenants() -> (TenantId, TenantId) {
    let suffix = &Uuid::now_v7().simple().to_string()[20..];
    (
        TenantId::parse(&format!("own-a-{suffix}")).expect("a tenant id"),
        TenantId::parse(&format!("own-b-{suffix}")).expect("a tenant id"),
    )
}

fn is_conflict<T: std::fmt::Debug>(result: &Result<T, ProviderError>) -> bool {
    matches!(result, Err(ProviderError::Permanent(m)) if m.starts_with("conflict:"))
}

fn is_pod_conflict<T: std::fmt::Debug>(result: &Result<T, RuntimeError>) -> bool {
    matches!(result, Err(RuntimeError::Permanent(m)) if m.starts_with("conflict:"))
}

/// Runs `test`, then `cleanup`, whether the test passed, failed or panicked.
async fn finally<C: Future<Output = ()>>(
    test: impl Future<Output = anyhow::Result<()>>,
    cleanup: C,
) -> anyhow::Result<()> {
    let outcome = AssertUnwindSafe(test).catch_unwind().await;
    cleanup.await;
    match outcome {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// The container's id and whether it runs.
async fn container_state(docker: &Docker, name: &str) -> anyhow::Result<(String, bool)> {
    let inspected = docker.inspect_container(name, None).await?;
    Ok((
        inspected.id.context("an id")?,
        inspected.state.and_then(|s| s.running) == Some(true),
    ))
}

async fn force_remove(docker: &Docker, name: &str) {
    let _ = docker
        .remove_container(
            name,
            Some(RemoveContainerOptionsBuilder::new().force(true).build()),
        )
        .await;
}

#[tokio::test]
async fn a_vm_of_another_tenant_with_the_same_id_never_touches_the_machine() -> anyhow::Result<()> {
    let docker = engine().await;
    let host = format!("own-{}", &Uuid::now_v7().simple().to_string()[20..]);
    let provider = DockerProvider::connect(DockerConfig {
        host_name: host.clone(),
        network_mode: Some("none".into()),
    })
    .await?;
    let (a, b) = two_tenants();
    let mine = MachineSpec {
        vm_id: Uuid::now_v7(),
        tenant: a.clone(),
        host,
        vcpus: 1,
        memory_mb: 256,
        disk_gb: 1,
        image: IMAGE.into(),
    };
    let theirs = MachineSpec {
        tenant: b.clone(),
        ..mine.clone()
    };
    let name = mine.machine_name();
    finally(
        async {
            provider.create(&mine).await?;
            provider.start(&a, &name).await?;
            let before = container_state(&docker, &name).await?;
            assert!(before.1, "a's machine runs");

            let echo = vec!["echo".to_owned(), "b was here".to_owned()];
            let adopted = provider.create(&theirs).await;
            assert!(is_conflict(&adopted), "adopt: {adopted:?}");
            let message = adopted.unwrap_err().to_string();
            assert!(
                message.contains(&format!("belongs to another tenant, not to tenant {b}")),
                "the refusal names the conflict: {message}"
            );
            assert!(!message.contains(a.as_str()), "but not a: {message}");
            assert!(is_conflict(&provider.stop(&b, &name).await), "stop");
            assert!(is_conflict(&provider.restart(&b, &name).await), "restart");
            assert!(is_conflict(&provider.start(&b, &name).await), "start");
            assert!(is_conflict(&provider.resize(&theirs).await), "resize");
            assert!(
                is_conflict(&provider.exec(&b, &name, &echo, EXEC_TIMEOUT).await),
                "exec"
            );
            assert!(is_conflict(&provider.destroy(&b, &name).await), "destroy");

            assert_eq!(
                container_state(&docker, &name).await?,
                before,
                "the same container, still running"
            );
            let still_mine = provider.exec(&a, &name, &echo, EXEC_TIMEOUT).await?;
            assert_eq!(still_mine.stdout, "b was here\n", "a still reaches it");

            // A berth-named container without an owner is no tenant's to adopt either.
            let stray = MachineSpec {
                vm_id: Uuid::now_v7(),
                ..mine.clone()
            };
            docker
                .create_container(
                    Some(
                        bollard::query_parameters::CreateContainerOptionsBuilder::new()
                            .name(&stray.machine_name())
                            .build(),
                    ),
                    bollard::models::ContainerCreateBody {
                        image: Some(IMAGE.into()),
                        host_config: Some(bollard::models::HostConfig {
                            network_mode: Some("none".into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                )
                .await?;
            let unowned = provider.create(&stray).await;
            assert!(
                matches!(&unowned, Err(ProviderError::Permanent(m)) if m.contains("carries no owning tenant")),
                "{unowned:?}"
            );
            assert!(is_conflict(
                &provider.destroy(&a, &stray.machine_name()).await
            ));
            assert!(docker
                .inspect_container(&stray.machine_name(), None)
                .await
                .is_ok());
            force_remove(&docker, &stray.machine_name()).await;
            Ok(())
        },
        async {
            force_remove(&docker, &name).await;
        },
    )
    .await
}

fn pod_spec(tenant: &TenantId, pod_id: Uuid) -> WorkloadSpec {
    WorkloadSpec {
        pod_id,
        tenant: tenant.to_string(),
        service: "n8n".into(),
        variant: "basic".into(),
        image: IMAGE.into(),
        command: None,
        port: 5678,
        env: BTreeMap::from([("OWNER".to_owned(), tenant.to_string())]),
        resources: Resources {
            cpu_request_millis: 100,
            cpu_limit_millis: 500,
            memory_request_mb: 64,
            memory_limit_mb: 128,
        },
        health: HealthCheck {
            probe: HealthProbe::Command {
                command: vec!["true".into()],
            },
            interval_secs: 1,
            timeout_secs: 1,
            failure_threshold: 3,
            start_period_secs: 0,
        },
        volume: VolumeSpec {
            size_mb: 64,
            mount_path: "/data".into(),
            storage_class: None,
            access_mode: AccessMode::ReadWriteOnce,
        },
        run_as_user: None,
    }
}

async fn volume_exists(docker: &Docker, name: &str) -> bool {
    docker.inspect_volume(name).await.is_ok()
}

#[tokio::test]
async fn a_pod_of_another_tenant_with_the_same_id_never_mounts_or_wipes_the_volume(
) -> anyhow::Result<()> {
    let docker = engine().await;
    let scope = format!("own-{}", Uuid::now_v7().simple());
    let runtime = DockerRuntime::connect(DockerRuntimeConfig {
        scope: scope.clone(),
        network_mode: Some("none".into()),
    })
    .await?;
    let (a, b) = two_tenants();
    let id = Uuid::now_v7();
    let mine = pod_spec(&a, id);
    let theirs = pod_spec(&b, id);
    let (container, volume) = (workload_name(id), volume_name(id));
    let stray_volume = volume_name(Uuid::now_v7());
    finally(
        async {
            runtime.ensure_volume(&mine).await?;
            runtime.deploy(&mine, 1).await?;
            sh(&docker, &container, "echo precious > /data/data.txt").await?;
            let before = container_state(&docker, &container).await?;
            assert!(before.1, "a's pod runs");

            let adopted = runtime.ensure_volume(&theirs).await;
            assert!(is_pod_conflict(&adopted), "adopt the volume: {adopted:?}");
            assert!(
                is_pod_conflict(&runtime.deploy(&theirs, 1).await),
                "mount it"
            );
            assert!(is_pod_conflict(&runtime.restart(&theirs).await), "restart");
            assert!(is_pod_conflict(&runtime.scale(&theirs, 0).await), "stop");
            assert!(is_pod_conflict(&runtime.health(&theirs).await), "health");
            assert!(
                is_pod_conflict(&runtime.logs(&b, id, None, None).await),
                "logs"
            );
            assert!(
                is_pod_conflict(&runtime.delete_workload(&b, id).await),
                "delete"
            );
            assert!(
                is_pod_conflict(&runtime.delete_volume(&b, id).await),
                "wipe"
            );

            assert_eq!(container_state(&docker, &container).await?, before);
            assert_eq!(
                sh(&docker, &container, "cat /data/data.txt").await?.trim(),
                "precious",
                "the volume keeps its data"
            );
            let env = docker
                .inspect_container(&container, None)
                .await?
                .config
                .and_then(|c| c.env)
                .unwrap_or_default();
            assert!(env.contains(&format!("OWNER={a}")), "{env:?}");
            assert!(volume_exists(&docker, &volume).await);

            // A berth-named volume without an owner is never adopted or mounted.
            docker
                .create_volume(VolumeCreateRequest {
                    name: Some(stray_volume.clone()),
                    labels: Some(HashMap::from([
                        (LABEL_MANAGED.to_owned(), "true".to_owned()),
                        (LABEL_SCOPE.to_owned(), scope.clone()),
                    ])),
                    ..Default::default()
                })
                .await?;
            let stray_id = stray_volume
                .strip_prefix("berth-vol-")
                .and_then(|id| id.parse().ok())
                .context("a pod id")?;
            let unowned = runtime.ensure_volume(&pod_spec(&a, stray_id)).await;
            assert!(
                matches!(&unowned, Err(RuntimeError::Permanent(m)) if m.contains("carries no owning tenant")),
                "{unowned:?}"
            );
            assert!(is_pod_conflict(
                &runtime.deploy(&pod_spec(&a, stray_id), 1).await
            ));
            assert!(docker
                .inspect_container(&workload_name(stray_id), None)
                .await
                .is_err());
            Ok(())
        },
        async {
            force_remove(&docker, &container).await;
            for name in [&volume, &stray_volume] {
                let _ = docker
                    .remove_volume(name, None::<RemoveVolumeOptions>)
                    .await;
            }
        },
    )
    .await
}

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

/// Tenant `b` gets a VM with tenant `a`'s id the way no command allows: its `requested`
/// event appended straight to the log. The provisioner's reactor then tries to make
/// `b`'s machine, is refused `a`'s, records `b`'s VM failed and removes nothing; `a`'s
/// container keeps running. Orphan cleaning then removes `b`'s own stray machine and
/// leaves `a`'s, which no live VM of `b` owns but `a`'s does.
#[tokio::test]
async fn the_provisioner_never_adopts_and_orphan_cleaning_never_removes_another_tenants_machine(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let docker = engine().await;
    let server = format!("own-{}", &Uuid::now_v7().simple().to_string()[20..]);
    let connect = || async {
        DockerProvider::connect(DockerConfig {
            host_name: server.clone(),
            network_mode: Some("none".into()),
        })
        .await
    };
    let config = ProvisionerConfig {
        servers: vec![docker_server(&server)],
        ..ProvisionerConfig::default()
    };
    let service = env
        .provisioner_on(fast_settings(), Arc::new(connect().await?), config)
        .await?;
    let (a, b) = two_tenants();
    let create = VmCommand::Create(CreateVm::with_plan("web", Plan::Small, IMAGE));
    let vm = accepted_id(&env.send(&a, &meta(), &create).await?).context("accepted")?;
    env.wait_vm_status(&a, vm, VmStatus::Running).await?;
    let name = format!("berth-vm-{vm}");
    let stray = MachineSpec {
        vm_id: Uuid::now_v7(),
        tenant: b.clone(),
        host: server.clone(),
        vcpus: 1,
        memory_mb: 256,
        disk_gb: 1,
        image: IMAGE.into(),
    };
    finally(
        async {
            let before = container_state(&docker, &name).await?;

            let vms: Repository<Vm> =
                Repository::new(EventStore::new(env.js.clone(), "EVENTS"), "test");
            let loaded = vms.load(&b, vm).await?;
            let forced = Uuid::now_v7();
            let cause = Cause {
                id: forced,
                actor: Actor::parse("user:mallory")?,
                correlation_id: forced,
                traceparent: None,
            };
            let requested = VmEvent::Requested(VmRequested {
                name: "web".into(),
                vcpus: 1,
                memory_mb: 1024,
                disk_gb: 10,
                image: IMAGE.into(),
                plan: None,
                region: None,
            });
            vms.append(&b, vm, &loaded, &cause, vec![requested])
                .await
                .map_err(|e| anyhow::anyhow!("forcing b's vm into the log: {e}"))?;
            let failed = eventually("b's vm to fail", WAIT, || async {
                let history = events_of(&env, &event_subject(&b, "vm", vm)).await?;
                Ok(history
                    .iter()
                    .find_map(|event| match event.decode::<VmEvent>() {
                        Ok(VmEvent::Failed(failed)) => Some(failed),
                        _ => None,
                    }))
            })
            .await?;
            assert!(
                failed.reason.contains("conflict") && !failed.reason.contains(a.as_str()),
                "b's vm failed on the conflict, without learning whose: {failed:?}"
            );
            assert_eq!(
                container_state(&docker, &name).await?,
                before,
                "a's container is the same one and still runs"
            );

            // b's own machine that no VM of b owns: an orphan of b.
            connect().await?.create(&stray).await?;
            let report = reconcile(&env, false).await?;
            assert_eq!(report.orphans, vec![stray.machine_name()], "{report:?}");
            assert!(report.lost.is_empty(), "{report:?}");
            let cleaned = reconcile(&env, true).await?;
            assert_eq!(cleaned.removed, vec![stray.machine_name()], "{cleaned:?}");
            assert!(docker
                .inspect_container(&stray.machine_name(), None)
                .await
                .is_err());
            assert_eq!(
                container_state(&docker, &name).await?,
                before,
                "orphan cleaning left a's machine alone"
            );
            env.wait_vm_status(&a, vm, VmStatus::Running).await?;
            Ok(())
        },
        async {
            // Stopped first: a running provisioner would make a's machine again.
            if let Err(e) = service.stop().await {
                eprintln!("stopping the provisioner: {e:#}");
            }
            force_remove(&docker, &name).await;
            force_remove(&docker, &stray.machine_name()).await;
        },
    )
    .await
}

async fn pods_debug(env: &TestEnv, clean_orphans: bool) -> anyhow::Result<PodsReport> {
    let body = serde_json::to_vec(&DebugPods { clean_orphans })?;
    let reply = berth_runtime::client::request(&env.client, PODS_DEBUG_SUBJECT, body).await?;
    serde_json::from_slice(&reply.payload).context("a pods report")
}

/// Tenant `b` gets a pod with tenant `a`'s id through the log: pod-lifecycle's reactor is
/// refused `a`'s volume, records `b`'s pod failed, and `a`'s volume keeps its data.
/// `pods debug --clean` then removes `b`'s own stray volume and leaves `a`'s pod alone.
#[tokio::test]
async fn pod_lifecycle_never_adopts_and_orphan_cleaning_never_removes_another_tenants_volume(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let docker = engine().await;
    let scope = format!("own-{}", Uuid::now_v7().simple());
    let runtime = DockerRuntime::connect(DockerRuntimeConfig {
        scope: scope.clone(),
        network_mode: Some("none".into()),
    })
    .await?;
    let service = env
        .pod_lifecycle(
            fast_settings(),
            Arc::new(runtime),
            pod_config(busybox_overrides()),
        )
        .await?;
    let (a, b) = two_tenants();
    let id = env.create_pod(&a, "flows", "n8n", "basic").await?;
    env.wait_pod_status(&a, id, PodStatus::Running).await?;
    let (container, volume) = (workload_name(id), volume_name(id));
    let mount = "/home/node/.n8n";
    let stray = volume_name(Uuid::now_v7());
    finally(
        async {
            sh(
                &docker,
                &container,
                &format!("echo precious > {mount}/data.txt"),
            )
            .await?;
            let before = container_state(&docker, &container).await?;

            let pods: Repository<Pod> =
                Repository::new(EventStore::new(env.js.clone(), "EVENTS"), "test");
            let loaded = pods.load(&b, id).await?;
            let forced = Uuid::now_v7();
            let cause = Cause {
                id: forced,
                actor: Actor::parse("user:mallory")?,
                correlation_id: forced,
                traceparent: None,
            };
            let catalog = Catalog::builtin()?;
            let create = CreatePod {
                pod_id: Some(id),
                name: "flows".into(),
                service: "n8n".into(),
                variant: "basic".into(),
                subscription_id: None,
                env: Default::default(),
            };
            let requested = catalog
                .resolve(&create, &busybox_overrides())
                .map_err(|r| anyhow::anyhow!("{r}"))?;
            pods.append(
                &b,
                id,
                &loaded,
                &cause,
                vec![PodEvent::Requested(requested)],
            )
            .await
            .map_err(|e| anyhow::anyhow!("forcing b's pod into the log: {e}"))?;
            let failed = eventually("b's pod to fail", WAIT, || async {
                let history = events_of(&env, &event_subject(&b, "pod", id)).await?;
                Ok(history
                    .iter()
                    .find_map(|event| match event.decode::<PodEvent>() {
                        Ok(PodEvent::Failed(failed)) => Some(failed),
                        _ => None,
                    }))
            })
            .await?;
            assert!(
                failed.reason.contains("conflict") && !failed.reason.contains(a.as_str()),
                "b's pod failed on the conflict, without learning whose: {failed:?}"
            );
            assert_eq!(container_state(&docker, &container).await?, before);
            assert_eq!(
                sh(&docker, &container, &format!("cat {mount}/data.txt"))
                    .await?
                    .trim(),
                "precious"
            );

            // b's own stray volume in this installation: b's orphan.
            docker
                .create_volume(VolumeCreateRequest {
                    name: Some(stray.clone()),
                    labels: Some(HashMap::from([
                        (LABEL_MANAGED.to_owned(), "true".to_owned()),
                        (LABEL_SCOPE.to_owned(), scope.clone()),
                        ("berth.tenant".to_owned(), b.to_string()),
                    ])),
                    ..Default::default()
                })
                .await?;
            let report = pods_debug(&env, false).await?;
            let orphans: Vec<&str> = report.orphans.iter().map(|o| o.name.as_str()).collect();
            assert_eq!(orphans, vec![stray.as_str()], "{report:?}");
            let cleaned = pods_debug(&env, true).await?;
            let removed: Vec<&str> = cleaned.removed.iter().map(|o| o.name.as_str()).collect();
            assert_eq!(removed, vec![stray.as_str()], "{cleaned:?}");
            assert!(!volume_exists(&docker, &stray).await);
            assert!(volume_exists(&docker, &volume).await, "a's volume stays");
            assert_eq!(container_state(&docker, &container).await?, before);
            let side = cleaned
                .pods
                .iter()
                .find(|p| p.pod_id == id && p.tenant == a.as_str())
                .context("a's pod side by side")?;
            assert!(side.volume_present, "{side:?}");
            Ok(())
        },
        async {
            // Stopped first: its health checks would deploy a's pod again.
            if let Err(e) = service.stop().await {
                eprintln!("stopping pod-lifecycle: {e:#}");
            }
            force_remove(&docker, &container).await;
            for name in [&volume, &stray] {
                let _ = docker
                    .remove_volume(name, None::<RemoveVolumeOptions>)
                    .await;
            }
        },
    )
    .await
}
