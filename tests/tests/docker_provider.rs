//! The docker provider against the real engine: every `VmProvider` call, `exec` and
//! `engine_capacity`, with the image `berth/busybox:test`.
//!
//! Needs a running engine (`infra/docker-up.sh`) and the image
//! (`infra/build-test-image.sh`); `infra/install-deps.sh` does both, and without them
//! these tests fail rather than skip.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use anyhow::Context;
use berth_provisioner::docker::{DockerConfig, DockerProvider, LABEL_DISK_GB, LABEL_HOST};
use berth_provisioner::provider::{MachineSpec, PowerState, ProviderError, VmProvider};
use bollard::models::HostConfig;
use bollard::Docker;
use futures::FutureExt;
use uuid::Uuid;

const IMAGE: &str = "berth/busybox:test";
const HOST: &str = "docker-test-host";
const EXEC_TIMEOUT: Duration = Duration::from_secs(30);

/// The provider on this machine's engine, or a failure that says how to get one.
async fn provider() -> DockerProvider {
    let provider = DockerProvider::connect(DockerConfig {
        host_name: HOST.into(),
        network_mode: Some("none".into()),
    })
    .await
    .unwrap_or_else(|error| {
        panic!("no Docker engine answers ({error}): start one with `sudo infra/docker-up.sh`")
    });
    let image = engine().await.inspect_image(IMAGE).await;
    if let Err(error) = image {
        panic!("the test image {IMAGE} is missing ({error}): build it with `infra/build-test-image.sh`");
    }
    provider
}

/// A plain client, to look at what the provider made.
async fn engine() -> Docker {
    Docker::connect_with_defaults()
        .expect("address the Docker engine")
        .negotiate_version()
        .await
        .unwrap_or_else(|error| {
            panic!("no Docker engine answers ({error}): start one with `sudo infra/docker-up.sh`")
        })
}

fn spec(image: &str) -> MachineSpec {
    MachineSpec {
        vm_id: Uuid::now_v7(),
        tenant: "acme".into(),
        host: HOST.into(),
        vcpus: 1,
        memory_mb: 512,
        disk_gb: 10,
        image: image.into(),
    }
}

fn command(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| (*arg).to_owned()).collect()
}

async fn limits(name: &str) -> anyhow::Result<HostConfig> {
    engine()
        .await
        .inspect_container(name, None)
        .await?
        .host_config
        .context("container without host config")
}

/// Runs `test`, then removes the machine whether it passed, failed or panicked.
async fn with_cleanup(
    provider: &DockerProvider,
    name: &str,
    test: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let outcome = AssertUnwindSafe(test).catch_unwind().await;
    let cleanup = provider.destroy(name).await;
    match outcome {
        Ok(result) => {
            result?;
            cleanup?;
            Ok(())
        }
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

#[tokio::test]
async fn a_vm_lives_its_whole_life_as_a_container() -> anyhow::Result<()> {
    let provider = provider().await;
    let spec = spec(IMAGE);
    let name = spec.machine_name();
    with_cleanup(&provider, &name, async {
        // create is idempotent: one container, made stopped, sized and labelled.
        let first = provider.create(&spec).await?;
        let second = provider.create(&spec).await?;
        assert_eq!(first, second);
        assert_eq!(first.name, name);
        assert_eq!(first.host, HOST);
        assert_eq!(first.power, PowerState::Stopped);
        let listed = provider.list().await?;
        assert_eq!(
            listed.iter().filter(|machine| machine.name == name).count(),
            1
        );
        let inspected = engine().await.inspect_container(&name, None).await?;
        let labels = inspected.config.and_then(|c| c.labels).unwrap_or_default();
        assert_eq!(
            labels.get("berth.managed").map(String::as_str),
            Some("true")
        );
        assert_eq!(labels.get("berth.tenant").map(String::as_str), Some("acme"));
        assert_eq!(labels.get("berth.vm"), Some(&spec.vm_id.to_string()));
        assert_eq!(labels.get(LABEL_HOST).map(String::as_str), Some(HOST));
        assert_eq!(labels.get(LABEL_DISK_GB).map(String::as_str), Some("10"));
        let host_config = inspected.host_config.context("host config")?;
        assert_eq!(host_config.nano_cpus, Some(1_000_000_000));
        assert_eq!(host_config.memory, Some(512 * 1024 * 1024));
        assert_eq!(host_config.network_mode.as_deref(), Some("none"));

        // exec needs a running machine.
        let refused = provider
            .exec(&name, &command(&["echo", "hello"]), EXEC_TIMEOUT)
            .await;
        assert_eq!(
            refused,
            Err(ProviderError::Permanent(format!(
                "vm {name} is not running"
            )))
        );

        // start twice: the second is a no-op.
        provider.start(&name).await?;
        provider.start(&name).await?;
        assert_eq!(
            provider.inspect(&name).await?.map(|m| m.power),
            Some(PowerState::Running)
        );

        let hello = provider
            .exec(&name, &command(&["echo", "hello"]), EXEC_TIMEOUT)
            .await?;
        assert_eq!(hello.exit_code, 0);
        assert_eq!(hello.stdout, "hello\n");
        assert_eq!(hello.stderr, "");
        let failed = provider
            .exec(
                &name,
                &command(&["sh", "-c", "echo oops >&2; exit 3"]),
                EXEC_TIMEOUT,
            )
            .await?;
        assert_eq!(failed.exit_code, 3);
        assert_eq!(failed.stdout, "");
        assert_eq!(failed.stderr, "oops\n");

        // resize wants a stopped machine.
        let mut bigger = spec.clone();
        // Two vCPUs, or all the engine has: it refuses more CPUs than it owns.
        let (engine_cpus, _) = provider.engine_capacity().await?;
        bigger.vcpus = engine_cpus.min(2);
        bigger.memory_mb = 2048;
        assert!(matches!(
            provider.resize(&bigger).await,
            Err(ProviderError::Permanent(message)) if message.contains("must be stopped")
        ));

        // stop twice: the second is a no-op.
        provider.stop(&name).await?;
        provider.stop(&name).await?;
        assert_eq!(
            provider.inspect(&name).await?.map(|m| m.power),
            Some(PowerState::Stopped)
        );

        provider.resize(&bigger).await?;
        let resized = limits(&name).await?;
        assert_eq!(
            resized.nano_cpus,
            Some(i64::from(bigger.vcpus) * 1_000_000_000)
        );
        assert_eq!(resized.memory, Some(2048 * 1024 * 1024));
        assert_eq!(resized.memory_swap, Some(2048 * 1024 * 1024));

        provider.restart(&name).await?;
        assert_eq!(
            provider.inspect(&name).await?.map(|m| m.power),
            Some(PowerState::Running)
        );

        // destroy twice: the second finds nothing and succeeds.
        provider.destroy(&name).await?;
        provider.destroy(&name).await?;
        assert_eq!(provider.inspect(&name).await?, None);
        assert!(!provider.list().await?.iter().any(|m| m.name == name));
        assert_eq!(
            provider.start(&name).await,
            Err(ProviderError::NotFound(name.clone()))
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_missing_image_is_a_permanent_error() -> anyhow::Result<()> {
    let provider = provider().await;
    let spec = spec("berth/no-such-image:missing");
    let name = spec.machine_name();
    with_cleanup(&provider, &name, async {
        let created = provider.create(&spec).await;
        assert!(
            matches!(&created, Err(ProviderError::Permanent(message)) if message.contains("No such image")),
            "{created:?}"
        );
        assert_eq!(provider.inspect(&name).await?, None);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn an_exec_that_outlives_its_timeout_is_transient() -> anyhow::Result<()> {
    let provider = provider().await;
    let spec = spec(IMAGE);
    let name = spec.machine_name();
    with_cleanup(&provider, &name, async {
        provider.create(&spec).await?;
        provider.start(&name).await?;
        let slow = provider
            .exec(
                &name,
                &command(&["sleep", "30"]),
                Duration::from_millis(300),
            )
            .await;
        assert!(
            matches!(&slow, Err(ProviderError::Transient(message)) if message.contains("did not finish")),
            "{slow:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn the_engine_reports_its_capacity() {
    let (vcpus, memory_mb) = provider().await.engine_capacity().await.unwrap();
    assert!(vcpus >= 1, "{vcpus} CPUs");
    assert!(memory_mb >= 256, "{memory_mb} MB");
}
