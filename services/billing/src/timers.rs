//! Keeps each subscription's period-end timer at the scheduler: set on `created` and
//! `renewed` (the same key replaces it), cancelled on `expired`. The timer is berth's,
//! under `system` where the tenant cannot touch it (see `send_timer`); it sends the
//! operator action `subscription.expire` about the subscription's tenant
//! (`cmd.system.subscription.expire`, naming the tenant), which the subscription decides
//! on: after a renewal its period end has moved and a stale fire ends nothing.

use async_trait::async_trait;
use berth_runtime::reactor::{ReactError, Reactor};
use berth_runtime::store::StoredEvent;
use berth_schemas::billing::{subscription_timer_key, SubscriptionEvent, SubscriptionTarget};
use berth_schemas::schedule::{Action, SetTimer, TimerCommand, TimerTarget};
use berth_schemas::subjects::event_filter;

/// Sets and cancels subscription timers.
pub struct SubscriptionTimers {
    pub nats: async_nats::Client,
}

#[async_trait]
impl Reactor for SubscriptionTimers {
    fn name(&self) -> String {
        "billing-subscription-timers".into()
    }

    fn filter_subjects(&self) -> Vec<String> {
        vec![event_filter(berth_schemas::billing::SUBSCRIPTION)]
    }

    async fn react(&self, event: &StoredEvent) -> Result<(), ReactError> {
        let decoded: SubscriptionEvent = event.decode().map_err(ReactError::permanent)?;
        let subscription_id = event.meta.subject;
        let key = subscription_timer_key(subscription_id);
        let period_end = match &decoded {
            SubscriptionEvent::Created(created) => Some(created.period_end),
            SubscriptionEvent::Renewed(renewed) => Some(renewed.period_end),
            SubscriptionEvent::Expired(_) => None,
            SubscriptionEvent::Cancelled(_) => return Ok(()),
        };
        let command = match period_end {
            Some(at) => TimerCommand::Set(SetTimer {
                key,
                at: Some(at),
                after_secs: None,
                action: Action::Command {
                    tenant: event.meta.tenant.clone(),
                    aggregate: berth_schemas::billing::SUBSCRIPTION.into(),
                    action: "expire".into(),
                    body: serde_json::to_value(SubscriptionTarget { subscription_id })
                        .expect("commands are plain data"),
                },
                payload: serde_json::json!({"subscription_id": subscription_id}),
            }),
            None => TimerCommand::Cancel(TimerTarget { key }),
        };
        berth_runtime::client::send_timer(&self.nats, event, "billing", &command).await
    }
}
