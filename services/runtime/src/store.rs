//! The event store on the `EVENTS` stream.
//!
//! - [`EventStore::read`] fetches one aggregate's events with a batched direct get
//!   (ADR-31) — one round trip for a typical aggregate.
//! - [`EventStore::append`] is atomic: one event is one publish with
//!   `Nats-Expected-Last-Subject-Sequence` and `Nats-Msg-Id`; several events are one
//!   JetStream atomic batch with the expectation on the first message. Appends go
//!   through one writer task per process that pipelines publishes (it sends, then awaits
//!   the acks concurrently), the place where group commit can later happen.
//! - What an append costs (`services/dev/benches/append_latency.rs`): one event, one publish-ack. A
//!   batch: one round trip (`ack_first(false)`: the messages before the commit are core
//!   publishes; only the commit waits for a reply) plus the server's fixed per-batch
//!   cost, which dominates. For an R1 file stream nats-server stages each batch in a
//!   temporary file store of its own (three directories, two synced meta files, a staged
//!   block flushed at commit) and deletes it before it acks, on the stream's one ingest
//!   goroutine: ~7 publish-acks here, the same by hand as through `jetstream-extra`, and
//!   the same for one message as for two. Only fewer batches (group commit) lower it.
//! - [`Repository`] folds an [`Aggregate`] with a cache, and remembers which command ids
//!   each aggregate has applied, so a command is idempotent for the aggregate's life;
//!   [`AtomicAppend`] appends one cause's events on several aggregates, all or nothing.

#![allow(
    clippy::disallowed_methods,
    reason = "raw NATS belongs to berth-runtime: the event store appends to EVENTS here"
)]

use std::sync::Arc;

use async_nats::jetstream::{self, context::PublishErrorKind, message::OutboundMessage};
use async_nats::HeaderMap;
pub use berth_schemas::aggregate::{Aggregate, Context, NoCommand};
use berth_schemas::envelope::{headers, EventMeta};
use berth_schemas::subjects::{
    aggregate_event_filter, event_filter, tenant_event_filter, EventSubject,
};
use berth_schemas::{DomainEvent, TenantId};
use bytes::Bytes;
use futures::StreamExt;
use jetstream_extra::batch_fetch::{BatchFetchErrorKind, BatchFetchExt};
use jetstream_extra::batch_publish::BatchPublishExt;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::error::{Error, Result};

pub use crate::atomic::AtomicAppend;
pub use crate::repository::{event_id, Appended, AppliedCommand, Cause, Loaded, Repository};

/// How many messages one direct-get batch asks for.
const READ_BATCH: usize = 256;

/// Atomic batches in flight per process. The server allows 50 per stream and 1000 per
/// server; staying below leaves room for other processes' batches, and a refusal
/// (`atomic publish too many inflight`) is retried.
const BATCHES_IN_FLIGHT: usize = 24;

/// One event as stored in `EVENTS`.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub sequence: u64,
    pub subject: String,
    pub meta: EventMeta,
    pub data: Bytes,
    pub headers: HeaderMap,
}

impl StoredEvent {
    pub fn from_parts(
        sequence: u64,
        subject: String,
        headers: HeaderMap,
        data: Bytes,
    ) -> Result<Self> {
        let meta = EventMeta::decode(&headers).map_err(|source| Error::Decode {
            sequence,
            subject: subject.clone(),
            source,
        })?;
        Ok(Self {
            sequence,
            subject,
            meta,
            data,
            headers,
        })
    }

    pub fn from_jetstream(message: &jetstream::Message) -> Result<Self> {
        let info = message
            .info()
            .map_err(|e| Error::Malformed(format!("message without JetStream info: {e}")))?;
        Self::from_parts(
            info.stream_sequence,
            message.subject.to_string(),
            message.headers.clone().unwrap_or_default(),
            message.payload.clone(),
        )
    }

    pub fn decode<E: DomainEvent>(&self) -> Result<E> {
        E::decode(&self.meta.event_type, &self.data).map_err(|source| Error::Decode {
            sequence: self.sequence,
            subject: self.subject.clone(),
            source,
        })
    }
}

/// An event about to be appended.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub meta: EventMeta,
    pub data: Vec<u8>,
}

/// Why an append did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Someone else appended first: reload and decide again.
    #[error("the aggregate moved past version {expected}")]
    Conflict { expected: u64 },
    /// This event id is already in the log (inside the duplicate window).
    #[error("already appended")]
    Duplicate,
    /// The server has too many atomic batches in flight; retried by the writer.
    #[error("too many atomic batches in flight")]
    Busy,
    #[error(transparent)]
    Store(#[from] Error),
}

impl AppendError {
    /// The stable code of why the append did not happen.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Conflict { .. } => "conflict",
            Self::Duplicate => "duplicate",
            Self::Busy => "busy",
            Self::Store(e) => e.code(),
        }
    }
}

impl crate::error::Coded for AppendError {
    fn code(&self) -> &'static str {
        AppendError::code(self)
    }
}

/// Events for one subject, appended only if the subject is still at `expected_version`.
#[derive(Debug, Clone)]
pub struct SubjectAppend {
    pub subject: String,
    pub expected_version: u64,
    pub events: Vec<NewEvent>,
}

struct AppendRequest {
    appends: Vec<SubjectAppend>,
    done: oneshot::Sender<Result<Vec<Vec<u64>>, AppendError>>,
}

impl AppendRequest {
    fn event_count(&self) -> usize {
        self.appends.iter().map(|a| a.events.len()).sum()
    }
}

/// Reads and appends aggregate events on the `EVENTS` stream.
#[derive(Clone)]
pub struct EventStore {
    js: jetstream::Context,
    stream: String,
    writer: mpsc::Sender<AppendRequest>,
}

impl EventStore {
    pub fn new(js: jetstream::Context, stream: impl Into<String>) -> Self {
        let (writer, requests) = mpsc::channel(1024);
        tokio::spawn(run_writer(js.clone(), requests));
        Self {
            js,
            stream: stream.into(),
            writer,
        }
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// Every event on `subject` with a sequence above `after`, in order.
    pub async fn read(&self, subject: &str, after: u64) -> Result<Vec<StoredEvent>> {
        let mut events = Vec::new();
        let mut next = after + 1;
        loop {
            let batch = self
                .js
                .get_batch(&self.stream, READ_BATCH)
                .subject(subject)
                .sequence(next)
                .send()
                .await;
            let mut batch = match batch {
                Ok(batch) => batch,
                Err(e) if e.kind() == BatchFetchErrorKind::NoMessages => return Ok(events),
                Err(e) => return Err(Error::nats(format!("read {subject}"), e)),
            };
            let mut received = 0;
            while let Some(message) = batch.next().await {
                let message = match message {
                    Ok(message) => message,
                    Err(e) if e.kind() == BatchFetchErrorKind::NoMessages => break,
                    Err(e) => return Err(Error::nats(format!("read {subject}"), e)),
                };
                received += 1;
                next = message.sequence + 1;
                events.push(StoredEvent::from_parts(
                    message.sequence,
                    message.subject.to_string(),
                    message.headers,
                    message.payload,
                )?);
            }
            if received < READ_BATCH {
                return Ok(events);
            }
        }
    }

    /// The ids of every aggregate of `kind` under `tenant`, straight from the stream's
    /// subject index (no projection, so never behind the log).
    pub async fn aggregate_ids(&self, tenant: &TenantId, kind: &str) -> Result<Vec<Uuid>> {
        let subjects = self.subjects(&tenant_event_filter(tenant, kind)).await?;
        let mut ids: Vec<Uuid> = subjects
            .iter()
            .filter_map(|subject| EventSubject::parse(subject))
            .map(|parsed| parsed.id)
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Every aggregate of `kind` of every tenant, by tenant and id, from the subject index.
    pub async fn all_aggregates(&self, kind: &str) -> Result<Vec<(TenantId, Uuid)>> {
        let subjects = self.subjects(&event_filter(kind)).await?;
        let mut found: Vec<(TenantId, Uuid)> = subjects
            .iter()
            .filter_map(|subject| EventSubject::parse(subject))
            .map(|parsed| (parsed.tenant, parsed.id))
            .collect();
        found.sort();
        Ok(found)
    }

    /// The tenant an aggregate belongs to, if it exists (from the subject index).
    pub async fn tenant_of(&self, kind: &str, id: Uuid) -> Result<Option<TenantId>> {
        Ok(self.owners(kind, id).await?.into_iter().next())
    }

    /// Every tenant with an aggregate of `kind` under `id` (from the subject index):
    /// one, normally; a create refuses an id that another tenant holds.
    pub async fn owners(&self, kind: &str, id: Uuid) -> Result<Vec<TenantId>> {
        let subjects = self.subjects(&aggregate_event_filter(kind, id)).await?;
        Ok(subjects
            .iter()
            .filter_map(|subject| EventSubject::parse(subject))
            .map(|parsed| parsed.tenant)
            .collect())
    }

    /// The subjects of `EVENTS` matching `filter` that hold at least one message.
    async fn subjects(&self, filter: &str) -> Result<Vec<String>> {
        let stream = self
            .js
            .get_stream(berth_schemas::subjects::EVENTS_STREAM)
            .await
            .map_err(|e| Error::nats("looking up the EVENTS stream", e))?;
        let mut found = stream
            .info_with_subjects(filter)
            .await
            .map_err(|e| Error::nats(format!("listing {filter}"), e))?;
        let mut subjects = Vec::new();
        while let Some(entry) = found.next().await {
            let (subject, _count) =
                entry.map_err(|e| Error::nats(format!("listing {filter}"), e))?;
            subjects.push(subject);
        }
        Ok(subjects)
    }

    /// Appends `events` to `subject` if its last sequence is still `expected_version`.
    /// Returns the stream sequence of each event.
    pub async fn append(
        &self,
        subject: &str,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<Vec<u64>, AppendError> {
        let append = SubjectAppend {
            subject: subject.to_owned(),
            expected_version,
            events,
        };
        let mut sequences = self.append_all(vec![append]).await?;
        sequences.pop().ok_or_else(|| missing_sequences(subject))
    }

    /// Appends to several subjects at once, all or nothing: one atomic batch in which
    /// the first event of each subject carries that subject's expected sequence.
    /// Returns the stream sequences per subject, in the order given.
    pub async fn append_all(
        &self,
        appends: Vec<SubjectAppend>,
    ) -> Result<Vec<Vec<u64>>, AppendError> {
        let (done, result) = oneshot::channel();
        let request = AppendRequest { appends, done };
        if request.event_count() == 0 {
            return Ok(request.appends.iter().map(|_| Vec::new()).collect());
        }
        self.writer
            .send(request)
            .await
            .map_err(|_| Error::Closed("the event writer has stopped".into()))?;
        result
            .await
            .map_err(|_| Error::Closed("the event writer dropped an append".into()))?
    }
}

fn outbound(subject: &str, event: &NewEvent) -> Result<OutboundMessage> {
    let (headers, payload) = event
        .meta
        .encode(&event.data)
        .map_err(|source| Error::Decode {
            sequence: 0,
            subject: subject.to_owned(),
            source,
        })?;
    Ok(OutboundMessage {
        subject: subject.to_owned().into(),
        payload,
        headers: Some(headers),
    })
}

/// The single writer: takes append requests in order, sends single-event appends
/// without waiting for the previous ack, and runs batches on their own tasks.
async fn run_writer(js: jetstream::Context, mut requests: mpsc::Receiver<AppendRequest>) {
    let batches = Arc::new(tokio::sync::Semaphore::new(BATCHES_IN_FLIGHT));
    while let Some(request) = requests.recv().await {
        if request.event_count() == 1 {
            match publish_single(&js, &request).await {
                Ok(ack) => {
                    tokio::spawn(async move {
                        let result = ack.await.map(|seq| {
                            request
                                .appends
                                .iter()
                                .map(|a| {
                                    if a.events.is_empty() {
                                        Vec::new()
                                    } else {
                                        vec![seq]
                                    }
                                })
                                .collect()
                        });
                        let _ = request.done.send(result);
                    });
                }
                Err(e) => {
                    let _ = request.done.send(Err(e));
                }
            }
        } else {
            let js = js.clone();
            let permit = batches
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            tokio::spawn(async move {
                let mut result = publish_batch(&js, &request).await;
                let mut pause = std::time::Duration::from_millis(2);
                while matches!(&result, Err(AppendError::Busy))
                    && pause < std::time::Duration::from_secs(2)
                {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    result = publish_batch(&js, &request).await;
                }
                drop(permit);
                let result = result.map_err(|e| match e {
                    AppendError::Busy => {
                        Error::Busy("JetStream has too many atomic batches in flight".into()).into()
                    }
                    other => other,
                });
                let _ = request.done.send(result);
            });
        }
    }
}

async fn publish_single(
    js: &jetstream::Context,
    request: &AppendRequest,
) -> Result<impl std::future::Future<Output = Result<u64, AppendError>>, AppendError> {
    let append = request
        .appends
        .iter()
        .find(|a| !a.events.is_empty())
        .expect("a single append has one event");
    let event = &append.events[0];
    let message = outbound(&append.subject, event)?;
    let mut headers = message.headers.unwrap_or_default();
    headers.insert(headers::NATS_MSG_ID, event.meta.id.to_string().as_str());
    headers.insert(
        "Nats-Expected-Last-Subject-Sequence",
        append.expected_version.to_string().as_str(),
    );
    let expected = append.expected_version;
    let ack = js
        .publish_with_headers(append.subject.clone(), headers, message.payload)
        .await
        .map_err(|e| Error::nats("publish event", e))?;
    Ok(async move {
        match ack.await {
            Ok(ack) if ack.duplicate => Err(AppendError::Duplicate),
            Ok(ack) => Ok(ack.sequence),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                Err(AppendError::Conflict { expected })
            }
            Err(e) => Err(Error::nats("event ack", e).into()),
        }
    })
}

async fn publish_batch(
    js: &jetstream::Context,
    request: &AppendRequest,
) -> Result<Vec<Vec<u64>>, AppendError> {
    let count = request.event_count() as u64;
    let expected = request.appends.first().map_or(0, |a| a.expected_version);
    let mut messages = Vec::with_capacity(count as usize);
    for append in &request.appends {
        for (index, event) in append.events.iter().enumerate() {
            let mut message = outbound(&append.subject, event)?;
            if index == 0 {
                message.headers.get_or_insert_with(HeaderMap::new).insert(
                    "Nats-Expected-Last-Subject-Sequence",
                    append.expected_version.to_string().as_str(),
                );
            }
            messages.push(message);
        }
    }
    let last = messages.pop().expect("a batch has at least two events");
    let mut batch = js.batch_publish().ack_first(false).build();
    for message in messages {
        batch
            .add_message(message)
            .await
            .map_err(|e| batch_error(e, expected))?;
    }
    let ack = batch
        .commit_message(last)
        .await
        .map_err(|e| batch_error(e, expected))?;
    // An atomic batch is stored contiguously, ending at the acknowledged sequence.
    let mut next = ack.sequence + 1 - count;
    Ok(request
        .appends
        .iter()
        .map(|append| {
            let sequences: Vec<u64> = (next..next + append.events.len() as u64).collect();
            next += append.events.len() as u64;
            sequences
        })
        .collect())
}

fn batch_error(
    error: jetstream_extra::batch_publish::BatchPublishError,
    expected: u64,
) -> AppendError {
    if error.kind()
        == jetstream_extra::batch_publish::BatchPublishErrorKind::BatchPublishTooManyInflight
    {
        return AppendError::Busy;
    }
    let wrong_sequence = std::error::Error::source(&error)
        .and_then(|source| source.downcast_ref::<jetstream::Error>())
        .is_some_and(|api| api.error_code() == jetstream::ErrorCode::STREAM_WRONG_LAST_SEQUENCE);
    if wrong_sequence {
        AppendError::Conflict { expected }
    } else {
        Error::nats("atomic batch", error).into()
    }
}

/// The writer answered an append with fewer sequence lists than it was given: the
/// events may be in the log, but what was recorded cannot be folded, so say so.
pub(crate) fn missing_sequences(what: &str) -> AppendError {
    AppendError::Store(Error::Unrecorded(format!(
        "the event writer returned no sequences for {what}"
    )))
}
