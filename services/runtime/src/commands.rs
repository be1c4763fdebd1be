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
use berth_schemas::command::CommandMeta;
use berth_schemas::{CommandReply, CommandSet, Rejection, RejectionCode, TenantId};
use futures::StreamExt;
use rand::Rng;
use tracing::{info_span, warn, Instrument};

use crate::error::{Error, Result};
use crate::store::{Aggregate, AppendError, Cause, Repository};
use crate::Runtime;

/// How many times a command is decided again after a version conflict.
const MAX_ATTEMPTS: u32 = 12;

/// Decides and appends the commands of one aggregate kind.
pub struct CommandHandler<A: Aggregate> {
    repository: Arc<Repository<A>>,
    max_command_bytes: usize,
}

impl<A> CommandHandler<A>
where
    A: Aggregate,
    A::Command: CommandSet,
{
    pub fn new(repository: Arc<Repository<A>>, max_command_bytes: usize) -> Self {
        Self {
            repository,
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
        let (tenant, action) = parse_command_subject(subject, A::KIND)?;
        let meta = CommandMeta::from_headers(headers)?;
        let command = A::Command::decode(&action, body)?;
        let id = command.aggregate_id(meta.id);
        let cause = Cause {
            id: meta.id,
            actor: meta.actor.clone(),
            correlation_id: meta.correlation_id,
            traceparent: meta
                .traceparent
                .clone()
                .or_else(crate::telemetry::current_traceparent),
        };
        for attempt in 0..MAX_ATTEMPTS {
            let loaded = self
                .repository
                .load(&tenant, id)
                .await
                .map_err(unavailable)?;
            if let Some(applied) = loaded.applied.get(&meta.id) {
                return Ok(CommandReply::Accepted {
                    aggregate_id: id,
                    version: applied.version,
                    events: applied.events.clone(),
                });
            }
            if let Some(expected) = command.expected_version() {
                if expected != loaded.version {
                    return Err(Rejection::new(
                        RejectionCode::Conflict,
                        format!(
                            "{} {id} is at version {}, not {expected}",
                            A::KIND,
                            loaded.version
                        ),
                    ));
                }
            }
            let events = loaded.state.decide(&command)?;
            if events.is_empty() {
                return Ok(CommandReply::Accepted {
                    aggregate_id: id,
                    version: loaded.version,
                    events: Vec::new(),
                });
            }
            match self
                .repository
                .append(&tenant, id, &loaded, &cause, events)
                .await
            {
                Ok(appended) => {
                    return Ok(CommandReply::Accepted {
                        aggregate_id: id,
                        version: appended.version,
                        events: appended.events,
                    })
                }
                Err(AppendError::Conflict { .. } | AppendError::Duplicate | AppendError::Busy) => {
                    let pause = rand::rng().random_range(0..=(2u64 << attempt.min(6)));
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                Err(AppendError::Store(e)) => return Err(unavailable(e)),
            }
        }
        Err(Rejection::new(
            RejectionCode::Conflict,
            format!(
                "{} {id} is changing too fast; retry with the same command id",
                A::KIND
            ),
        ))
    }
}

fn unavailable(error: Error) -> Rejection {
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
pub async fn serve<A>(rt: &Runtime, handler: Arc<CommandHandler<A>>) -> Result<()>
where
    A: Aggregate,
    A::Command: CommandSet,
{
    let queue_group = format!("berth-{}", rt.service);
    let service = rt
        .nats
        .service_builder()
        .description(format!("berth {} commands", A::KIND))
        .queue_group(&queue_group)
        .start(format!("berth-{}", A::KIND), env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| Error::nats("start command service", e))?;
    let endpoint = service
        .endpoint_builder()
        .name(A::KIND)
        .queue_group(&queue_group)
        .add(berth_schemas::subjects::command_filter(A::KIND))
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
