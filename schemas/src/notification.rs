//! Notifications: one mail or webhook post per (source, recipient, channel), as the
//! `notification` aggregate (`evt.<tenant>.notification.<id>`). Its id derives from the
//! three, so a redelivered source event finds the notification already there and never
//! mails twice once `notification.sent` is recorded.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::command::parse_body;
use crate::domain_events;
use crate::{CommandSet, Rejection};

/// The aggregate kind, as it appears in subjects.
pub const AGGREGATE: &str = "notification";

/// The expiry-warning timer of a subscription (its payload names the rule).
pub fn expiry_warning_timer_key(subscription_id: Uuid) -> String {
    format!("expiry-warning-{subscription_id}")
}

/// How a notification travels.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Webhook,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Webhook => "webhook",
        }
    }
}

/// Where the notification's content comes from: a message in a stream (an event in
/// `EVENTS`, a dead letter in `DLQ`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Source {
    pub stream: String,
    pub sequence: u64,
    /// The CloudEvent id of the source message.
    pub event_id: Uuid,
    pub event_type: String,
}

/// The notification id: UUID v5 of what it is about (a source event id, or a rule and
/// an aggregate for once-per-aggregate rules), the recipient and the channel.
pub fn notification_id(about: &str, recipient: &str, channel: Channel) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!(
            "berth.notification|{about}|{recipient}|{}",
            channel.as_str()
        )
        .as_bytes(),
    )
}

/// A rule asked for a notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NotificationRequested {
    /// The rule, which is also the template's name.
    pub rule: String,
    pub channel: Channel,
    /// An email address, or a configured webhook's name.
    pub recipient: String,
    pub source: Source,
}

/// One delivery attempt failed; it is tried again after a back-off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryAttemptFailed {
    pub attempt: u32,
    pub error: String,
}

/// Delivered (the SMTP server or the webhook receiver accepted it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NotificationSent {
    pub attempt: u32,
}

/// Given up after `attempts`; an operator may retry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NotificationFailed {
    pub attempts: u32,
    pub error: String,
}

/// An operator asked for another round of attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RetryRequested {
    pub channel: Channel,
}

domain_events! {
    /// Everything that happens to a notification.
    pub enum NotificationEvent {
        Requested(NotificationRequested) = "berth.notification.requested.v1",
        AttemptFailed(DeliveryAttemptFailed) = "berth.notification.attempt_failed.v1",
        Sent(NotificationSent) = "berth.notification.sent.v1",
        Failed(NotificationFailed) = "berth.notification.failed.v1",
        RetryRequested(RetryRequested) = "berth.notification.retry_requested.v1",
    }
}

/// `notification.retry`: another round of attempts for a failed notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationTarget {
    pub notification_id: Uuid,
}

/// Notification commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationCommand {
    Retry(NotificationTarget),
}

impl NotificationCommand {
    pub fn body(&self) -> Vec<u8> {
        let Self::Retry(target) = self;
        serde_json::to_vec(target).expect("commands are plain data")
    }
}

impl CommandSet for NotificationCommand {
    fn decode(action: &str, body: &[u8]) -> Result<Self, Rejection> {
        match action {
            "retry" => Ok(Self::Retry(parse_body(action, body)?)),
            other => Err(Rejection::invalid(format!(
                "unknown notification action {:?}; expected retry",
                other.chars().take(40).collect::<String>()
            ))),
        }
    }
    fn aggregate_id(&self, _command_id: Uuid) -> Uuid {
        let Self::Retry(target) = self;
        target.notification_id
    }
    fn expected_version(&self) -> Option<u64> {
        None
    }
    fn action(&self) -> &'static str {
        "retry"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_differ_per_recipient_and_channel_and_repeat_otherwise() {
        let a = notification_id("e1", "a@example.com", Channel::Email);
        assert_eq!(a, notification_id("e1", "a@example.com", Channel::Email));
        assert_ne!(a, notification_id("e1", "b@example.com", Channel::Email));
        assert_ne!(a, notification_id("e1", "a@example.com", Channel::Webhook));
        assert_ne!(a, notification_id("e2", "a@example.com", Channel::Email));
    }

    #[test]
    fn retry_rejects_unknown_fields_and_actions() {
        let id = Uuid::new_v4();
        let body = format!(r#"{{"notification_id":"{id}"}}"#);
        assert_eq!(
            NotificationCommand::decode("retry", body.as_bytes()).unwrap(),
            NotificationCommand::Retry(NotificationTarget {
                notification_id: id
            })
        );
        let extra = format!(r#"{{"notification_id":"{id}","x":1}}"#);
        assert!(NotificationCommand::decode("retry", extra.as_bytes()).is_err());
        assert!(NotificationCommand::decode("send", body.as_bytes()).is_err());
    }
}
