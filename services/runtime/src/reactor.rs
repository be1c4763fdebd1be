//! Reactors: side effects driven by events, on durable pull consumers.
//!
//! Explicit ack, bounded in-flight work, exponential back-off with jitter on failure
//! (a nak with a delay), and after `max_deliver` attempts the message goes to
//! `dlq.<consumer>` with its error and original headers, then is terminated.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, AckKind};
use async_nats::HeaderMap;
use async_trait::async_trait;
use berth_schemas::subjects::{dlq_subject, EVENTS_STREAM};
use futures::StreamExt;
use rand::Rng;
use tracing::{info_span, warn, Instrument};

use crate::error::{Error, Result};
use crate::store::StoredEvent;
use crate::Runtime;

/// Why a reaction failed.
#[derive(Debug, thiserror::Error)]
pub enum ReactError {
    /// May work if tried again later.
    #[error("{0}")]
    Transient(String),
    /// Will never work: straight to the DLQ.
    #[error("{0}")]
    Permanent(String),
}

/// A process that turns events into side effects.
#[async_trait]
pub trait Reactor: Send + Sync + 'static {
    /// The durable consumer name, `<service>-<purpose>`.
    fn name(&self) -> String;
    /// The `EVENTS` subjects it reacts to.
    fn filter_subjects(&self) -> Vec<String>;
    /// Does the side effect for one event. Must be idempotent.
    async fn react(&self, event: &StoredEvent) -> Result<(), ReactError>;
    /// Called once when the event went to the DLQ, e.g. to record a failure event.
    async fn give_up(&self, _event: &StoredEvent, _error: &str) {}
    /// The stream it follows: `EVENTS` unless it says otherwise (e.g. `DLQ`).
    fn stream(&self) -> &'static str {
        EVENTS_STREAM
    }
    /// Its own limits where the runtime's settings do not suit it.
    fn tuning(&self) -> Tuning {
        Tuning::default()
    }
}

/// A reactor's overrides of the runtime's reactor settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tuning {
    pub max_in_flight: Option<usize>,
    pub max_deliver: Option<i64>,
    pub backoff_base: Option<Duration>,
    pub backoff_max: Option<Duration>,
}

/// The limits one reactor runs with: its tuning over the runtime's settings.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_in_flight: usize,
    max_deliver: i64,
    backoff_base: Duration,
    backoff_max: Duration,
}

impl Limits {
    fn of(reactor: &dyn Reactor, settings: &crate::Settings) -> Self {
        let tuning = reactor.tuning();
        Self {
            max_in_flight: tuning
                .max_in_flight
                .unwrap_or(settings.reactor_max_in_flight),
            max_deliver: tuning.max_deliver.unwrap_or(settings.reactor_max_deliver),
            backoff_base: tuning.backoff_base.unwrap_or(settings.reactor_backoff_base),
            backoff_max: tuning.backoff_max.unwrap_or(settings.reactor_backoff_max),
        }
    }
}

/// Headers the DLQ adds to a message it keeps.
pub mod dlq_headers {
    pub const ERROR: &str = "Berth-Dlq-Error";
    pub const SUBJECT: &str = "Berth-Dlq-Subject";
    pub const STREAM_SEQUENCE: &str = "Berth-Dlq-Stream-Sequence";
    pub const DELIVERIES: &str = "Berth-Dlq-Deliveries";
    pub const CONSUMER: &str = "Berth-Dlq-Consumer";
}

/// The delay before delivery `delivered + 1`: base · 2^(delivered-1), capped, ±25 % jitter.
pub fn backoff(delivered: i64, base: Duration, max: Duration) -> Duration {
    let exponent = u32::try_from(delivered.saturating_sub(1))
        .unwrap_or(0)
        .min(16);
    let delay = base.saturating_mul(1 << exponent).min(max);
    let jitter = rand::rng().random_range(0.75..1.25);
    delay.mul_f64(jitter)
}

/// Runs a reactor until shutdown: its live consumer and the consumer of the dead
/// letters an operator sends back to it (`retry.<name>`, see [`crate::dlq`]).
pub async fn run(rt: &Runtime, reactor: Arc<dyn Reactor>) -> Result<()> {
    let limits = Limits::of(reactor.as_ref(), &rt.settings);
    let name = reactor.name();
    let live = consumer::pull::Config {
        durable_name: Some(name.clone()),
        filter_subjects: reactor.filter_subjects(),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: rt.settings.reactor_ack_wait,
        max_deliver: limits.max_deliver,
        max_ack_pending: (limits.max_in_flight * 4) as i64,
        ..Default::default()
    };
    let retries = consumer::pull::Config {
        durable_name: Some(format!("{name}-retry")),
        filter_subjects: vec![crate::dlq::retry_subject(&name)?],
        ..live.clone()
    };
    tokio::try_join!(
        consume(rt, &reactor, reactor.stream(), live, limits, Origin::Live),
        consume(
            rt,
            &reactor,
            crate::dlq::RETRY_STREAM,
            retries,
            limits,
            Origin::Retried
        ),
    )?;
    Ok(())
}

/// Where a message a reactor handles comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Live,
    /// A dead letter sent back: its original subject and sequence are in its headers.
    Retried,
}

async fn consume(
    rt: &Runtime,
    reactor: &Arc<dyn Reactor>,
    stream: &str,
    config: consumer::pull::Config,
    limits: Limits,
    origin: Origin,
) -> Result<()> {
    let name = config.durable_name.clone().unwrap_or_default();
    let consumer: consumer::PullConsumer = rt
        .js
        .get_stream(stream)
        .await
        .map_err(|e| Error::nats(format!("get stream {stream}"), e))?
        .create_consumer(config)
        .await
        .map_err(|e| Error::nats(format!("create consumer {name}"), e))?;
    let messages = consumer
        .stream()
        .max_messages_per_batch(limits.max_in_flight)
        .messages()
        .await
        .map_err(|e| Error::nats(format!("consume {name}"), e))?;
    messages
        .take_until(rt.shutdown.clone().cancelled_owned())
        .for_each_concurrent(limits.max_in_flight, |message| {
            let reactor = reactor.clone();
            let rt = rt.clone();
            async move {
                match message {
                    Ok(message) => handle(&rt, reactor.as_ref(), limits, origin, message).await,
                    Err(e) => warn!(error = %e, "reactor consumer error"),
                }
            }
        })
        .await;
    Ok(())
}

/// The event a message carries; a retried dead letter is read as the original event.
fn event_of(message: &jetstream::Message, origin: Origin) -> Result<StoredEvent> {
    match origin {
        Origin::Live => StoredEvent::from_jetstream(message),
        Origin::Retried => {
            let headers = message.headers.clone().unwrap_or_default();
            let original = |name: &str| berth_schemas::envelope::header_value(&headers, name);
            let subject = original(dlq_headers::SUBJECT)
                .ok_or_else(|| Error::Other("a retried message without its subject".into()))?;
            let sequence = original(dlq_headers::STREAM_SEQUENCE)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| Error::Other("a retried message without its sequence".into()))?;
            StoredEvent::from_parts(sequence, subject, headers, message.payload.clone())
        }
    }
}

async fn handle(
    rt: &Runtime,
    reactor: &dyn Reactor,
    limits: Limits,
    origin: Origin,
    message: jetstream::Message,
) {
    let delivered = message.info().map(|info| info.delivered).unwrap_or(1);
    let span =
        info_span!("react", reactor = %reactor.name(), subject = %message.subject, delivered);
    crate::telemetry::set_parent(&span, message.headers.as_ref());
    async {
        let outcome = match event_of(&message, origin) {
            Ok(event) => reactor.react(&event).await.map_err(|e| (Some(event), e)),
            Err(e) => Err((None, ReactError::Permanent(e.to_string()))),
        };
        let ack = match outcome {
            Ok(()) => message.ack().await,
            Err((event, error)) => {
                let last = matches!(error, ReactError::Permanent(_))
                    || delivered >= limits.max_deliver;
                if !last {
                    warn!(error = %error, "reaction failed; will retry");
                    let delay = backoff(delivered, limits.backoff_base, limits.backoff_max);
                    message.ack_with(AckKind::Nak(Some(delay))).await
                } else {
                    warn!(error = %error, "reaction failed for good; moving the message to the DLQ");
                    match dead_letter(rt, &reactor.name(), &message, event.as_ref(), delivered, &error.to_string()).await {
                        Ok(()) => {
                            if let Some(event) = event {
                                reactor.give_up(&event, &error.to_string()).await;
                            }
                            message.ack_with(AckKind::Term).await
                        }
                        Err(e) => {
                            warn!(error = %e, "could not write to the DLQ; will retry");
                            message.ack_with(AckKind::Nak(Some(limits.backoff_max))).await
                        }
                    }
                }
            }
        };
        if let Err(e) = ack {
            warn!(error = %e, "could not acknowledge a message; it will be redelivered");
        }
    }
    .instrument(span)
    .await
}

/// A message's headers without JetStream's own `Nats-*` ones (an expectation or a
/// message id of the original would be wrong on the copy's subject).
pub(crate) fn without_jetstream_headers(original: &HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, values) in original.iter() {
        if name.to_string().to_ascii_lowercase().starts_with("nats-") {
            continue;
        }
        for value in values {
            headers.append(name.clone(), value.clone());
        }
    }
    headers
}

/// Copies a message into `dlq.<consumer>` with why it failed. The copy keeps every
/// original header except JetStream's own `Nats-*` headers (an expectation on the
/// original subject would fail on the DLQ subject); its `Nats-Msg-Id` is
/// `<consumer>:<stream sequence>`, so writing it twice keeps one copy.
async fn dead_letter(
    rt: &Runtime,
    consumer: &str,
    message: &jetstream::Message,
    event: Option<&StoredEvent>,
    delivered: i64,
    error: &str,
) -> Result<()> {
    let own_sequence = message.info().map(|info| info.stream_sequence).unwrap_or(0);
    // A retried dead letter names its original subject and sequence, not the retry's.
    let (subject, sequence, msg_id) = match event {
        Some(event) if event.subject != message.subject.as_str() => (
            event.subject.clone(),
            event.sequence,
            format!("{consumer}:{}:retry:{own_sequence}", event.sequence),
        ),
        _ => (
            message.subject.to_string(),
            own_sequence,
            format!("{consumer}:{own_sequence}"),
        ),
    };
    let mut headers = message
        .headers
        .as_ref()
        .map(without_jetstream_headers)
        .unwrap_or_default();
    let error: String = error
        .chars()
        .filter(|c| !c.is_control())
        .take(1024)
        .collect();
    headers.insert(dlq_headers::ERROR, error.as_str());
    headers.insert(dlq_headers::SUBJECT, subject.as_str());
    headers.insert(dlq_headers::STREAM_SEQUENCE, sequence.to_string().as_str());
    headers.insert(dlq_headers::DELIVERIES, delivered.to_string().as_str());
    headers.insert(dlq_headers::CONSUMER, consumer);
    headers.insert("Nats-Msg-Id", msg_id.as_str());
    let subject = dlq_subject(consumer).map_err(|e| Error::Other(e.to_string()))?;
    rt.js
        .publish_with_headers(subject, headers, message.payload.clone())
        .await
        .map_err(|e| Error::nats("publish to DLQ", e))?
        .await
        .map_err(|e| Error::nats("DLQ ack", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        assert!(backoff(1, base, max) <= Duration::from_millis(125));
        assert!(backoff(4, base, max) >= Duration::from_millis(600));
        assert!(backoff(40, base, max) <= Duration::from_millis(6250));
    }
}
