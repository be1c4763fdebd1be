//! Expiry warnings: for each subscription, a timer at the scheduler `N` days before its
//! period ends (set on `created` and `renewed` — the same key replaces it — and cancelled
//! on `expired`). The timer is berth's, under `system` (see `send_timer`), and only emits
//! `schedule.fired`; its payload `{"notify": "expiry_warning", "tenant": …, …}` tells the
//! `expiry_warning` rule what to send and to whom.

use std::sync::Arc;

use async_trait::async_trait;
use berth_runtime::clock::Clock;
use berth_runtime::reactor::{ReactError, Reactor};
use berth_runtime::store::{EventStore, StoredEvent};
use berth_schemas::billing::{SubscriptionCreated, SubscriptionEvent, SUBSCRIPTION};
use berth_schemas::notification::expiry_warning_timer_key;
use berth_schemas::schedule::{Action, SetTimer, TimerCommand, TimerTarget};
use berth_schemas::subjects::event_filter;
use chrono::{DateTime, Duration, Utc};
use serde_json::json;

/// The `notify` value of expiry-warning timers, and the rule that follows them.
pub const EXPIRY_WARNING: &str = "expiry_warning";

/// Keeps each subscription's expiry-warning timer.
pub struct ExpiryTimers {
    pub nats: async_nats::Client,
    pub store: EventStore,
    pub days_before: u32,
    pub clock: Arc<dyn Clock>,
}

impl ExpiryTimers {
    async fn created(&self, event: &StoredEvent) -> Result<SubscriptionCreated, ReactError> {
        let first = self
            .store
            .read(&event.subject, 0)
            .await
            .map_err(ReactError::transient)?;
        match first.first().map(|e| e.decode::<SubscriptionEvent>()) {
            Some(Ok(SubscriptionEvent::Created(created))) => Ok(created),
            _ => Err(ReactError::permanent_because(
                "malformed",
                format!("{} does not begin with subscription.created", event.subject),
            )),
        }
    }

    fn set(
        &self,
        tenant: &berth_schemas::TenantId,
        subscription_id: uuid::Uuid,
        created: &SubscriptionCreated,
        period_end: DateTime<Utc>,
    ) -> Option<TimerCommand> {
        let at = period_end - Duration::days(i64::from(self.days_before));
        (at > self.clock.now()).then(|| {
            TimerCommand::Set(SetTimer {
                key: expiry_warning_timer_key(subscription_id),
                at: Some(at),
                after_secs: None,
                action: Action::Emit,
                payload: json!({
                    "notify": EXPIRY_WARNING,
                    "tenant": tenant,
                    "subscription_id": subscription_id,
                    "product": created.product,
                    "variant": created.variant,
                    "period_end": period_end,
                }),
            })
        })
    }
}

#[async_trait]
impl Reactor for ExpiryTimers {
    fn name(&self) -> String {
        "notifier-expiry-timers".into()
    }

    fn filter_subjects(&self) -> Vec<String> {
        vec![event_filter(SUBSCRIPTION)]
    }

    async fn react(&self, event: &StoredEvent) -> Result<(), ReactError> {
        let decoded: SubscriptionEvent = event.decode().map_err(ReactError::permanent)?;
        let subscription_id = event.meta.subject;
        let cancel = TimerCommand::Cancel(TimerTarget {
            key: expiry_warning_timer_key(subscription_id),
        });
        let command = match &decoded {
            SubscriptionEvent::Created(created) => self.set(
                &event.meta.tenant,
                subscription_id,
                created,
                created.period_end,
            ),
            SubscriptionEvent::Renewed(renewed) => {
                let created = self.created(event).await?;
                self.set(
                    &event.meta.tenant,
                    subscription_id,
                    &created,
                    renewed.period_end,
                )
                .or(Some(cancel))
            }
            SubscriptionEvent::Expired(_) => Some(cancel),
            SubscriptionEvent::Cancelled(_) => None,
        };
        match command {
            Some(command) => {
                berth_runtime::client::send_timer(&self.nats, event, "notifier", &command).await
            }
            None => Ok(()),
        }
    }
}
