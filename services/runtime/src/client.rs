//! Sending commands and waiting for status: what the CLI, other systems' adapters,
//! the tests and the benchmarks share.

use std::time::Duration;

use async_nats::jetstream;
use async_nats::RequestErrorKind;
use berth_schemas::command::CommandMeta;
use berth_schemas::subjects::{command_subject, STATUS_STREAM};
use berth_schemas::{CommandReply, TenantId};
use futures::StreamExt;

use crate::error::{Error, Result};

/// Sends a command and returns berth's reply.
pub async fn send_command(
    nats: &async_nats::Client,
    tenant: &TenantId,
    aggregate: &str,
    action: &str,
    meta: &CommandMeta,
    body: Vec<u8>,
) -> Result<CommandReply> {
    let subject = command_subject(tenant, aggregate, action);
    let reply = nats
        .request_with_headers(subject.clone(), meta.to_headers(), body.into())
        .await
        .map_err(|e| match e.kind() {
            RequestErrorKind::NoResponders => Error::Other(format!(
                "nothing serves {subject}: is the {aggregate} service running (`just up`)?"
            )),
            RequestErrorKind::TimedOut => Error::Other(format!(
                "{subject} did not answer in time; it is safe to send the same command id again"
            )),
            _ => Error::nats(format!("send {subject}"), e),
        })?;
    serde_json::from_slice(&reply.payload)
        .map_err(|e| Error::Other(format!("unreadable reply from {subject}: {e}")))
}

/// The last status published on `subject`, if any.
pub async fn last_status(
    js: &jetstream::Context,
    subject: &str,
) -> Result<Option<serde_json::Value>> {
    let stream = js
        .get_stream(STATUS_STREAM)
        .await
        .map_err(|e| Error::nats("get STATUS stream", e))?;
    match stream.direct_get_last_for_subject(subject).await {
        Ok(message) => Ok(serde_json::from_slice(&message.payload).ok()),
        Err(e) if e.kind() == jetstream::stream::DirectGetErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::nats(format!("read {subject}"), e)),
    }
}

/// Waits until the status on `subject` satisfies `done`, reading the last value first
/// and then following live updates. Returns the status that satisfied it.
pub async fn wait_for_status(
    nats: &async_nats::Client,
    subject: &str,
    timeout: Duration,
    mut done: impl FnMut(&serde_json::Value) -> bool,
) -> Result<serde_json::Value> {
    let js = jetstream::new(nats.clone());
    let mut live = nats
        .subscribe(subject.to_owned())
        .await
        .map_err(|e| Error::nats(format!("subscribe {subject}"), e))?;
    let wait = async {
        if let Some(status) = last_status(&js, subject).await? {
            if done(&status) {
                return Ok(status);
            }
        }
        while let Some(message) = live.next().await {
            if let Ok(status) = serde_json::from_slice::<serde_json::Value>(&message.payload) {
                if done(&status) {
                    return Ok(status);
                }
            }
        }
        Err(Error::Other(format!("the subscription to {subject} ended")))
    };
    tokio::time::timeout(timeout, wait).await.map_err(|_| {
        Error::Other(format!(
            "{subject} did not reach the awaited state within {timeout:?}"
        ))
    })?
}

/// The `state.status` field of a status message.
pub fn status_of(status: &serde_json::Value) -> Option<&str> {
    status.get("state")?.get("status")?.as_str()
}
