//! Stop requests for the dev tools that run services in one process (`berth up`,
//! `berth dashboard`): the first SIGINT/SIGTERM starts the drain, a second gives up
//! waiting for it with an error.

use std::future::Future;

use berth_runtime::shutdown::Signals;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Runs `work`, cancelling `token` on the first stop request; on a second one `work` is
/// dropped unfinished and the answer is an error (the process then exits non-zero, its
/// embedded servers stopped by their drop).
pub async fn until_drained<T>(
    token: CancellationToken,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let mut signals = Signals::listen();
    let forced = async {
        signals.recv().await;
        info!("shutting down: finishing in-flight work (signal again to force)");
        token.cancel();
        signals.recv().await;
    };
    tokio::select! {
        done = work => done,
        () = forced => {
            warn!("second signal: stopping without finishing the drain");
            anyhow::bail!("stopped by a second signal before the drain finished")
        }
    }
}
