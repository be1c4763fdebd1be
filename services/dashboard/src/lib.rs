//! berth-dashboard: the live web dashboard's server side.
//!
//! - [`snapshot`]: `cmd.<tenant>.dashboard.snapshot` answers with the last status of
//!   every `status.<tenant>.>` subject (`system`: every tenant), read from the `STATUS`
//!   stream, so a page gets the current picture before it follows live changes. NATS
//!   permissions decide who may ask for which tenant: a tenant's user may only publish
//!   to `cmd.<tenant>.>`.
//! - [`serve`]: the page's files (`web/dashboard/dist`, built with `npm run build`)
//!   over HTTP. The page talks to NATS itself, over WebSocket.

pub mod error;
pub mod snapshot;

pub use error::{Error, Result};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;
use tower_http::services::ServeDir;

/// Where the built page is, relative to the repository.
pub fn default_dist() -> PathBuf {
    PathBuf::from("web/dashboard/dist")
}

/// Serves the built page from `dist` on `addr` until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    dist: &Path,
    shutdown: CancellationToken,
) -> Result<SocketAddr> {
    if !(dist.join("index.html").is_file() && dist.join("app.js").is_file()) {
        return Err(Error::NotBuilt(dist.to_owned()));
    }
    let bind = |source| Error::Bind { addr, source };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(bind)?;
    let bound = listener.local_addr().map_err(bind)?;
    let app = axum::Router::new().fallback_service(ServeDir::new(dist));
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "the dashboard's HTTP server stopped");
        }
    });
    Ok(bound)
}
