//! The notifier's one error type.

use crate::templates::TemplateError;

/// What went wrong in the notifier, with a stable machine code per variant:
///
/// | code               | variant           | what failed                                    |
/// |--------------------|-------------------|------------------------------------------------|
/// | *runtime's*        | `Runtime`         | the runtime (its code: `nats`, `db`, …)        |
/// | `template`         | `Template`        | a built-in template does not compile           |
/// | `missing_template` | `MissingTemplate` | a rule has no template                         |
/// | `smtp_url`         | `SmtpUrl`         | `BERTH_SMTP_URL` is not a usable SMTP URL      |
/// | `sender`           | `Sender`          | the sender address does not parse              |
/// | `http_client`      | `HttpClient`      | the webhook HTTP client cannot be built        |
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Runtime(#[from] berth_runtime::Error),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("rule {rule:?} has no template templates/{rule}.j2")]
    MissingTemplate { rule: String },
    /// `server` is the URL with its password redacted.
    #[error("BERTH_SMTP_URL {server}: {reason}")]
    SmtpUrl { server: String, reason: String },
    #[error("sender address {from:?}: {reason}")]
    Sender { from: String, reason: String },
    #[error("the webhook client: {0}")]
    HttpClient(#[source] reqwest::Error),
}

impl Error {
    /// The stable code of this error (the table above).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Runtime(e) => e.code(),
            Self::Template(_) => "template",
            Self::MissingTemplate { .. } => "missing_template",
            Self::SmtpUrl { .. } => "smtp_url",
            Self::Sender { .. } => "sender",
            Self::HttpClient(_) => "http_client",
        }
    }
}

impl berth_runtime::Coded for Error {
    fn code(&self) -> &'static str {
        Error::code(self)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
