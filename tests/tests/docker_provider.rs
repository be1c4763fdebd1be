//! The docker provider against the real engine: every `VmProvider` call, `exec` and
//! `engine_capacity`, with the image `berth/busybox:test`; the hardening every container
//! gets (pids limit, capabilities, no-new-privileges) and the networking modes (a network
//! per tenant, `none`, the host network refused). Ownership across tenants is
//! `resource_ownership.rs`.
//!
//! Needs a running engine (`infra/docker-up.sh`) and the image
//! (`infra/build-test-image.sh`); `infra/install-deps.sh` does both, and without them
//! these tests fail rather than skip.

use berth_tests::docker::engine;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use anyhow::Context;
use berth_provisioner::docker::{
    tenant_network, DockerConfig, DockerProvider, CAPABILITIES, LABEL_DISK_GB, LABEL_HOST,
    LABEL_ID, LABEL_TENANT, PIDS_LIMIT,
};
use berth_provisioner::provider::{MachineSpec, PowerState, ProviderError, VmProvider};
use berth_schemas::TenantId;
use bollard::models::HostConfig;
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

fn acme() -> TenantId {
    TenantId::parse("acme").expect("a tenant id")
}

fn spec(image: &str) -> MachineSpec {
    MachineSpec {
        vm_id: Uuid::now_v7(),
        tenant: acme(),
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

/// What every container of a tenant's VM must carry.
fn assert_hardened(host_config: &HostConfig) {
    assert_eq!(host_config.pids_limit, Some(PIDS_LIMIT), "pids limit");
    assert_eq!(
        host_config.cap_drop.as_deref(),
        Some(&["ALL".to_owned()][..]),
        "every capability dropped"
    );
    let mut added = host_config.cap_add.clone().unwrap_or_default();
    added.sort();
    let mut expected: Vec<String> = CAPABILITIES.iter().map(|c| (*c).to_owned()).collect();
    expected.sort();
    assert_eq!(added, expected, "only the base image's capabilities");
    assert_eq!(
        host_config.security_opt.as_deref(),
        Some(&["no-new-privileges".to_owned()][..])
    );
    assert_ne!(host_config.network_mode.as_deref(), Some("host"));
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
    let cleanup = provider.destroy(&acme(), name).await;
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
        assert_eq!(labels.get(LABEL_ID), Some(&spec.vm_id.to_string()));
        assert_eq!(first.tenant.as_deref(), Some("acme"));
        assert_eq!(labels.get(LABEL_HOST).map(String::as_str), Some(HOST));
        assert_eq!(labels.get(LABEL_DISK_GB).map(String::as_str), Some("10"));
        let host_config = inspected.host_config.context("host config")?;
        assert_eq!(host_config.nano_cpus, Some(1_000_000_000));
        assert_eq!(host_config.memory, Some(512 * 1024 * 1024));
        assert_eq!(host_config.network_mode.as_deref(), Some("none"));
        assert_hardened(&host_config);

        // exec needs a running machine.
        let refused = provider
            .exec(&acme(), &name, &command(&["echo", "hello"]), EXEC_TIMEOUT)
            .await;
        assert_eq!(
            refused,
            Err(ProviderError::Permanent(format!(
                "vm {name} is not running"
            )))
        );

        // start twice: the second is a no-op.
        provider.start(&acme(), &name).await?;
        provider.start(&acme(), &name).await?;
        assert_eq!(
            provider.inspect(&name).await?.map(|m| m.power),
            Some(PowerState::Running)
        );

        let hello = provider
            .exec(&acme(), &name, &command(&["echo", "hello"]), EXEC_TIMEOUT)
            .await?;
        assert_eq!(hello.exit_code, 0);
        assert_eq!(hello.stdout, "hello\n");
        assert_eq!(hello.stderr, "");
        let failed = provider
            .exec(
                &acme(),
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
        provider.stop(&acme(), &name).await?;
        provider.stop(&acme(), &name).await?;
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

        provider.restart(&acme(), &name).await?;
        assert_eq!(
            provider.inspect(&name).await?.map(|m| m.power),
            Some(PowerState::Running)
        );

        // destroy twice: the second finds nothing and succeeds.
        provider.destroy(&acme(), &name).await?;
        provider.destroy(&acme(), &name).await?;
        assert_eq!(provider.inspect(&name).await?, None);
        assert!(!provider.list().await?.iter().any(|m| m.name == name));
        assert_eq!(
            provider.start(&acme(), &name).await,
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
        provider.start(&acme(), &name).await?;
        let slow = provider
            .exec(
                &acme(),
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

#[tokio::test]
async fn the_hardening_holds_inside_the_running_container() -> anyhow::Result<()> {
    let provider = provider().await;
    let spec = spec(IMAGE);
    let name = spec.machine_name();
    with_cleanup(&provider, &name, async {
        provider.create(&spec).await?;
        provider.start(&acme(), &name).await?;
        let status = provider
            .exec(
                &acme(),
                &name,
                &command(&["sh", "-c", "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max"]),
                EXEC_TIMEOUT,
            )
            .await?;
        assert_eq!(status.exit_code, 0, "{status:?}");
        // CHOWN 0, DAC_OVERRIDE 1, FOWNER 3, KILL 5, SETGID 6, SETUID 7, NET_BIND_SERVICE 10.
        let expected_caps = (1u64 << 0)
            | (1 << 1)
            | (1 << 3)
            | (1 << 5)
            | (1 << 6)
            | (1 << 7)
            | (1 << 10);
        assert!(
            status.stdout.contains(&format!("CapEff:\t{expected_caps:016x}")),
            "{}",
            status.stdout
        );
        assert!(status.stdout.contains("NoNewPrivs:\t1"), "{}", status.stdout);
        assert!(
            status.stdout.lines().any(|line| line == PIDS_LIMIT.to_string()),
            "{}",
            status.stdout
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn the_host_network_and_shared_networks_are_refused_at_connect() {
    for refused in [
        "host",
        "bridge",
        "default",
        "some-shared-net",
        "container:abc",
    ] {
        let connected = DockerProvider::connect(DockerConfig {
            host_name: HOST.into(),
            network_mode: Some(refused.into()),
        })
        .await;
        assert!(
            matches!(&connected, Err(ProviderError::Permanent(m)) if m.contains("refused")),
            "{refused}: {:?}",
            connected.err()
        );
    }
}

/// A tenant's machines join the tenant's own network, made once, labelled, internal;
/// another tenant's machines join another network. (On an engine without iptables, as
/// here, the engine routes between the two: see the docker module's docs.)
#[tokio::test]
async fn each_tenant_gets_its_own_internal_network() -> anyhow::Result<()> {
    let provider = DockerProvider::connect(DockerConfig {
        host_name: HOST.into(),
        network_mode: None,
    })
    .await?;
    let docker = engine().await;
    let suffix = &Uuid::now_v7().simple().to_string()[20..];
    let tenants = [
        TenantId::parse(&format!("net-a-{suffix}"))?,
        TenantId::parse(&format!("net-b-{suffix}"))?,
    ];
    let mut specs = Vec::new();
    for tenant in &tenants {
        for _ in 0..2 {
            specs.push(MachineSpec {
                tenant: tenant.clone(),
                ..spec(IMAGE)
            });
        }
    }
    let outcome = AssertUnwindSafe(async {
        // Concurrent creates of one tenant make one network, not two.
        let created = futures::future::join_all(specs.iter().map(|s| provider.create(s))).await;
        for machine in created {
            machine?;
        }
        for spec in &specs {
            let inspected = docker.inspect_container(&spec.machine_name(), None).await?;
            assert_hardened(&inspected.host_config.clone().unwrap_or_default());
            let networks = inspected
                .network_settings
                .and_then(|n| n.networks)
                .unwrap_or_default();
            let joined: Vec<&String> = networks.keys().collect();
            assert_eq!(joined, vec![&tenant_network(spec.tenant.as_str())]);
        }
        for tenant in &tenants {
            let name = tenant_network(tenant.as_str());
            let filters = HashMap::from([("name", vec![name.as_str()])]);
            let found: Vec<_> = docker
                .list_networks(Some(
                    bollard::query_parameters::ListNetworksOptionsBuilder::new()
                        .filters(&filters)
                        .build(),
                ))
                .await?
                .into_iter()
                .filter(|n| n.name.as_deref() == Some(name.as_str()))
                .collect();
            assert_eq!(found.len(), 1, "one network per tenant: {found:?}");
            assert_eq!(found[0].internal, Some(true));
            let labels = found[0].labels.clone().unwrap_or_default();
            assert_eq!(labels.get(LABEL_TENANT), Some(&tenant.to_string()));
        }
        anyhow::Ok(())
    })
    .catch_unwind()
    .await;
    for spec in &specs {
        provider.destroy(&spec.tenant, &spec.machine_name()).await?;
    }
    for tenant in &tenants {
        let _ = docker
            .remove_network(&tenant_network(tenant.as_str()))
            .await;
    }
    match outcome {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
