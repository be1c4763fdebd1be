//! The provisioner's one error type.

use berth_adapters::error::ProviderError;
use berth_runtime::store::AppendError;
use berth_schemas::InvalidToken;

/// What went wrong in the provisioner, with a stable machine code per variant:
///
/// | code             | variant         | what failed                                     |
/// |------------------|-----------------|-------------------------------------------------|
/// | *runtime's*      | `Runtime`       | the runtime (its code: `nats`, `db`, …)         |
/// | *provider's*     | `Provider`      | a provider call (`provider_transient`, …)       |
/// | `db`             | `Db`            | a read of the provisioner's own tables          |
/// | `invalid_tenant` | `InvalidTenant` | a row names a tenant that is not a valid id     |
/// | *append's*       | `Append`        | recording what a reconciliation found           |
/// | *its cause's*    | `Reconcile`     | a reconciliation, with the cause's code         |
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Runtime(#[from] berth_runtime::Error),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("postgres: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    InvalidTenant(#[from] InvalidToken),
    #[error("recording the orphan: {0}")]
    Append(#[source] AppendError),
    #[error("reconciliation failed: {0}")]
    Reconcile(#[source] Box<Error>),
}

impl Error {
    /// The stable code of this error (the table above).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Runtime(e) => e.code(),
            Self::Provider(e) => e.code(),
            Self::Db(_) => "db",
            Self::InvalidTenant(_) => "invalid_tenant",
            Self::Append(e) => e.code(),
            Self::Reconcile(e) => e.code(),
        }
    }
}

impl berth_runtime::Coded for Error {
    fn code(&self) -> &'static str {
        Error::code(self)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
