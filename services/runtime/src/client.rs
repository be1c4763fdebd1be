//! Sending commands and waiting for status: what the CLI, other systems' adapters,
//! the tests and the benchmarks share.

#![allow(
    clippy::disallowed_methods,
    reason = "raw NATS belongs to berth-runtime: its client is how everyone else sends"
)]

use std::time::Duration;

use async_nats::jetstream;
use async_nats::RequestErrorKind;
use berth_schemas::command::CommandMeta;
use berth_schemas::query::projection::projection_subject;
use berth_schemas::query::{decode_reply, query_subject, ListRequest, Page, LIST};
use berth_schemas::subjects::STATUS_STREAM;
use berth_schemas::{CommandReply, Rejection, TenantId};
use futures::StreamExt;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Serialize;

use crate::error::{Error, Result};

/// Sends a command about `tenant`'s things and returns berth's reply, without what the
/// command printed (see [`send_command_with_output`]). An operator action (see
/// [`berth_schemas::access`]) goes to `cmd.system.<aggregate>.<action>` naming the tenant
/// in a header; the caller needs the rights to publish there.
pub async fn send_command(
    nats: &async_nats::Client,
    tenant: &TenantId,
    aggregate: &str,
    action: &str,
    meta: &CommandMeta,
    body: Vec<u8>,
) -> Result<CommandReply> {
    let reply: CommandReply<IgnoredAny> =
        send_command_with_output(nats, tenant, aggregate, action, meta, body).await?;
    Ok(reply.map_output(|_| ()))
}

/// [`send_command`] for a command whose reply carries what it printed: `O` is
/// [`ExecOutput`](berth_schemas::vm::ExecOutput) for `vm.exec` and `pod.logs`.
pub async fn send_command_with_output<O: DeserializeOwned>(
    nats: &async_nats::Client,
    tenant: &TenantId,
    aggregate: &str,
    action: &str,
    meta: &CommandMeta,
    body: Vec<u8>,
) -> Result<CommandReply<O>> {
    let (subject, target) = berth_schemas::access::route(tenant, aggregate, action);
    let mut headers = meta.to_headers();
    if let Some(target) = target {
        headers.insert(berth_schemas::access::TARGET_TENANT, target.as_str());
    }
    let reply = nats
        .request_with_headers(subject.clone(), headers, body.into())
        .await
        .map_err(|e| match e.kind() {
            RequestErrorKind::NoResponders => Error::NoResponders(format!(
                "nothing serves {subject}: is the {aggregate} service running (`just up`)?"
            )),
            RequestErrorKind::TimedOut => Error::Timeout(format!(
                "{subject} did not answer in time; it is safe to send the same command id again"
            )),
            _ => Error::nats(format!("send {subject}"), e),
        })?;
    serde_json::from_slice(&reply.payload).map_err(Error::unreadable_reply(subject))
}

/// How long a query may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Asks query `kind.op` in `scope` — a tenant about its own things, or `system` for
/// operators (see [`berth_schemas::query`]) — and returns the answer or the refusal.
pub async fn query<Req: Serialize, Resp: DeserializeOwned>(
    nats: &async_nats::Client,
    scope: &TenantId,
    kind: &str,
    op: &str,
    request: &Req,
) -> Result<Result<Resp, Rejection>> {
    let subject = query_subject(scope, kind, op);
    ask(nats, &subject, request, QUERY_TIMEOUT).await
}

/// Every row list query `kind.list` answers for `filter`, page after page: all of them,
/// or the first `max`.
pub async fn query_list<F: Serialize, Row: DeserializeOwned>(
    nats: &async_nats::Client,
    scope: &TenantId,
    kind: &str,
    filter: F,
    max: Option<usize>,
) -> Result<Result<Vec<Row>, Rejection>> {
    let mut rows = Vec::new();
    let mut request = ListRequest {
        filter,
        limit: None,
        after: None,
    };
    loop {
        let wanted = max.map(|max| max.saturating_sub(rows.len()));
        if wanted == Some(0) {
            return Ok(Ok(rows));
        }
        request.limit = wanted.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        let page: Page<Row> = match query(nats, scope, kind, LIST, &request).await? {
            Ok(page) => page,
            Err(rejection) => return Ok(Err(rejection)),
        };
        rows.extend(page.rows);
        match page.next {
            Some(next) => request.after = Some(next),
            None => return Ok(Ok(rows)),
        }
    }
}

/// Asks `op` of the service that runs projection `name`
/// ([`berth_schemas::query::projection`]), waiting up to `timeout`.
pub async fn ask_projection<Req: Serialize, Resp: DeserializeOwned>(
    nats: &async_nats::Client,
    name: &str,
    op: &str,
    request: &Req,
    timeout: Duration,
) -> Result<Result<Resp, Rejection>> {
    let subject = projection_subject(name, op)?;
    ask(nats, &subject, request, timeout).await
}

/// One request/reply exchange: the answer, or the refusal.
async fn ask<Req: Serialize, Resp: DeserializeOwned>(
    nats: &async_nats::Client,
    subject: &str,
    request: &Req,
    timeout: Duration,
) -> Result<Result<Resp, Rejection>> {
    let body = serde_json::to_vec(request).expect("requests serialize");
    let asked = async_nats::Request::new()
        .payload(body.into())
        .timeout(Some(timeout));
    let reply = nats
        .send_request(subject.to_owned(), asked)
        .await
        .map_err(|e| match e.kind() {
            RequestErrorKind::NoResponders => Error::NoResponders(format!(
                "nothing answers {subject}: is the service that owns it running (`just up`)?"
            )),
            RequestErrorKind::TimedOut => {
                Error::Timeout(format!("{subject} did not answer within {timeout:?}"))
            }
            _ => Error::nats(format!("ask {subject}"), e),
        })?;
    decode_reply(&reply.payload).map_err(Error::unreadable_reply(subject))
}

/// Sends `body` to `subject`, a request/reply endpoint that takes no command metadata
/// (a reconciliation, the pods report, an operator's billing run), and returns the raw
/// reply within the client's request timeout.
pub async fn request(
    nats: &async_nats::Client,
    subject: impl async_nats::ToSubject,
    body: Vec<u8>,
) -> std::result::Result<async_nats::Message, async_nats::RequestError> {
    nats.request(subject, body.into()).await
}

/// The last status published on `subject`, if there is one that reads as `S` (a
/// [`Status`](berth_schemas::status::Status) of the subject's kind).
pub async fn last_status<S: DeserializeOwned>(
    js: &jetstream::Context,
    subject: &str,
) -> Result<Option<S>> {
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
/// and then following live updates; a message that does not read as `S` is passed
/// over. Returns the status that satisfied it.
pub async fn wait_for_status<S: DeserializeOwned>(
    nats: &async_nats::Client,
    subject: &str,
    timeout: Duration,
    mut done: impl FnMut(&S) -> bool,
) -> Result<S> {
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
            if let Ok(status) = serde_json::from_slice::<S>(&message.payload) {
                if done(&status) {
                    return Ok(status);
                }
            }
        }
        Err(Error::Closed(format!(
            "the subscription to {subject} ended"
        )))
    };
    tokio::time::timeout(timeout, wait).await.map_err(|_| {
        Error::Timeout(format!(
            "{subject} did not reach the awaited state within {timeout:?}"
        ))
    })?
}

/// Sends a timer command to the scheduler from a reactor handling `event` (the command id
/// derives from the event and the action, so redelivery resends the same command). A
/// cancel of a timer that is not there is done already; `unavailable` and `busy` are
/// transient, any other refusal permanent.
///
/// Service timers are about the event's tenant's things but are not the tenant's: they
/// live under `system` (`cmd.system.timer.<action>`), where the tenant can neither
/// cancel nor replace them, keyed by
/// [`service_timer_key`](berth_schemas::schedule::service_timer_key)`(tenant, key)` so
/// two tenants' timers never share a key. A `system` timer's command may name any tenant:
/// the caller's [`Action::Command`](berth_schemas::schedule::Action) names the event's.
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
    let scoped = command.for_service(&event.meta.tenant);
    let reply = send_command(
        nats,
        &TenantId::system(),
        TIMER_COMMANDS,
        scoped.action(),
        &meta,
        scoped.body(),
    )
    .await
    .map_err(ReactError::transient)?;
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
        CommandReply::Rejected(rejection)
            if matches!(
                rejection.code,
                RejectionCode::Unavailable | RejectionCode::Busy
            ) =>
        {
            Err(ReactError::transient_because(
                rejection.code.as_str(),
                rejection.to_string(),
            ))
        }
        CommandReply::Rejected(rejection) => Err(ReactError::permanent_because(
            rejection.code.as_str(),
            format!(
                "the scheduler refused timer {} {} (about tenant {}): {rejection}",
                command.action(),
                command.key(),
                event.meta.tenant
            ),
        )),
    }
}

/// The action and payload a fire carried out (`fired`, decoded from `event`): read from
/// the `schedule.set` its [`spec_sequence`](berth_schemas::schedule::ScheduleFired)
/// names — one direct get — since fires no longer copy them; a fire recorded before
/// carries its own copy.
pub async fn fired_spec(
    store: &crate::store::EventStore,
    event: &crate::store::StoredEvent,
    fired: &berth_schemas::schedule::ScheduleFired,
) -> Result<berth_schemas::schedule::FiredSpec> {
    use berth_schemas::schedule::{FiredSpec, ScheduleEvent};
    use jetstream_extra::batch_fetch::BatchFetchExt;
    if let Some(recorded) = fired.recorded_spec() {
        return Ok(recorded);
    }
    let Some(sequence) = fired.spec_sequence else {
        return Err(Error::Malformed(format!(
            "the fire #{} on {} names no spec",
            event.sequence, event.subject
        )));
    };
    let mut batch = store
        .jetstream()
        .get_batch(berth_schemas::subjects::EVENTS_STREAM, 1)
        .subject(event.subject.clone())
        .sequence(sequence)
        .send()
        .await
        .map_err(|e| Error::nats(format!("read the spec #{sequence} of {}", event.subject), e))?;
    let message = batch
        .next()
        .await
        .ok_or_else(|| {
            Error::NotFound(format!(
                "the spec #{sequence} of {} is not in the log",
                event.subject
            ))
        })?
        .map_err(|e| Error::nats(format!("read the spec #{sequence} of {}", event.subject), e))?;
    let set = crate::store::StoredEvent::from_parts(
        message.sequence,
        message.subject.to_string(),
        message.headers,
        message.payload,
    )?;
    match set.decode::<ScheduleEvent>()? {
        ScheduleEvent::Set(spec) if set.sequence == sequence => Ok(FiredSpec {
            action: spec.action,
            payload: spec.payload,
        }),
        _ => Err(Error::Malformed(format!(
            "#{sequence} of {} is not the schedule.set a fire names",
            event.subject
        ))),
    }
}
