//! Command endpoints: `cmd.<tenant>.<kind>.<action>` served with `async_nats::service`
//! in a queue group, so any number of replicas share the load.
//!
//! Each request is checked (size, subject tokens, headers, strict JSON) before anything
//! is loaded; then the aggregate is loaded, the command id is looked up among the ids it
//! has applied (idempotency for the aggregate's whole life), `decide` runs, and the events
//! are appended with optimistic concurrency. A conflict reloads and decides again, a
//! bounded number of times ([`crate::decision::execute`]).

use std::future::Future;
use std::sync::Arc;

use async_nats::service::ServiceExt;
use async_nats::HeaderMap;
use async_trait::async_trait;
use berth_schemas::access::{self, Sender};
use berth_schemas::bounds::check_command_body;
use berth_schemas::command::CommandMeta;
use berth_schemas::envelope::header_value;
use berth_schemas::ids::SYSTEM_TENANT;
use berth_schemas::{CommandReply, CommandSet, Rejection, RejectionCode, TenantId};
use futures::StreamExt;

use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;
use tracing::{info_span, warn, Instrument};
use uuid::Uuid;

use crate::decision::{execute, Decision};
use crate::error::{Error, Result};
use crate::fairness::FairShare;
use crate::store::{Aggregate, AtomicAppend, Cause, EventStore, Loaded, Repository};
use crate::Runtime;

/// What serves the commands of one aggregate kind once they are validated.
#[async_trait]
pub trait CommandService: Send + Sync + 'static {
    type Command: CommandSet;
    /// What a command's reply carries besides its events: `()` for most kinds.
    type Output: Serialize + Send + Sync + 'static;
    /// The kind, as in `cmd.<tenant>.<kind>.<action>`.
    fn kind(&self) -> &'static str;
    /// Decides and appends one command; idempotent per `cause.id`.
    async fn execute(
        &self,
        tenant: &TenantId,
        cause: &Cause,
        command: &Self::Command,
    ) -> Result<CommandReply<Self::Output>, Rejection>;
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
        |state| state.decide(command, &cause.context(chrono::Utc::now())),
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
    execute_across(repository, tenant, id, cause, expected_version, |loaded| {
        let decided = decide(&loaded.state);
        async move { Ok(AtomicAppend::new(cause).add(repository, tenant, id, &loaded, &decided?)) }
    })
    .await
}

/// A command on aggregate `id` whose decision may change other aggregates too (a VM
/// create and its tenant's usage), committed with [`execute`]: load the aggregate,
/// answer a command id it has applied from the record, check `expected_version`, then
/// `decide` on it as loaded — loading whatever else the decision needs — and append the
/// changes it returns, the command's own aggregate added first. Changes without events
/// are accepted as the aggregate is. The caller queues on what it must
/// ([`Repository::lock`]).
pub async fn execute_across<'a, A, D, Fut>(
    repository: &Repository<A>,
    tenant: &TenantId,
    id: Uuid,
    cause: &Cause,
    expected_version: Option<u64>,
    decide: D,
) -> Result<CommandReply, Rejection>
where
    A: Aggregate,
    D: Fn(Arc<Loaded<A>>) -> Fut,
    Fut: Future<Output = Result<AtomicAppend<'a>, Rejection>>,
{
    execute(A::KIND, id, || async {
        let loaded = repository.load(tenant, id).await.map_err(unavailable)?;
        if let Some(reply) = recorded_reply(&loaded, id, cause) {
            return Ok(Decision::done(reply));
        }
        check_expected_version(A::KIND, id, &loaded, expected_version)?;
        let version = loaded.version;
        Ok(accepted(id, version, decide(loaded).await?))
    })
    .await
}

/// The answer to a command whose own aggregate `id` (at `version`) was added first to
/// `changes`: what the append recorded there.
fn accepted(id: Uuid, version: u64, changes: AtomicAppend<'_>) -> Decision<'_, CommandReply> {
    if changes.is_empty() {
        return Decision::done(CommandReply::Accepted {
            aggregate_id: id,
            version,
            events: Vec::new(),
            output: None,
        });
    }
    Decision::append_then(changes, move |recorded| {
        let appended = recorded
            .into_iter()
            .next()
            .flatten()
            .ok_or_else(|| Error::Unrecorded(format!("the append of {id} recorded nothing")))?;
        Ok(CommandReply::Accepted {
            aggregate_id: id,
            version: appended.version,
            events: appended.events,
            output: None,
        })
    })
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
fn check_expected_version<A>(
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

/// The rejection after [`crate::decision::MAX_ATTEMPTS`] conflicts.
pub(crate) fn too_much_contention(kind: &str, id: Uuid) -> Rejection {
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
    type Output = ();

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

/// Validates command messages and hands them to a [`CommandService`]: the size, the
/// subject, who may send the action ([`access`]), the tenant's fair share, the headers,
/// clean JSON ([`check_command_body`]), the typed body, and for a create, that its id
/// is not another tenant's.
pub struct CommandHandler<S: CommandService> {
    service: Arc<S>,
    store: EventStore,
    max_command_bytes: usize,
    fair: Arc<FairShare>,
}

impl<S: CommandService> CommandHandler<S> {
    pub fn new(service: Arc<S>, rt: &Runtime) -> Self {
        Self {
            service,
            store: rt.store.clone(),
            max_command_bytes: rt.settings.max_command_bytes,
            fair: FairShare::new(rt.settings.tenant_limits),
        }
    }

    /// Handles one command message; never panics on bad input, never writes on rejection.
    pub async fn handle(
        &self,
        subject: &str,
        headers: Option<&HeaderMap>,
        body: &[u8],
    ) -> CommandReply<S::Output> {
        self.handle_in_slot(subject, headers, body, None).await
    }

    /// [`Self::handle`] holding one of the endpoint's shared slots, which a long-running
    /// command gives back once it is admitted.
    async fn handle_in_slot(
        &self,
        subject: &str,
        headers: Option<&HeaderMap>,
        body: &[u8],
        slot: Option<OwnedSemaphorePermit>,
    ) -> CommandReply<S::Output> {
        match self.try_handle(subject, headers, body, slot).await {
            Ok(reply) => reply,
            Err(rejection) => CommandReply::Rejected(rejection),
        }
    }

    async fn try_handle(
        &self,
        subject: &str,
        headers: Option<&HeaderMap>,
        body: &[u8],
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<CommandReply<S::Output>, Rejection> {
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
        let kind = self.service.kind();
        let (sender, action) = parse_command_subject(subject, kind)?;
        let tenant = target_tenant(&sender, kind, &action, headers)?;
        let row = access::lookup(kind, &action);
        // Before any parsing: a flood over its share costs the endpoint almost nothing.
        let long_running = row.is_some_and(|row| row.long_running);
        let _admitted = self.fair.admit(&sender, long_running)?;
        if long_running {
            drop(slot);
        }
        let meta = CommandMeta::from_headers(headers)?;
        check_command_body(body)?;
        let command = S::Command::decode(&action, body)?;
        let row = row.ok_or_else(|| {
            Rejection::forbidden(format!("{kind}.{action} is not in berth's access table"))
        })?;
        if row.creates {
            self.refuse_foreign_id(&tenant, command.aggregate_id(meta.id))
                .await?;
        }
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

    /// A create may not name (or derive from its command id) the id of another
    /// tenant's aggregate: aggregates are per tenant in the log, but the id is what
    /// outsiders see, so it must name one thing.
    async fn refuse_foreign_id(&self, tenant: &TenantId, id: Uuid) -> Result<(), Rejection> {
        let kind = self.service.kind();
        let owners = self.store.owners(kind, id).await.map_err(unavailable)?;
        if owners.iter().any(|owner| owner != tenant) {
            return Err(Rejection::new(
                RejectionCode::Conflict,
                format!("{kind} id {id} is taken; send the create with a new command id"),
            ));
        }
        Ok(())
    }
}

/// The tenant a command is about, and whether its sender may send it: a tenant sends
/// tenant actions about itself on `cmd.<tenant>.…`; an operator sends anything on
/// `cmd.system.…`, naming the tenant in the [`access::TARGET_TENANT`] header.
pub fn target_tenant(
    sender: &TenantId,
    kind: &str,
    action: &str,
    headers: Option<&HeaderMap>,
) -> Result<TenantId, Rejection> {
    let named = headers.and_then(|map| header_value(map, access::TARGET_TENANT));
    if sender.as_str() == SYSTEM_TENANT {
        return match named {
            Some(named) => TenantId::parse(&named).map_err(|e| Rejection::invalid(e.to_string())),
            None => Ok(sender.clone()),
        };
    }
    if named.is_some() {
        return Err(Rejection::forbidden(format!(
            "the {} header is for operators, on cmd.system.{kind}.{action}",
            access::TARGET_TENANT
        )));
    }
    if access::sender_of(kind, action) == Some(Sender::Operator) {
        return Err(Rejection::forbidden(format!(
            "{kind}.{action} is an operator action; tenants cannot send it"
        )));
    }
    Ok(sender.clone())
}

/// The rejection when the store cannot be reached; safe to retry. It names the error's
/// code, never its message (which may carry internal detail).
pub fn unavailable(error: Error) -> Rejection {
    warn!(error = %error, error.code = error.code(), "command could not be processed");
    Rejection::new(
        RejectionCode::Unavailable,
        "berth could not process the command now; retry with the same command id",
    )
    .with_error_code(error.code())
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
    // Each request runs on its own task holding one of the endpoint's slots, so a
    // long-running command can give its slot back while it runs.
    let slots = Arc::new(Semaphore::new(rt.settings.max_concurrent_commands));
    let in_flight = TaskTracker::new();
    let requests = endpoint.take_until(rt.shutdown.clone().cancelled_owned());
    let mut requests = std::pin::pin!(requests);
    while let Some(request) = requests.next().await {
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the slots are never closed");
        let handler = handler.clone();
        let span = info_span!("command", subject = %request.message.subject);
        crate::telemetry::set_parent(&span, request.message.headers.as_ref());
        in_flight.spawn(
            async move {
                let reply = handler
                    .handle_in_slot(
                        request.message.subject.as_str(),
                        request.message.headers.as_ref(),
                        &request.message.payload,
                        Some(slot),
                    )
                    .await;
                if let Some(rejection) = reply.rejection() {
                    tracing::info!(code = %rejection.code, message = %rejection.message, "command rejected");
                }
                let body = serde_json::to_vec(&reply).expect("replies serialize");
                if let Err(e) = request.respond(Ok(body.into())).await {
                    warn!(error = %e, error.code = "nats", "could not send a command reply");
                }
            }
            .instrument(span),
        );
    }
    in_flight.close();
    in_flight.wait().await;
    // The endpoint stream is gone by now, so the service's stop broadcast may find no
    // listener; dropping the service unsubscribes either way.
    if let Err(e) = service.stop().await {
        tracing::debug!(error = %e, "command service stopped");
    }
    Ok(())
}
