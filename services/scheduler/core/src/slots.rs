//! A tenant's schedule slots (`evt.<tenant>.schedule_slots.<id>`): how many schedules
//! and timers it holds, counted in the same atomic batch as each schedule change.

use berth_schemas::aggregate::{Aggregate, Context};
use berth_schemas::schedule::{
    over_quota, ScheduleEvent, SlotEvent, SlotHeld, SlotKind, SlotReleased, SLOTS_AGGREGATE,
};
use berth_schemas::Rejection;
use std::collections::BTreeMap;
use uuid::Uuid;

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

#[cfg(test)]
mod tests;
