//! Command endpoints: `cmd.<tenant>.<kind>.<action>` served with `async_nats::service`
//! in a queue group, so any number of replicas share the load.
//!
//! Each request is checked (size, subject tokens, headers, strict JSON) before anything
//! is loaded; then the aggregate is loaded, the command id is looked up among the ids it
//! has applied (idempotency for the aggregate's whole life), `decide` runs, and the events
//! are appended with optimistic concurrency. A conflict reloads and decides again, a
//! bounded number of times.

use std::sync::Arc;
use std::time::Duration;

use async_nats::service::ServiceExt;
use async_nats::HeaderMap;
use async_trait::async_trait;
use berth_schemas::command::CommandMeta;
use berth_schemas::{CommandReply, CommandSet, Rejection, RejectionCode, TenantId};
use futures::StreamExt;
use rand::Rng;
use tracing::{info_span, warn, Instrument};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::store::{Aggregate, AppendError, Cause, Loaded, Repository};
use crate::Runtime;

/// How many times a command is decided again after a version conflict.
pub const MAX_ATTEMPTS: u32 = 12;

/// What serves the commands of one aggregate kind once they are validated.
#[async_trait]
pub trait CommandService: Send + Sync + 'static {
    type Command: CommandSet;
    /// The kind, as in `cmd.<tenant>.<kind>.<action>`.
    fn kind(&self) -> &'static str;
    /// Decides and appends one command; idempotent per `cause.id`.
    async fn execute(
        &self,
        tenant: &TenantId,
        cause: &Cause,
        command: &Self::Command,
    ) -> Result<CommandReply, Rejection>;
}

/// The plain flow for a command on one aggregate: load, look up the command id among
/// those applied, check `expected_version`, decide, append; on a conflict, again.
pub async fn execute_on<A>(
    repository: &Repository<A>,
    tenant: &TenantId,
    cause: &Cause,
    command: &A::Command,
) -> Result<CommandReply, Rejection>
where
    A: Aggregate,
    A::Command: CommandSet,
{
    let id = command.aggregate_id(cause.id);
    execute_with(
        repository,
        tenant,
        id,
        cause,
        command.expected_version(),
        |state| state.decide(command),
    )
    .await
}

/// [`execute_on`] for an aggregate id and a decision the caller supplies (a decision
/// that needs more than the command, such as the clock).
pub async fn execute_with<A, D>(
    repository: &Repository<A>,
    tenant: &TenantId,
    id: Uuid,
    cause: &Cause,
    expected_version: Option<u64>,
    decide: D,
) -> Result<CommandReply, Rejection>
where
    A: Aggregate,
    D: Fn(&A) -> Result<Vec<A::Event>, Rejection>,
{
    let _queued = repository.lock(id).await;
    for attempt in 0..MAX_ATTEMPTS {
        let loaded = repository.load(tenant, id).await.map_err(unavailable)?;
        if let Some(reply) = recorded_reply(&loaded, id, cause) {
            return Ok(reply);
        }
        check_expected_version(A::KIND, id, &loaded, expected_version)?;
        let events = decide(&loaded.state)?;
        if events.is_empty() {
            return Ok(CommandReply::Accepted {
                aggregate_id: id,
                version: loaded.version,
                events: Vec::new(),
                output: None,
            });
        }
        match repository.append(tenant, id, &loaded, cause, events).await {
            Ok(appended) => {
                return Ok(CommandReply::Accepted {
                    aggregate_id: id,
                    version: appended.version,
                    events: appended.events,
                    output: None,
                })
            }
            Err(AppendError::Store(e)) => return Err(unavailable(e)),
            // A conflict, a duplicate or a busy server: reload and decide again.
            Err(_) => contention_pause(attempt).await,
        }
    }
    Err(too_much_contention(A::KIND, id))
}

/// The reply a command got the first time, if the aggregate has applied it.
pub fn recorded_reply<A: Aggregate>(
    loaded: &Loaded<A>,
    id: Uuid,
    cause: &Cause,
) -> Option<CommandReply> {
    loaded
        .applied
        .get(&cause.id)
        .map(|applied| CommandReply::Accepted {
            aggregate_id: id,
            version: applied.version,
            events: applied.events.clone(),
            output: None,
        })
}

/// Refuses a conditional command whose aggregate has moved on.
pub fn check_expected_version<A>(
    kind: &str,
    id: Uuid,
    loaded: &Loaded<A>,
    expected: Option<u64>,
) -> Result<(), Rejection> {
    match expected {
        Some(expected) if expected != loaded.version => Err(Rejection::new(
            RejectionCode::Conflict,
            format!(
                "{kind} {id} is at version {}, not {expected}",
                loaded.version
            ),
        )),
        _ => Ok(()),
    }
}

/// A short randomised pause before deciding again after a conflict.
pub async fn contention_pause(attempt: u32) {
    let pause = rand::rng().random_range(0..=(2u64 << attempt.min(6)));
    tokio::time::sleep(Duration::from_millis(pause)).await;
}

/// The rejection after [`MAX_ATTEMPTS`] conflicts.
pub fn too_much_contention(kind: &str, id: Uuid) -> Rejection {
    Rejection::new(
        RejectionCode::Conflict,
        format!("{kind} {id} is changing too fast; retry with the same command id"),
    )
}

/// Serves one aggregate kind with the plain flow.
pub struct AggregateService<A: Aggregate> {
    repository: Arc<Repository<A>>,
}

impl<A: Aggregate> AggregateService<A> {
    pub fn new(repository: Arc<Repository<A>>) -> Self {
        Self { repository }
    }
}

#[async_trait]
impl<A> CommandService for AggregateService<A>
where
    A: Aggregate,
    A::Command: CommandSet,
{
    type Command = A::Command;

    fn kind(&self) -> &'static str {
        A::KIND
    }

    async fn execute(
        &self,
        tenant: &TenantId,
        cause: &Cause,
        command: &A::Command,
    ) -> Result<CommandReply, Rejection> {
        execute_on(&self.repository, tenant, cause, command).await
    }
}

/// Validates command messages and hands them to a [`CommandService`].
pub struct CommandHandler<S: CommandService> {
    service: Arc<S>,
    max_command_bytes: usize,
}

impl<S: CommandService> CommandHandler<S> {
    pub fn new(service: Arc<S>, max_command_bytes: usize) -> Self {
        Self {
            service,
            max_command_bytes,
        }
    }

    /// Handles one command message; never panics on bad input, never writes on rejection.
    pub async fn handle(
        &self,
        subject: &str,
        headers: Option<&HeaderMap>,
        body: &[u8],
    ) -> CommandReply {
        match self.try_handle(subject, headers, body).await {
            Ok(reply) => reply,
            Err(rejection) => CommandReply::Rejected(rejection),
        }
    }

    async fn try_handle(
        &self,
        subject: &str,
        headers: Option<&HeaderMap>,
        body: &[u8],
    ) -> Result<CommandReply, Rejection> {
        if body.len() > self.max_command_bytes {
            return Err(Rejection::new(
                RejectionCode::TooLarge,
                format!(
                    "the command has {} bytes; the limit is {}",
                    body.len(),
                    self.max_command_bytes
                ),
            ));
        }
        let (tenant, action) = parse_command_subject(subject, self.service.kind())?;
        let meta = CommandMeta::from_headers(headers)?;
        let command = S::Command::decode(&action, body)?;
        let cause = Cause {
            id: meta.id,
            actor: meta.actor.clone(),
            correlation_id: meta.correlation_id,
            traceparent: meta
                .traceparent
                .clone()
                .or_else(crate::telemetry::current_traceparent),
        };
        self.service.execute(&tenant, &cause, &command).await
    }
}

/// The rejection when the store cannot be reached; safe to retry.
pub fn unavailable(error: Error) -> Rejection {
    warn!(error = %error, code = error.code(), "command could not be processed");
    Rejection::new(
        RejectionCode::Unavailable,
        "berth could not process the command now; retry with the same command id",
    )
}

/// Splits `cmd.<tenant>.<kind>.<action>` and validates the tenant token.
pub fn parse_command_subject(subject: &str, kind: &str) -> Result<(TenantId, String), Rejection> {
    let tokens: Vec<&str> = subject.split('.').collect();
    let [_, tenant, found_kind, action] = tokens.as_slice() else {
        return Err(Rejection::invalid(format!(
            "command subjects look like cmd.<tenant>.{kind}.<action>, not {subject:?}"
        )));
    };
    if *found_kind != kind {
        return Err(Rejection::invalid(format!(
            "this endpoint takes {kind} commands"
        )));
    }
    let tenant = TenantId::parse(tenant).map_err(|e| Rejection::invalid(e.to_string()))?;
    Ok((tenant, (*action).to_owned()))
}

/// Serves `cmd.*.<kind>.*` until shutdown, then lets in-flight commands finish.
pub async fn serve<S: CommandService>(rt: &Runtime, handler: Arc<CommandHandler<S>>) -> Result<()> {
    let kind = handler.service.kind();
    let queue_group = format!("berth-{}", rt.service);
    let service = rt
        .nats
        .service_builder()
        .description(format!("berth {kind} commands"))
        .queue_group(&queue_group)
        .start(format!("berth-{kind}"), env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| Error::nats("start command service", e))?;
    let endpoint = service
        .endpoint_builder()
        .name(kind)
        .queue_group(&queue_group)
        .add(berth_schemas::subjects::command_filter(kind))
        .await
        .map_err(|e| Error::nats("add command endpoint", e))?;
    let shutdown = rt.shutdown.clone();
    endpoint
        .take_until(shutdown.cancelled_owned())
        .for_each_concurrent(rt.settings.max_concurrent_commands, |request| {
            let handler = handler.clone();
            let span = info_span!("command", subject = %request.message.subject);
            crate::telemetry::set_parent(&span, request.message.headers.as_ref());
            async move {
                let reply = handler
                    .handle(
                        request.message.subject.as_str(),
                        request.message.headers.as_ref(),
                        &request.message.payload,
                    )
                    .await;
                if let Some(rejection) = reply.rejection() {
                    tracing::info!(code = %rejection.code, message = %rejection.message, "command rejected");
                }
                let body = serde_json::to_vec(&reply).expect("replies serialize");
                if let Err(e) = request.respond(Ok(body.into())).await {
                    warn!(error = %e, "could not send a command reply");
                }
            }
            .instrument(span)
        })
        .await;
    // The endpoint stream is gone by now, so the service's stop broadcast may find no
    // listener; dropping the service unsubscribes either way.
    if let Err(e) = service.stop().await {
        tracing::debug!(error = %e, "command service stopped");
    }
    Ok(())
}
