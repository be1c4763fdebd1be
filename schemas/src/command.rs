//! Command metadata, replies and typed rejections.

use async_nats::HeaderMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::{header_value, headers};
use crate::ids::Actor;

/// Commands larger than this are refused before they are parsed (256 KiB).
pub const DEFAULT_MAX_COMMAND_BYTES: usize = 256 * 1024;

/// The stable machine code of a rejection; the same code goes into logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RejectionCode {
    /// The command is malformed: bad JSON, unknown or duplicate fields, values out of bounds.
    Invalid,
    /// The command is larger than the command size limit.
    TooLarge,
    /// The aggregate the command names does not exist (for this tenant).
    NotFound,
    /// The aggregate changed under the command (`expected_version` or contention).
    Conflict,
    /// The command is not allowed in the aggregate's current state.
    InvalidState,
    /// The tenant's quota does not allow it.
    QuotaExceeded,
    /// No server has room for it.
    NoCapacity,
    /// The actor may not do this.
    Forbidden,
    /// berth could not process the command now; it is safe to retry with the same id.
    Unavailable,
    /// The tenant is over its command rate or in-flight share; retry after
    /// `retry_after_ms` with the same id.
    Busy,
}

impl RejectionCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::TooLarge => "too_large",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::InvalidState => "invalid_state",
            Self::QuotaExceeded => "quota_exceeded",
            Self::NoCapacity => "no_capacity",
            Self::Forbidden => "forbidden",
            Self::Unavailable => "unavailable",
            Self::Busy => "busy",
        }
    }
}

impl std::fmt::Display for RejectionCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A typed refusal: nothing was appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Rejection {
    pub code: RejectionCode,
    pub message: String,
    /// For `busy`: when the same command may be sent again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// For `unavailable`: the stable code of the failure behind it (`nats`, `db`,
    /// `timeout`, …), for logs and metrics; absent where there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
}

impl Rejection {
    pub fn new(code: RejectionCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_ms: None,
            error_code: None,
        }
    }

    /// This refusal, naming the stable code of the failure behind it.
    pub fn with_error_code(mut self, code: impl Into<String>) -> Self {
        self.error_code = Some(code.into());
        self
    }

    /// A `busy` refusal: the same command may be sent again after `retry_after`.
    pub fn busy(message: impl Into<String>, retry_after: std::time::Duration) -> Self {
        Self {
            code: RejectionCode::Busy,
            message: message.into(),
            retry_after_ms: Some(retry_after.as_millis().max(1) as u64),
            error_code: None,
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(RejectionCode::Forbidden, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(RejectionCode::Invalid, message)
    }

    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(RejectionCode::InvalidState, message)
    }
}

/// One event a command produced, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RecordedEvent {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub sequence: u64,
}

/// The answer to every command; `output` is what the command printed: nothing for most
/// (`O = ()`), an `ExecOutput` for `vm.exec` and `pod.logs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CommandReply<O = ()> {
    Accepted {
        aggregate_id: Uuid,
        /// The aggregate's version (stream sequence) after this command's events.
        version: u64,
        events: Vec<RecordedEvent>,
        /// What the command printed; absent for a command that prints nothing and for a
        /// repeated one (which is not run again).
        #[serde(skip_serializing_if = "Option::is_none")]
        output: Option<O>,
    },
    Rejected(Rejection),
}

impl CommandReply {
    /// This answer of a command that printed nothing, as the reply of a kind whose
    /// commands may print an `O`.
    pub fn with_no_output<O>(self) -> CommandReply<O> {
        match self {
            Self::Accepted {
                aggregate_id,
                version,
                events,
                output: _,
            } => CommandReply::Accepted {
                aggregate_id,
                version,
                events,
                output: None,
            },
            Self::Rejected(rejection) => CommandReply::Rejected(rejection),
        }
    }
}

impl<O> CommandReply<O> {
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            Self::Rejected(rejection) => Some(rejection),
            Self::Accepted { .. } => None,
        }
    }

    /// The same answer with its output turned by `f` (e.g. dropped: `|_| ()`).
    pub fn map_output<P>(self, f: impl FnOnce(O) -> P) -> CommandReply<P> {
        match self {
            Self::Accepted {
                aggregate_id,
                version,
                events,
                output,
            } => CommandReply::Accepted {
                aggregate_id,
                version,
                events,
                output: output.map(f),
            },
            Self::Rejected(rejection) => CommandReply::Rejected(rejection),
        }
    }
}

/// The headers of a command: its id (the idempotency key), who sent it, and tracing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandMeta {
    pub id: Uuid,
    pub actor: Actor,
    pub correlation_id: Uuid,
    pub traceparent: Option<String>,
}

impl CommandMeta {
    /// A new command id (UUID v7) that also starts a new correlation.
    pub fn new(actor: Actor) -> Self {
        let id = Uuid::now_v7();
        Self {
            id,
            actor,
            correlation_id: id,
            traceparent: None,
        }
    }

    pub fn from_headers(map: Option<&HeaderMap>) -> Result<Self, Rejection> {
        let empty = HeaderMap::new();
        let map = map.unwrap_or(&empty);
        let id = header_value(map, headers::ID).ok_or_else(|| {
            Rejection::invalid("header ce-id (the command id, a UUID) is missing")
        })?;
        let id =
            Uuid::parse_str(&id).map_err(|_| Rejection::invalid("header ce-id must be a UUID"))?;
        let actor = header_value(map, headers::ACTOR)
            .ok_or_else(|| Rejection::invalid("header ce-actor is missing"))?;
        let actor = Actor::parse(&actor).map_err(|e| Rejection::invalid(e.to_string()))?;
        let correlation_id = match header_value(map, headers::CORRELATION_ID) {
            Some(raw) => Uuid::parse_str(&raw)
                .map_err(|_| Rejection::invalid("header ce-correlationid must be a UUID"))?,
            None => id,
        };
        Ok(Self {
            id,
            actor,
            correlation_id,
            traceparent: header_value(map, headers::TRACEPARENT),
        })
    }

    pub fn to_headers(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(headers::ID, self.id.to_string().as_str());
        map.insert(headers::ACTOR, self.actor.as_str());
        map.insert(
            headers::CORRELATION_ID,
            self.correlation_id.to_string().as_str(),
        );
        if let Some(traceparent) = &self.traceparent {
            map.insert(headers::TRACEPARENT, traceparent.as_str());
        }
        map
    }
}

/// Parses a command body strictly: the body must be one JSON object of exactly the
/// command's fields (unknown and duplicate fields are refused by `deny_unknown_fields`
/// and serde's derive).
pub fn parse_body<T: serde::de::DeserializeOwned>(
    action: &str,
    body: &[u8],
) -> Result<T, Rejection> {
    serde_json::from_slice(body).map_err(|e| Rejection::invalid(format!("{action}: {e}")))
}

/// A family of commands for one aggregate kind.
pub trait CommandSet: Sized + Send + Sync + 'static {
    /// Decodes `cmd.<tenant>.<kind>.<action>` with its body.
    fn decode(action: &str, body: &[u8]) -> Result<Self, Rejection>;
    /// The aggregate instance the command is about.
    fn aggregate_id(&self, command_id: Uuid) -> Uuid;
    /// Apply only if the aggregate is still at this version.
    fn expected_version(&self) -> Option<u64>;
    /// The action token, as in the subject.
    fn action(&self) -> &'static str;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::ExecOutput;

    fn accepted<O>(output: Option<O>) -> CommandReply<O> {
        CommandReply::Accepted {
            aggregate_id: Uuid::nil(),
            version: 3,
            events: Vec::new(),
            output,
        }
    }

    #[test]
    fn replies_carry_an_output_only_when_the_kind_prints_one() {
        let plain = serde_json::to_value(accepted::<()>(None)).unwrap();
        assert!(plain.get("output").is_none());
        let read: CommandReply<ExecOutput> = serde_json::from_value(plain).unwrap();
        assert_eq!(read, accepted::<()>(None).with_no_output());

        let printed = accepted(Some(ExecOutput {
            exit_code: 0,
            stdout: "hi".into(),
            stderr: String::new(),
        }));
        let body = serde_json::to_value(&printed).unwrap();
        assert_eq!(body["output"]["stdout"], "hi");
        let read: CommandReply<ExecOutput> = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(read, printed);
        // A reader that expects nothing cannot read an output; one that drops it can.
        assert!(serde_json::from_value::<CommandReply>(body).is_err());
        assert_eq!(printed.map_output(|_| ()), accepted(Some(())));
    }
}
