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

/// Sends a timer command to the scheduler from a reactor handling `event` (the command id
/// derives from the event and the action, so redelivery resends the same command). A
/// cancel of a timer that is not there is done already; `unavailable` is transient,
/// any other refusal permanent.
pub async fn send_timer(
    nats: &async_nats::Client,
    event: &crate::store::StoredEvent,
    service: &str,
    command: &berth_schemas::schedule::TimerCommand,
) -> std::result::Result<(), crate::reactor::ReactError> {
    use crate::reactor::ReactError;
    use berth_schemas::schedule::{TimerCommand, TIMER_COMMANDS};
    use berth_schemas::{CommandSet, RejectionCode};
    let meta = CommandMeta {
        // Two reactors may set timers for the same event: the key keeps their ids apart.
        id: uuid::Uuid::new_v5(
            &event.meta.id,
            format!("{}:{}", command.action(), command.key()).as_bytes(),
        ),
        actor: berth_schemas::Actor::service(service),
        correlation_id: event.meta.correlation_id,
        traceparent: event.meta.traceparent.clone(),
    };
    let reply = send_command(
        nats,
        &event.meta.tenant,
        TIMER_COMMANDS,
        command.action(),
        &meta,
        command.body(),
    )
    .await
    .map_err(|e| ReactError::Transient(e.to_string()))?;
    match reply {
        CommandReply::Accepted { .. } => Ok(()),
        CommandReply::Rejected(rejection)
            if matches!(command, TimerCommand::Cancel(_))
                && matches!(
                    rejection.code,
                    RejectionCode::NotFound | RejectionCode::InvalidState
                ) =>
        {
            Ok(())
        }
        CommandReply::Rejected(rejection) if rejection.code == RejectionCode::Unavailable => {
            Err(ReactError::Transient(rejection.to_string()))
        }
        CommandReply::Rejected(rejection) => Err(ReactError::Permanent(format!(
            "the scheduler refused timer {} {}: {rejection}",
            command.action(),
            command.key()
        ))),
    }
}
