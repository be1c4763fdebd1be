//! Connection flags (with `BERTH_*` environment fallbacks) and tuning settings.

use std::path::PathBuf;
use std::time::Duration;

/// Where NATS and Postgres are. Flatten into each binary's clap struct.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnectArgs {
    /// NATS server URL.
    #[arg(long, env = "BERTH_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// NATS credentials file (JWT + nkey seed).
    #[arg(long, env = "BERTH_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// Postgres URL of the projections database.
    #[arg(
        long,
        env = "BERTH_DATABASE_URL",
        default_value = "postgres://berth@127.0.0.1:54320/berth",
        hide_env_values = true
    )]
    pub database_url: String,
}

/// Tuning of the runtime; defaults suit production, tests shorten the waits.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Commands larger than this are rejected with `too_large`.
    pub max_command_bytes: usize,
    /// Commands processed at once per endpoint.
    pub max_concurrent_commands: usize,
    /// Messages a reactor works on at once.
    pub reactor_max_in_flight: usize,
    /// Deliveries before a message goes to the DLQ.
    pub reactor_max_deliver: i64,
    /// How long a reactor may work on a message before it is redelivered.
    pub reactor_ack_wait: Duration,
    /// First retry delay; doubles per delivery up to the max.
    pub reactor_backoff_base: Duration,
    pub reactor_backoff_max: Duration,
    /// Events applied per projection transaction, at most.
    pub projection_batch: usize,
    /// Overrides the `EVENTS` duplicate window (tests shorten it).
    pub events_duplicate_window: Option<Duration>,
    /// Each tenant's share of a command endpoint: rate, in flight, long-running.
    pub tenant_limits: crate::fairness::TenantLimits,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_command_bytes: berth_schemas::command::DEFAULT_MAX_COMMAND_BYTES,
            max_concurrent_commands: 256,
            reactor_max_in_flight: 32,
            reactor_max_deliver: 8,
            reactor_ack_wait: Duration::from_secs(60),
            reactor_backoff_base: Duration::from_millis(500),
            reactor_backoff_max: Duration::from_secs(60),
            projection_batch: 500,
            events_duplicate_window: None,
            tenant_limits: crate::fairness::TenantLimits::default(),
        }
    }
}

/// A URL with its password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    let user = credentials.split(':').next().unwrap_or("");
    if credentials.contains(':') {
        format!("{scheme}://{user}:***@{host}")
    } else {
        url.to_owned()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            super::redact_url("postgres://berth:s3cret@db:5432/berth"),
            "postgres://berth:***@db:5432/berth"
        );
        assert_eq!(
            super::redact_url("postgres://berth@db/berth"),
            "postgres://berth@db/berth"
        );
    }
}
