//! The scheduler's one error type.

use berth_runtime::decision::Unsettled;
use berth_schemas::Rejection;

/// What went wrong in the scheduler, with a stable machine code per variant:
///
/// | code          | variant     | what failed                                       |
/// |---------------|-------------|---------------------------------------------------|
/// | *runtime's*   | `Runtime`   | the runtime (its code: `nats`, `db`, `timeout`, …) |
/// | *unsettled's* | `Unsettled` | a fire's append (`contention` or the store's code) |
/// | `feed_ended`  | `FeedEnded` | the feed of schedule events stopped               |
/// | *rejection's* | `Refused`   | the slots refused a fire (its rejection code)     |
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Runtime(#[from] berth_runtime::Error),
    #[error(transparent)]
    Unsettled(#[from] Unsettled),
    #[error("the schedule event feed ended")]
    FeedEnded,
    #[error("{0}")]
    Refused(Rejection),
}

impl Error {
    /// The stable code of this error (the table above).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Runtime(e) => e.code(),
            Self::Unsettled(e) => e.code(),
            Self::FeedEnded => "feed_ended",
            Self::Refused(rejection) => rejection.code.as_str(),
        }
    }
}

impl berth_runtime::Coded for Error {
    fn code(&self) -> &'static str {
        Error::code(self)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
