//! Kube errors in berth's terms: [`classify`] maps an API or connection error about an
//! object to a [`RuntimeError`]; [`object_path`] names the object in its message.

use crate::runtime::{namespace, RuntimeError};

/// Maps a kube error about `what` to a [`RuntimeError`]: 404 is [`RuntimeError::NotFound`];
/// 408, 409 (a conflict: retry on a fresh read), 429, 5xx and connection trouble are
/// [`RuntimeError::Transient`]; other 4xx and local errors are [`RuntimeError::Permanent`].
/// Callers that expect a 409 (`AlreadyExists`) check [`status_code`] first.
pub fn classify(err: ::kube::Error, what: &str) -> RuntimeError {
    use ::kube::Error as E;
    match &err {
        E::Api(status) => classify_status(status.code, what, &api_message(&err)),
        E::HyperError(_) | E::Service(_) | E::ReadEvents(_) | E::Auth(_) => {
            RuntimeError::Transient(format!("{what}: {err}"))
        }
        _ => RuntimeError::Permanent(format!("{what}: {err}")),
    }
}

fn classify_status(code: u16, what: &str, message: &str) -> RuntimeError {
    match code {
        404 => RuntimeError::NotFound(what.to_string()),
        408 | 409 | 429 => RuntimeError::Transient(format!("{what}: {message}")),
        400..=499 => RuntimeError::Permanent(format!("{what}: {message}")),
        _ => RuntimeError::Transient(format!("{what}: {message}")),
    }
}

/// The HTTP status of an API error, `None` for other errors.
pub fn status_code(err: &::kube::Error) -> Option<u16> {
    match err {
        ::kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// The API server's reason, code and message, or the error itself.
pub(super) fn api_message(err: &::kube::Error) -> String {
    match err {
        ::kube::Error::Api(status) => {
            let reason = if status.reason.is_empty() {
                "error"
            } else {
                status.reason.as_str()
            };
            format!("{reason} ({}): {}", status.code, status.message)
        }
        other => other.to_string(),
    }
}

/// A delete's result about `what`: an object already gone counts as deleted.
pub(super) fn missing_is_done<T>(
    result: Result<T, ::kube::Error>,
    what: &str,
) -> Result<(), RuntimeError> {
    match result {
        Ok(_) => Ok(()),
        Err(err) if status_code(&err) == Some(404) => Ok(()),
        Err(err) => Err(classify(err, what)),
    }
}

/// `kind namespace/name`: how an error names a tenant's object.
pub(super) fn object_path(kind: &str, tenant: &str, name: &str) -> String {
    format!("{kind} {}/{name}", namespace(tenant))
}
