//! Sends the command a fire asks for (`action: command`), once per fire: the command id
//! is the fire's event id, so a redelivered fire resends the same command and the target
//! answers it from its record.
//!
//! The command goes out with the schedule's identity, not the scheduler's: actor
//! `schedule:<schedule id>`, through [`send_command`], which routes by the access table
//! (a tenant action on the tenant's subject; an operator action, which only a `system`
//! schedule may send, on `cmd.system.…` naming the tenant). A tenant's schedule is checked
//! again here ([`check_action`]), so a schedule recorded before that rule existed cannot
//! use the scheduler's rights either.

use async_trait::async_trait;
use berth_runtime::client::{fired_spec, send_command};
use berth_runtime::reactor::{ReactError, Reactor};
use berth_runtime::store::{EventStore, StoredEvent};
use berth_schemas::command::CommandMeta;
use berth_schemas::schedule::{check_action, Action, ScheduleEvent};
use berth_schemas::subjects::event_filter;
use berth_schemas::{Actor, CommandReply, RejectionCode};

/// The reactor that sends fired commands.
pub struct FiredCommands {
    pub nats: async_nats::Client,
    pub store: EventStore,
}

/// The actor of the commands schedule `id`'s fires send.
pub fn schedule_actor(id: uuid::Uuid) -> Actor {
    Actor::parse(&format!("schedule:{id}")).expect("a uuid makes a valid actor")
}

#[async_trait]
impl Reactor for FiredCommands {
    fn name(&self) -> String {
        "scheduler-actions".into()
    }

    fn filter_subjects(&self) -> Vec<String> {
        vec![event_filter(berth_schemas::schedule::AGGREGATE)]
    }

    async fn react(&self, event: &StoredEvent) -> Result<(), ReactError> {
        let Ok(ScheduleEvent::Fired(fired)) = event.decode::<ScheduleEvent>() else {
            return Ok(());
        };
        let spec = fired_spec(&self.store, event, &fired)
            .await
            .map_err(ReactError::transient)?;
        if let Err(rejection) = check_action(&event.meta.tenant, &spec.action) {
            tracing::warn!(schedule = %event.meta.subject, tenant = %event.meta.tenant, %rejection, "a fire's command was not sent");
            return Ok(());
        }
        let Action::Command {
            tenant,
            aggregate,
            action,
            body,
        } = &spec.action
        else {
            return Ok(());
        };
        let meta = CommandMeta {
            id: event.meta.id,
            actor: schedule_actor(event.meta.subject),
            correlation_id: event.meta.correlation_id,
            traceparent: event.meta.traceparent.clone(),
        };
        let body = serde_json::to_vec(body)
            .map_err(|e| ReactError::permanent_because("encode", e.to_string()))?;
        match send_command(&self.nats, tenant, aggregate, action, &meta, body).await {
            Ok(CommandReply::Accepted { .. }) => Ok(()),
            Ok(CommandReply::Rejected(rejection))
                if matches!(
                    rejection.code,
                    RejectionCode::Unavailable | RejectionCode::Busy
                ) =>
            {
                Err(ReactError::transient_because(
                    rejection.code.as_str(),
                    rejection.message,
                ))
            }
            Ok(CommandReply::Rejected(rejection)) => {
                // The target's answer, recorded by it; sending again changes nothing.
                tracing::warn!(schedule = %event.meta.subject, %rejection, "a scheduled command was rejected");
                Ok(())
            }
            // No responder, a timeout, a lost connection: the target may come back.
            Err(e) => Err(ReactError::transient(e)),
        }
    }
}
