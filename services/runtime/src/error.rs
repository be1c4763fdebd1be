//! The runtime's one error type.

/// What went wrong in the runtime, with a stable machine code per variant.
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
    #[error("event {sequence} on {subject} cannot be read: {source}")]
    Decode {
        sequence: u64,
        subject: String,
        #[source]
        source: berth_schemas::DecodeError,
    },
    #[error("version conflict on {subject}: expected {expected}")]
    Conflict { subject: String, expected: u64 },
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// The stable code of this error, as used in logs, rejections and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Config(_) => "config",
            Self::Nats { .. } => "nats",
            Self::Db { .. } => "db",
            Self::Decode { .. } => "decode",
            Self::Conflict { .. } => "conflict",
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
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
