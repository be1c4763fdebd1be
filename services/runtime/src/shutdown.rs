//! SIGINT and SIGTERM: the first starts a drain, a second forces the stop.
//!
//! [`Signals`] is what [`crate::service::main`] waits on: there a second signal ends the
//! drain with an error. [`cancel_on_signals`] is for the dev tools that run everything
//! in one process (`berth up`), where a second Ctrl-C ends the process at once.

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The stop requests a process receives: SIGINT and SIGTERM.
pub struct Signals {
    /// `None` when the process cannot listen for them (then none ever comes).
    listening: Option<(Signal, Signal)>,
}

impl Signals {
    /// Starts listening; without signal handlers, says so and waits for none.
    pub fn listen() -> Self {
        let listening = match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(interrupt), Ok(terminate)) => Some((interrupt, terminate)),
            _ => {
                warn!("cannot listen for signals; stop berth with SIGKILL");
                None
            }
        };
        Self { listening }
    }

    /// The next SIGINT or SIGTERM.
    pub async fn recv(&mut self) {
        match &mut self.listening {
            Some((interrupt, terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            None => std::future::pending().await,
        }
    }
}

/// Cancels `token` on the first SIGINT/SIGTERM; exits with 130 on the second. For the
/// dev tools only: a service binary runs under [`crate::service::main`].
pub fn cancel_on_signals(token: CancellationToken) {
    let mut signals = Signals::listen();
    tokio::spawn(async move {
        signals.recv().await;
        info!("shutting down: finishing in-flight work (signal again to force)");
        token.cancel();
        signals.recv().await;
        warn!("second signal: exiting now");
        std::process::exit(130);
    });
}
