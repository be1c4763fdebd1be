//! The rules at work: each followed event that a rule matches becomes one
//! `notification.requested` per recipient and channel. The notification's id derives
//! from the source (or the rule and aggregate), the recipient and the channel, and it is
//! appended only where none exists yet — so a redelivered event changes nothing.

use std::sync::Arc;

use async_trait::async_trait;
use berth_runtime::reactor::{ReactError, Reactor};
use berth_runtime::store::{AppendError, Cause, Repository, StoredEvent};
use berth_schemas::notification::{
    notification_id, Channel, NotificationEvent, NotificationRequested, Source,
};
use berth_schemas::subjects::EVENTS_STREAM;
use berth_schemas::{Actor, TenantId};
use uuid::Uuid;

use crate::context::{Contact, Contexts};
use crate::notification::Notification;
use crate::rules::{Audience, Rule, Rules};

/// Who is told, and how.
#[derive(Debug, Clone, Default)]
pub struct Recipients {
    /// Operators' mail addresses.
    pub operator_emails: Vec<String>,
    /// Configured webhooks, by name (operators' channels).
    pub webhooks: Vec<String>,
    /// Whether mail is configured at all; without it no mail is requested.
    pub mail: bool,
}

impl Recipients {
    /// `(recipient, channel)` for a rule; customers need the account's contact.
    pub fn of(&self, rule: &Rule, contact: Option<&Contact>) -> Vec<(String, Channel)> {
        let mut to = Vec::new();
        for audience in &rule.to {
            match audience {
                Audience::Customer => {
                    if let (true, Some(contact)) = (self.mail, contact) {
                        to.push((contact.billing_email.clone(), Channel::Email));
                    }
                }
                Audience::Operators => {
                    if self.mail {
                        to.extend(
                            self.operator_emails
                                .iter()
                                .map(|a| (a.clone(), Channel::Email)),
                        );
                    }
                    to.extend(self.webhooks.iter().map(|w| (w.clone(), Channel::Webhook)));
                }
            }
        }
        to.sort();
        to.dedup();
        to
    }
}

/// Turns events into notification requests.
pub struct Requester {
    pub rules: Arc<Rules>,
    pub recipients: Recipients,
    pub contexts: Contexts,
    pub notifications: Arc<Repository<Notification>>,
}

/// What a request is caused by: the source's ids, for the notification's metadata.
pub struct Origin {
    pub tenant: TenantId,
    pub correlation_id: Uuid,
    pub traceparent: Option<String>,
}

impl Requester {
    /// Requests `rule`'s notifications about `source`; returns how many were new.
    pub async fn request(
        &self,
        rule: &Rule,
        about: &str,
        source: &Source,
        origin: &Origin,
        contact: Option<&Contact>,
    ) -> Result<usize, ReactError> {
        let mut new = 0;
        for (recipient, channel) in self.recipients.of(rule, contact) {
            let id = notification_id(about, &recipient, channel);
            let loaded = self
                .notifications
                .load(&origin.tenant, id)
                .await
                .map_err(ReactError::transient)?;
            if loaded.version > 0 {
                continue;
            }
            let cause = Cause {
                id: Uuid::new_v5(&id, b"requested"),
                actor: Actor::service("notifier"),
                correlation_id: origin.correlation_id,
                traceparent: origin.traceparent.clone(),
            };
            let requested = NotificationEvent::Requested(NotificationRequested {
                rule: rule.name.clone(),
                channel,
                recipient,
                source: source.clone(),
            });
            match self
                .notifications
                .append(&origin.tenant, id, &loaded, &cause, vec![requested])
                .await
            {
                Ok(_) => new += 1,
                // Another delivery of the same event got there first.
                Err(AppendError::Conflict { .. } | AppendError::Duplicate) => {}
                Err(e) => return Err(ReactError::transient(e)),
            }
        }
        Ok(new)
    }
}

#[async_trait]
impl Reactor for Requester {
    fn name(&self) -> String {
        "notifier-rules".into()
    }

    fn filter_subjects(&self) -> Vec<String> {
        self.rules.filter_subjects()
    }

    async fn react(&self, event: &StoredEvent) -> Result<(), ReactError> {
        let event_type = event.meta.event_type.as_str();
        // A timer fire that asks for a notification is about the tenant its payload names.
        let timer = match event_type {
            "berth.schedule.fired.v1" => self
                .contexts
                .timer_fire(event)
                .await
                .map_err(ReactError::transient)?,
            _ => None,
        };
        let rules: Vec<&Rule> = self
            .rules
            .matching(event_type, timer.as_ref().map(|t| t.notify.as_str()))
            .collect();
        if rules.is_empty() {
            return Ok(());
        }
        let tenant = timer.as_ref().map_or(&event.meta.tenant, |t| &t.tenant);
        let contact = if rules.iter().any(|r| r.to.contains(&Audience::Customer)) {
            self.contexts
                .contact(tenant)
                .await
                .map_err(ReactError::transient)?
        } else {
            None
        };
        let source = Source {
            stream: EVENTS_STREAM.into(),
            sequence: event.sequence,
            event_id: event.meta.id,
            event_type: event.meta.event_type.clone(),
        };
        let origin = Origin {
            tenant: tenant.clone(),
            correlation_id: event.meta.correlation_id,
            traceparent: event.meta.traceparent.clone(),
        };
        for rule in rules {
            let about = if rule.once_per_aggregate {
                format!("{}:{}", rule.name, event.subject)
            } else {
                event.meta.id.to_string()
            };
            self.request(rule, &about, &source, &origin, contact.as_ref())
                .await?;
        }
        Ok(())
    }
}
