//! The per-tenant cap on live pods, counted race-free: holds at create, releases lazy.
//!
//! Each tenant has one `pod_slots` aggregate
//! (`evt.<tenant>.pod_slots.<pod_slots_id(tenant)>`) holding the ids of the pods it has
//! created. A create appends its pod's `pod.requested` and the slot's `held` in **one
//! atomic batch**, each with its subject's expected sequence: two creates racing for the
//! last slot, on one replica or several, cannot both land — the second meets a conflict,
//! reloads and decides again.
//!
//! A deletion appends nothing here (the reactor that records `pod.deleted` knows nothing
//! of slots). Instead, once the held count has reached the cap, the next create loads
//! each held pod and counts those that still occupy a slot ([`occupies_slot`]: every pod
//! but a deleted one). If one is free after that, the same batch releases the deleted
//! pods and holds the new one; otherwise the create is `quota_exceeded`. A deleted pod
//! never comes back (its aggregate refuses every command, a create of its id included),
//! so a release decided on a deleted pod is never wrong, however late. Pods created
//! before the count existed hold no slot and are not counted.
//!
//! [`PodSlots::decide`] is the pure decision (hold, lazy release, refuse);
//! [`PodCaps::create`] loads, decides and appends.

use std::collections::BTreeSet;
use std::sync::Arc;

use berth_runtime::commands::{execute_across, unavailable};
use berth_runtime::store::{Aggregate, AtomicAppend, Cause, Repository};
use berth_schemas::aggregate::Context;
use berth_schemas::pod::{
    pod_slots_id, PodEvent, PodSlotEvent, PodSlotHeld, PodSlotsReleased, PodStatus,
    POD_SLOTS_AGGREGATE,
};
use berth_schemas::{CommandReply, Rejection, RejectionCode, TenantId};
use futures::{StreamExt, TryStreamExt};
use uuid::Uuid;

use crate::pod::Pod;

/// Held pods loaded at once when the count has reached the cap.
const CONCURRENT_LOADS: usize = 8;

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

/// Pod creates, each with its slot.
pub struct PodCaps {
    pub pods: Arc<Repository<Pod>>,
    pub slots: Arc<Repository<PodSlots>>,
    /// The most live pods a tenant may have.
    pub cap: usize,
}

impl PodCaps {
    /// Creates pod `id` of `tenant` (never `system`): answers a repeated command id from
    /// the record, decides the pod's events, holds its slot (releasing deleted pods' if
    /// the count is at the cap) and appends both in one atomic batch; after a conflict on
    /// either, decides again. A tenant's creates queue on its slots in this process, so
    /// they seldom conflict there.
    pub async fn create<D>(
        &self,
        tenant: &TenantId,
        id: Uuid,
        cause: &Cause,
        decide: D,
    ) -> Result<CommandReply, Rejection>
    where
        D: Fn(&Pod) -> Result<Vec<PodEvent>, Rejection>,
    {
        let slots_id = pod_slots_id(tenant);
        let _tenant_queue = self.slots.lock(slots_id).await;
        let _queued = self.pods.lock(id).await;
        execute_across(&self.pods, tenant, id, cause, None, |pod| {
            let decided = decide(&pod.state);
            async move {
                let pod_events = decided?;
                if pod_events.is_empty() {
                    return Ok(AtomicAppend::new(cause));
                }
                let slots = self
                    .slots
                    .load(tenant, slots_id)
                    .await
                    .map_err(unavailable)?;
                let hold = Hold {
                    pod_id: id,
                    cap: self.cap,
                    deleted: self
                        .deleted(tenant, slots.state.to_check(id, self.cap))
                        .await?,
                };
                let slot_events = slots
                    .state
                    .decide(&hold, &cause.context(chrono::Utc::now()))?;
                Ok(AtomicAppend::new(cause)
                    .add(&self.pods, tenant, id, &pod, &pod_events)
                    .add(&self.slots, tenant, slots_id, &slots, &slot_events))
            }
        })
        .await
    }

    /// Which of `pod_ids` (pods of `tenant`) are deleted, each loaded from the log
    /// through the repository's cache.
    async fn deleted(
        &self,
        tenant: &TenantId,
        pod_ids: Vec<Uuid>,
    ) -> Result<BTreeSet<Uuid>, Rejection> {
        futures::stream::iter(pod_ids)
            .map(|pod_id| async move {
                let pod = self.pods.load(tenant, pod_id).await.map_err(unavailable)?;
                Ok::<_, Rejection>((!occupies_slot(&pod.state)).then_some(pod_id))
            })
            .buffer_unordered(CONCURRENT_LOADS)
            .try_filter_map(|found| async move { Ok(found) })
            .try_collect()
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use berth_schemas::pod::PodDeleted;

    fn context() -> Context {
        Context::at(chrono::Utc::now())
    }

    fn fold(slots: &mut PodSlots, events: Vec<PodSlotEvent>) {
        for event in &events {
            slots.apply(event);
        }
    }

    fn hold(pod_id: Uuid, cap: usize, deleted: &[Uuid]) -> Hold {
        Hold {
            pod_id,
            cap,
            deleted: deleted.iter().copied().collect(),
        }
    }

    /// A tenant holding `n` slots.
    fn holding(n: usize) -> (PodSlots, Vec<Uuid>) {
        let mut slots = PodSlots::default();
        let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
        for id in &ids {
            let events = slots.decide(&hold(*id, n, &[]), &context()).unwrap();
            fold(&mut slots, events);
        }
        (slots, ids)
    }

    #[test]
    fn below_the_cap_a_create_holds_a_slot_without_looking_at_pods() {
        let (slots, _) = holding(2);
        let pod_id = Uuid::now_v7();
        assert!(slots.to_check(pod_id, 3).is_empty(), "nothing to load");
        assert_eq!(
            slots.decide(&hold(pod_id, 3, &[]), &context()).unwrap(),
            vec![PodSlotEvent::Held(PodSlotHeld { pod_id })]
        );
    }

    #[test]
    fn holding_what_is_held_is_no_event() {
        let (slots, ids) = holding(3);
        assert!(slots.to_check(ids[0], 3).is_empty());
        assert!(slots
            .decide(&hold(ids[0], 3, &[]), &context())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn at_the_cap_with_every_pod_live_the_create_is_refused() {
        let (slots, ids) = holding(3);
        let pod_id = Uuid::now_v7();
        let mut everyone = ids.clone();
        everyone.sort();
        assert_eq!(slots.to_check(pod_id, 3), everyone, "every held pod");
        let refused = slots.decide(&hold(pod_id, 3, &[]), &context()).unwrap_err();
        assert_eq!(refused.code, RejectionCode::QuotaExceeded);
        assert!(
            refused.message.contains("3 pods") && refused.message.contains("(3)"),
            "{refused}"
        );
        // Deleted ids that hold no slot free nothing.
        let stranger = Uuid::now_v7();
        assert!(slots
            .decide(&hold(pod_id, 3, &[stranger]), &context())
            .is_err());
    }

    #[test]
    fn at_the_cap_deleted_pods_are_released_lazily_in_the_same_decision() {
        let (mut slots, ids) = holding(4);
        let pod_id = Uuid::now_v7();
        let events = slots
            .decide(&hold(pod_id, 4, &[ids[3], ids[1]]), &context())
            .unwrap();
        let mut dead = vec![ids[1], ids[3]];
        dead.sort();
        assert_eq!(
            events,
            vec![
                PodSlotEvent::Released(PodSlotsReleased { pod_ids: dead }),
                PodSlotEvent::Held(PodSlotHeld { pod_id }),
            ]
        );
        fold(&mut slots, events);
        assert_eq!(slots.held(), 3, "two released, one held");
        // One slot is left, without looking at pods again.
        let next = Uuid::now_v7();
        assert!(slots.to_check(next, 4).is_empty());
        let events = slots.decide(&hold(next, 4, &[]), &context()).unwrap();
        fold(&mut slots, events);
        assert!(slots
            .decide(&hold(Uuid::now_v7(), 4, &[]), &context())
            .is_err());
    }

    #[test]
    fn a_lowered_cap_counts_live_pods_not_held_slots() {
        let (slots, ids) = holding(5);
        // Cap 3, two of five deleted: three live, still full.
        let refused = slots
            .decide(&hold(Uuid::now_v7(), 3, &[ids[0], ids[1]]), &context())
            .unwrap_err();
        assert!(refused.message.contains("3 pods"), "{refused}");
        // Three deleted: two live, room for one.
        let events = slots
            .decide(
                &hold(Uuid::now_v7(), 3, &[ids[0], ids[1], ids[2]]),
                &context(),
            )
            .unwrap();
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn only_a_deleted_pod_frees_its_slot() {
        use berth_schemas::pod::{PodDeleteRequested, PodStep};
        let mut pod = Pod::default();
        assert!(!occupies_slot(&pod), "no pod");
        pod.status = Some(PodStatus::Requested);
        assert!(occupies_slot(&pod));
        for status in [
            PodStatus::Running,
            PodStatus::Stopped,
            PodStatus::Expired,
            PodStatus::Failed,
            PodStatus::Degraded,
        ] {
            pod.status = Some(status);
            assert!(occupies_slot(&pod), "{status}");
        }
        pod.apply(&PodEvent::Healthy(PodStep {}));
        pod.apply(&PodEvent::DeleteRequested(PodDeleteRequested {
            keep_volume: true,
            reason: None,
        }));
        assert!(occupies_slot(&pod), "deleting is not deleted");
        pod.apply(&PodEvent::Deleted(PodDeleted { volume_kept: true }));
        assert!(!occupies_slot(&pod));
    }
}
