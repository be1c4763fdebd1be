//! The `berth-provisioner` command line: flags, then [`berth_runtime::service::main`] runs
//! [`crate::run`] with the provider the flags choose.

use std::sync::Arc;
use std::time::Duration;

use crate::demo::DemoConfig;
use crate::docker::{DockerConfig, DockerProvider};
use crate::provider::VmProvider;
use crate::reactor::Concurrency;
use crate::sim::{SimConfig, SimProvider, SimServers};
use crate::ProvisionerConfig;
use anyhow::Context;
use berth_runtime::service::{self, ServiceArgs};
use berth_runtime::{Runtime, Settings};
use berth_schemas::server::RegisterServer;
use berth_schemas::usage::{Limits, Tier};
use berth_schemas::vm::Plan;
use berth_schemas::TenantId;
use clap::Parser;

/// Runs VM commands, the provider reactor and the vms projection.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Cli {
    #[command(flatten)]
    service: ServiceArgs,
    /// Which provider runs the VMs.
    #[arg(long, env = "BERTH_PROVIDER", value_enum, default_value = "sim")]
    provider: ProviderKind,
    /// sim: mean latency of every provider call, in milliseconds.
    #[arg(long, env = "BERTH_SIM_LATENCY_MS", default_value_t = 200)]
    sim_latency_ms: u64,
    /// sim: probability in [0, 1] that a provider call fails.
    #[arg(long, env = "BERTH_SIM_FAILURE_RATE", default_value_t = 0.0)]
    sim_failure_rate: f64,
    /// sim: servers registered at start (`sim-host-1` …), each with the sizes below.
    #[arg(long, env = "BERTH_SIM_SERVERS", default_value_t = 4)]
    sim_servers: u32,
    /// sim: physical vCPUs of each server.
    #[arg(long, env = "BERTH_SIM_SERVER_VCPUS", default_value_t = 64)]
    sim_server_vcpus: u32,
    /// sim: memory of each server, in MB.
    #[arg(long, env = "BERTH_SIM_SERVER_MEMORY_MB", default_value_t = 262_144)]
    sim_server_memory_mb: u32,
    /// sim: disk of each server, in GB.
    #[arg(long, env = "BERTH_SIM_SERVER_DISK_GB", default_value_t = 8192)]
    sim_server_disk_gb: u32,
    /// docker: the server name the engine is registered as.
    #[arg(long, env = "BERTH_DOCKER_SERVER", default_value = "docker-local")]
    docker_server: String,
    /// docker: `tenant` (default: an internal network per tenant), `tenant-external`
    /// (per tenant, with a route out) or `none`; `host` and shared networks are refused.
    #[arg(long, env = "BERTH_DOCKER_NETWORK")]
    docker_network: Option<String>,
    /// docker: disk sold on the engine's server, in GB (the engine does not say).
    #[arg(long, env = "BERTH_DOCKER_DISK_GB", default_value_t = 500)]
    docker_disk_gb: u32,
    /// Region of the servers this provisioner registers.
    #[arg(long, env = "BERTH_REGION", default_value = "local")]
    region: String,
    /// vCPUs sold per physical vCPU on the servers this provisioner registers.
    #[arg(long, env = "BERTH_CPU_OVERCOMMIT", default_value_t = 4.0)]
    cpu_overcommit: f64,
    /// Memory sold per physical MB on the servers this provisioner registers.
    #[arg(long, env = "BERTH_MEMORY_OVERCOMMIT", default_value_t = 1.0)]
    memory_overcommit: f64,
    /// Creates and recreates in flight at once in this process.
    #[arg(long, env = "BERTH_MAX_PROVISIONS", default_value_t = 2)]
    max_provisions: usize,
    /// Start, stop, restart, resize and destroy calls in flight at once in this process.
    #[arg(long, env = "BERTH_MAX_CONTROL_OPS", default_value_t = 5)]
    max_control_ops: usize,
    /// Seconds between reconciliations on the provisioner's own timer (0: none — the
    /// scheduler's built-in `reconcile` schedule fires every minute, and operators can ask).
    #[arg(long, env = "BERTH_RECONCILE_EVERY_SECS", default_value_t = 0)]
    reconcile_every_secs: u64,
    /// sim: probability in [0, 1] that a call acts but its reply is lost (a timeout).
    #[arg(long, env = "BERTH_SIM_LOST_REPLY_RATE", default_value_t = 0.0)]
    sim_lost_reply_rate: f64,
    /// sim: operations that always fail for good, comma-separated (fault injection).
    #[arg(long, env = "BERTH_SIM_BROKEN", value_delimiter = ',')]
    sim_broken: Vec<String>,
    /// The tenant of the public demo, reset on every fire of the `demo-reset` schedule
    /// (07:00 UTC daily); no demo without it.
    #[arg(long, env = "BERTH_DEMO_TENANT")]
    demo_tenant: Option<TenantId>,
    /// The demo VM's name.
    #[arg(long, env = "BERTH_DEMO_NAME", default_value = "public-demo")]
    demo_name: String,
    /// The demo VM's image.
    #[arg(long, env = "BERTH_DEMO_IMAGE", default_value = "debian-12")]
    demo_image: String,
    /// Quota of tenants without one of their own: free, pro or unlimited.
    #[arg(long, env = "BERTH_DEFAULT_TIER", value_enum, default_value = "free")]
    default_tier: DefaultTier,
    /// Deliveries of an event before it goes to the DLQ.
    #[arg(long, env = "BERTH_MAX_DELIVER", default_value_t = 8)]
    max_deliver: i64,
    /// Seconds a reactor may work on an event before it is delivered again (also how
    /// long events that a crashed process held wait before another takes them).
    #[arg(long, env = "BERTH_ACK_WAIT_SECS", default_value_t = 60)]
    ack_wait_secs: u64,
    /// First retry delay of a failed provider call, in milliseconds.
    #[arg(long, env = "BERTH_BACKOFF_MS", default_value_t = 500)]
    backoff_ms: u64,
}

/// The quota of tenants that have none of their own.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum DefaultTier {
    Free,
    Pro,
    /// No limits (development and load tests).
    Unlimited,
}

impl DefaultTier {
    pub fn limits(self) -> Option<Limits> {
        match self {
            Self::Free => Some(Tier::Free.limits()),
            Self::Pro => Some(Tier::Pro.limits()),
            Self::Unlimited => None,
        }
    }
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum ProviderKind {
    /// The simulated datacenter.
    Sim,
    /// Containers on the Docker engine at `DOCKER_HOST` (or the default socket).
    Docker,
}

/// Parses the command line and runs the provisioner until SIGINT/SIGTERM.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if !(0.0..=1.0).contains(&cli.sim_failure_rate) {
        anyhow::bail!(
            "--sim-failure-rate must be between 0 and 1, got {}",
            cli.sim_failure_rate
        );
    }
    let settings = Settings {
        reactor_max_deliver: cli.max_deliver,
        reactor_ack_wait: Duration::from_secs(cli.ack_wait_secs),
        reactor_backoff_base: Duration::from_millis(cli.backoff_ms),
        ..Settings::default()
    };
    service::main("provisioner", cli.service.clone(), settings, |rt| {
        run_with_provider(rt, cli)
    })
}

/// Connects the provider the flags choose and runs the provisioner on it.
async fn run_with_provider(rt: Runtime, cli: Cli) -> anyhow::Result<()> {
    let (provider, servers): (Arc<dyn VmProvider>, _) = match cli.provider {
        ProviderKind::Sim => {
            let sim = SimProvider::new(SimConfig {
                latency: Duration::from_millis(cli.sim_latency_ms),
                failure_rate: cli.sim_failure_rate,
                lost_reply_rate: cli.sim_lost_reply_rate,
                broken: cli.sim_broken.clone(),
            });
            let servers = SimServers {
                count: cli.sim_servers,
                region: cli.region.clone(),
                vcpus: cli.sim_server_vcpus,
                memory_mb: cli.sim_server_memory_mb,
                disk_gb: cli.sim_server_disk_gb,
                cpu_overcommit: cli.cpu_overcommit,
                memory_overcommit: cli.memory_overcommit,
            }
            .specs();
            (Arc::new(sim), servers)
        }
        ProviderKind::Docker => {
            let docker = DockerProvider::connect(DockerConfig {
                host_name: cli.docker_server.clone(),
                network_mode: cli.docker_network.clone(),
            })
            .await
            .context(
                "connecting to the Docker engine (is DOCKER_HOST right, is dockerd running?)",
            )?;
            let (vcpus, memory_mb) = docker
                .engine_capacity()
                .await
                .context("reading the Docker engine's capacity")?;
            let server = RegisterServer {
                name: cli.docker_server.clone(),
                region: cli.region.clone(),
                provider: "docker".into(),
                vcpus,
                memory_mb,
                disk_gb: cli.docker_disk_gb,
                cpu_overcommit: cli.cpu_overcommit,
                memory_overcommit: cli.memory_overcommit,
            };
            (Arc::new(docker), vec![server])
        }
    };
    crate::run(
        rt,
        provider,
        ProvisionerConfig {
            default_limits: cli.default_tier.limits(),
            servers,
            concurrency: Concurrency {
                provisions: cli.max_provisions,
                control_ops: cli.max_control_ops,
            },
            reconcile_every: (cli.reconcile_every_secs > 0)
                .then(|| Duration::from_secs(cli.reconcile_every_secs)),
            demo: cli.demo_tenant.clone().map(|tenant| DemoConfig {
                tenant,
                name: cli.demo_name.clone(),
                plan: Plan::Small,
                image: cli.demo_image.clone(),
                timeout: Duration::from_secs(600),
            }),
        },
    )
    .await?;
    Ok(())
}
