//! Pod benchmarks: 1 000 sim pods created, restarted and reset (commands/s and command
//! latency, and until every pod is running again) next to raw publish-acks with the same
//! number in flight; and on Docker, `pod.create` until healthy next to a bare volume +
//! container of the same image and health check, started until the engine says healthy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream;
use berth_pod_lifecycle::sim::SimRuntime;
use berth_runtime::client::wait_for_status;
use berth_schemas::pod::{CreatePod, PodCommand, PodStatus, PodTarget, ResetPod};
use berth_schemas::status::{PodState, Status};
use berth_schemas::subjects::{status_subject, StatusKind};
use berth_schemas::{CommandReply, TenantId};
use berth_tests::pods::{busybox_overrides, pod_config, TEST_IMAGE};
use berth_tests::{tenant, TestEnv};
use futures::{stream as fstream, StreamExt};
use uuid::Uuid;

use crate::{percentiles, raw_publishes_in_flight, IN_FLIGHT};

/// One phase of the sim run.
pub struct Phase {
    pub name: &'static str,
    pub commands_per_second: f64,
    pub latency: (f64, f64),
    /// From the first command until every pod is running.
    pub settled_after: Duration,
}

/// Creates, restarts and resets `n` sim pods; each phase next to raw publish-acks.
pub async fn sim_pods(raw_js: &jetstream::Context, n: usize) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let service = env
        .pod_lifecycle(
            crate::one_tenant_load(),
            Arc::new(SimRuntime::default()),
            pod_config(Default::default()),
        )
        .await?;
    let tenants: Vec<TenantId> = (0..20).map(|i| tenant(&format!("p{i}"))).collect();
    let creates: Vec<(TenantId, PodCommand)> = (0..n)
        .map(|i| {
            let command = PodCommand::Create(CreatePod {
                pod_id: Some(Uuid::now_v7()),
                name: format!("pod-{i}"),
                service: "n8n".into(),
                variant: "basic".into(),
                subscription_id: None,
                env: Default::default(),
            });
            (tenants[i % tenants.len()].clone(), command)
        })
        .collect();
    let ids: Vec<(TenantId, Uuid)> = creates
        .iter()
        .map(|(tenant, command)| (tenant.clone(), command.pod_id(Uuid::nil())))
        .collect();
    let restarts: Vec<_> = ids
        .iter()
        .map(|(tenant, id)| {
            (
                tenant.clone(),
                PodCommand::Restart(PodTarget {
                    pod_id: *id,
                    expected_version: None,
                }),
            )
        })
        .collect();
    let resets: Vec<_> = ids
        .iter()
        .map(|(tenant, id)| {
            let reset = ResetPod {
                pod_id: *id,
                confirm: true,
                expected_version: None,
            };
            (tenant.clone(), PodCommand::Reset(reset))
        })
        .collect();
    let mut phases = Vec::new();
    for (name, commands) in [
        ("create", creates),
        ("restart", restarts),
        ("reset", resets),
    ] {
        eprintln!("… {n} sim pods: {name}");
        phases.push(phase(&env, &service.db, name, &commands).await?);
    }
    service.stop().await?;
    let raw = raw_publishes_in_flight(raw_js, n).await?;
    for phase in phases {
        println!(
            "{:<28} berth {:>7.0} commands/s, p50 {:>7.0} µs, p99 {:>7.0} µs, all running after {:.1} s | raw {:>7.0} publishes/s, p99 {:>6.0} µs | ratio {:.2}x throughput, p99 {:.1}x",
            format!("sim pods: {} {n}", phase.name),
            phase.commands_per_second,
            phase.latency.0,
            phase.latency.1,
            phase.settled_after.as_secs_f64(),
            raw.0,
            raw.1 .1,
            phase.commands_per_second / raw.0,
            phase.latency.1 / raw.1 .1,
        );
    }
    Ok(())
}

async fn phase(
    env: &TestEnv,
    db: &sqlx::PgPool,
    name: &'static str,
    commands: &[(TenantId, PodCommand)],
) -> anyhow::Result<Phase> {
    let started = Instant::now();
    let latencies: Vec<Duration> = fstream::iter(commands)
        .map(|(tenant, command)| async move {
            let sent = Instant::now();
            let reply = env.send_pod(tenant, command).await?;
            anyhow::ensure!(matches!(reply, CommandReply::Accepted { .. }), "{reply:?}");
            Ok(sent.elapsed())
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<anyhow::Result<Duration>>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let accepted_after = started.elapsed();
    // Every pod running, and each past this phase's command (its version moved on).
    loop {
        let settled: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pods.pods WHERE status = 'running' AND updated_at >= now() - $1::interval",
        )
        .bind(format!("{} milliseconds", started.elapsed().as_millis() + 1))
        .fetch_one(db)
        .await?;
        if settled as usize >= commands.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Phase {
        name,
        commands_per_second: commands.len() as f64 / accepted_after.as_secs_f64(),
        latency: percentiles(latencies),
        settled_after: started.elapsed(),
    })
}

/// `pod.create` → running (healthy) on Docker next to a bare volume + container with the
/// same image and health check, started and polled until the engine reports healthy;
/// (berth, bare) percentiles in µs.
pub async fn docker_pods(n: usize) -> anyhow::Result<((f64, f64), (f64, f64))> {
    use berth_pod_lifecycle::docker::{DockerRuntime, DockerRuntimeConfig};
    use bollard::models::{
        ContainerCreateBody, HealthConfig, HealthStatusEnum, HostConfig, Mount, MountType,
        VolumeCreateRequest,
    };
    use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};

    let docker = bollard::Docker::connect_with_defaults()?
        .negotiate_version()
        .await
        .context("no Docker engine answers (infra/docker-up.sh)")?;
    docker
        .inspect_image(TEST_IMAGE)
        .await
        .context("no test image (infra/build-test-image.sh)")?;
    let force = RemoveContainerOptionsBuilder::new().force(true).build();
    let mut bare = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("berth-bench-bare-pod-{i}-{}", Uuid::now_v7().simple());
        let started = Instant::now();
        docker
            .create_volume(VolumeCreateRequest {
                name: Some(name.clone()),
                ..Default::default()
            })
            .await?;
        let body = ContainerCreateBody {
            image: Some(TEST_IMAGE.into()),
            healthcheck: Some(HealthConfig {
                test: Some(vec![
                    "CMD".into(),
                    "test".into(),
                    "-d".into(),
                    "/data".into(),
                ]),
                interval: Some(1_000_000_000),
                timeout: Some(5_000_000_000),
                retries: Some(3),
                start_period: Some(0),
                start_interval: None,
            }),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                nano_cpus: Some(500_000_000),
                memory: Some(512 << 20),
                mounts: Some(vec![Mount {
                    target: Some("/data".into()),
                    source: Some(name.clone()),
                    typ: Some(MountType::VOLUME),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                body,
            )
            .await?;
        docker.start_container(&name, None).await?;
        loop {
            let state = docker
                .inspect_container(&name, None)
                .await?
                .state
                .unwrap_or_default();
            if state.health.and_then(|h| h.status) == Some(HealthStatusEnum::HEALTHY) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bare.push(started.elapsed());
        docker.remove_container(&name, Some(force.clone())).await?;
        docker
            .remove_volume(
                &name,
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await?;
    }

    let env = TestEnv::start().await?;
    let runtime = DockerRuntime::connect(DockerRuntimeConfig {
        scope: format!("bench-{}", Uuid::now_v7().simple()),
        network_mode: Some("none".into()),
    })
    .await?;
    let service = env
        .pod_lifecycle(
            crate::one_tenant_load(),
            Arc::new(runtime),
            pod_config(busybox_overrides()),
        )
        .await?;
    let acme = tenant("bench");
    let mut berth = Vec::with_capacity(n);
    for i in 0..n {
        let pod_id = Uuid::now_v7();
        let create = PodCommand::Create(CreatePod {
            pod_id: Some(pod_id),
            name: format!("d-{i}"),
            service: "n8n".into(),
            variant: "basic".into(),
            subscription_id: None,
            env: Default::default(),
        });
        let subject = status_subject(&acme, StatusKind::Pod, &pod_id.to_string())?;
        let started = Instant::now();
        let (reply, status) = tokio::join!(
            env.send_pod(&acme, &create),
            wait_for_status(
                &env.client,
                &subject,
                Duration::from_secs(60),
                |s: &Status<PodState>| s.state.status == PodStatus::Running
            )
        );
        reply?;
        status?;
        berth.push(started.elapsed());
        let delete = PodCommand::Delete(berth_schemas::pod::DeletePod {
            pod_id,
            keep_volume: false,
            expected_version: None,
        });
        env.send_pod(&acme, &delete).await?;
        env.wait_pod_status(&acme, pod_id, PodStatus::Deleted)
            .await?;
    }
    service.stop().await?;
    Ok((percentiles(berth), percentiles(bare)))
}
