//! Delivery: one durable consumer per channel (`notifier-email`, `notifier-webhook`), each
//! with its own in-flight limit, so a slow or dead SMTP server never holds a webhook
//! back. A deliverer acts on `requested` and `retry_requested` of its channel: it reads
//! the source, renders the template, sends, and records `sent` — or `attempt_failed` and
//! a back-off (the message is redelivered after the reactor's delay), until the round's
//! last attempt records `failed`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_runtime::decision::{execute, Decision};
use berth_runtime::reactor::{ReactError, Reactor, Tuning};
use berth_runtime::store::{Aggregate, AtomicAppend, Cause, Repository, StoredEvent};
use berth_schemas::notification::{Channel, NotificationEvent};
use berth_schemas::subjects::event_filter;
use berth_schemas::{Actor, TenantId};
use uuid::Uuid;

use crate::context::{ContextError, Contexts};
use crate::email::Mailer;
use crate::notification::{Notification, Status};
use crate::templates::{Rendered, Templates};
use crate::webhook::Webhooks;

/// The channel a deliverer sends through.
pub enum Sender {
    Email(Arc<Mailer>),
    Webhook(Arc<Webhooks>),
}

impl Sender {
    fn channel(&self) -> Channel {
        match self {
            Self::Email(_) => Channel::Email,
            Self::Webhook(_) => Channel::Webhook,
        }
    }
}

/// How hard a deliverer tries.
#[derive(Debug, Clone, Copy)]
pub struct Retries {
    /// Attempts per round before `failed`.
    pub max_attempts: u32,
    pub in_flight: usize,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for Retries {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            in_flight: 16,
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(600),
        }
    }
}

/// Delivers one channel's notifications.
pub struct Deliverer {
    pub sender: Sender,
    pub notifications: Arc<Repository<Notification>>,
    pub contexts: Contexts,
    pub templates: Arc<Templates>,
    pub retries: Retries,
}

/// Why one attempt did not deliver.
enum Failure {
    /// Another attempt may work.
    Retry(String),
    /// None will (a bad address, a gone source, a broken template).
    Never(String),
}

impl Deliverer {
    async fn content(
        &self,
        notification: &Notification,
    ) -> Result<(Rendered, serde_json::Value), Failure> {
        let requested = notification
            .requested
            .as_ref()
            .ok_or_else(|| Failure::Never("notification without a request".into()))?;
        let context_error = |e: ContextError| match e {
            ContextError::Gone { .. } => Failure::Never(e.to_string()),
            ContextError::Unavailable(_) => Failure::Retry(e.to_string()),
        };
        let message = self
            .contexts
            .fetch(&requested.source)
            .await
            .map_err(context_error)?;
        let context = self
            .contexts
            .build(&requested.rule, &requested.recipient, &message)
            .await
            .map_err(context_error)?;
        let rendered = self
            .templates
            .render(&requested.rule, &context)
            .map_err(|e| Failure::Never(e.to_string()))?;
        Ok((rendered, context))
    }

    async fn attempt(&self, id: Uuid, notification: &Notification) -> Result<(), Failure> {
        let (rendered, context) = self.content(notification).await?;
        let requested = notification.requested.as_ref().expect("content checked it");
        match &self.sender {
            Sender::Email(mailer) => mailer
                .send(id, &requested.recipient, &rendered)
                .await
                .map_err(|e| {
                    if e.is_permanent() {
                        Failure::Never(e.to_string())
                    } else {
                        Failure::Retry(e.to_string())
                    }
                }),
            Sender::Webhook(webhooks) => webhooks
                .post(
                    id,
                    &requested.recipient,
                    &requested.rule,
                    &rendered,
                    &context["event"],
                )
                .await
                .map_err(Failure::Retry),
        }
    }

    /// Appends what an attempt decided, reloading on a conflict; the events are decided
    /// again from the reloaded state, so a concurrent `sent` or `failed` wins. Returns
    /// the status the notification is in afterwards.
    async fn record(
        &self,
        tenant: &TenantId,
        id: Uuid,
        decide: impl Fn(&Notification) -> Vec<NotificationEvent>,
    ) -> Result<Status, ReactError> {
        execute(Notification::KIND, id, || async {
            let loaded = self
                .notifications
                .load(tenant, id)
                .await
                .map_err(ReactError::transient)?;
            if loaded.state.status != Status::Pending {
                return Ok(Decision::done(loaded.state.status));
            }
            let events = decide(&loaded.state);
            let mut after = loaded.state.clone();
            events.iter().for_each(|event| after.apply(event));
            // One attempt per version: a repeat of the same attempt meets de-duplication.
            let label = format!("attempt-{}", loaded.version);
            let cause = Cause {
                correlation_id: id,
                ..Cause::derived(id, &label, Actor::service("notifier"))
            };
            let changes =
                AtomicAppend::new(&cause).add(&self.notifications, tenant, id, &loaded, &events);
            Ok(Decision::append(changes, after.status))
        })
        .await
    }
}

#[async_trait]
impl Reactor for Deliverer {
    fn name(&self) -> String {
        format!("notifier-{}", self.sender.channel().as_str())
    }

    fn filter_subjects(&self) -> Vec<String> {
        vec![event_filter(berth_schemas::notification::AGGREGATE)]
    }

    fn tuning(&self) -> Tuning {
        Tuning {
            max_in_flight: Some(self.retries.in_flight),
            // The deliverer records `failed` itself after its last attempt; the DLQ is
            // only for what it cannot record.
            max_deliver: Some(i64::from(self.retries.max_attempts) + 2),
            backoff_base: Some(self.retries.backoff_base),
            backoff_max: Some(self.retries.backoff_max),
        }
    }

    async fn react(&self, event: &StoredEvent) -> Result<(), ReactError> {
        let channel = match event.decode::<NotificationEvent>() {
            Ok(NotificationEvent::Requested(requested)) => requested.channel,
            Ok(NotificationEvent::RetryRequested(retry)) => retry.channel,
            Ok(_) => return Ok(()),
            Err(e) => return Err(ReactError::permanent(e)),
        };
        if channel != self.sender.channel() {
            return Ok(());
        }
        let tenant = &event.meta.tenant;
        let id = event.meta.subject;
        let loaded = self
            .notifications
            .load(tenant, id)
            .await
            .map_err(ReactError::transient)?;
        if loaded.state.status != Status::Pending {
            return Ok(());
        }
        let max_attempts = self.retries.max_attempts;
        match self.attempt(id, &loaded.state).await {
            Ok(()) => self.record(tenant, id, |n| vec![n.sent()]).await.map(drop),
            Err(Failure::Never(error)) => self
                .record(tenant, id, |n| n.attempt_failed(&error, 1))
                .await
                .map(drop),
            Err(Failure::Retry(error)) => {
                match self
                    .record(tenant, id, |n| n.attempt_failed(&error, max_attempts))
                    .await?
                {
                    // Another attempt after the reactor's back-off.
                    Status::Pending => Err(ReactError::transient_because("delivery_failed", error)),
                    _ => Ok(()),
                }
            }
        }
    }

    async fn give_up(&self, event: &StoredEvent, error: &str) {
        let outcome = self
            .record(&event.meta.tenant, event.meta.subject, |n| {
                vec![n.given_up(error)]
            })
            .await;
        if let Err(e) = outcome {
            tracing::warn!(error = %e, notification = %event.meta.subject, "could not record a given-up notification");
        }
    }
}
