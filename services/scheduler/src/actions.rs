//! Sends the command a fire asks for (`action: command`), once per fire: the command id
//! is the fire's event id, so a redelivered fire resends the same command and the target
//! answers it from its record.

use async_trait::async_trait;
use berth_runtime::client::send_command;
use berth_runtime::reactor::{ReactError, Reactor};
use berth_runtime::store::StoredEvent;
use berth_schemas::command::CommandMeta;
use berth_schemas::schedule::{Action, ScheduleEvent};
use berth_schemas::subjects::event_filter;
use berth_schemas::{Actor, CommandReply, RejectionCode};

/// The reactor that sends fired commands.
pub struct FiredCommands {
    pub nats: async_nats::Client,
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
        let Action::Command {
            tenant,
            aggregate,
            action,
            body,
        } = &fired.action
        else {
            return Ok(());
        };
        let meta = CommandMeta {
            id: event.meta.id,
            actor: Actor::parse(&format!("schedule:{}", event.meta.subject))
                .map_err(|e| ReactError::Permanent(e.to_string()))?,
            correlation_id: event.meta.correlation_id,
            traceparent: event.meta.traceparent.clone(),
        };
        let body = serde_json::to_vec(body).map_err(|e| ReactError::Permanent(e.to_string()))?;
        match send_command(&self.nats, tenant, aggregate, action, &meta, body).await {
            Ok(CommandReply::Accepted { .. }) => Ok(()),
            Ok(CommandReply::Rejected(rejection))
                if rejection.code == RejectionCode::Unavailable =>
            {
                Err(ReactError::Transient(rejection.message))
            }
            Ok(CommandReply::Rejected(rejection)) => {
                // The target's answer, recorded by it; sending again changes nothing.
                tracing::warn!(schedule = %event.meta.subject, %rejection, "a scheduled command was rejected");
                Ok(())
            }
            // No responder, a timeout, a lost connection: the target may come back.
            Err(e) => Err(ReactError::Transient(e.to_string())),
        }
    }
}
