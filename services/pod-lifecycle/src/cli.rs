//! The `berth-pod-lifecycle` command line: flags, then [`berth_runtime::service::main`]
//! runs [`crate::run`]. [`PodArgs`] is shared with `berth up`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_runtime::service::{self, ServiceArgs};
use berth_runtime::Settings;
use clap::Parser;

use crate::catalog::{Catalog, Overrides, Rendering};
use crate::docker::{DockerRuntime, DockerRuntimeConfig};
use crate::health::HealthPolicy;
use crate::kubernetes::KubernetesRuntime;
use crate::runtime::PodRuntime;
use crate::sim::SimRuntime;
use crate::specs::Specs;
use crate::PodLifecycleConfig;

/// Runs pod commands, the runtime reactor, health monitoring and the pods projection.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Cli {
    #[command(flatten)]
    service: ServiceArgs,
    #[command(flatten)]
    pods: PodArgs,
}

/// Where pods run and how they are made.
#[derive(clap::Args, Debug, Clone)]
pub struct PodArgs {
    /// Which platform runs the pods.
    #[arg(
        long = "pod-runtime",
        env = "BERTH_POD_RUNTIME",
        value_enum,
        default_value = "sim"
    )]
    pub runtime: RuntimeKind,
    /// docker: `tenant` (default: an internal network per tenant), `tenant-external`
    /// (per tenant, with a route out) or `none`; `host` and shared networks are refused.
    #[arg(long = "pod-docker-network", env = "BERTH_POD_DOCKER_NETWORK")]
    pub docker_network: Option<String>,
    /// docker: this installation's scope label; pods debug sees only objects carrying it.
    #[arg(
        long = "pod-docker-scope",
        env = "BERTH_POD_DOCKER_SCOPE",
        default_value = "berth"
    )]
    pub docker_scope: String,
    /// Image overrides, `service=image` or `service/variant=image` (repeat or comma-separate).
    #[arg(long = "pod-image", env = "BERTH_POD_IMAGES", value_delimiter = ',')]
    pub images: Vec<String>,
    /// Storage class of new volumes (default: the catalog's, else the platform's default).
    #[arg(long = "pod-storage-class", env = "BERTH_POD_STORAGE_CLASS")]
    pub storage_class: Option<String>,
    /// Pods are served at `<name>.<tenant>.<domain>`.
    #[arg(
        long = "pod-domain",
        env = "BERTH_POD_DOMAIN",
        default_value = "pods.berth.localhost"
    )]
    pub base_domain: String,
    /// File holding the key the pods' generated secrets derive from (keep it safe: a new
    /// key changes every pod's secrets). Required for docker and kubernetes.
    #[arg(long = "pod-secret-key-file", env = "BERTH_POD_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// Seconds between health checks of every running pod.
    #[arg(
        long = "pod-health-interval-secs",
        env = "BERTH_POD_HEALTH_INTERVAL_SECS",
        default_value_t = 10
    )]
    pub health_interval_secs: u64,
    /// Automatic restarts of an unhealthy pod per hour before it counts as failed.
    #[arg(
        long = "pod-max-restarts-per-hour",
        env = "BERTH_POD_MAX_RESTARTS_PER_HOUR",
        default_value_t = 3
    )]
    pub max_restarts_per_hour: usize,
}

/// The pod platforms.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    /// In memory: demos and load tests.
    Sim,
    /// Containers and named volumes on the engine at `DOCKER_HOST` (or the default socket).
    Docker,
    /// Namespaces, PVCs, Deployments and Services on the cluster of the in-cluster
    /// config or `KUBECONFIG`.
    Kubernetes,
}

impl PodArgs {
    /// The runtime and the configuration these flags describe.
    pub async fn build(&self) -> anyhow::Result<(Arc<dyn PodRuntime>, PodLifecycleConfig)> {
        let runtime: Arc<dyn PodRuntime> = match self.runtime {
            RuntimeKind::Sim => Arc::new(SimRuntime::new(Duration::from_millis(20))),
            RuntimeKind::Docker => Arc::new(
                DockerRuntime::connect(DockerRuntimeConfig {
                    scope: self.docker_scope.clone(),
                    network_mode: self.docker_network.clone(),
                })
                .await
                .context(
                    "connecting to the Docker engine (is DOCKER_HOST right, is dockerd running?)",
                )?,
            ),
            RuntimeKind::Kubernetes => Arc::new(
                KubernetesRuntime::connect()
                    .await
                    .context("connecting to Kubernetes (in-cluster config or KUBECONFIG)")?,
            ),
        };
        let secret_key = match (&self.secret_key_file, self.runtime) {
            (Some(path), _) => read_secret_key(path)?,
            (None, RuntimeKind::Sim) => {
                tracing::warn!("no --pod-secret-key-file: sim pods get secrets from a key made for this run");
                rand::random::<[u8; 32]>().to_vec()
            }
            (None, _) => anyhow::bail!(
                "--pod-secret-key-file (BERTH_POD_SECRET_KEY_FILE) is required for the {:?} runtime: pods' secrets derive from it",
                self.runtime
            ),
        };
        let mut images = HashMap::new();
        for entry in &self.images {
            let (service, image) = entry
                .split_once('=')
                .with_context(|| format!("--pod-image takes service=image, not {entry:?}"))?;
            images.insert(service.to_owned(), image.to_owned());
        }
        let specs = Specs {
            catalog: Catalog::builtin().context("loading the service catalog")?,
            overrides: Overrides {
                images,
                storage_class: self.storage_class.clone(),
                ..Overrides::default()
            },
            rendering: Rendering {
                base_domain: self.base_domain.clone(),
                secret_key,
            },
        };
        let mut config = PodLifecycleConfig::new(specs);
        config.health = HealthPolicy {
            interval: Duration::from_secs(self.health_interval_secs.max(1)),
            max_restarts_per_hour: self.max_restarts_per_hour,
            ..HealthPolicy::default()
        };
        Ok((runtime, config))
    }
}

/// Reads a secret key file: at least 16 bytes after trimming.
pub fn read_secret_key(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let key = std::fs::read(path)
        .with_context(|| format!("reading the pod secret key {}", path.display()))?;
    let key = key.trim_ascii().to_vec();
    if key.len() < 16 {
        anyhow::bail!(
            "the pod secret key {} is shorter than 16 bytes",
            path.display()
        );
    }
    Ok(key)
}

/// Parses the command line and runs pod-lifecycle until SIGINT/SIGTERM.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    service::main(
        "pod-lifecycle",
        cli.service,
        Settings::default(),
        |rt| async move {
            let (runtime, config) = cli.pods.build().await?;
            Ok(crate::run(rt, runtime, config).await?)
        },
    )
}
