//! A VM's running time, folded from its events and cut into hours, and the `meter`
//! aggregate that remembers which hours are recorded (`evt.<tenant>.meter.<vm id>`).
//! A VM runs from `started`, `restarted` or `recreated` until `stopped`, `destroyed`,
//! `failed`, `lost` or `recreate_requested`, by the events' times.

use std::collections::BTreeMap;

use berth_schemas::aggregate::{Aggregate, Context, NoCommand};
use berth_schemas::billing::{MeterEvent, UsageRecorded};
use berth_schemas::vm::{Plan, VmEvent};
use berth_schemas::Rejection;
use chrono::{DateTime, Duration, DurationRound, Utc};

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

#[cfg(test)]
mod tests;
