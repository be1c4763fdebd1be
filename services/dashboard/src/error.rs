//! The dashboard's one error type.

use std::net::SocketAddr;
use std::path::PathBuf;

/// What went wrong serving the dashboard, with a stable machine code per variant:
///
/// | code          | variant      | what failed                                   |
/// |---------------|--------------|-----------------------------------------------|
/// | `not_built`   | `NotBuilt`   | the page is not built where it was looked for |
/// | `bind`        | `Bind`       | the HTTP port cannot be listened on           |
/// | *runtime's*   | `Runtime`    | the runtime (the snapshot endpoint)           |
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the dashboard is not built in {0}: run `just dashboard` (npm ci && npm run build in web/dashboard)"
    )]
    NotBuilt(PathBuf),
    #[error("dashboard on {addr} (is the port taken? try --dashboard-port): {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Runtime(#[from] berth_runtime::Error),
}

impl Error {
    /// The stable code of this error (the table above).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotBuilt(_) => "not_built",
            Self::Bind { .. } => "bind",
            Self::Runtime(e) => e.code(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
