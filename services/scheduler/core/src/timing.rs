//! When schedules are due: cron expressions read in an IANA time zone, with the
//! Vixie-cron rules for daylight saving time, stated and tested here:
//!
//! - a wall-clock time that happens twice (clocks go back) fires once, at its first
//!   occurrence — no double fire in the repeated hour;
//! - a wall-clock time that does not happen (clocks go forward) fires at the instant the
//!   clocks jump — no lost fire in the skipped hour (several skipped times fire once).
//!
//! The `cron` crate walks wall-clock times (as naive times, dressed as UTC); this module
//! maps each to an instant in the zone.

use std::str::FromStr;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use berth_schemas::schedule::{When, MIN_TENANT_CRON_INTERVAL_SECS};
use cron::TimeUnitSpec;

/// How many upcoming due times [`Timing::check_tenant_rate`] looks at.
const RATE_SAMPLE: usize = 1000;

/// A schedule's timing, parsed.
#[derive(Debug, Clone)]
pub enum Timing {
    Cron {
        schedule: Box<cron::Schedule>,
        zone: Tz,
    },
    At(DateTime<Utc>),
}

impl Timing {
    /// Reads a schedule's `when`; the error says what is wrong, for people.
    pub fn parse(when: &When) -> Result<Self, String> {
        match when {
            When::At { at } => Ok(Self::At(*at)),
            When::Cron {
                expression,
                timezone,
            } => {
                let fields = expression.split_whitespace().count();
                let with_seconds = match fields {
                    5 => format!("0 {expression}"),
                    6 => expression.clone(),
                    _ => {
                        return Err(format!(
                            "cron expression {expression:?} needs 5 fields (or 6 with seconds first), not {fields}"
                        ))
                    }
                };
                let schedule = cron::Schedule::from_str(&with_seconds)
                    .map_err(|e| format!("cron expression {expression:?}: {e}"))?;
                let zone = Tz::from_str(timezone).map_err(|_| {
                    format!("unknown time zone {timezone:?} (an IANA name such as Europe/Berlin)")
                })?;
                Ok(Self::Cron {
                    schedule: Box::new(schedule),
                    zone,
                })
            }
        }
    }

    /// For a tenant's schedule (DESIGN §7): a cron fires at most once a minute. Its
    /// seconds field must be one fixed value, and no two of its next due times from
    /// `from` on may be less than [`MIN_TENANT_CRON_INTERVAL_SECS`] apart. One-shots pass.
    pub fn check_tenant_rate(&self, from: DateTime<Utc>) -> Result<(), String> {
        let Self::Cron { schedule, .. } = self else {
            return Ok(());
        };
        let seconds = schedule.seconds().count();
        if seconds != 1 {
            return Err(format!(
                "a tenant's cron fires at most once a minute: its seconds field must be one fixed value, not {seconds} values"
            ));
        }
        let due: Vec<DateTime<Utc>> = schedule.after(&from).take(RATE_SAMPLE).collect();
        let minimum = Duration::seconds(MIN_TENANT_CRON_INTERVAL_SECS);
        if let Some(pair) = due.windows(2).find(|pair| pair[1] - pair[0] < minimum) {
            return Err(format!(
                "a tenant's cron fires at most once a minute: it would fire at {} and again at {}",
                pair[0].format("%H:%M:%S"),
                pair[1].format("%H:%M:%S")
            ));
        }
        Ok(())
    }

    /// The first due instant strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::At(at) => (*at > after).then_some(*at),
            Self::Cron { schedule, zone } => {
                // Start two hours of wall clock early: around a transition, the wall time
                // of `after` can map to an instant before or after it.
                let start = after.with_timezone(zone).naive_local() - Duration::hours(2);
                schedule
                    .after(&Utc.from_utc_datetime(&start))
                    .take(100_000)
                    .map(|wall| instant_of(zone, wall.naive_utc()))
                    .find(|instant| *instant > after)
            }
        }
    }

    /// Due instants in `(after, until]`, oldest first, at most `limit` of the latest.
    pub fn due_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut due = std::collections::VecDeque::new();
        let mut cursor = after;
        while let Some(next) = self.next_after(cursor).filter(|next| *next <= until) {
            if due.len() == limit {
                due.pop_front();
            }
            due.push_back(next);
            cursor = next;
        }
        due.into()
    }
}

/// The instant a wall-clock time stands for in `zone` (see the module's DST rules).
fn instant_of(zone: &Tz, wall: NaiveDateTime) -> DateTime<Utc> {
    match zone.from_local_datetime(&wall) {
        LocalResult::Single(at) => at.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // In the gap: the first wall-clock minute after it is when clocks jumped.
            let mut later = wall;
            loop {
                later += Duration::minutes(1);
                if let LocalResult::Single(at) | LocalResult::Ambiguous(at, _) =
                    zone.from_local_datetime(&later)
                {
                    // Gaps begin and end on whole minutes: this minute is the jump.
                    return truncate_to_minute(at.with_timezone(&Utc));
                }
            }
        }
    }
}

fn truncate_to_minute(at: DateTime<Utc>) -> DateTime<Utc> {
    let seconds = at.timestamp();
    DateTime::from_timestamp(seconds - seconds.rem_euclid(60), 0).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cron(expression: &str, timezone: &str) -> Timing {
        Timing::parse(&When::Cron {
            expression: expression.into(),
            timezone: timezone.into(),
        })
        .unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn daily_at_seven_utc() {
        let daily = cron("0 7 * * *", "UTC");
        assert_eq!(
            daily.next_after(utc("2026-11-23T07:00:00Z")),
            Some(utc("2026-11-24T07:00:00Z"))
        );
        assert_eq!(
            daily.next_after(utc("2026-11-23T06:59:59Z")),
            Some(utc("2026-11-23T07:00:00Z"))
        );
    }

    #[test]
    fn a_time_in_the_skipped_hour_fires_when_the_clocks_jump() {
        // Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC).
        let nightly = cron("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            nightly.next_after(utc("2026-03-28T12:00:00Z")),
            Some(utc("2026-03-29T01:00:00Z")),
            "02:30 does not exist that night: it fires at 03:00 CEST"
        );
        assert_eq!(
            nightly.next_after(utc("2026-03-29T01:00:00Z")),
            Some(utc("2026-03-30T00:30:00Z")),
            "and the next night at 02:30 CEST again"
        );
        // Every minute from 02:00 to 02:59 fires once, at the jump, not sixty times.
        let minutely = cron("* 2 * * *", "Europe/Berlin");
        let due = minutely.due_between(
            utc("2026-03-29T00:00:00Z"),
            utc("2026-03-29T02:00:00Z"),
            1000,
        );
        assert_eq!(due, vec![utc("2026-03-29T01:00:00Z")]);
    }

    #[test]
    fn a_time_in_the_repeated_hour_fires_once() {
        // Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
        let nightly = cron("30 2 * * *", "Europe/Berlin");
        let due = nightly.due_between(
            utc("2026-10-24T12:00:00Z"),
            utc("2026-10-26T12:00:00Z"),
            100,
        );
        assert_eq!(
            due,
            vec![utc("2026-10-25T00:30:00Z"), utc("2026-10-26T01:30:00Z")],
            "once at the first 02:30 (CEST), then 02:30 CET the next day"
        );
        let hourly = cron("0 * * * *", "Europe/Berlin");
        let due = hourly.due_between(
            utc("2026-10-24T23:30:00Z"),
            utc("2026-10-25T02:30:00Z"),
            100,
        );
        assert_eq!(
            due,
            vec![utc("2026-10-25T00:00:00Z"), utc("2026-10-25T02:00:00Z")],
            "01:00 UTC is the second 02:00 wall-clock time: not fired again"
        );
    }

    #[test]
    fn europe_paris_at_two_thirty_across_both_changes() {
        // Paris, 2026: clocks jump 02:00 → 03:00 on 29 March and fall 03:00 → 02:00 on
        // 25 October. A daily 02:30 fires once a day all year: at the jump in March, at
        // the first 02:30 in October.
        let daily = cron("30 2 * * *", "Europe/Paris");
        let march = daily.due_between(utc("2026-03-27T12:00:00Z"), utc("2026-03-31T12:00:00Z"), 10);
        assert_eq!(
            march,
            vec![
                utc("2026-03-28T01:30:00Z"),
                utc("2026-03-29T01:00:00Z"),
                utc("2026-03-30T00:30:00Z"),
                utc("2026-03-31T00:30:00Z"),
            ]
        );
        let october =
            daily.due_between(utc("2026-10-23T12:00:00Z"), utc("2026-10-27T12:00:00Z"), 10);
        assert_eq!(
            october,
            vec![
                utc("2026-10-24T00:30:00Z"),
                utc("2026-10-25T00:30:00Z"),
                utc("2026-10-26T01:30:00Z"),
                utc("2026-10-27T01:30:00Z"),
            ]
        );
    }

    #[test]
    fn seconds_catch_up_bounds_and_one_shots() {
        let every_second = cron("* * * * * *", "UTC");
        let due =
            every_second.due_between(utc("2026-01-01T00:00:00Z"), utc("2026-01-01T00:00:10Z"), 3);
        assert_eq!(
            due,
            vec![
                utc("2026-01-01T00:00:08Z"),
                utc("2026-01-01T00:00:09Z"),
                utc("2026-01-01T00:00:10Z")
            ]
        );
        let once = Timing::parse(&When::At {
            at: utc("2026-01-01T00:00:00Z"),
        })
        .unwrap();
        assert_eq!(
            once.next_after(utc("2025-12-31T00:00:00Z")),
            Some(utc("2026-01-01T00:00:00Z"))
        );
        assert_eq!(once.next_after(utc("2026-01-01T00:00:00Z")), None);
    }

    #[test]
    fn tenant_crons_fire_at_most_once_a_minute() {
        let from = utc("2026-01-01T00:00:00Z");
        let rate = |expression: &str| cron(expression, "Europe/Berlin").check_tenant_rate(from);
        for fine in ["* * * * *", "30 * * * * *", "0 */5 * * * *", "0 7 * * *"] {
            assert_eq!(rate(fine), Ok(()), "{fine}");
        }
        for too_often in [
            "* * * * * *",
            "*/10 * * * * *",
            "0,30 * * * * *",
            "0-1 * * * * *",
        ] {
            let refused = rate(too_often).unwrap_err();
            assert!(refused.contains("once a minute"), "{too_often}: {refused}");
        }
        let once = Timing::parse(&When::At { at: from }).unwrap();
        assert_eq!(once.check_tenant_rate(from), Ok(()));
    }

    #[test]
    fn bad_expressions_and_zones_say_what_is_wrong() {
        let parse = |e: &str, z: &str| {
            Timing::parse(&When::Cron {
                expression: e.into(),
                timezone: z.into(),
            })
            .unwrap_err()
        };
        assert!(parse("0 7 * *", "UTC").contains("5 fields"));
        assert!(parse("0 99 * * *", "UTC").contains("cron expression"));
        assert!(parse("0 7 * * *", "Mars/Olympus").contains("unknown time zone"));
    }
}
