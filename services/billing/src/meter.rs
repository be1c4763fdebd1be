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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use berth_runtime::store::{Aggregate, AppendError, Cause, NoCommand, Repository, StoredEvent};
use berth_schemas::aggregate::Context;
use berth_schemas::billing::{MeterEvent, UsageRecorded};
use berth_schemas::subjects::event_subject;
use berth_schemas::vm::{Plan, VmEvent};
use berth_schemas::{Actor, Rejection, TenantId};
use chrono::{DateTime, Duration, DurationRound, Utc};
use futures::StreamExt;
use tokio::sync::Mutex;
use uuid::Uuid;

/// At most this many records per append (one atomic batch).
const RECORDS_PER_APPEND: usize = 500;
/// VMs metered at once.
const VMS_AT_ONCE: usize = 32;

/// The hours of a VM that are recorded.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    pub recorded: BTreeMap<DateTime<Utc>, UsageRecorded>,
}

impl Aggregate for Meter {
    const KIND: &'static str = berth_schemas::billing::METER;
    type Command = NoCommand;
    type Event = MeterEvent;

    fn apply(&mut self, event: &MeterEvent) {
        let MeterEvent::Recorded(record) = event;
        self.recorded.insert(record.hour, record.clone());
    }

    fn decide(
        &self,
        command: &NoCommand,
        _context: &Context,
    ) -> Result<Vec<MeterEvent>, Rejection> {
        match *command {}
    }
}

/// A VM's size while it ran.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Size {
    pub plan: String,
    pub vcpus: u32,
    pub memory_mb: u32,
}

/// One stretch of running time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    pub start: DateTime<Utc>,
    /// `None` while it still runs.
    pub end: Option<DateTime<Utc>>,
    pub size: Size,
}

/// A VM's running time folded from its events.
#[derive(Debug, Clone, Default)]
pub struct Runtime {
    pub last_sequence: u64,
    size: Option<Size>,
    running_since: Option<DateTime<Utc>>,
    pub intervals: Vec<Interval>,
}

impl Runtime {
    /// Folds one VM event that happened at `at`.
    pub fn observe(&mut self, event: &VmEvent, at: DateTime<Utc>) {
        match event {
            VmEvent::Requested(spec) => {
                self.size = Some(Size {
                    plan: plan_name(spec.plan),
                    vcpus: spec.vcpus,
                    memory_mb: spec.memory_mb,
                })
            }
            VmEvent::ResizeRequested(size) => {
                self.size = Some(Size {
                    plan: plan_name(size.plan),
                    vcpus: size.vcpus,
                    memory_mb: size.memory_mb,
                })
            }
            VmEvent::Started(_) | VmEvent::Restarted(_) | VmEvent::Recreated(_) => {
                self.running_since.get_or_insert(at);
            }
            VmEvent::Stopped(_)
            | VmEvent::Destroyed(_)
            | VmEvent::Failed(_)
            | VmEvent::Lost(_)
            | VmEvent::RecreateRequested(_) => {
                if let (Some(start), Some(size)) = (self.running_since.take(), &self.size) {
                    self.intervals.push(Interval {
                        start,
                        end: Some(at),
                        size: size.clone(),
                    });
                }
            }
            _ => {}
        }
    }

    /// Every interval, the one still running included (open-ended).
    pub fn all_intervals(&self) -> Vec<Interval> {
        let mut all = self.intervals.clone();
        if let (Some(start), Some(size)) = (self.running_since, &self.size) {
            all.push(Interval {
                start,
                end: None,
                size: size.clone(),
            });
        }
        all
    }

    /// Seconds run within each whole hour that ends at or before `until`, by hour; an
    /// hour holds one size (VMs are resized only while stopped).
    pub fn hours_until(&self, until: DateTime<Utc>) -> BTreeMap<DateTime<Utc>, (u32, Size)> {
        let mut hours: BTreeMap<DateTime<Utc>, (u32, Size)> = BTreeMap::new();
        for interval in self.all_intervals() {
            let end = interval.end.unwrap_or(until).min(until);
            let mut hour = floor_hour(interval.start);
            while hour < end && hour + Duration::hours(1) <= until {
                let next = hour + Duration::hours(1);
                let from = interval.start.max(hour);
                let to = end.min(next);
                if to > from {
                    let seconds = u32::try_from((to - from).num_seconds()).unwrap_or(0);
                    let entry = hours.entry(hour).or_insert((0, interval.size.clone()));
                    entry.0 = (entry.0 + seconds).min(3600);
                }
                hour = next;
            }
        }
        hours.retain(|_, (seconds, _)| *seconds > 0);
        hours
    }
}

/// `small`, `medium`, `large`, or `custom` for an explicit size.
pub fn plan_name(plan: Option<Plan>) -> String {
    match plan {
        Some(Plan::Small) => "small",
        Some(Plan::Medium) => "medium",
        Some(Plan::Large) => "large",
        None => "custom",
    }
    .to_owned()
}

/// The start of the hour `at` is in.
pub fn floor_hour(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(Duration::hours(1)).unwrap_or(at)
}

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
    pub async fn meter_until(&self, until: DateTime<Utc>) -> anyhow::Result<MeteringReport> {
        let store = self.meters.store();
        let vms = store.all_aggregates(berth_schemas::vm::AGGREGATE).await?;
        let count = vms.len();
        let recorded: Vec<usize> = futures::stream::iter(vms)
            .map(|(tenant, vm_id)| async move { self.meter_vm(&tenant, vm_id, until).await })
            .buffer_unordered(VMS_AT_ONCE)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
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
    ) -> anyhow::Result<usize> {
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
                Err(e) => return Err(anyhow::anyhow!("recording usage of vm {vm_id}: {e}")),
            }
        }
        Ok(recorded)
    }
}

fn observe(runtime: &mut Runtime, event: &StoredEvent) -> anyhow::Result<()> {
    let decoded: VmEvent = event.decode()?;
    runtime.observe(&decoded, event.meta.time);
    runtime.last_sequence = event.sequence;
    Ok(())
}

/// The hours recorded for a VM, by hour.
pub fn recorded_hours(meter: &Meter) -> BTreeSet<DateTime<Utc>> {
    meter.recorded.keys().copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_schemas::vm::{Empty, VmRequested};

    fn at(time: &str) -> DateTime<Utc> {
        format!("2026-11-02T{time}Z").parse().unwrap()
    }

    fn runtime(steps: &[(&str, VmEvent)]) -> Runtime {
        let mut runtime = Runtime::default();
        runtime.observe(
            &VmEvent::Requested(VmRequested {
                name: "web".into(),
                vcpus: 2,
                memory_mb: 4096,
                disk_gb: 40,
                image: "debian-12".into(),
                plan: Some(Plan::Medium),
                region: None,
            }),
            at("09:00:00"),
        );
        for (time, event) in steps {
            runtime.observe(event, at(time));
        }
        runtime
    }

    #[test]
    fn running_time_is_cut_into_hours_to_the_second() {
        // 10:20:00–11:45:00 and 12:00:00–14:00:00: 3 h 25 min in all, a stop in between.
        let runtime = runtime(&[
            ("10:20:00", VmEvent::Started(Empty {})),
            ("11:45:00", VmEvent::Stopped(Empty {})),
            ("12:00:00", VmEvent::Started(Empty {})),
            ("14:00:00", VmEvent::Stopped(Empty {})),
        ]);
        let hours = runtime.hours_until(at("15:00:00"));
        let seconds: Vec<(String, u32)> = hours
            .iter()
            .map(|(hour, (seconds, _))| (hour.format("%H").to_string(), *seconds))
            .collect();
        assert_eq!(
            seconds,
            vec![
                ("10".into(), 2400),
                ("11".into(), 2700),
                ("12".into(), 3600),
                ("13".into(), 3600)
            ]
        );
        assert_eq!(seconds.iter().map(|(_, s)| s).sum::<u32>(), 12_300);
        assert_eq!(hours.values().next().unwrap().1.plan, "medium");
    }

    #[test]
    fn an_hour_is_metered_only_once_it_has_ended() {
        let runtime = runtime(&[("10:30:00", VmEvent::Started(Empty {}))]);
        let hours = runtime.hours_until(at("11:59:59"));
        assert_eq!(
            hours.len(),
            1,
            "10:00–11:00 only: 11:00–12:00 has not ended"
        );
        assert_eq!(hours.values().next().unwrap().0, 1800);
        assert_eq!(runtime.hours_until(at("12:00:00")).len(), 2);
    }

    #[test]
    fn restarts_keep_running_and_recreates_pause_the_meter() {
        let runtime = runtime(&[
            ("10:00:00", VmEvent::Started(Empty {})),
            ("10:10:00", VmEvent::Restarted(Empty {})),
            ("10:20:00", VmEvent::RecreateRequested(Empty {})),
            (
                "10:30:00",
                VmEvent::Recreated(berth_schemas::vm::VmProvisioned {
                    provider: "sim".into(),
                    host: "h".into(),
                    provider_ref: "r".into(),
                }),
            ),
            ("10:40:00", VmEvent::Destroyed(Empty {})),
        ]);
        let hours = runtime.hours_until(at("11:00:00"));
        assert_eq!(hours.values().next().unwrap().0, 30 * 60);
    }
}
