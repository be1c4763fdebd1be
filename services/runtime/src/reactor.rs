//! Reactors: side effects driven by events, on durable pull consumers.
//!
//! Explicit ack, bounded in-flight work (`max_ack_pending` is the in-flight bound, so a
//! message never waits in a buffer while its ack wait runs), exponential back-off with
//! jitter on failure (a nak with a delay), and after `max_deliver` attempts the message
//! goes to `dlq.<consumer>` with its error and original headers, then is terminated.
//!
//! While a reaction runs — waiting for a provider slot, a slow call, a pull — the runtime
//! sends an in-progress ack every third of the ack wait, so the message is not
//! redelivered while it is still in hand; and every outside call a reaction makes has a
//! deadline below the ack wait ([`call_deadline`]), so a call that hangs is abandoned as a
//! transient failure instead of holding the message for ever.
//!
//! A reactor whose side effects must never be abandoned for transience alone (a
//! customer's machine) says so with [`Reactor::retries_transient_forever`]: a transient
//! failure then never goes to the DLQ. After `max_deliver` attempts the reactor records
//! it ([`Reactor::record_failure`], e.g. a `degraded` status) and the message is handed
//! to the reactor's own retry consumer (`retry.<consumer>`, the work queue operators'
//! retries use), which keeps redelivering it at the capped back-off until it succeeds or
//! fails for good — so the live consumer's in-flight slots stay free for new events.
//! Only a permanent failure goes to the DLQ. Recording a failure is itself retried with
//! back-off until it succeeds (or the process stops, and the message comes again): a
//! failure is never dropped unrecorded.

#![allow(
    clippy::disallowed_methods,
    reason = "raw NATS belongs to berth-runtime: reactors move failed messages to the DLQ here"
)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, AckKind};
use async_nats::HeaderMap;
use async_trait::async_trait;
use berth_schemas::subjects::{dlq_subject, retry_subject, EVENTS_STREAM, RETRY_STREAM};
use futures::StreamExt;
use rand::Rng;
use tracing::{info_span, warn, Instrument};

use crate::error::{Coded, Error, Result};
use crate::store::StoredEvent;
use crate::Runtime;

/// Why a reaction failed, with the stable code of what failed (the typed error's
/// [`Coded::code`] where there was one): it goes into the dead letter's
/// `berth-error-code` header and the `error.code` field of the log line.
#[derive(Debug, thiserror::Error)]
pub enum ReactError {
    /// May work if tried again later.
    #[error("{reason}")]
    Transient { code: &'static str, reason: String },
    /// Will never work: straight to the DLQ.
    #[error("{reason}")]
    Permanent { code: &'static str, reason: String },
}

impl ReactError {
    /// A transient failure for `error`, with its code: may work if tried again later.
    pub fn transient(error: impl Coded) -> Self {
        Self::Transient {
            code: error.code(),
            reason: error.to_string(),
        }
    }

    /// A permanent failure for `error`, with its code: straight to the DLQ.
    pub fn permanent(error: impl Coded) -> Self {
        Self::Permanent {
            code: error.code(),
            reason: error.to_string(),
        }
    }

    /// A transient failure the reactor itself describes, under `code`.
    pub fn transient_because(code: &'static str, reason: impl Into<String>) -> Self {
        Self::Transient {
            code,
            reason: reason.into(),
        }
    }

    /// A permanent failure the reactor itself describes, under `code`.
    pub fn permanent_because(code: &'static str, reason: impl Into<String>) -> Self {
        Self::Permanent {
            code,
            reason: reason.into(),
        }
    }

    /// The stable code of what failed.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Transient { code, .. } | Self::Permanent { code, .. } => code,
        }
    }

    /// Whether it may work if tried again.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }
}

impl Coded for ReactError {
    fn code(&self) -> &'static str {
        ReactError::code(self)
    }
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
    /// Records a failure where people see it: one for good (the message went to the
    /// DLQ; by default [`Self::give_up`]) or, for a reactor that
    /// [`retries_transient_forever`](Self::retries_transient_forever), a transient one
    /// that has lasted `max_deliver` attempts (and again at twice, four times, … as
    /// many; by default nothing). An error is retried with capped back-off, the message
    /// held, until the record succeeds; if the process stops first the message is handed
    /// back and comes again.
    async fn record_failure(
        &self,
        event: &StoredEvent,
        failure: &Failure,
    ) -> Result<(), ReactError> {
        if !failure.retrying {
            self.give_up(event, &failure.error).await;
        }
        Ok(())
    }
    /// Whether a transient failure is retried without end (see the module docs) rather
    /// than sent to the DLQ after `max_deliver` attempts.
    fn retries_transient_forever(&self) -> bool {
        false
    }
    /// The stream it follows: `EVENTS` unless it says otherwise (e.g. `DLQ`).
    fn stream(&self) -> &'static str {
        EVENTS_STREAM
    }
    /// Its own limits where the runtime's settings do not suit it.
    fn tuning(&self) -> Tuning {
        Tuning::default()
    }
}

/// A failure as [`Reactor::record_failure`] is told of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The last error.
    pub error: String,
    /// Attempts at the event so far, this one included (deliveries, counted across a
    /// hand-over to the retry consumer).
    pub attempts: i64,
    /// `true`: a transient failure that is still being retried; `false`: a failure for
    /// good (the message went to the DLQ).
    pub retrying: bool,
}

/// The deadline of an outside call made outside any reaction (a command handler's,
/// a test's): three quarters of the default ack wait.
pub const DEFAULT_CALL_DEADLINE: Duration = Duration::from_secs(45);

tokio::task_local! {
    static CALL_DEADLINE: Duration;
}

/// The deadline under a consumer with `ack_wait`: three quarters of it, so a call that
/// hangs is abandoned well before the message could be redelivered.
pub fn call_deadline_for(ack_wait: Duration) -> Duration {
    ack_wait.mul_f64(0.75)
}

/// The deadline of one outside call (a provider's, a container runtime's) made now: in a
/// reaction, [`call_deadline_for`] its consumer's ack wait; elsewhere
/// [`DEFAULT_CALL_DEADLINE`]. Wrap calls with [`within_deadline`] in one place (a
/// wrapper around the provider), not at every call site.
pub fn call_deadline() -> Duration {
    CALL_DEADLINE
        .try_with(|deadline| *deadline)
        .unwrap_or(DEFAULT_CALL_DEADLINE)
}

/// Runs `call` within [`call_deadline`]; `Err(deadline)` when it passed first (the call
/// is dropped, which abandons it).
pub async fn within_deadline<T>(call: impl Future<Output = T>) -> Result<T, Duration> {
    let deadline = call_deadline();
    tokio::time::timeout(deadline, call)
        .await
        .map_err(|_| deadline)
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
    /// The stable code of the error ([`super::ReactError::code`]).
    pub const ERROR_CODE: &str = "Berth-Error-Code";
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
        // A reactor that never gives up on transience counts attempts itself (the
        // server would stop redelivering at its limit, whatever the reactor decided).
        max_deliver: if reactor.retries_transient_forever() {
            -1
        } else {
            limits.max_deliver
        },
        // As many as are worked on at once: a message the server hands out is handled
        // (and its progress acked) at once, never left to age in a buffer.
        max_ack_pending: limits.max_in_flight as i64,
        ..Default::default()
    };
    let retries = consumer::pull::Config {
        durable_name: Some(format!("{name}-retry")),
        filter_subjects: vec![retry_subject(&name)?],
        ..live.clone()
    };
    tokio::try_join!(
        consume(rt, &reactor, reactor.stream(), live, limits, Origin::Live),
        consume(rt, &reactor, RETRY_STREAM, retries, limits, Origin::Retried),
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
                    Err(e) => warn!(error = %e, error.code = "nats", "reactor consumer error"),
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
                .ok_or_else(|| Error::Malformed("a retried message without its subject".into()))?;
            let sequence = original(dlq_headers::STREAM_SEQUENCE)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| Error::Malformed("a retried message without its sequence".into()))?;
            StoredEvent::from_parts(sequence, subject, headers, message.payload.clone())
        }
    }
}

/// What becomes of a message whose reaction failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Nak it with back-off: it comes again.
    Retry,
    /// Copy it to the reactor's retry consumer and let the live consumer go on.
    HandOver,
    /// Copy it to the DLQ, record the failure for good, terminate it.
    DeadLetter,
}

/// What to do after a failed attempt: `delivered` is the message's own delivery count.
fn next_after(
    error: &ReactError,
    forever: bool,
    origin: Origin,
    delivered: i64,
    max_deliver: i64,
) -> Next {
    match error {
        ReactError::Permanent { .. } => Next::DeadLetter,
        ReactError::Transient { .. } if delivered < max_deliver => Next::Retry,
        ReactError::Transient { .. } if !forever => Next::DeadLetter,
        // The retry consumer keeps it as long as it takes.
        ReactError::Transient { .. } if origin == Origin::Retried => Next::Retry,
        ReactError::Transient { .. } => Next::HandOver,
    }
}

/// Whether an ongoing transient failure is recorded at this many attempts: at
/// `max_deliver`, then at twice, four times, … as many, so a long outage leaves a
/// logarithmic trail in the log, not one event per attempt.
fn worth_recording(attempts: i64, max_deliver: i64) -> bool {
    max_deliver > 0
        && attempts >= max_deliver
        && attempts % max_deliver == 0
        && u64::try_from(attempts / max_deliver).is_ok_and(u64::is_power_of_two)
}

/// Attempts a message had before it was handed to the retry consumer (0 for a live one).
fn earlier_attempts(message: &jetstream::Message, origin: Origin) -> i64 {
    match origin {
        Origin::Live => 0,
        Origin::Retried => message
            .headers
            .as_ref()
            .and_then(|headers| {
                berth_schemas::envelope::header_value(headers, dlq_headers::DELIVERIES)
            })
            .and_then(|value| value.parse().ok())
            .unwrap_or(0),
    }
}

/// Runs `work`, sending an in-progress ack for `message` every `every` while it runs, so
/// a message in hand is not redelivered however long the work waits.
async fn holding<T>(
    message: &jetstream::Message,
    every: Duration,
    work: impl Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            output = &mut work => return output,
            _ = ticks.tick() => {
                if let Err(e) = message.ack_with(AckKind::Progress).await {
                    warn!(error = %e, error.code = "nats", "could not send an in-progress ack");
                }
            }
        }
    }
}

/// One message in hand: what [`handle`] needs to settle it.
struct InHand<'a> {
    rt: &'a Runtime,
    reactor: &'a dyn Reactor,
    limits: Limits,
    message: &'a jetstream::Message,
    /// How often an in-progress ack goes out.
    progress_every: Duration,
    /// The deadline of every outside call made for it.
    call_deadline: Duration,
}

impl InHand<'_> {
    /// Runs reactor work on the message: in-progress acks while it runs, its outside
    /// calls under the call deadline.
    async fn work<T>(&self, work: impl Future<Output = T>) -> T {
        holding(
            self.message,
            self.progress_every,
            CALL_DEADLINE.scope(self.call_deadline, work),
        )
        .await
    }

    /// Records a failure until the record succeeds, with capped back-off between tries;
    /// `false` if the process began to stop first.
    async fn record(&self, event: &StoredEvent, failure: &Failure) -> bool {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.work(self.reactor.record_failure(event, failure)).await {
                Ok(()) => return true,
                Err(e) => warn!(
                    error = %e,
                    error.code = e.code(),
                    tries,
                    "could not record the failure; will try again"
                ),
            }
            let pause = backoff(tries, self.limits.backoff_base, self.limits.backoff_max);
            tokio::select! {
                _ = holding(self.message, self.progress_every, tokio::time::sleep(pause)) => {}
                _ = self.rt.shutdown.cancelled() => return false,
            }
        }
    }

    /// Settles a failed attempt: retry, hand over or dead-letter, recording what must be.
    async fn failed(
        &self,
        origin: Origin,
        event: Option<StoredEvent>,
        error: ReactError,
        delivered: i64,
        attempts: i64,
    ) -> std::result::Result<(), async_nats::Error> {
        let forever = self.reactor.retries_transient_forever();
        let next = next_after(&error, forever, origin, delivered, self.limits.max_deliver);
        let message = self.message;
        let reason = error.to_string();
        let code = error.code();
        // A message the retry consumer keeps waits the capped back-off at once; any other
        // backs off from its own deliveries.
        let delay = backoff(
            if forever { attempts } else { delivered },
            self.limits.backoff_base,
            self.limits.backoff_max,
        );
        // A transient failure that keeps coming is told as it goes, at milestones.
        if forever && error.is_transient() && worth_recording(attempts, self.limits.max_deliver) {
            if let Some(event) = &event {
                warn!(error = %reason, error.code = code, attempts, "reaction keeps failing; recording it and retrying");
                let failure = Failure {
                    error: reason.clone(),
                    attempts,
                    retrying: true,
                };
                if !self.record(event, &failure).await {
                    return message.ack_with(AckKind::Nak(None)).await;
                }
            }
        }
        match next {
            Next::Retry => {
                warn!(error = %reason, error.code = code, "reaction failed; will retry");
                message.ack_with(AckKind::Nak(Some(delay))).await
            }
            Next::HandOver => {
                let name = self.reactor.name();
                match copy_elsewhere(
                    self.rt,
                    &name,
                    Destination::HandOver,
                    message,
                    event.as_ref(),
                    attempts,
                    &error,
                )
                .await
                {
                    Ok(()) => message.ack_with(AckKind::Term).await,
                    Err(e) => {
                        warn!(error = %e, error.code = e.code(), "could not hand the message to the retry consumer; will retry");
                        message.ack_with(AckKind::Nak(Some(delay))).await
                    }
                }
            }
            Next::DeadLetter => {
                warn!(error = %reason, error.code = code, "reaction failed for good; moving the message to the DLQ");
                let name = self.reactor.name();
                if let Err(e) = copy_elsewhere(
                    self.rt,
                    &name,
                    Destination::DeadLetter,
                    message,
                    event.as_ref(),
                    delivered,
                    &error,
                )
                .await
                {
                    warn!(error = %e, error.code = e.code(), "could not write to the DLQ; will retry");
                    return message
                        .ack_with(AckKind::Nak(Some(self.limits.backoff_max)))
                        .await;
                }
                if let Some(event) = &event {
                    let failure = Failure {
                        error: reason,
                        attempts,
                        retrying: false,
                    };
                    if !self.record(event, &failure).await {
                        // Comes again: the DLQ copy is de-duplicated by its message id.
                        return message.ack_with(AckKind::Nak(None)).await;
                    }
                }
                message.ack_with(AckKind::Term).await
            }
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
    let ack_wait = rt.settings.reactor_ack_wait;
    let in_hand = InHand {
        rt,
        reactor,
        limits,
        message: &message,
        progress_every: (ack_wait / 3).max(Duration::from_millis(50)),
        call_deadline: call_deadline_for(ack_wait),
    };
    async {
        let attempts = earlier_attempts(&message, origin) + delivered;
        let outcome = match event_of(&message, origin) {
            Ok(event) => match in_hand.work(reactor.react(&event)).await {
                Ok(()) => Ok(()),
                Err(error) => Err((Some(event), error)),
            },
            Err(e) => Err((None, ReactError::permanent(e))),
        };
        let ack = match outcome {
            Ok(()) => message.ack().await,
            Err((event, error)) => {
                in_hand
                    .failed(origin, event, error, delivered, attempts)
                    .await
            }
        };
        if let Err(e) = ack {
            warn!(error = %e, error.code = "nats", "could not acknowledge a message; it will be redelivered");
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

/// Where a failed message is copied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Destination {
    /// `dlq.<consumer>`: given up for good.
    DeadLetter,
    /// `retry.<consumer>`: still retried, by the reactor's retry consumer.
    HandOver,
}

/// Copies a message into `dlq.<consumer>` or `retry.<consumer>` with why it failed (the
/// reason and its code). The
/// copy keeps every original header except JetStream's own `Nats-*` headers (an
/// expectation on the original subject would fail on the copy's subject) and names the
/// original subject and sequence; its `Nats-Msg-Id` derives from the consumer and the
/// sequences, so writing it twice keeps one copy. `deliveries` is how many attempts the
/// copy carries: the retry consumer counts on from it.
async fn copy_elsewhere(
    rt: &Runtime,
    consumer: &str,
    destination: Destination,
    message: &jetstream::Message,
    event: Option<&StoredEvent>,
    deliveries: i64,
    error: &ReactError,
) -> Result<()> {
    let own_sequence = message.info().map(|info| info.stream_sequence).unwrap_or(0);
    // A retried message names its original subject and sequence, not the retry's.
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
    let code = error.code();
    let error: String = error
        .to_string()
        .chars()
        .filter(|c| !c.is_control())
        .take(1024)
        .collect();
    headers.insert(dlq_headers::ERROR, error.as_str());
    headers.insert(dlq_headers::ERROR_CODE, code);
    headers.insert(dlq_headers::SUBJECT, subject.as_str());
    headers.insert(dlq_headers::STREAM_SEQUENCE, sequence.to_string().as_str());
    headers.insert(dlq_headers::DELIVERIES, deliveries.to_string().as_str());
    headers.insert(dlq_headers::CONSUMER, consumer);
    let (subject, msg_id, what) = match destination {
        Destination::DeadLetter => (dlq_subject(consumer)?, msg_id, "DLQ"),
        Destination::HandOver => (
            retry_subject(consumer)?,
            format!("{msg_id}:handover"),
            "retry hand-over",
        ),
    };
    headers.insert("Nats-Msg-Id", msg_id.as_str());
    rt.js
        .publish_with_headers(subject, headers, message.payload.clone())
        .await
        .map_err(|e| Error::nats(format!("publish to {what}"), e))?
        .await
        .map_err(|e| Error::nats(format!("{what} ack"), e))?;
    Ok(())
}

#[cfg(test)]
mod tests;
