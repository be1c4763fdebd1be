//! What a template sees, built from the source message and the log:
//!
//! - `event`: `id`, `type`, `time`, `tenant`, `aggregate_id` and the event's `data`; for
//!   the fire of a `system` timer a service keeps about a tenant's thing (an expiry
//!   warning), `tenant` is the tenant its payload names and `data.payload` the payload,
//!   read from the timer's spec (fires do not copy it);
//! - `account`: the tenant's account folded from its events (`name`, `billing_email`,
//!   `tier`, `currency`), or none;
//! - `origin`: the data of the aggregate's first event (a pod's or VM's `requested`:
//!   its name, service, size), or none;
//! - `dead_letter`: for the `dlq` rule, the consumer, subject, deliveries and error;
//! - `rule` and `recipient`.
//!
//! Everything is read from the log when a notification is delivered, so a preview and a
//! delivery of the same source show the same text.

use async_nats::jetstream;
use async_nats::HeaderMap;
use berth_runtime::reactor::dlq_headers;
use berth_runtime::store::{EventStore, StoredEvent};
use berth_schemas::billing::{account_id, AccountEvent, ACCOUNT};
use berth_schemas::envelope::header_value;
use berth_schemas::ids::SYSTEM_TENANT;
use berth_schemas::notification::Source;
use berth_schemas::schedule::ScheduleEvent;
use berth_schemas::subjects::{event_subject, DLQ_STREAM};
use berth_schemas::TenantId;
use serde::Serialize;
use serde_json::{json, Value};

/// The contact details of a tenant's account, as of the latest event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Contact {
    pub name: String,
    pub billing_email: String,
    pub tier: String,
    pub currency: String,
}

impl Contact {
    /// Folds the account's events; `None` when it was never opened.
    pub fn fold(events: &[StoredEvent]) -> Option<Self> {
        let mut contact: Option<Contact> = None;
        for event in events {
            match event.decode::<AccountEvent>().ok()? {
                AccountEvent::Opened(opened) => {
                    contact = Some(Contact {
                        name: opened.name,
                        billing_email: opened.billing_email,
                        tier: tier_name(opened.tier),
                        currency: opened.currency,
                    })
                }
                AccountEvent::ContactUpdated(update) => {
                    if let Some(contact) = contact.as_mut() {
                        if let Some(name) = update.name {
                            contact.name = name;
                        }
                        if let Some(email) = update.billing_email {
                            contact.billing_email = email;
                        }
                    }
                }
                AccountEvent::TierSet(set) => {
                    if let Some(contact) = contact.as_mut() {
                        contact.tier = tier_name(set.tier);
                    }
                }
                _ => {}
            }
        }
        contact
    }
}

fn tier_name(tier: berth_schemas::usage::Tier) -> String {
    serde_json::to_value(tier)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A message a notification is about, as read back from its stream.
#[derive(Debug, Clone)]
pub enum SourceMessage {
    Event(Box<StoredEvent>),
    DeadLetter { headers: HeaderMap, sequence: u64 },
}

/// Why a template context could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The source is gone (a DLQ message past its age, a purged stream): permanent.
    #[error("source {stream} #{sequence} is gone: {detail}")]
    Gone {
        stream: String,
        sequence: u64,
        detail: String,
    },
    /// NATS did not answer: worth another try.
    #[error("{0}")]
    Unavailable(String),
}

impl berth_runtime::Coded for ContextError {
    /// `source_gone` or `unavailable`.
    fn code(&self) -> &'static str {
        match self {
            Self::Gone { .. } => "source_gone",
            Self::Unavailable(_) => "unavailable",
        }
    }
}

/// The fire of a `system` timer that a service keeps about one tenant's thing and that
/// asks for a notification: its payload's `notify`, the tenant its payload's `tenant`
/// names, and the payload.
#[derive(Debug, Clone, PartialEq)]
pub struct TimerFire {
    pub notify: String,
    pub tenant: TenantId,
    pub payload: Value,
}

/// Reads sources and the aggregates they refer to.
#[derive(Clone)]
pub struct Contexts {
    pub store: EventStore,
}

impl Contexts {
    fn js(&self) -> &jetstream::Context {
        self.store.jetstream()
    }

    /// The source message, by stream and sequence.
    pub async fn fetch(&self, source: &Source) -> Result<SourceMessage, ContextError> {
        let stream = self
            .js()
            .get_stream(&source.stream)
            .await
            .map_err(|e| ContextError::Unavailable(format!("stream {}: {e}", source.stream)))?;
        let message = stream.direct_get(source.sequence).await.map_err(|e| {
            if e.kind() == jetstream::stream::DirectGetErrorKind::NotFound {
                ContextError::Gone {
                    stream: source.stream.clone(),
                    sequence: source.sequence,
                    detail: e.to_string(),
                }
            } else {
                ContextError::Unavailable(format!(
                    "read {} #{}: {e}",
                    source.stream, source.sequence
                ))
            }
        })?;
        if source.stream == DLQ_STREAM {
            return Ok(SourceMessage::DeadLetter {
                headers: message.headers,
                sequence: source.sequence,
            });
        }
        StoredEvent::from_parts(
            source.sequence,
            message.subject.to_string(),
            message.headers,
            message.payload,
        )
        .map(|event| SourceMessage::Event(Box::new(event)))
        .map_err(|e| ContextError::Gone {
            stream: source.stream.clone(),
            sequence: source.sequence,
            detail: e.to_string(),
        })
    }

    /// The timer fire `event` is, if it is the fire of a `system` timer whose payload
    /// names a `notify` rule and a tenant. Fires of a tenant's own schedules are not: what
    /// berth mails is never a tenant's text.
    pub async fn timer_fire(&self, event: &StoredEvent) -> Result<Option<TimerFire>, ContextError> {
        if event.meta.tenant.as_str() != SYSTEM_TENANT {
            return Ok(None);
        }
        let Ok(ScheduleEvent::Fired(fired)) = event.decode::<ScheduleEvent>() else {
            return Ok(None);
        };
        let spec = berth_runtime::client::fired_spec(&self.store, event, &fired)
            .await
            .map_err(|e| ContextError::Unavailable(e.to_string()))?;
        let notify = spec.payload.get("notify").and_then(Value::as_str);
        let tenant = spec
            .payload
            .get("tenant")
            .and_then(Value::as_str)
            .and_then(|tenant| TenantId::parse(tenant).ok());
        Ok(match (notify, tenant) {
            (Some(notify), Some(tenant)) => Some(TimerFire {
                notify: notify.to_owned(),
                tenant,
                payload: spec.payload.clone(),
            }),
            _ => None,
        })
    }

    /// The tenant's account contact, if it has an account.
    pub async fn contact(&self, tenant: &TenantId) -> Result<Option<Contact>, ContextError> {
        let subject = event_subject(tenant, ACCOUNT, account_id(tenant));
        let events = self
            .store
            .read(&subject, 0)
            .await
            .map_err(|e| ContextError::Unavailable(format!("read the account: {e}")))?;
        Ok(Contact::fold(&events))
    }

    /// The data of the first event of the aggregate `event` is about.
    async fn origin(&self, event: &StoredEvent) -> Result<Option<Value>, ContextError> {
        let stream = self
            .js()
            .get_stream(berth_schemas::subjects::EVENTS_STREAM)
            .await
            .map_err(|e| ContextError::Unavailable(e.to_string()))?;
        match stream.direct_get_first_for_subject(&event.subject).await {
            Ok(first) => Ok(serde_json::from_slice(&first.payload).ok()),
            Err(e) if e.kind() == jetstream::stream::DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(ContextError::Unavailable(format!(
                "read {}: {e}",
                event.subject
            ))),
        }
    }

    /// The whole context of a notification of `rule` to `recipient` about `message`.
    pub async fn build(
        &self,
        rule: &str,
        recipient: &str,
        message: &SourceMessage,
    ) -> Result<Value, ContextError> {
        match message {
            SourceMessage::DeadLetter { headers, sequence } => {
                Ok(dead_letter_context(rule, recipient, headers, *sequence))
            }
            SourceMessage::Event(event) => {
                let mut view = event_view(event);
                let mut tenant = &event.meta.tenant;
                let fire = self.timer_fire(event).await?;
                if let Some(fire) = &fire {
                    tenant = &fire.tenant;
                    view["tenant"] = json!(fire.tenant.as_str());
                    view["data"]["payload"] = fire.payload.clone();
                }
                let account = self.contact(tenant).await?;
                let origin = self.origin(event).await?;
                Ok(assemble(rule, recipient, view, account.as_ref(), origin))
            }
        }
    }
}

/// The `event` part of a context.
pub fn event_view(event: &StoredEvent) -> Value {
    let data: Value = serde_json::from_slice(&event.data).unwrap_or(Value::Null);
    json!({
        "id": event.meta.id,
        "type": event.meta.event_type,
        "time": event.meta.time.to_rfc3339(),
        "tenant": event.meta.tenant.as_str(),
        "aggregate_id": event.meta.subject,
        "data": data,
    })
}

/// A context from its parts (also used by the samples).
pub fn assemble(
    rule: &str,
    recipient: &str,
    event: Value,
    account: Option<&Contact>,
    origin: Option<Value>,
) -> Value {
    json!({
        "rule": rule,
        "recipient": recipient,
        "event": event,
        "account": account,
        "origin": origin,
    })
}

/// The context of a dead letter: what the DLQ headers say.
pub fn dead_letter_context(
    rule: &str,
    recipient: &str,
    headers: &HeaderMap,
    sequence: u64,
) -> Value {
    let header = |name: &str| header_value(headers, name).unwrap_or_default();
    json!({
        "rule": rule,
        "recipient": recipient,
        "event": {"type": "dlq", "tenant": "system", "dlq_sequence": sequence},
        "dead_letter": {
            "consumer": header(dlq_headers::CONSUMER),
            "subject": header(dlq_headers::SUBJECT),
            "stream_sequence": header(dlq_headers::STREAM_SEQUENCE),
            "deliveries": header(dlq_headers::DELIVERIES),
            "error": header(dlq_headers::ERROR),
        },
    })
}
