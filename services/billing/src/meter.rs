//! Metering: the running time of every VM, cut into hourly usage records.
//!
//! A VM runs from `started`, `restarted` or `recreated` until `stopped`, `destroyed`,
//! `failed`, `lost` or `recreate_requested` (its machine is gone while it is made
//! again), by the events' times. The meter reads each VM's events from the log itself —
//! not from a projection, so it is never behind — and for every whole hour up to a limit
//! appends `meter.recorded` (seconds of that hour, the VM's plan and size) to
//! `evt.<tenant>.meter.<vm id>`. The `meter` aggregate remembers the hours it recorded
//! and the event ids derive from (VM, hour), so metering an hour again, on a restart or on
//! another replica, records nothing twice. Hours are metered once they ended, a settling
//! delay after (an event stamped before the hour's end reaches the log within it).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use berth_runtime::store::{AppendError, Cause, Repository, StoredEvent};
use berth_schemas::billing::{MeterEvent, UsageRecorded};
use berth_schemas::subjects::event_subject;
use berth_schemas::vm::VmEvent;
use berth_schemas::{Actor, TenantId};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::error::Error;

/// At most this many records per append (one atomic batch).
const RECORDS_PER_APPEND: usize = 500;
/// VMs metered at once.
const VMS_AT_ONCE: usize = 32;

pub use berth_billing_core::meter::{floor_hour, plan_name, Interval, Meter, Runtime, Size};

/// Meters VMs from the log.
pub struct Metering {
    meters: Arc<Repository<Meter>>,
    /// Each VM's running time folded so far, by VM id.
    runtimes: Mutex<HashMap<Uuid, Runtime>>,
}

/// What one metering run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MeteringReport {
    pub vms: usize,
    pub records: usize,
}

impl Metering {
    pub fn new(meters: Arc<Repository<Meter>>) -> Self {
        Self {
            meters,
            runtimes: Mutex::default(),
        }
    }

    pub fn meters(&self) -> &Arc<Repository<Meter>> {
        &self.meters
    }

    /// Records every whole hour ending at or before `until` that is not recorded yet,
    /// for every VM in the log.
    pub async fn meter_until(&self, until: DateTime<Utc>) -> crate::Result<MeteringReport> {
        let store = self.meters.store();
        let vms = store.all_aggregates(berth_schemas::vm::AGGREGATE).await?;
        let count = vms.len();
        let recorded: Vec<usize> = futures::stream::iter(vms)
            .map(|(tenant, vm_id)| async move { self.meter_vm(&tenant, vm_id, until).await })
            .buffer_unordered(VMS_AT_ONCE)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<crate::Result<_>>()?;
        Ok(MeteringReport {
            vms: count,
            records: recorded.into_iter().sum(),
        })
    }

    async fn meter_vm(
        &self,
        tenant: &TenantId,
        vm_id: Uuid,
        until: DateTime<Utc>,
    ) -> crate::Result<usize> {
        let hours = {
            let mut runtimes = self.runtimes.lock().await;
            let runtime = runtimes.entry(vm_id).or_default();
            let subject = event_subject(tenant, berth_schemas::vm::AGGREGATE, vm_id);
            let fresh = self
                .meters
                .store()
                .read(&subject, runtime.last_sequence)
                .await?;
            for event in &fresh {
                observe(runtime, event)?;
            }
            runtime.hours_until(until)
        };
        let meter = self.meters.load(tenant, vm_id).await?;
        let missing: Vec<MeterEvent> = hours
            .into_iter()
            .filter(|(hour, _)| !meter.state.recorded.contains_key(hour))
            .map(|(hour, (seconds, size))| {
                MeterEvent::Recorded(UsageRecorded {
                    hour,
                    seconds,
                    plan: size.plan,
                    vcpus: size.vcpus,
                    memory_mb: size.memory_mb,
                })
            })
            .collect();
        let mut recorded = 0;
        for chunk in missing.chunks(RECORDS_PER_APPEND) {
            let first_hour = match &chunk[0] {
                MeterEvent::Recorded(record) => record.hour,
            };
            let cause_id = Uuid::new_v5(&vm_id, first_hour.to_rfc3339().as_bytes());
            let cause = Cause {
                id: cause_id,
                actor: Actor::service("billing"),
                correlation_id: cause_id,
                traceparent: None,
            };
            let loaded = self.meters.load(tenant, vm_id).await?;
            match self
                .meters
                .append(tenant, vm_id, &loaded, &cause, chunk.to_vec())
                .await
            {
                Ok(_) => recorded += chunk.len(),
                // Another replica recorded these hours first.
                Err(AppendError::Conflict { .. } | AppendError::Duplicate) => return Ok(recorded),
                Err(source) => return Err(Error::Usage { vm_id, source }),
            }
        }
        Ok(recorded)
    }
}

fn observe(runtime: &mut Runtime, event: &StoredEvent) -> crate::Result<()> {
    let decoded: VmEvent = event.decode()?;
    runtime.observe(&decoded, event.meta.time);
    runtime.last_sequence = event.sequence;
    Ok(())
}

/// The hours recorded for a VM, by hour.
pub fn recorded_hours(meter: &Meter) -> BTreeSet<DateTime<Utc>> {
    meter.recorded.keys().copied().collect()
}
