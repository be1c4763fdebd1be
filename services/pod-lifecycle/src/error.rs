//! Pod-lifecycle's one error type.

use berth_runtime::store::AppendError;

use crate::runtime::RuntimeError;

/// What went wrong in pod-lifecycle, with a stable machine code per variant:
///
/// | code          | variant     | what failed                                        |
/// |---------------|-------------|----------------------------------------------------|
/// | *runtime's*   | `Runtime`   | berth's runtime (its code: `nats`, `db`, …)        |
/// | *platform's*  | `Platform`  | the container platform (`runtime_transient`, …)    |
/// | `db`          | `Db`        | a read of pod-lifecycle's own tables               |
/// | *append's*    | `Append`    | recording what a health check saw                  |
/// | `invalid_tenant` | `InvalidTenant` | a row names a tenant that is not a valid id   |
/// | *its cause's* | `Debug`     | a `pods debug` run, with the cause's code          |
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Runtime(#[from] berth_runtime::Error),
    #[error(transparent)]
    Platform(#[from] RuntimeError),
    #[error("postgres: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error(transparent)]
    InvalidTenant(#[from] berth_schemas::InvalidToken),
    #[error("pods debug failed: {0}")]
    Debug(#[source] Box<Error>),
}

impl Error {
    /// The stable code of this error (the table above).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Runtime(e) => e.code(),
            Self::Platform(e) => e.code(),
            Self::Db(_) => "db",
            Self::Append(e) => e.code(),
            Self::InvalidTenant(_) => "invalid_tenant",
            Self::Debug(e) => e.code(),
        }
    }
}

impl berth_runtime::Coded for Error {
    fn code(&self) -> &'static str {
        Error::code(self)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
