//! The `notification` aggregate: requested by a rule, then delivered by its channel's
//! deliverer — `attempt_failed` per failed try, `sent` once accepted, `failed` after the
//! round's last attempt. An operator's `retry` starts another round of a failed one.

use berth_schemas::aggregate::{Aggregate, Context};
use berth_schemas::notification::{
    Channel, DeliveryAttemptFailed, NotificationCommand, NotificationEvent, NotificationFailed,
    NotificationRequested, NotificationSent, RetryRequested,
};
use berth_schemas::{Rejection, RejectionCode};

/// Where a notification stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Status {
    #[default]
    Unknown,
    /// Requested or retried, not delivered yet.
    Pending,
    Sent,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }
}

/// A notification as folded from its events.
#[derive(Debug, Clone, Default)]
pub struct Notification {
    pub requested: Option<NotificationRequested>,
    pub status: Status,
    /// Attempts over the notification's whole life.
    pub attempts: u32,
    /// Attempts in the current round (a retry starts a new one).
    pub round_attempts: u32,
    pub last_error: Option<String>,
}

impl Notification {
    pub fn channel(&self) -> Option<Channel> {
        self.requested.as_ref().map(|r| r.channel)
    }

    /// The events for a failed attempt: `attempt_failed`, and `failed` too when it was
    /// the round's last.
    pub fn attempt_failed(&self, error: &str, max_attempts: u32) -> Vec<NotificationEvent> {
        let error: String = error.chars().take(500).collect();
        let attempt = self.attempts + 1;
        let mut events = vec![NotificationEvent::AttemptFailed(DeliveryAttemptFailed {
            attempt,
            error: error.clone(),
        })];
        if self.round_attempts + 1 >= max_attempts {
            events.push(NotificationEvent::Failed(NotificationFailed {
                attempts: attempt,
                error,
            }));
        }
        events
    }

    pub fn sent(&self) -> NotificationEvent {
        NotificationEvent::Sent(NotificationSent {
            attempt: self.attempts + 1,
        })
    }

    /// Given up without another attempt (the source is gone, the reactor gave up).
    pub fn given_up(&self, error: &str) -> NotificationEvent {
        NotificationEvent::Failed(NotificationFailed {
            attempts: self.attempts,
            error: error.chars().take(500).collect(),
        })
    }
}

impl Aggregate for Notification {
    const KIND: &'static str = berth_schemas::notification::AGGREGATE;
    type Command = NotificationCommand;
    type Event = NotificationEvent;

    fn apply(&mut self, event: &NotificationEvent) {
        match event {
            NotificationEvent::Requested(requested) => {
                self.requested = Some(requested.clone());
                self.status = Status::Pending;
            }
            NotificationEvent::AttemptFailed(failed) => {
                self.attempts = failed.attempt;
                self.round_attempts += 1;
                self.last_error = Some(failed.error.clone());
            }
            NotificationEvent::Sent(sent) => {
                self.attempts = sent.attempt;
                self.status = Status::Sent;
            }
            NotificationEvent::Failed(failed) => {
                self.last_error = Some(failed.error.clone());
                self.status = Status::Failed;
            }
            NotificationEvent::RetryRequested(_) => {
                self.round_attempts = 0;
                self.status = Status::Pending;
            }
        }
    }

    fn decide(
        &self,
        command: &NotificationCommand,
        _context: &Context,
    ) -> Result<Vec<NotificationEvent>, Rejection> {
        let NotificationCommand::Retry(target) = command;
        let channel = match (self.status, self.channel()) {
            (Status::Failed, Some(channel)) => channel,
            (Status::Unknown, _) | (_, None) => {
                return Err(Rejection::new(
                    RejectionCode::NotFound,
                    format!("no notification {}", target.notification_id),
                ))
            }
            (status, _) => {
                return Err(Rejection::new(
                    RejectionCode::InvalidState,
                    format!(
                        "notification {} is {}; only a failed one can be retried",
                        target.notification_id,
                        status.as_str()
                    ),
                ))
            }
        };
        Ok(vec![NotificationEvent::RetryRequested(RetryRequested {
            channel,
        })])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use berth_schemas::notification::{NotificationTarget, Source};
    use uuid::Uuid;

    fn context() -> Context {
        Context::at(chrono::Utc::now())
    }

    fn requested() -> NotificationEvent {
        NotificationEvent::Requested(NotificationRequested {
            rule: "welcome".into(),
            channel: Channel::Email,
            recipient: "ada@example.com".into(),
            source: Source {
                stream: "EVENTS".into(),
                sequence: 7,
                event_id: Uuid::nil(),
                event_type: "berth.account.opened.v1".into(),
            },
        })
    }

    fn given(events: &[NotificationEvent]) -> Notification {
        let mut notification = Notification::default();
        for event in events {
            notification.apply(event);
        }
        notification
    }

    fn retry() -> NotificationCommand {
        NotificationCommand::Retry(NotificationTarget {
            notification_id: Uuid::nil(),
        })
    }

    #[test]
    fn the_last_attempt_of_a_round_fails_the_notification() {
        let mut notification = given(&[requested()]);
        for _ in 0..2 {
            let events = notification.attempt_failed("connection refused", 3);
            assert_eq!(events.len(), 1);
            notification.apply(&events[0]);
        }
        let events = notification.attempt_failed("connection refused", 3);
        assert_eq!(events.len(), 2);
        events.iter().for_each(|e| notification.apply(e));
        assert_eq!(notification.status, Status::Failed);
        assert_eq!(notification.attempts, 3);
    }

    #[test]
    fn only_a_failed_notification_is_retried_and_a_retry_starts_a_new_round() {
        assert_eq!(
            Notification::default()
                .decide(&retry(), &context())
                .unwrap_err()
                .code,
            RejectionCode::NotFound
        );
        let pending = given(&[requested()]);
        assert_eq!(
            pending.decide(&retry(), &context()).unwrap_err().code,
            RejectionCode::InvalidState
        );
        let mut failed = given(&[requested()]);
        for event in failed.attempt_failed("down", 1) {
            failed.apply(&event);
        }
        let events = failed.decide(&retry(), &context()).unwrap();
        events.iter().for_each(|e| failed.apply(e));
        assert_eq!(failed.status, Status::Pending);
        assert_eq!(failed.round_attempts, 0);
        assert_eq!(failed.attempts, 1);
        assert_eq!(failed.attempt_failed("down", 2).len(), 1);
        let sent = failed.sent();
        failed.apply(&sent);
        assert_eq!(failed.status, Status::Sent);
        assert_eq!(failed.attempts, 2);
        assert_eq!(
            failed.decide(&retry(), &context()).unwrap_err().code,
            RejectionCode::InvalidState
        );
    }
}
