//! Pods in tests: pod-lifecycle in this process on any runtime, with a test catalog
//! configuration (the busybox image for Docker, a fast health check).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_pod_lifecycle::catalog::{Catalog, Overrides, Probe, Rendering};
use berth_pod_lifecycle::health::HealthPolicy;
use berth_pod_lifecycle::runtime::PodRuntime;
use berth_pod_lifecycle::specs::Specs;
use berth_pod_lifecycle::PodLifecycleConfig;
use berth_runtime::{Runtime, Settings};
use berth_schemas::pod::{CreatePod, PodCommand, PodStatus};
use berth_schemas::status::{PodState, Status};
use berth_schemas::subjects::{status_subject, StatusKind};
use berth_schemas::vm::ExecOutput;
use berth_schemas::{CommandReply, CommandSet, TenantId};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{meta, RunningService, TestEnv};

/// The image the Docker runtime tests run (`infra/build-test-image.sh`).
pub const TEST_IMAGE: &str = "berth/busybox:test";

/// Catalog overrides that run every service as the busybox test image, healthy while
/// its volume is mounted.
pub fn busybox_overrides() -> Overrides {
    let catalog = Catalog::builtin().expect("the builtin catalog");
    let mut overrides = Overrides {
        health_interval_secs: Some(1),
        ..Overrides::default()
    };
    for (name, service) in &catalog.services {
        overrides.images.insert(name.clone(), TEST_IMAGE.into());
        overrides.probes.insert(
            name.clone(),
            Probe::Command(vec![
                "test".into(),
                "-d".into(),
                service.volume.mount_path.clone(),
            ]),
        );
    }
    overrides
}

/// A pod-lifecycle configuration for tests: quick health checks and back-off.
pub fn pod_config(overrides: Overrides) -> PodLifecycleConfig {
    let specs = Specs {
        catalog: Catalog::builtin().expect("the builtin catalog"),
        overrides,
        rendering: Rendering {
            base_domain: "pods.test".into(),
            secret_key: b"a test key of enough bytes".to_vec(),
        },
    };
    let mut config = PodLifecycleConfig::new(specs);
    config.health = HealthPolicy {
        interval: Duration::from_millis(200),
        max_restarts_per_hour: 3,
        backoff_base: Duration::from_millis(100),
    };
    config
}

impl TestEnv {
    /// pod-lifecycle in this process.
    pub async fn pod_lifecycle(
        &self,
        settings: Settings,
        runtime: Arc<dyn PodRuntime>,
        config: PodLifecycleConfig,
    ) -> anyhow::Result<RunningService> {
        let shutdown = CancellationToken::new();
        let rt =
            Runtime::connect("pod-lifecycle", &self.connect, settings, shutdown.clone()).await?;
        let db = rt.db.clone();
        let task =
            tokio::spawn(async move { Ok(berth_pod_lifecycle::run(rt, runtime, config).await?) });
        self.wait_for_service("berth-pod").await?;
        Ok(RunningService { shutdown, task, db })
    }

    /// Sends a pod command as `user:test`.
    pub async fn send_pod(
        &self,
        tenant: &TenantId,
        command: &PodCommand,
    ) -> anyhow::Result<CommandReply<ExecOutput>> {
        Ok(berth_runtime::client::send_command_with_output(
            &self.client,
            tenant,
            "pod",
            command.action(),
            &meta(),
            command.body(),
        )
        .await?)
    }

    /// Creates a pod of `service`/`variant`; fails if the create is rejected.
    pub async fn create_pod(
        &self,
        tenant: &TenantId,
        name: &str,
        service: &str,
        variant: &str,
    ) -> anyhow::Result<Uuid> {
        let command = PodCommand::Create(CreatePod {
            pod_id: None,
            name: name.into(),
            service: service.into(),
            variant: variant.into(),
            subscription_id: None,
            env: Default::default(),
        });
        let reply = self.send_pod(tenant, &command).await?;
        crate::accepted_id(&reply).with_context(|| format!("create {name} was rejected: {reply:?}"))
    }

    /// Waits until `status.<tenant>.pod.<id>` reports `wanted`; returns that status.
    pub async fn wait_pod_status(
        &self,
        tenant: &TenantId,
        id: Uuid,
        wanted: PodStatus,
    ) -> anyhow::Result<Status<PodState>> {
        self.wait_pod_status_after(tenant, id, wanted, 0).await
    }

    /// Sends a pod command that must be accepted and waits until the pod is `wanted` at
    /// a version after the command's events (not a status from before it).
    pub async fn pod_command_until(
        &self,
        tenant: &TenantId,
        command: &PodCommand,
        wanted: PodStatus,
    ) -> anyhow::Result<Status<PodState>> {
        let reply = self.send_pod(tenant, command).await?;
        let CommandReply::Accepted {
            aggregate_id,
            version,
            ..
        } = reply
        else {
            anyhow::bail!("{} was rejected: {reply:?}", command.action());
        };
        self.wait_pod_status_after(tenant, aggregate_id, wanted, version + 1)
            .await
    }

    /// Waits until the pod reports `wanted` at `min_version` or later.
    pub async fn wait_pod_status_after(
        &self,
        tenant: &TenantId,
        id: Uuid,
        wanted: PodStatus,
        min_version: u64,
    ) -> anyhow::Result<Status<PodState>> {
        let subject = status_subject(tenant, StatusKind::Pod, &id.to_string())?;
        berth_runtime::client::wait_for_status(
            &self.client,
            &subject,
            Duration::from_secs(60),
            |s: &Status<PodState>| s.state.status == wanted && s.version >= min_version,
        )
        .await
        .with_context(|| format!("pod {id} never became {wanted}"))
    }
}
