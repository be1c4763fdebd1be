//! A private nats-server and Postgres cluster under a directory: what `berth up` runs
//! when nothing is configured, and what the test harness starts per test binary.
//!
//! Each server runs under a small `sh` watchdog that stops it when the process that
//! started it exits — even on SIGKILL or a failed test — so nothing is left behind.
//! Postgres refuses to run as root; as root the cluster is owned by and run as the
//! `postgres` user.

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use berth_schemas::subjects::{tenant_status_filter, ALL_COMMANDS, ALL_STATUS};
use berth_schemas::TenantId;
use sqlx::{Connection, PgConnection};
use tokio::process::{Child, Command};

use berth_runtime::{Error, Result};

/// Stops the wrapped server when the starting process (`$BERTH_PARENT`) is gone, and
/// stops it with SIGINT (graceful for nats-server, fast for Postgres) on SIGTERM; then
/// removes `$BERTH_REMOVE_AFTER` if set (the data of a throw-away server).
/// The server may run under `runuser`, which does not pass SIGINT on: the signal goes to
/// the child's own children too (`pkill -P`).
const WATCHDOG: &str = r#""$@" & child=$!
stop() { pkill -INT -P $child 2>/dev/null; kill -INT $child 2>/dev/null; wait $child; [ -n "$BERTH_REMOVE_AFTER" ] && rm -rf "$BERTH_REMOVE_AFTER"; }
trap 'stop; exit 0' TERM INT
while kill -0 "$BERTH_PARENT" 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.2; done
stop"#;

/// A server process started by this module.
pub struct DevProcess {
    name: &'static str,
    child: Child,
}

impl DevProcess {
    fn spawn(
        name: &'static str,
        program: &Path,
        args: &[String],
        log: &Path,
        run_as: Option<&str>,
        remove_after: Option<&Path>,
    ) -> Result<Self> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| Error::Other(format!("cannot open {}: {e}", log.display())))?;
        let mut command = Command::new("sh");
        command.arg("-c").arg(WATCHDOG).arg("sh");
        if let Some(user) = run_as {
            command.args(["runuser", "-u", user, "--"]);
        }
        command
            .arg(program)
            .args(args)
            .env("BERTH_PARENT", std::process::id().to_string())
            .env(
                "BERTH_REMOVE_AFTER",
                remove_after
                    .map(|dir| dir.display().to_string())
                    .unwrap_or_default(),
            )
            .stdin(Stdio::null())
            .stdout(
                log_file
                    .try_clone()
                    .map_err(|e| Error::Other(e.to_string()))?,
            )
            .stderr(log_file)
            .kill_on_drop(false);
        let child = command.spawn().map_err(|e| {
            Error::Other(format!("cannot start {name} ({}): {e}", program.display()))
        })?;
        Ok(Self { name, child })
    }

    /// Stops the server and waits for it to exit.
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .map_err(|_| Error::Other(format!("{} did not stop within 30 s", self.name)))?
            .map_err(|e| Error::Other(e.to_string()))?;
        Ok(())
    }

    /// Whether the server has exited.
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for DevProcess {
    /// A server that was not stopped is stopped when its handle goes (the watchdog
    /// covers the case where the whole process goes).
    fn drop(&mut self) {
        if let (Ok(None), Some(pid)) = (self.child.try_wait(), self.child.id()) {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| Error::Other(e.to_string()))?;
    Ok(listener
        .local_addr()
        .map_err(|e| Error::Other(e.to_string()))?
        .port())
}

/// Writes `contents` to `path` readable by its owner only (mode 0600): a secret kept
/// beside the embedded servers' data. `create_new` refuses to replace an existing file.
/// A file that exists with a looser mode is made 0600 before it is written.
pub fn write_private(path: &Path, contents: &[u8], create_new: bool) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    options
        .open(path)
        .and_then(|mut file| {
            // `mode` applies to new files only.
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            file.write_all(contents)
        })
        .map_err(|e| Error::Other(format!("writing {}: {e}", path.display())))
}

/// Makes `dir` (and its parents) and restricts it to its owner (mode 0700): a directory
/// holding credentials (the generated `nats.conf`, keys, passwords). An existing
/// directory is restricted too.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| Error::Other(format!("{}: {e}", dir.display())))
}

/// Finds a program on `PATH`.
pub fn which(program: &str, path_var: &str) -> Option<PathBuf> {
    std::env::split_paths(path_var)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

async fn wait_for_port(name: &str, port: u16, process: &mut DevProcess, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if process.has_exited() || Instant::now() > deadline {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(8).collect();
            return Err(Error::Other(format!(
                "{name} did not start on port {port}; last log lines: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Options of a private nats-server.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    pub port: u16,
    /// A WebSocket listener for browsers (the dashboard), if any.
    pub websocket_port: Option<u16>,
    /// The nats-server binary.
    pub binary: PathBuf,
    /// Dashboard users; without any, the server has no authorization at all.
    pub dashboard_users: Vec<DashboardUser>,
}

/// A NATS user for a browser dashboard (see `nats/dev.conf`): a tenant's user may
/// publish only its tenant actions (`cmd.<tenant>.<kind>.<action>`, from
/// [`berth_schemas::access`]) and subscribe only to `status.<tenant>.>` and its
/// own inbox prefix `_INBOX_<user>.>`; the operator (`tenant: None`) sees every tenant.
/// Services connect without credentials on the plain port as the `berth` user, which
/// is not allowed over WebSocket.
#[derive(Clone)]
pub struct DashboardUser {
    pub user: String,
    pub password: String,
    /// `None`: the operator, every tenant.
    pub tenant: Option<String>,
}

impl std::fmt::Debug for DashboardUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardUser")
            .field("user", &self.user)
            .field("password", &"***")
            .field("tenant", &self.tenant)
            .finish()
    }
}

impl DashboardUser {
    /// The user's entry in `nats.conf`; a tenant that is not a valid tenant id (it would
    /// change the subjects' shape) is refused.
    fn config(&self) -> Result<String> {
        // A tenant's user publishes exactly its tenant actions (berth_schemas::access),
        // never an operator action and never another tenant's subject.
        let (publish, subscribe) = match &self.tenant {
            Some(tenant) => {
                let tenant = TenantId::parse(tenant)
                    .map_err(|e| Error::Config(format!("dashboard user {}: {e}", self.user)))?;
                (
                    berth_schemas::access::tenant_publish_subjects(&tenant),
                    tenant_status_filter(&tenant),
                )
            }
            None => (vec![ALL_COMMANDS.to_owned()], ALL_STATUS.to_owned()),
        };
        let publish = publish
            .iter()
            .map(|subject| format!("\"{subject}\""))
            .collect::<Vec<_>>()
            .join(", ");
        Ok(format!(
            "    {{ user: \"{user}\", password: \"{password}\", allowed_connection_types: [\"WEBSOCKET\", \"STANDARD\"],\n      permissions: {{ publish: {{ allow: [{publish}] }}, subscribe: {{ allow: [\"{subscribe}\", \"_INBOX_{user}.>\"] }} }} }}\n",
            user = self.user,
            password = self.password,
        ))
    }
}

/// A private nats-server with JetStream under a directory.
pub struct NatsServer {
    pub url: String,
    pub port: u16,
    pub websocket_port: Option<u16>,
    pub process: DevProcess,
}

/// The configuration berth gives its own nats-server: JetStream with an fsync per write.
pub fn nats_config(dir: &Path, options: &NatsOptions) -> Result<String> {
    let mut config = format!(
        "# Written by berth; see nats/dev.conf for the documented version.\n\
         listen: 127.0.0.1:{port}\n\
         server_name: berth-dev\n\
         max_payload: 1MB\n\
         jetstream {{\n  store_dir: \"{store}\"\n  sync_interval: always\n}}\n",
        port = options.port,
        store = dir.join("jetstream").display(),
    );
    if let Some(ws) = options.websocket_port {
        config.push_str(&format!(
            "websocket {{\n  listen: \"127.0.0.1:{ws}\"\n  no_tls: true\n}}\n"
        ));
    }
    if !options.dashboard_users.is_empty() {
        // The services' user: unauthenticated clients on the plain port become it; its
        // password is never used, so it is random and forgotten.
        config.push_str(&format!(
            "no_auth_user: berth\nauthorization {{\n  users: [\n    {{ user: \"berth\", password: \"{}\", allowed_connection_types: [\"STANDARD\"] }}\n",
            uuid::Uuid::new_v4().simple()
        ));
        for user in &options.dashboard_users {
            config.push_str(&user.config()?);
        }
        config.push_str("  ]\n}\n");
    }
    Ok(config)
}

/// Writes `dir/nats.conf` (mode 0600, in `dir` made 0700: it holds the dashboard users'
/// passwords) and returns its path.
pub fn write_nats_config(dir: &Path, options: &NatsOptions) -> Result<PathBuf> {
    create_private_dir(dir)?;
    let path = dir.join("nats.conf");
    write_private(&path, nats_config(dir, options)?.as_bytes(), false)?;
    Ok(path)
}

impl NatsServer {
    pub async fn start(dir: &Path, options: NatsOptions) -> Result<Self> {
        let config_path = write_nats_config(dir, &options)?;
        let log = dir.join("nats.log");
        let mut process = DevProcess::spawn(
            "nats-server",
            &options.binary,
            &["-c".into(), config_path.display().to_string()],
            &log,
            None,
            None,
        )?;
        wait_for_port("nats-server", options.port, &mut process, &log).await?;
        Ok(Self {
            url: format!("nats://127.0.0.1:{}", options.port),
            port: options.port,
            websocket_port: options.websocket_port,
            process,
        })
    }
}

/// Options of a private Postgres cluster.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    pub port: u16,
    /// The directory holding `initdb` and `postgres`.
    pub bin_dir: PathBuf,
    /// Trade durability for speed (tests): no fsync, no synchronous commit.
    /// (Also: the directory is removed once the server stops.)
    pub ephemeral: bool,
}

/// The newest Postgres under `/usr/lib/postgresql/*/bin`, where Debian puts it.
pub fn find_postgres_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_string_lossy().parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Whether this process runs as root (the embedded Postgres then runs as `postgres`).
pub fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

async fn run_checked(program: &Path, args: &[&str], run_as: Option<&str>) -> Result<()> {
    let mut command = match run_as {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    };
    let output = command
        .args(args)
        .output()
        .await
        .map_err(|e| Error::Other(format!("cannot run {}: {e}", program.display())))?;
    if !output.status.success() {
        return Err(Error::Other(format!(
            "{} failed: {}",
            program.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

/// A private Postgres cluster; its superuser is `berth`, with trust auth on loopback.
pub struct Postgres {
    pub port: u16,
    pub process: DevProcess,
}

impl Postgres {
    /// Starts the cluster in `dir/data`, creating it first if needed.
    pub async fn start(dir: &Path, options: PostgresOptions) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Other(format!("{}: {e}", dir.display())))?;
        let data = dir.join("data");
        let run_as = running_as_root().then_some("postgres");
        if let Some(user) = run_as {
            run_checked(
                Path::new("chown"),
                &["-R", &format!("{user}:{user}"), &dir.display().to_string()],
                None,
            )
            .await?;
            run_checked(Path::new("test"), &["-w", &dir.display().to_string()], Some(user))
                .await
                .map_err(|_| {
                    Error::Config(format!(
                        "Postgres runs as the postgres user here, who cannot reach {}; move the checkout somewhere it can (e.g. under /work or /srv) or set BERTH_DATABASE_URL",
                        dir.display()
                    ))
                })?;
        }
        if !data.join("PG_VERSION").is_file() {
            let data_arg = data.display().to_string();
            let mut args = vec![
                "-D",
                &data_arg,
                "-U",
                "berth",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-instructions",
            ];
            if options.ephemeral {
                args.push("--no-sync");
            }
            run_checked(&options.bin_dir.join("initdb"), &args, run_as).await?;
        }
        let mut args: Vec<String> = vec![
            "-D".into(),
            data.display().to_string(),
            "-p".into(),
            options.port.to_string(),
            "-c".into(),
            "listen_addresses=127.0.0.1".into(),
            "-c".into(),
            "unix_socket_directories=".into(),
            "-c".into(),
            "max_connections=300".into(),
        ];
        if options.ephemeral {
            for setting in [
                "fsync=off",
                "synchronous_commit=off",
                "full_page_writes=off",
            ] {
                args.push("-c".into());
                args.push(setting.into());
            }
        }
        let log = dir.join("postgres.log");
        let mut process = DevProcess::spawn(
            "postgres",
            &options.bin_dir.join("postgres"),
            &args,
            &log,
            run_as,
            options.ephemeral.then_some(dir),
        )?;
        wait_for_port("postgres", options.port, &mut process, &log).await?;
        let server = Self {
            port: options.port,
            process,
        };
        server.wait_until_accepting().await?;
        Ok(server)
    }

    /// The URL of database `name` in this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://berth@127.0.0.1:{}/{name}", self.port)
    }

    async fn wait_until_accepting(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match PgConnection::connect(&self.url("postgres")).await {
                Ok(conn) => {
                    let _ = conn.close().await;
                    return Ok(());
                }
                Err(e) if Instant::now() > deadline => {
                    return Err(Error::Other(format!(
                        "postgres is not accepting connections: {e}"
                    )))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Creates database `name` unless it exists.
    pub async fn ensure_database(&self, name: &str) -> Result<String> {
        berth_schemas::ids::validate_slug("database name", &name.replace('_', "-"), 63)
            .map_err(|e| Error::Config(e.to_string()))?;
        let mut conn = PgConnection::connect(&self.url("postgres"))
            .await
            .map_err(Error::db("connect to postgres"))?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(name)
                .fetch_one(&mut conn)
                .await
                .map_err(Error::db("look up database"))?;
        if !exists {
            sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                .execute(&mut conn)
                .await
                .map_err(Error::db("create database"))?;
        }
        let _ = conn.close().await;
        Ok(self.url(name))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_files_are_0600_in_a_0700_directory_even_when_they_were_not() {
        let root = std::env::temp_dir().join(format!("berth-private-{}", uuid::Uuid::new_v4()));
        let dir = root.join("nats");
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("nats.conf");
        std::fs::write(&file, "loose").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&file, b"password: secret", false).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "password: secret");
        assert!(
            write_private(&file, b"again", true).is_err(),
            "create_new keeps it"
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700, "an existing directory is restricted too");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn the_nats_config_with_passwords_is_private() {
        let root = std::env::temp_dir().join(format!("berth-nats-{}", uuid::Uuid::new_v4()));
        let options = NatsOptions {
            port: 4222,
            websocket_port: Some(8443),
            binary: PathBuf::from("nats-server"),
            dashboard_users: vec![DashboardUser {
                user: "operator".into(),
                password: "pa55word".into(),
                tenant: None,
            }],
        };
        let path = write_nats_config(&root.join("nats"), &options).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains("pa55word"));
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&root.join("nats")), 0o700);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_dashboard_user_of_a_malformed_tenant_gets_no_config_at_all() {
        let options = NatsOptions {
            port: 4222,
            websocket_port: Some(8443),
            binary: PathBuf::from("nats-server"),
            dashboard_users: vec![DashboardUser {
                user: "mallory".into(),
                password: "pa55word".into(),
                tenant: Some("acme.>".into()),
            }],
        };
        let refused = nats_config(Path::new("/nonexistent"), &options).unwrap_err();
        assert!(refused.to_string().contains("mallory"), "{refused}");
    }
}
