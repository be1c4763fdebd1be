//! Dead letters in `DLQ`: list, show, retry, drop (`berth dlq …`).
//!
//! A retry publishes the dead letter, with every header it has (its CloudEvent id among
//! them), to `retry.<consumer>` in the `RETRY` work-queue stream, then deletes it from
//! `DLQ`. Each reactor also follows its own `retry.<consumer>` and hands the message to
//! the same handler as a live one, with the original subject and sequence — so the
//! event's ids are unchanged and the reactor's de-duplication still holds. The retry's
//! `Nats-Msg-Id` is `retry:<dlq sequence>`: retrying the same letter twice within the
//! window publishes once.

#![allow(
    clippy::disallowed_methods,
    reason = "raw NATS belongs to berth-runtime: a dead letter's retry is republished to the RETRY stream here"
)]

use async_nats::jetstream::{self, consumer};
use async_nats::HeaderMap;
use berth_schemas::envelope::header_value;
use berth_schemas::subjects::{retry_subject, ALL_DEAD_LETTERS, DLQ_STREAM};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::reactor::dlq_headers;

/// One dead letter as operators see it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its sequence in `DLQ` (what `show`, `retry` and `drop` take).
    pub sequence: u64,
    pub time: DateTime<Utc>,
    pub consumer: String,
    /// Where it came from: the original subject and stream sequence.
    pub subject: String,
    pub stream_sequence: u64,
    pub deliveries: u64,
    pub error: String,
    /// The stable code of the error (`Berth-Error-Code`); absent on letters written
    /// before codes were recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
}

impl DeadLetter {
    fn from_parts(sequence: u64, time: DateTime<Utc>, headers: &HeaderMap) -> Self {
        let header = |name: &str| header_value(headers, name).unwrap_or_default();
        Self {
            sequence,
            time,
            consumer: header(dlq_headers::CONSUMER),
            subject: header(dlq_headers::SUBJECT),
            stream_sequence: header(dlq_headers::STREAM_SEQUENCE).parse().unwrap_or(0),
            deliveries: header(dlq_headers::DELIVERIES).parse().unwrap_or(0),
            error: header(dlq_headers::ERROR),
            error_code: header_value(headers, dlq_headers::ERROR_CODE),
            event_id: header_value(headers, "ce-id"),
            event_type: header_value(headers, "ce-type"),
        }
    }
}

/// Every dead letter (of one consumer, or all), oldest first.
pub async fn list(js: &jetstream::Context, consumer: Option<&str>) -> Result<Vec<DeadLetter>> {
    let filter = match consumer {
        Some(consumer) => berth_schemas::subjects::dlq_subject(consumer)?,
        None => ALL_DEAD_LETTERS.to_owned(),
    };
    let stream = js
        .get_stream(DLQ_STREAM)
        .await
        .map_err(|e| Error::nats("get DLQ stream", e))?;
    let mut ordered = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter,
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| Error::nats("read DLQ", e))?;
    let pending = ordered
        .info()
        .await
        .map_err(|e| Error::nats("read DLQ", e))?
        .num_pending;
    let mut letters = Vec::new();
    if pending == 0 {
        return Ok(letters);
    }
    let mut messages = ordered
        .messages()
        .await
        .map_err(|e| Error::nats("read DLQ", e))?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| Error::nats("read DLQ", e))?;
        let info = message
            .info()
            .map_err(|e| Error::Malformed(format!("a DLQ message without info: {e}")))?;
        let time =
            DateTime::from_timestamp(info.published.unix_timestamp(), info.published.nanosecond())
                .unwrap_or_default();
        let remaining = info.pending;
        letters.push(DeadLetter::from_parts(
            info.stream_sequence,
            time,
            &message.headers.clone().unwrap_or_default(),
        ));
        if remaining == 0 {
            break;
        }
    }
    Ok(letters)
}

/// One dead letter with its headers and payload.
pub async fn get(js: &jetstream::Context, sequence: u64) -> Result<(DeadLetter, HeaderMap, Bytes)> {
    let stream = js
        .get_stream(DLQ_STREAM)
        .await
        .map_err(|e| Error::nats("get DLQ stream", e))?;
    let message = stream.direct_get(sequence).await.map_err(|e| {
        if e.kind() == jetstream::stream::DirectGetErrorKind::NotFound {
            Error::NotFound(format!("no dead letter {sequence} (`berth dlq list`)"))
        } else {
            Error::nats(format!("read dead letter {sequence}"), e)
        }
    })?;
    let time = DateTime::from_timestamp(message.time.unix_timestamp(), message.time.nanosecond())
        .unwrap_or_default();
    Ok((
        DeadLetter::from_parts(sequence, time, &message.headers),
        message.headers,
        message.payload,
    ))
}

/// Sends a dead letter back to its consumer and removes it from `DLQ`.
pub async fn retry(js: &jetstream::Context, sequence: u64) -> Result<DeadLetter> {
    let (letter, headers, payload) = get(js, sequence).await?;
    if letter.consumer.is_empty() || letter.subject.is_empty() {
        return Err(Error::Malformed(format!(
            "dead letter {sequence} does not say which consumer gave it up"
        )));
    }
    let mut retried = crate::reactor::without_jetstream_headers(&headers);
    retried.insert("Nats-Msg-Id", format!("retry:{sequence}").as_str());
    let subject = retry_subject(&letter.consumer)?;
    js.publish_with_headers(subject, retried, payload)
        .await
        .map_err(|e| Error::nats("publish a retry", e))?
        .await
        .map_err(|e| Error::nats("retry ack", e))?;
    drop_letter(js, sequence).await?;
    Ok(letter)
}

/// Removes a dead letter for good.
pub async fn drop_letter(js: &jetstream::Context, sequence: u64) -> Result<()> {
    let stream = js
        .get_stream(DLQ_STREAM)
        .await
        .map_err(|e| Error::nats("get DLQ stream", e))?;
    stream
        .delete_message(sequence)
        .await
        .map_err(|e| Error::nats(format!("delete dead letter {sequence}"), e))?;
    Ok(())
}
