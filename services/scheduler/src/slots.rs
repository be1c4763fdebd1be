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
use berth_runtime::store::{Aggregate, AtomicAppend, Cause, Loaded, Repository};
use berth_schemas::schedule::{slots_id, ScheduleEvent};
use berth_schemas::{CommandReply, Rejection, TenantId};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use uuid::Uuid;

use crate::clock::Clock;
use crate::schedule::Schedule;

pub use berth_scheduler_core::slots::{slot_change, SlotChange, Slots};

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
