//! Billing's one error type.

use berth_runtime::decision::Unsettled;
use berth_runtime::store::AppendError;
use berth_schemas::Rejection;
use uuid::Uuid;

/// What went wrong in billing, with a stable machine code per variant:
///
/// | code          | variant     | what failed                                         |
/// |---------------|-------------|-----------------------------------------------------|
/// | *runtime's*   | `Runtime`   | the runtime (its code: `nats`, `db`, …)             |
/// | *unsettled's* | `Unsettled` | an invoice's append (`contention` or the store's)   |
/// | `db`          | `Db`        | a read of billing's own tables                      |
/// | `encode`      | `Encode`    | a report could not be written as JSON               |
/// | `invalid`     | `Invalid`   | a run asked for something it cannot do (a month)    |
/// | `no_prices`   | `NoPrices`  | an account's currency has no price list             |
/// | *rejection's* | `Refused`   | an account refused an invoice                       |
/// | *append's*    | `Usage`     | recording a VM's usage                              |
/// | *its cause's* | `Run`       | an operator's run, with the cause's code            |
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Runtime(#[from] berth_runtime::Error),
    #[error(transparent)]
    Unsettled(#[from] Unsettled),
    #[error("postgres: {0}")]
    Db(#[from] sqlx::Error),
    #[error("encode: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("no prices in {currency} for {tenant}")]
    NoPrices { currency: String, tenant: String },
    #[error("{tenant}: {rejection}")]
    Refused {
        tenant: String,
        rejection: Rejection,
    },
    #[error("recording usage of vm {vm_id}: {source}")]
    Usage {
        vm_id: Uuid,
        #[source]
        source: AppendError,
    },
    #[error("billing {action} failed: {source}")]
    Run {
        action: String,
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// The stable code of this error (the table above).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Runtime(e) => e.code(),
            Self::Unsettled(e) => e.code(),
            Self::Db(_) => "db",
            Self::Encode(_) => "encode",
            Self::Invalid(_) => "invalid",
            Self::NoPrices { .. } => "no_prices",
            Self::Refused { rejection, .. } => rejection.code.as_str(),
            Self::Usage { source, .. } => source.code(),
            Self::Run { source, .. } => source.code(),
        }
    }
}

impl berth_runtime::Coded for Error {
    fn code(&self) -> &'static str {
        Error::code(self)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
