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
use berth_schemas::pod::{pod_slots_id, PodEvent};
use berth_schemas::{CommandReply, Rejection, TenantId};
use futures::{StreamExt, TryStreamExt};
use uuid::Uuid;

use crate::pod::Pod;

/// Held pods loaded at once when the count has reached the cap.
const CONCURRENT_LOADS: usize = 8;

pub use berth_pod_lifecycle_core::slots::{occupies_slot, too_many_pods, Hold, PodSlots};

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
