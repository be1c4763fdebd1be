//! SIGINT and SIGTERM: the first starts a drain, a second forces the stop.
//!
//! [`Signals`] is what [`crate::service::main`] (and `berth up`) waits on: the first
//! starts the drain, a second ends it with an error. No library exits the process.

use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::warn;

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
