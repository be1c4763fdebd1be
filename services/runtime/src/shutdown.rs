//! SIGINT and SIGTERM start a drain; a second signal forces the exit.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Cancels `token` on the first SIGINT/SIGTERM; exits with 130 on the second.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let (Ok(mut interrupt), Ok(mut terminate)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            warn!("cannot listen for signals; stop berth with SIGKILL");
            return;
        };
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        info!("shutting down: finishing in-flight work (signal again to force)");
        token.cancel();
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        warn!("second signal: exiting now");
        std::process::exit(130);
    });
}
