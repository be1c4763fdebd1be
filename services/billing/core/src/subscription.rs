//! The `subscription` aggregate: a monthly subscription to a pod product. It runs from
//! creation for a month; `renew` adds a month (or, once expired, starts a new one from
//! now); `cancel` ends it at the period end (or now); the period-end timer sends
//! `expire`, which ends it unless it was renewed meanwhile. Its active stretches are what
//! invoices charge, prorated to the second.

use berth_schemas::aggregate::{Aggregate, Context};
use berth_schemas::billing::{
    Money, SubscriptionCancelled, SubscriptionCommand, SubscriptionCreated, SubscriptionEnded,
    SubscriptionEvent, SubscriptionRenewed,
};
use berth_schemas::{Rejection, RejectionCode};
use chrono::{DateTime, Months, Utc};
use serde::{Deserialize, Serialize};

/// A subscription as folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub created: Option<SubscriptionCreated>,
    pub period_end: Option<DateTime<Utc>>,
    pub cancelled: Option<SubscriptionCancelled>,
    pub expired_at: Option<DateTime<Utc>>,
    /// When it was active: `(from, until)`, the last one open while it runs.
    pub active: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)>,
}

/// What a decision needs besides the subscription and the command.
pub struct Decision {
    pub now: DateTime<Utc>,
    /// A create's monthly price, from the price list in the account's currency.
    pub price: Option<Money>,
}

impl Subscription {
    /// `active`, `cancelled` (ends at the period end) or `expired`.
    pub fn status(&self) -> &'static str {
        match (self.expired_at, &self.cancelled) {
            (Some(_), _) => "expired",
            (None, Some(_)) => "cancelled",
            (None, None) => "active",
        }
    }

    /// Seconds active within `[start, end)`.
    pub fn active_seconds(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> i64 {
        self.active
            .iter()
            .map(|(from, until)| {
                let from = (*from).max(start);
                let until = until.unwrap_or(end).min(end);
                (until - from).num_seconds().max(0)
            })
            .sum()
    }

    pub fn decide_with(
        &self,
        command: &SubscriptionCommand,
        decision: &Decision,
    ) -> Result<Vec<SubscriptionEvent>, Rejection> {
        let now = decision.now;
        let month_from = |at: DateTime<Utc>| at + Months::new(1);
        let Some(created) = &self.created else {
            return match (command, &decision.price) {
                (SubscriptionCommand::Create(create), Some(price)) => {
                    Ok(vec![SubscriptionEvent::Created(SubscriptionCreated {
                        product: create.product.clone(),
                        variant: create.variant.clone(),
                        price: price.clone(),
                        period_start: now,
                        period_end: month_from(now),
                    })])
                }
                (SubscriptionCommand::Create(_), None) => {
                    Err(Rejection::invalid("a create needs its price resolved"))
                }
                _ => Err(Rejection::new(
                    RejectionCode::NotFound,
                    "no such subscription",
                )),
            };
        };
        let period_end = self.period_end.unwrap_or(created.period_end);
        match command {
            SubscriptionCommand::Create(create)
                if create.product == created.product && create.variant == created.variant =>
            {
                Ok(Vec::new())
            }
            SubscriptionCommand::Create(_) => Err(Rejection::new(
                RejectionCode::Conflict,
                "a subscription with this id exists for another product",
            )),
            SubscriptionCommand::Renew(_) => {
                let (period_start, end) = match self.expired_at {
                    Some(_) => (now, month_from(now)),
                    None => (period_end, month_from(period_end)),
                };
                Ok(vec![SubscriptionEvent::Renewed(SubscriptionRenewed {
                    period_start,
                    period_end: end,
                })])
            }
            SubscriptionCommand::Cancel(cancel) => match (self.expired_at, &self.cancelled) {
                (Some(_), _) => Err(Rejection::invalid_state("the subscription has ended")),
                (None, Some(_)) if cancel.at_period_end => Ok(Vec::new()),
                _ if cancel.at_period_end => {
                    Ok(vec![SubscriptionEvent::Cancelled(SubscriptionCancelled {
                        at_period_end: true,
                        ends_at: period_end,
                    })])
                }
                _ => Ok(vec![
                    SubscriptionEvent::Cancelled(SubscriptionCancelled {
                        at_period_end: false,
                        ends_at: now,
                    }),
                    SubscriptionEvent::Expired(SubscriptionEnded { at: now }),
                ]),
            },
            // The timer: ends it unless renewed (then the period end has moved on).
            SubscriptionCommand::Expire(_) => match self.expired_at {
                None if now >= period_end => {
                    Ok(vec![SubscriptionEvent::Expired(SubscriptionEnded {
                        at: period_end,
                    })])
                }
                _ => Ok(Vec::new()),
            },
        }
    }
}

impl Aggregate for Subscription {
    const KIND: &'static str = berth_schemas::billing::SUBSCRIPTION;
    type Command = SubscriptionCommand;
    type Event = SubscriptionEvent;

    fn apply(&mut self, event: &SubscriptionEvent) {
        match event {
            SubscriptionEvent::Created(created) => {
                self.active.push((created.period_start, None));
                self.period_end = Some(created.period_end);
                self.created = Some(created.clone());
            }
            SubscriptionEvent::Renewed(renewed) => {
                if self.expired_at.take().is_some() {
                    self.active.push((renewed.period_start, None));
                }
                self.cancelled = None;
                self.period_end = Some(renewed.period_end);
            }
            SubscriptionEvent::Cancelled(cancelled) => self.cancelled = Some(cancelled.clone()),
            SubscriptionEvent::Expired(ended) => {
                self.expired_at = Some(ended.at);
                if let Some((_, until)) = self.active.last_mut() {
                    until.get_or_insert(ended.at);
                }
            }
        }
    }

    fn decide(
        &self,
        command: &SubscriptionCommand,
        context: &Context,
    ) -> Result<Vec<SubscriptionEvent>, Rejection> {
        self.decide_with(
            command,
            &Decision {
                now: context.now,
                price: None,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_schemas::billing::{CancelSubscription, CreateSubscription, SubscriptionTarget};
    use uuid::Uuid;

    fn at(time: &str) -> DateTime<Utc> {
        time.parse().unwrap()
    }

    fn run(sub: &mut Subscription, command: SubscriptionCommand, now: &str) -> usize {
        let price = Money {
            amount_minor: 900,
            currency: "EUR".into(),
        };
        let events = sub
            .decide_with(
                &command,
                &Decision {
                    now: at(now),
                    price: Some(price),
                },
            )
            .unwrap();
        for event in &events {
            sub.apply(event);
        }
        events.len()
    }

    #[test]
    fn cancelled_at_period_end_expires_at_the_boundary_and_is_charged_to_the_second() {
        let id = Uuid::nil();
        let mut sub = Subscription::default();
        let create = SubscriptionCommand::Create(CreateSubscription {
            subscription_id: Some(id),
            product: "n8n".into(),
            variant: "basic".into(),
        });
        run(&mut sub, create, "2026-11-16T00:00:00Z");
        assert_eq!(sub.period_end, Some(at("2026-12-16T00:00:00Z")));
        let cancel = SubscriptionCommand::Cancel(CancelSubscription {
            subscription_id: id,
            at_period_end: true,
        });
        run(&mut sub, cancel, "2026-11-20T00:00:00Z");
        assert_eq!(sub.status(), "cancelled");
        let expire = || {
            SubscriptionCommand::Expire(SubscriptionTarget {
                subscription_id: id,
            })
        };
        assert_eq!(
            run(&mut sub, expire(), "2026-12-15T23:59:59Z"),
            0,
            "not before the end"
        );
        assert_eq!(run(&mut sub, expire(), "2026-12-16T00:00:01Z"), 1);
        assert_eq!(sub.status(), "expired");
        assert_eq!(sub.expired_at, Some(at("2026-12-16T00:00:00Z")));
        let november = sub.active_seconds(at("2026-11-01T00:00:00Z"), at("2026-12-01T00:00:00Z"));
        assert_eq!(november, 15 * 86_400);
        let december = sub.active_seconds(at("2026-12-01T00:00:00Z"), at("2027-01-01T00:00:00Z"));
        assert_eq!(december, 15 * 86_400);
    }

    #[test]
    fn a_renewal_moves_the_period_end_so_the_old_timer_expires_nothing() {
        let id = Uuid::nil();
        let mut sub = Subscription::default();
        let create = SubscriptionCommand::Create(CreateSubscription {
            subscription_id: Some(id),
            product: "ghost".into(),
            variant: "basic".into(),
        });
        run(&mut sub, create, "2026-11-16T00:00:00Z");
        run(
            &mut sub,
            SubscriptionCommand::Renew(SubscriptionTarget {
                subscription_id: id,
            }),
            "2026-12-10T00:00:00Z",
        );
        assert_eq!(sub.period_end, Some(at("2027-01-16T00:00:00Z")));
        let expire = SubscriptionCommand::Expire(SubscriptionTarget {
            subscription_id: id,
        });
        assert_eq!(run(&mut sub, expire, "2026-12-16T00:00:01Z"), 0);
        assert_eq!(sub.status(), "active");
    }
}
