//! berth-runtime: what every berth service is built from (DESIGN §4).
//!
//! - [`Runtime`]: the connections (NATS, JetStream, Postgres), the event store, the
//!   shutdown token and the task tracker a service runs with. [`Runtime::connect`]
//!   checks the nats-server version, applies the stream definitions and the migrations.
//! - [`store`]: the event store on `EVENTS`, [`store::Aggregate`] and
//!   [`store::Repository`] (fold, atomic append, command-id idempotency).
//! - [`decision`]: [`decision::execute`] commits a decision on one aggregate or several,
//!   atomically, deciding again after a conflict — the one retry policy.
//! - [`commands`]: command endpoints on `cmd.<tenant>.<kind>.<action>`: who may send
//!   what ([`berth_schemas::access`]), clean input, ids that stay in their tenant, and
//!   each tenant's [`fairness`] share.
//! - [`reactor`]: side effects on durable pull consumers, back-off, DLQ;
//!   [`controller`]: the level-triggered "load, step, append, until settled" loop.
//! - [`requests`]: typed request/reply endpoints for operators' runs.
//! - [`projection`]: Postgres read models with transactional checkpoints, status
//!   publishing, and rebuild-and-swap; [`projection_requests`]: what operators ask of a
//!   running projection (`projection.<name>.rebuild|status|retry`).
//! - [`queries`]: `query.<scope>.<kind>.<op>` endpoints over a service's read model;
//!   [`client`]: sending commands, waiting for status, asking queries.
//! - [`streams`]: stream definitions from `nats/streams/*.json`.
//! - [`service`]: a service binary's `main` — telemetry, signals, a bounded drain;
//!   [`telemetry`], [`shutdown`], [`config`].
//!
//! Worked example: `berth-provisioner`'s `run` serves VM commands with
//! [`commands::serve`], drives the provider with [`reactor::run`] and keeps the `vms`
//! table with [`projection::run`].

mod atomic;
pub mod audit;
pub mod client;
pub mod clock;
pub mod commands;
pub mod config;
pub mod controller;
pub mod decision;
pub mod dlq;
pub mod error;
pub mod fairness;
pub mod history;
pub mod locks;
pub mod parked;
pub mod projection;
pub mod projection_requests;
pub mod queries;
pub mod reactor;
mod repository;
pub mod requests;
pub mod service;
pub mod shutdown;
pub mod store;
pub mod streams;
pub mod telemetry;

use std::time::Duration;

use async_nats::jetstream;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{ConnectArgs, Settings};
pub use error::{Coded, Error, Result};
pub use store::EventStore;

/// The oldest nats-server berth runs on: earlier ones have known JetStream data-loss bugs.
pub const MIN_NATS_SERVER: (u64, u64, u64) = (2, 12, 6);

/// Everything a service runs with.
#[derive(Clone)]
pub struct Runtime {
    /// The service name (`provisioner`, …), used for `ce-source`, queue groups and consumers.
    pub service: &'static str,
    pub nats: async_nats::Client,
    pub js: jetstream::Context,
    pub db: PgPool,
    pub store: EventStore,
    pub settings: Settings,
    /// Cancelled when the service should drain and stop.
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
}

impl Runtime {
    /// Connects to NATS and Postgres, refuses an old nats-server, applies the streams
    /// and the runtime's migrations.
    pub async fn connect(
        service: &'static str,
        args: &ConnectArgs,
        settings: Settings,
        shutdown: CancellationToken,
    ) -> Result<Self> {
        let nats = connect_nats(service, args).await?;
        let js = jetstream::new(nats.clone());
        streams::apply(&js, &settings).await?;
        let db = connect_db(&args.database_url).await?;
        migrate(&db).await?;
        Ok(Self {
            service,
            store: EventStore::new(js.clone(), berth_schemas::subjects::EVENTS_STREAM),
            nats,
            js,
            db,
            settings,
            shutdown,
            tasks: TaskTracker::new(),
        })
    }

    /// A runtime for another service on the same connections (used by `berth up`,
    /// which runs every service in one process).
    pub fn for_service(&self, service: &'static str) -> Self {
        Self {
            service,
            ..self.clone()
        }
    }
}

/// Connects to NATS and checks the server version.
pub async fn connect_nats(service: &str, args: &ConnectArgs) -> Result<async_nats::Client> {
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("berth-{service}"))
        .connection_timeout(Duration::from_secs(5));
    if let Some(creds) = &args.nats_creds {
        options = options.credentials_file(creds).await.map_err(|e| {
            Error::Config(format!(
                "cannot read NATS credentials {}: {e}",
                creds.display()
            ))
        })?;
    }
    let client = options.connect(&args.nats_url).await.map_err(|e| {
        Error::Config(format!(
            "cannot reach NATS at {} ({e}); start it with `just up` or set BERTH_NATS_URL",
            args.nats_url
        ))
    })?;
    check_server_version(&client.server_info().version)?;
    Ok(client)
}

/// Refuses a nats-server older than [`MIN_NATS_SERVER`] with one clear line.
pub fn check_server_version(version: &str) -> Result<()> {
    let parsed: Vec<u64> = version
        .split(['.', '-'])
        .take(3)
        .map(|part| part.parse().unwrap_or(0))
        .collect();
    let found = (
        parsed.first().copied().unwrap_or(0),
        parsed.get(1).copied().unwrap_or(0),
        parsed.get(2).copied().unwrap_or(0),
    );
    if found < MIN_NATS_SERVER {
        let (a, b, c) = MIN_NATS_SERVER;
        return Err(Error::Config(format!(
            "nats-server {version} is too old: berth needs {a}.{b}.{c} or newer (earlier versions have known JetStream data-loss bugs)"
        )));
    }
    Ok(())
}

/// Connects to Postgres.
pub async fn connect_db(url: &str) -> Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .map_err(|e| {
            Error::Config(format!(
                "cannot reach Postgres at {} ({e}); start it with `just up` or set BERTH_DATABASE_URL",
                config::redact_url(url)
            ))
        })
}

/// Applies the runtime's migrations (the `berth` schema).
pub async fn migrate(db: &PgPool) -> Result<()> {
    sqlx::migrate!("./migrations")
        .run(db)
        .await
        .map_err(Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_servers_are_refused() {
        assert!(check_server_version("2.12.6").is_ok());
        assert!(check_server_version("2.15.1").is_ok());
        assert!(check_server_version("3.0.0-beta").is_ok());
        let refused = check_server_version("2.12.5").unwrap_err().to_string();
        assert!(refused.contains("2.12.6"), "{refused}");
        assert!(check_server_version("2.10.22").is_err());
    }
}
