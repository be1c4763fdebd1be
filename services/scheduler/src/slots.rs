//! Per-tenant caps on schedules and timers, counted race-free.
//!
//! Each tenant other than `system` has one `schedule_slots` aggregate
//! (`evt.<tenant>.schedule_slots.<slots_id(tenant)>`) holding the ids of its live
//! schedules, each as a cron schedule or a one-shot ([`SlotKind`]). Every schedule event
//! that makes a schedule live (`set`) or ends it (`deleted`, a one-shot's `fired`) goes
//! into the log in **one atomic batch** with the matching `held` / `released`, each with
//! its subject's expected sequence: two creates racing for the last slot, on one replica
//! or several, cannot both land — the second meets a conflict, reloads and is refused
//! `quota_exceeded`. The count is never a scan of the log and never behind it.
//!
//! The slot a schedule holds is derived from the schedule's own state before and after
//! its events ([`slot_change`]), not from which command ran, so every path (create,
//! update, `timer.set`, delete, cancel, a one-shot's fire) keeps the count right, and a
//! change that holds what is already held is no event at all. Schedules created before
//! the count existed hold no slot: releasing them changes nothing, and the count covers
//! every schedule created since.

use berth_runtime::commands::{execute_across, unavailable};
use berth_runtime::store::{Aggregate, AtomicAppend, Cause, Context, Loaded, Repository};
use berth_schemas::schedule::{
    over_quota, slots_id, ScheduleEvent, SlotEvent, SlotHeld, SlotKind, SlotReleased,
    SLOTS_AGGREGATE,
};
use berth_schemas::{CommandReply, Rejection, TenantId};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;
use uuid::Uuid;

use crate::clock::Clock;
use crate::schedule::Schedule;

/// What one schedule's events do to its tenant's slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotChange {
    /// The schedule is live as `kind` (newly, or as another kind than before).
    Hold { schedule_id: Uuid, kind: SlotKind },
    /// The schedule is no longer live.
    Release { schedule_id: Uuid },
}

/// A tenant's held slots, folded from its `schedule_slots` events.
#[derive(Debug, Clone, Default)]
pub struct Slots {
    held: BTreeMap<Uuid, SlotKind>,
}

impl Slots {
    /// How many slots of `kind` are held.
    pub fn count(&self, kind: SlotKind) -> usize {
        self.held.values().filter(|held| **held == kind).count()
    }
}

impl Aggregate for Slots {
    const KIND: &'static str = SLOTS_AGGREGATE;
    type Command = SlotChange;
    type Event = SlotEvent;

    fn apply(&mut self, event: &SlotEvent) {
        match event {
            SlotEvent::Held(held) => {
                self.held.insert(held.schedule_id, held.kind);
            }
            SlotEvent::Released(released) => {
                self.held.remove(&released.schedule_id);
            }
        }
    }

    /// Holding what is held, or releasing what is not, is no event; a hold beyond the
    /// kind's cap is `quota_exceeded`.
    fn decide(&self, change: &SlotChange, _context: &Context) -> Result<Vec<SlotEvent>, Rejection> {
        match *change {
            SlotChange::Hold { schedule_id, kind } => {
                if self.held.get(&schedule_id) == Some(&kind) {
                    return Ok(Vec::new());
                }
                let held = self.count(kind);
                if held >= kind.cap() {
                    return Err(over_quota(kind, held));
                }
                Ok(vec![SlotEvent::Held(SlotHeld { schedule_id, kind })])
            }
            SlotChange::Release { schedule_id } => Ok(if self.held.contains_key(&schedule_id) {
                vec![SlotEvent::Released(SlotReleased { schedule_id })]
            } else {
                Vec::new()
            }),
        }
    }
}

/// The change `events` make to the slot of schedule `id`, which was `before`.
pub fn slot_change(id: Uuid, before: &Schedule, events: &[ScheduleEvent]) -> Option<SlotChange> {
    let mut after = before.clone();
    for event in events {
        after.apply(event);
    }
    match (before.slot(), after.slot()) {
        (was, Some(kind)) if was != Some(kind) => Some(SlotChange::Hold {
            schedule_id: id,
            kind,
        }),
        (Some(_), None) => Some(SlotChange::Release { schedule_id: id }),
        _ => None,
    }
}

/// Why [`Ledger::changes`] has nothing to append.
#[derive(Debug)]
pub enum LedgerError {
    /// The tenant's cap: final, nothing to retry.
    Refused(Rejection),
    /// The tenant's slots could not be loaded.
    Store(berth_runtime::Error),
}

/// The schedules and the slots they hold: every schedule append goes through here.
pub struct Ledger {
    pub schedules: Arc<Repository<Schedule>>,
    pub slots: Arc<Repository<Slots>>,
    pub clock: Arc<dyn Clock>,
}

fn counted(tenant: &TenantId) -> bool {
    *tenant != TenantId::system()
}

impl Ledger {
    /// What appending `events` of schedule `id` takes: the events, and for a tenant
    /// other than `system` the slot change they make, to go out in one atomic batch.
    pub async fn changes(
        &self,
        tenant: &TenantId,
        id: Uuid,
        loaded: &Arc<Loaded<Schedule>>,
        cause: &Cause,
        events: &[ScheduleEvent],
    ) -> Result<AtomicAppend<'_>, LedgerError> {
        let changes = AtomicAppend::new(cause).add(&self.schedules, tenant, id, loaded, events);
        let change = counted(tenant)
            .then(|| slot_change(id, &loaded.state, events))
            .flatten();
        let Some(change) = change else {
            return Ok(changes);
        };
        let slots_id = slots_id(tenant);
        let slots = self
            .slots
            .load(tenant, slots_id)
            .await
            .map_err(LedgerError::Store)?;
        let context = cause.context(self.clock.now());
        let slot_events = slots
            .state
            .decide(&change, &context)
            .map_err(LedgerError::Refused)?;
        Ok(changes.add(&self.slots, tenant, slots_id, &slots, &slot_events))
    }

    /// Handles one command on schedule `id`: answers a repeated command id from the
    /// record, decides on the schedule as loaded (with the clock's now), appends with
    /// the slot change it makes ([`Self::changes`]), and decides again after a conflict.
    /// A tenant's commands queue on its slots in this process, so they seldom conflict
    /// there.
    pub async fn execute<D>(
        &self,
        tenant: &TenantId,
        id: Uuid,
        cause: &Cause,
        decide: D,
    ) -> Result<CommandReply, Rejection>
    where
        D: Fn(&Loaded<Schedule>, DateTime<Utc>) -> Result<Vec<ScheduleEvent>, Rejection>,
    {
        let _tenant_queue = match counted(tenant) {
            true => Some(self.slots.lock(slots_id(tenant)).await),
            false => None,
        };
        let _queued = self.schedules.lock(id).await;
        execute_across(&self.schedules, tenant, id, cause, None, |loaded| {
            let decided = decide(&loaded, self.clock.now());
            async move {
                let events = decided?;
                if events.is_empty() {
                    return Ok(AtomicAppend::new(cause));
                }
                match self.changes(tenant, id, &loaded, cause, &events).await {
                    Ok(changes) => Ok(changes),
                    Err(LedgerError::Refused(rejection)) => Err(rejection),
                    Err(LedgerError::Store(e)) => Err(unavailable(e)),
                }
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use berth_schemas::schedule::{
        Action, CatchUp, ScheduleChanged, SetSchedule, When, MAX_TENANT_SCHEDULES,
    };
    use berth_schemas::RejectionCode;

    fn context() -> Context {
        Context::at(chrono::Utc::now())
    }

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn spec(when: When) -> SetSchedule {
        SetSchedule {
            name: "job".into(),
            when,
            action: Action::Emit,
            catch_up: CatchUp::FireOnce,
            max_catch_up: 1,
            payload: serde_json::Value::Null,
            jitter_secs: 0,
        }
    }

    fn cron() -> When {
        When::Cron {
            expression: "0 7 * * *".into(),
            timezone: "UTC".into(),
        }
    }

    fn once() -> When {
        When::At {
            at: utc("2026-01-01T00:05:00Z"),
        }
    }

    fn folded(events: &[ScheduleEvent]) -> Schedule {
        let mut schedule = Schedule::default();
        for event in events {
            schedule.apply(event);
        }
        schedule
    }

    #[test]
    fn a_schedule_holds_one_slot_while_it_lives() {
        let id = Uuid::now_v7();
        let now = utc("2026-01-01T00:00:00Z");
        let empty = Schedule::default();
        let created = empty.set(&spec(cron()), false, now).unwrap();
        assert_eq!(
            slot_change(id, &empty, &created),
            Some(SlotChange::Hold {
                schedule_id: id,
                kind: SlotKind::Schedule
            })
        );
        let live = folded(&created);
        let paused = vec![ScheduleEvent::Paused(ScheduleChanged {})];
        assert_eq!(slot_change(id, &live, &paused), None, "paused still holds");
        let fired = live.fire(now, now, false, false, 1).unwrap();
        assert_eq!(slot_change(id, &live, &fired), None, "a cron goes on");
        let to_once = live.set(&spec(once()), true, now).unwrap();
        assert_eq!(
            slot_change(id, &live, &to_once),
            Some(SlotChange::Hold {
                schedule_id: id,
                kind: SlotKind::Timer
            }),
            "updated to a one-shot: counted as one"
        );
        let deleted = vec![ScheduleEvent::Deleted(ScheduleChanged {})];
        assert_eq!(
            slot_change(id, &live, &deleted),
            Some(SlotChange::Release { schedule_id: id })
        );

        let timer = folded(&empty.set(&spec(once()), false, now).unwrap());
        let due = utc("2026-01-01T00:05:00Z");
        let fired = timer.fire(due, due, false, false, 1).unwrap();
        assert_eq!(
            slot_change(id, &timer, &fired),
            Some(SlotChange::Release { schedule_id: id }),
            "a one-shot that fired is done"
        );
        let manual = timer.fire(now, now, false, true, 1).unwrap();
        assert_eq!(
            slot_change(id, &timer, &manual),
            None,
            "fire_now is not its fire"
        );
    }

    #[test]
    fn the_cap_refuses_the_next_hold_and_repeats_are_free() {
        let mut slots = Slots::default();
        for _ in 0..MAX_TENANT_SCHEDULES {
            let hold = SlotChange::Hold {
                schedule_id: Uuid::now_v7(),
                kind: SlotKind::Schedule,
            };
            for event in slots.decide(&hold, &context()).unwrap() {
                slots.apply(&event);
            }
        }
        let next = SlotChange::Hold {
            schedule_id: Uuid::now_v7(),
            kind: SlotKind::Schedule,
        };
        let refused = slots.decide(&next, &context()).unwrap_err();
        assert_eq!(refused.code, RejectionCode::QuotaExceeded);
        assert!(refused.message.contains("100 cron schedules"), "{refused}");
        let timer = SlotChange::Hold {
            schedule_id: Uuid::now_v7(),
            kind: SlotKind::Timer,
        };
        assert_eq!(
            slots.decide(&timer, &context()).unwrap().len(),
            1,
            "timers count apart"
        );
        let held = *slots.held.keys().next().unwrap();
        let again = SlotChange::Hold {
            schedule_id: held,
            kind: SlotKind::Schedule,
        };
        assert!(slots.decide(&again, &context()).unwrap().is_empty());
        let release = SlotChange::Release { schedule_id: held };
        for event in slots.decide(&release, &context()).unwrap() {
            slots.apply(&event);
        }
        assert_eq!(
            slots.decide(&next, &context()).unwrap().len(),
            1,
            "room again"
        );
        assert!(
            slots.decide(&release, &context()).unwrap().is_empty(),
            "released once"
        );
    }
}
