//! The `schedule` aggregate: a cron schedule or a one-shot timer, and the due times it
//! has fired for.

use berth_schemas::aggregate::{Aggregate, Context};
use berth_schemas::schedule::{
    CatchUp, ScheduleChanged, ScheduleCommand, ScheduleEvent, ScheduleFired, ScheduleSet,
    SetSchedule, SlotKind,
};
use berth_schemas::{Rejection, RejectionCode};
use chrono::{DateTime, Utc};

use crate::timing::Timing;

/// Where a schedule is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Status {
    #[default]
    Unknown,
    Active,
    Paused,
    /// A one-shot timer that fired.
    Done,
    Deleted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Done => "done",
            Self::Deleted => "deleted",
        }
    }
}

/// A schedule as folded from its events.
#[derive(Debug, Clone, Default)]
pub struct Schedule {
    pub status: Status,
    pub spec: Option<ScheduleSet>,
    /// The latest due time fired on schedule (manual fires do not count).
    pub last_due: Option<DateTime<Utc>>,
    pub fires: u64,
}

impl Aggregate for Schedule {
    const KIND: &'static str = berth_schemas::schedule::AGGREGATE;
    type Command = ScheduleCommand;
    type Event = ScheduleEvent;

    fn apply(&mut self, event: &ScheduleEvent) {
        match event {
            ScheduleEvent::Set(spec) => {
                self.spec = Some(spec.clone());
                self.status = Status::Active;
                self.last_due = None;
            }
            ScheduleEvent::Paused(_) => self.status = Status::Paused,
            ScheduleEvent::Resumed(_) => self.status = Status::Active,
            ScheduleEvent::Deleted(_) => self.status = Status::Deleted,
            ScheduleEvent::Fired(fired) => {
                self.fires += 1;
                if !fired.manual {
                    self.last_due = Some(fired.due_at);
                    if matches!(
                        self.spec.as_ref().map(|s| &s.when),
                        Some(berth_schemas::schedule::When::At { .. })
                    ) {
                        self.status = Status::Done;
                    }
                }
            }
        }
    }

    /// Create, update, pause, resume, delete. (`fire_now` needs the clock: see
    /// [`Schedule::fire`].)
    fn decide(
        &self,
        command: &ScheduleCommand,
        _context: &Context,
    ) -> Result<Vec<ScheduleEvent>, Rejection> {
        use Status::*;
        let refuse = || {
            Err(Rejection::invalid_state(format!(
                "cannot {} a schedule that is {}",
                berth_schemas::CommandSet::action(command),
                self.status.as_str()
            )))
        };
        match (command, self.status) {
            (ScheduleCommand::Create(_) | ScheduleCommand::Update(_), _) => Err(
                Rejection::invalid("create and update are decided with the clock: Schedule::set"),
            ),
            (_, Unknown | Deleted) => {
                Err(Rejection::new(RejectionCode::NotFound, "no such schedule"))
            }
            (ScheduleCommand::Pause(_), Active) => {
                Ok(vec![ScheduleEvent::Paused(ScheduleChanged {})])
            }
            (ScheduleCommand::Resume(_), Paused) => {
                Ok(vec![ScheduleEvent::Resumed(ScheduleChanged {})])
            }
            (ScheduleCommand::Delete(_), _) => Ok(vec![ScheduleEvent::Deleted(ScheduleChanged {})]),
            _ => refuse(),
        }
    }
}

impl Schedule {
    /// The slot a live schedule holds in its tenant's count (a cron schedule or a
    /// one-shot); `None` once it is deleted or a one-shot has fired.
    pub fn slot(&self) -> Option<SlotKind> {
        match (self.status, &self.spec) {
            (Status::Active | Status::Paused, Some(spec)) => Some(SlotKind::of(&spec.when)),
            _ => None,
        }
    }

    /// `create` (a no-op when the same spec is in force), `update`, `timer.set`: the
    /// spec takes effect `now`.
    pub fn set(
        &self,
        set: &SetSchedule,
        replace: bool,
        now: DateTime<Utc>,
    ) -> Result<Vec<ScheduleEvent>, Rejection> {
        Timing::parse(&set.when).map_err(Rejection::invalid)?;
        let live = !matches!(self.status, Status::Unknown | Status::Deleted);
        if live && !replace {
            let same = self.spec.as_ref().is_some_and(|spec| {
                spec.when == set.when
                    && spec.action == set.action
                    && spec.catch_up == set.catch_up
                    && spec.max_catch_up == set.max_catch_up
                    && spec.payload == set.payload
                    && spec.jitter_secs == set.jitter_secs
            });
            return if same {
                Ok(Vec::new())
            } else {
                Err(Rejection::new(
                    RejectionCode::Conflict,
                    "a schedule with this name exists with another spec: use update",
                ))
            };
        }
        if !live && replace && self.status == Status::Unknown {
            return Err(Rejection::new(
                RejectionCode::NotFound,
                "no such schedule: use create",
            ));
        }
        Ok(vec![ScheduleEvent::Set(ScheduleSet {
            name: set.name.clone(),
            when: set.when.clone(),
            action: set.action.clone(),
            catch_up: set.catch_up,
            max_catch_up: set.max_catch_up,
            payload: set.payload.clone(),
            jitter_secs: set.jitter_secs,
            since: now,
        })])
    }

    /// The fire for `due_at`, unless it already happened (or the schedule is not
    /// active). `manual` fires (`fire_now`) need only a live schedule. The fire names
    /// the `schedule.set` at `spec_sequence` (see [`spec_sequence`]) instead of copying
    /// its action and payload.
    pub fn fire(
        &self,
        due_at: DateTime<Utc>,
        now: DateTime<Utc>,
        caught_up: bool,
        manual: bool,
        spec_sequence: u64,
    ) -> Result<Vec<ScheduleEvent>, Rejection> {
        match (&self.spec, self.status) {
            (Some(_), Status::Active) => {}
            (Some(_), Status::Paused | Status::Done) if manual => {}
            _ => {
                return Err(Rejection::invalid_state(format!(
                    "cannot fire a schedule that is {}",
                    self.status.as_str()
                )))
            }
        };
        if !manual && self.last_due.is_some_and(|last| last >= due_at) {
            return Err(Rejection::new(
                RejectionCode::Conflict,
                "this due time has fired",
            ));
        }
        Ok(vec![ScheduleEvent::Fired(ScheduleFired {
            due_at,
            fired_at: now,
            spec_sequence: Some(spec_sequence),
            action: None,
            payload: serde_json::Value::Null,
            caught_up,
            manual,
        })])
    }

    /// The due times to fire at `now` by the catch-up policy (each with whether it is a
    /// late, catch-up fire), and the next due time after `now`. `seen` is the latest due
    /// time the caller already dealt with (fired or skipped), if later than `last_due`;
    /// due times before `started` (when the caller's engine started) were missed.
    pub fn due(
        &self,
        now: DateTime<Utc>,
        seen: Option<DateTime<Utc>>,
        started: DateTime<Utc>,
    ) -> Due {
        let Some(spec) = self.spec.as_ref().filter(|_| self.status == Status::Active) else {
            return (Vec::new(), None);
        };
        let Ok(timing) = Timing::parse(&spec.when) else {
            return (Vec::new(), None);
        };
        let from = [self.last_due, seen]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(spec.since - chrono::Duration::milliseconds(1));
        let jitter = |at: DateTime<Utc>| jitter_of(spec, at);
        let late = |at: DateTime<Utc>| {
            let fires_at = at + jitter(at);
            fires_at < started || now - fires_at > ON_TIME
        };
        // Bounded: a long downtime of a frequent schedule has more missed times than
        // any policy keeps.
        let recent = timing.due_between(from, now, spec.max_catch_up as usize + 16);
        // A due time whose jitter has not passed yet waits (and so do the ones after it).
        let ready = recent
            .iter()
            .take_while(|at| **at + jitter(**at) <= now)
            .count();
        let waiting = recent.get(ready).map(|at| *at + jitter(*at));
        let (missed, on_time): (Vec<_>, Vec<_>) =
            recent[..ready].iter().copied().partition(|at| late(*at));
        let keep_missed = match spec.catch_up {
            CatchUp::Skip => 0,
            CatchUp::FireOnce => 1,
            CatchUp::FireAll => spec.max_catch_up as usize,
        };
        let mut due: Vec<(DateTime<Utc>, bool)> = missed
            [missed.len().saturating_sub(keep_missed)..]
            .iter()
            .map(|at| (*at, true))
            .collect();
        due.extend(on_time.into_iter().map(|at| (at, false)));
        let next = timing.next_after(now).map(|at| at + jitter(at));
        (due, [waiting, next].into_iter().flatten().min())
    }
}

/// How long after `due_at` a schedule with jitter fires: fixed per name and due time.
pub fn jitter_of(spec: &ScheduleSet, due_at: DateTime<Utc>) -> chrono::Duration {
    if spec.jitter_secs == 0 {
        return chrono::Duration::zero();
    }
    let seed = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("{}@{}", spec.name, due_at.to_rfc3339()).as_bytes(),
    );
    let millis = seed.as_u128() % (u128::from(spec.jitter_secs) * 1000);
    chrono::Duration::milliseconds(millis as i64)
}

/// The due times to fire now (each with whether it is a catch-up fire) and the next
/// due time.
pub type Due = (Vec<(DateTime<Utc>, bool)>, Option<DateTime<Utc>>);

/// A fire this close after its due time is on time; later ones are catch-up fires.
pub const ON_TIME: chrono::Duration = chrono::Duration::seconds(2);

#[cfg(test)]
mod tests {
    use super::*;
    use berth_schemas::schedule::{Action, When};

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn every_second(catch_up: CatchUp) -> Schedule {
        let set = SetSchedule {
            name: "tick".into(),
            when: When::Cron {
                expression: "* * * * * *".into(),
                timezone: "UTC".into(),
            },
            action: Action::Emit,
            catch_up,
            max_catch_up: 3,
            payload: serde_json::Value::Null,
            jitter_secs: 0,
        };
        let mut schedule = Schedule::default();
        for event in schedule
            .set(&set, false, utc("2026-01-01T00:00:00.5Z"))
            .unwrap()
        {
            schedule.apply(&event);
        }
        for event in schedule
            .fire(
                utc("2026-01-01T00:00:01Z"),
                utc("2026-01-01T00:00:01Z"),
                false,
                false,
                1,
            )
            .unwrap()
        {
            schedule.apply(&event);
        }
        schedule
    }

    #[test]
    fn jitter_delays_each_fire_by_a_fixed_share_of_its_bound() {
        let mut schedule = every_second(CatchUp::Skip);
        if let Some(spec) = &mut schedule.spec {
            spec.jitter_secs = 1;
        }
        let spec = schedule.spec.clone().unwrap();
        let due_at = utc("2026-01-01T00:00:05Z");
        let delay = jitter_of(&spec, due_at);
        assert!(delay < chrono::Duration::seconds(1));
        assert_eq!(delay, jitter_of(&spec, due_at), "the same on every replica");
        let started = utc("2026-01-01T00:00:00Z");
        let before = due_at + delay - chrono::Duration::milliseconds(1);
        let (due, next) = schedule.due(before, Some(utc("2026-01-01T00:00:04.999Z")), started);
        assert!(due.is_empty(), "not before its jitter: {due:?}");
        assert_eq!(next, Some(due_at + delay));
        let (due, _) = schedule.due(
            due_at + delay,
            Some(utc("2026-01-01T00:00:04.999Z")),
            started,
        );
        assert_eq!(due, vec![(due_at, false)]);
    }

    #[test]
    fn after_downtime_the_policy_decides_what_fires() {
        let now = utc("2026-01-01T00:00:10.2Z");
        let started = utc("2026-01-01T00:00:10.1Z");
        let (skip, next) = every_second(CatchUp::Skip).due(now, None, started);
        assert!(skip.is_empty(), "{skip:?}");
        assert_eq!(next, Some(utc("2026-01-01T00:00:11Z")));
        let (once, _) = every_second(CatchUp::FireOnce).due(now, None, started);
        assert_eq!(once, vec![(utc("2026-01-01T00:00:10Z"), true)]);
        let (all, _) = every_second(CatchUp::FireAll).due(now, None, started);
        assert_eq!(all.len(), 3, "bounded by max_catch_up");
        assert!(all.iter().all(|(_, late)| *late));
        let on_time = utc("2026-01-01T00:00:02.01Z");
        let (due, _) =
            every_second(CatchUp::Skip).due(on_time, None, started - chrono::Duration::seconds(60));
        assert_eq!(
            due,
            vec![(utc("2026-01-01T00:00:02Z"), false)],
            "on time, not caught up"
        );
    }
}
