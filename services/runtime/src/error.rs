//! The runtime's one error type, and [`Coded`]: an error with a stable machine code.

use berth_schemas::InvalidToken;

/// An error with a stable machine code: what rejections, dead letters
/// (`berth-error-code`) and logs (`error.code`) carry, so a failure can be counted
/// and matched without parsing its message.
pub trait Coded: std::error::Error {
    /// The stable snake_case code of this error.
    fn code(&self) -> &'static str;
}

/// What went wrong in the runtime, with a stable machine code per variant:
///
/// | code               | variant            | what failed                                        |
/// |--------------------|--------------------|----------------------------------------------------|
/// | `config`           | `Config`           | a setting is missing or wrong                      |
/// | `nats`             | `Nats`             | a NATS or JetStream call                           |
/// | `db`               | `Db`               | a Postgres call                                    |
/// | `migrate`          | `Migrate`          | applying a crate's migrations                      |
/// | `io`               | `Io`               | the local machine (a runtime, a file, a process)   |
/// | `decode`           | `Decode`           | an event in the log cannot be read                 |
/// | `conflict`         | `Conflict`         | an append's expected version did not hold          |
/// | `invalid_subject`  | `InvalidSubject`   | a name cannot be a subject token                   |
/// | `no_responders`    | `NoResponders`     | nothing serves a request's subject                 |
/// | `timeout`          | `Timeout`          | a request or a wait did not finish in time         |
/// | `unreadable_reply` | `UnreadableReply`  | a reply is not what its subject answers            |
/// | `malformed`        | `Malformed`        | a message lacks what the runtime wrote into it     |
/// | `not_found`        | `NotFound`         | a dead letter, parked event or message is missing  |
/// | `invalid_state`    | `InvalidState`     | the thing asked about is not in a state for it     |
/// | `unrecorded`       | `Unrecorded`       | an append returned no sequences for what it wrote  |
/// | `closed`           | `Closed`           | a subscription or the event writer has stopped     |
/// | `busy`             | `Busy`             | JetStream refused for load; try again              |
/// | `apply`            | `Apply`            | a projection could not fold events                 |
/// | `other`            | `Other`            | anything else (dev tooling)                        |
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("nats: {context}: {source}")]
    Nats {
        context: String,
        #[source]
        source: async_nats::Error,
    },
    #[error("postgres: {context}: {source}")]
    Db {
        context: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("event {sequence} on {subject} cannot be read: {source}")]
    Decode {
        sequence: u64,
        subject: String,
        #[source]
        source: berth_schemas::DecodeError,
    },
    #[error("version conflict on {subject}: expected {expected}")]
    Conflict { subject: String, expected: u64 },
    #[error(transparent)]
    InvalidSubject(#[from] InvalidToken),
    #[error("{0}")]
    NoResponders(String),
    #[error("{0}")]
    Timeout(String),
    #[error("unreadable reply from {subject}: {source}")]
    UnreadableReply {
        subject: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidState(String),
    #[error("{0}")]
    Unrecorded(String),
    #[error("{0}")]
    Closed(String),
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Apply(String),
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// The stable code of this error, as used in logs, rejections and dead letters (the
    /// table above).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Config(_) => "config",
            Self::Nats { .. } => "nats",
            Self::Db { .. } => "db",
            Self::Migrate(_) => "migrate",
            Self::Io { .. } => "io",
            Self::Decode { .. } => "decode",
            Self::Conflict { .. } => "conflict",
            Self::InvalidSubject(_) => "invalid_subject",
            Self::NoResponders(_) => "no_responders",
            Self::Timeout(_) => "timeout",
            Self::UnreadableReply { .. } => "unreadable_reply",
            Self::Malformed(_) => "malformed",
            Self::NotFound(_) => "not_found",
            Self::InvalidState(_) => "invalid_state",
            Self::Unrecorded(_) => "unrecorded",
            Self::Closed(_) => "closed",
            Self::Busy(_) => "busy",
            Self::Apply(_) => "apply",
            Self::Other(_) => "other",
        }
    }

    pub fn nats(context: impl Into<String>, source: impl Into<async_nats::Error>) -> Self {
        Self::Nats {
            context: context.into(),
            source: source.into(),
        }
    }

    pub fn db(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> Self {
        let context = context.into();
        move |source| Self::Db { context, source }
    }

    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }

    /// `source` could not be read as the reply `subject` gives.
    pub fn unreadable_reply(subject: impl Into<String>) -> impl FnOnce(serde_json::Error) -> Self {
        let subject = subject.into();
        move |source| Self::UnreadableReply { subject, source }
    }
}

impl Coded for Error {
    fn code(&self) -> &'static str {
        Error::code(self)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A refusal's code is its [`RejectionCode`](berth_schemas::RejectionCode).
impl Coded for berth_schemas::Rejection {
    fn code(&self) -> &'static str {
        self.code.as_str()
    }
}
