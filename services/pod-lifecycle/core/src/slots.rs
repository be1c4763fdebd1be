//! A tenant's pod slots (`evt.<tenant>.pod_slots.<id>`): at most `cap` live pods. A
//! create holds a slot in the same atomic batch as its pod; at the cap, the slots of
//! pods found deleted are released first.

use std::collections::BTreeSet;

use berth_schemas::aggregate::{Aggregate, Context};
use berth_schemas::pod::{
    PodSlotEvent, PodSlotHeld, PodSlotsReleased, PodStatus, POD_SLOTS_AGGREGATE,
};
use berth_schemas::{Rejection, RejectionCode};
use uuid::Uuid;

use crate::pod::Pod;

/// A create's claim on a slot of its tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub pod_id: Uuid,
    /// The most live pods the tenant may have.
    pub cap: usize,
    /// Of the held pods, those found deleted ([`PodSlots::to_check`] says which to look
    /// at: none below the cap).
    pub deleted: BTreeSet<Uuid>,
}

/// A tenant's held slots, folded from its `pod_slots` events.
#[derive(Debug, Clone, Default)]
pub struct PodSlots {
    held: BTreeSet<Uuid>,
}

impl PodSlots {
    /// How many slots are held, by live pods and by deleted ones not yet released.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The held pods whose state a hold of `pod_id` under `cap` depends on: every held
    /// pod once the count has reached the cap, none before (and none for a pod that
    /// holds its slot already).
    pub fn to_check(&self, pod_id: Uuid, cap: usize) -> Vec<Uuid> {
        if self.held.contains(&pod_id) || self.held.len() < cap {
            return Vec::new();
        }
        self.held.iter().copied().collect()
    }
}

impl Aggregate for PodSlots {
    const KIND: &'static str = POD_SLOTS_AGGREGATE;
    type Command = Hold;
    type Event = PodSlotEvent;

    fn apply(&mut self, event: &PodSlotEvent) {
        match event {
            PodSlotEvent::Held(held) => {
                self.held.insert(held.pod_id);
            }
            PodSlotEvent::Released(released) => {
                for pod_id in &released.pod_ids {
                    self.held.remove(pod_id);
                }
            }
        }
    }

    /// Below the cap, a hold; at the cap, the deleted pods' release and a hold if that
    /// frees a slot, else `quota_exceeded`. Holding what is held is no event.
    fn decide(&self, hold: &Hold, _context: &Context) -> Result<Vec<PodSlotEvent>, Rejection> {
        if self.held.contains(&hold.pod_id) {
            return Ok(Vec::new());
        }
        let held = PodSlotEvent::Held(PodSlotHeld {
            pod_id: hold.pod_id,
        });
        if self.held.len() < hold.cap {
            return Ok(vec![held]);
        }
        let dead: Vec<Uuid> = self
            .held
            .iter()
            .filter(|pod_id| hold.deleted.contains(pod_id))
            .copied()
            .collect();
        let live = self.held.len() - dead.len();
        if live >= hold.cap {
            return Err(too_many_pods(live, hold.cap));
        }
        Ok(vec![
            PodSlotEvent::Released(PodSlotsReleased { pod_ids: dead }),
            held,
        ])
    }
}

/// The refusal when a tenant has `live` pods and may have `cap`.
pub fn too_many_pods(live: usize, cap: usize) -> Rejection {
    Rejection::new(
        RejectionCode::QuotaExceeded,
        format!(
            "the tenant has {live} pods, the most a tenant may have ({cap}); delete one \
             first (its slot is free once the pod is deleted)"
        ),
    )
}

/// Whether a pod takes one of its tenant's slots: every pod that exists and is not
/// deleted (a stopped, expired, failed or degraded pod still does).
pub fn occupies_slot(pod: &Pod) -> bool {
    !matches!(pod.status, None | Some(PodStatus::Deleted))
}

#[cfg(test)]
mod tests;
