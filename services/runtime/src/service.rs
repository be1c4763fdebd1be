//! A service binary's life, from flags to exit: [`main`].
//!
//! It sets up telemetry and a Tokio runtime, listens for SIGTERM and SIGINT, connects
//! ([`Runtime::connect`]) and runs the service on the runtime's [`TaskTracker`]. The first
//! signal starts a drain: the shutdown token is cancelled, and the service and every
//! task it tracks get [`ServiceArgs::drain_secs`] to finish what is in flight (a reactor
//! naks what it has not finished; it comes again to another replica). A second signal,
//! or the deadline, ends the wait with an error — the process exits non-zero, and nothing
//! here calls `process::exit`. Telemetry is flushed on the way out either way.
//!
//! Each binary's `cli.rs` parses its flags (with [`ServiceArgs`] flattened in) and calls
//! [`main`] with the service's own `run`.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::{ConnectArgs, Settings};
use crate::error::Error;
use crate::shutdown::Signals;
use crate::telemetry::{self, TelemetryArgs};
use crate::Runtime;

/// What every service binary takes besides its own flags.
#[derive(clap::Args, Debug, Clone)]
pub struct ServiceArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    /// Seconds to finish in-flight work after SIGTERM or SIGINT before stopping anyway.
    #[arg(long, env = "BERTH_DRAIN_SECS", default_value_t = 30)]
    pub drain_secs: u64,
}

/// Why a service binary stopped other than by finishing its drain.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Telemetry or the Tokio runtime could not be set up.
    #[error("setting up berth-{service}")]
    Setup {
        service: &'static str,
        #[source]
        source: Error,
    },
    /// NATS or Postgres could not be reached, or refused the service.
    #[error("starting berth-{service}")]
    Start {
        service: &'static str,
        #[source]
        source: Error,
    },
    /// A second signal came before in-flight work was finished.
    #[error("stopped by a second signal before in-flight work was finished")]
    Forced,
    /// In-flight work was not finished within the drain deadline.
    #[error("in-flight work was not finished within {0:?} of the signal")]
    DrainTimedOut(Duration),
}

impl ServiceError {
    /// The stable code of this error, as used in logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Setup { .. } => "setup",
            Self::Start { .. } => "start",
            Self::Forced => "forced",
            Self::DrainTimedOut(_) => "drain_timed_out",
        }
    }
}

/// Runs service `name` as a process: telemetry, signals, [`Runtime::connect`] with
/// `settings`, then `run` until it ends or a signal drains it (see the module docs).
pub fn main<E, F, Fut>(
    name: &'static str,
    args: ServiceArgs,
    settings: Settings,
    run: F,
) -> Result<(), E>
where
    F: FnOnce(Runtime) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: From<ServiceError> + Send + 'static,
{
    let setup = |source| ServiceError::Setup {
        service: name,
        source,
    };
    let tokio =
        tokio::runtime::Runtime::new().map_err(|e| setup(Error::io("the Tokio runtime")(e)))?;
    tokio.block_on(async {
        let _telemetry = telemetry::init(name, &args.telemetry, "info").map_err(setup)?;
        let mut signals = Signals::listen();
        let shutdown = CancellationToken::new();
        let rt = tokio::select! {
            rt = Runtime::connect(name, &args.connect, settings, shutdown.clone()) => {
                rt.map_err(|source| ServiceError::Start { service: name, source })?
            }
            () = signals.recv() => {
                info!("stopped before it started");
                return Ok(());
            }
        };
        let tasks = rt.tasks.clone();
        let service = tasks.spawn(run(rt));
        let drain = Duration::from_secs(args.drain_secs);
        supervise(service, &shutdown, &tasks, signals, drain).await
    })
}

/// Waits for `service` to end: by itself, or drained after the first signal, when
/// `shutdown` is cancelled and it and the other `tasks` get `drain` to finish.
async fn supervise<E: From<ServiceError>>(
    service: JoinHandle<Result<(), E>>,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
    mut signals: Signals,
    drain: Duration,
) -> Result<(), E> {
    tokio::pin!(service);
    let ended = tokio::select! {
        ended = &mut service => Some(ended),
        () = signals.recv() => {
            info!(?drain, "shutting down: finishing in-flight work (signal again to force)");
            None
        }
    };
    shutdown.cancel();
    tasks.close();
    let drained = async {
        let ended = match ended {
            Some(ended) => ended,
            None => service.await,
        };
        tasks.wait().await;
        ended
    };
    let ended = tokio::select! {
        ended = drained => ended,
        () = tokio::time::sleep(drain) => {
            warn!(?drain, "in-flight work is not finished; stopping anyway");
            return Err(ServiceError::DrainTimedOut(drain).into());
        }
        () = signals.recv() => {
            warn!("second signal: stopping now");
            return Err(ServiceError::Forced.into());
        }
    };
    match ended {
        Ok(outcome) => outcome,
        Err(join) => match join.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => {
                unreachable!("only this function holds the service's handle, and never aborts it")
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    enum Outcome {
        Service(&'static str),
        Stopped(ServiceError),
    }

    impl From<ServiceError> for Outcome {
        fn from(e: ServiceError) -> Self {
            Self::Stopped(e)
        }
    }

    #[test]
    fn the_flags_every_service_takes() {
        use clap::{CommandFactory, Parser};
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            service: ServiceArgs,
        }
        Cli::command().debug_assert();
        let cli = Cli::parse_from(["berth-test", "--drain-secs", "5", "--log-json"]);
        assert_eq!(cli.service.drain_secs, 5);
        assert!(cli.service.telemetry.log_json);
    }

    #[tokio::test]
    async fn a_service_that_ends_by_itself_stops_its_tracked_tasks_too() {
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let helper = tasks.spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.cancelled().await }
        });
        let service = tasks.spawn(async { Err::<(), _>(Outcome::Service("broke")) });
        let ended = supervise(
            service,
            &shutdown,
            &tasks,
            Signals::listen(),
            Duration::from_secs(5),
        )
        .await;
        assert!(matches!(ended, Err(Outcome::Service("broke"))), "{ended:?}");
        assert!(helper.is_finished() && shutdown.is_cancelled());
    }

    #[tokio::test]
    async fn a_drain_that_overruns_its_deadline_is_an_error() {
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(std::future::pending::<()>());
        let service = tasks.spawn(async { Ok::<(), Outcome>(()) });
        let ended = supervise(
            service,
            &shutdown,
            &tasks,
            Signals::listen(),
            Duration::from_millis(50),
        )
        .await;
        assert!(
            matches!(ended, Err(Outcome::Stopped(ServiceError::DrainTimedOut(_)))),
            "{ended:?}"
        );
    }
}
