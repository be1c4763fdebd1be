//! Schedules and one-shot timers: `cmd.<tenant>.schedule.<action>`,
//! `cmd.<tenant>.timer.<action>`, events `evt.<tenant>.schedule.<id>`.
//!
//! A timer is a schedule that fires once, named by its key: setting the same key again
//! replaces it, cancelling deletes it. Both live in the `schedule` aggregate, so one
//! engine fires both with the same exactly-once rule: a fire's event id derives from
//! (schedule id, due time).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::command::{parse_body, CommandSet, Rejection};
use crate::domain_events;
use crate::ids::{validate_slug, TenantId};

/// The aggregate kind, as it appears in subjects.
pub const AGGREGATE: &str = "schedule";
/// The command kind of one-shot timers: `cmd.<tenant>.timer.<action>`.
pub const TIMER_COMMANDS: &str = "timer";

/// The id of a tenant's schedule: derived from its name, so creating it twice names the
/// same schedule.
pub fn schedule_id(tenant: &TenantId, name: &str) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("berth.schedule.{tenant}.{name}").as_bytes(),
    )
}

/// The schedule a timer key names.
pub fn timer_name(key: &str) -> String {
    format!("timer-{key}")
}

/// When a schedule is due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum When {
    /// A cron expression (5 fields, or 6 with seconds first) in an IANA time zone.
    Cron {
        expression: String,
        timezone: String,
    },
    /// Once, at this instant.
    At { at: DateTime<Utc> },
}

/// What a fire does besides recording `schedule.fired` (which listeners can follow).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Only the `schedule.fired` event.
    Emit,
    /// Also send this command; its command id is the fire's event id, so a resend is
    /// the same command.
    Command {
        tenant: TenantId,
        aggregate: String,
        action: String,
        body: serde_json::Value,
    },
}

/// What happens to fires missed while no scheduler ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Missed fires are dropped.
    Skip,
    /// The latest missed fire happens once.
    #[default]
    FireOnce,
    /// Every missed fire happens, at most `max_catch_up` of the latest.
    FireAll,
}

/// `schedule.create`, `schedule.update`: a schedule by name (create on an existing name
/// with the same spec changes nothing; `update` replaces the spec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetSchedule {
    /// `^[a-z0-9][a-z0-9-]{0,62}$`; the schedule's id derives from it.
    pub name: String,
    pub when: When,
    #[serde(default = "emit")]
    pub action: Action,
    #[serde(default)]
    pub catch_up: CatchUp,
    /// Bound for `fire_all` (default 100).
    #[serde(default = "hundred")]
    pub max_catch_up: u32,
    /// Carried into every `schedule.fired`.
    #[serde(default)]
    pub payload: serde_json::Value,
    /// Spread fires over up to this many seconds after each due time (0 to 3600,
    /// default 0): many schedules due at the same minute do not all fire at once. Each
    /// due time's delay is fixed (derived from the name and the due time).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub jitter_secs: u32,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

fn emit() -> Action {
    Action::Emit
}

fn hundred() -> u32 {
    100
}

/// `schedule.pause|resume|delete|fire_now`: by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleTarget {
    pub name: String,
}

/// `timer.set`: fire once at an instant or after a duration; the same key replaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetTimer {
    /// `^[a-z0-9][a-z0-9-]{0,56}$`.
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// 0 to 10 years, counted from when the command is handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_secs: Option<u64>,
    #[serde(default = "emit")]
    pub action: Action,
    #[serde(default)]
    pub payload: serde_json::Value,
}

/// `timer.cancel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimerTarget {
    pub key: String,
}

/// Every schedule and timer command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleCommand {
    Create(SetSchedule),
    Update(SetSchedule),
    Pause(ScheduleTarget),
    Resume(ScheduleTarget),
    Delete(ScheduleTarget),
    /// Fire now, outside the schedule (the cron progression is unchanged).
    FireNow(ScheduleTarget),
}

impl ScheduleCommand {
    pub fn name(&self) -> &str {
        match self {
            Self::Create(set) | Self::Update(set) => &set.name,
            Self::Pause(t) | Self::Resume(t) | Self::Delete(t) | Self::FireNow(t) => &t.name,
        }
    }

    pub fn body(&self) -> Vec<u8> {
        let encoded = match self {
            Self::Create(set) | Self::Update(set) => serde_json::to_vec(set),
            Self::Pause(t) | Self::Resume(t) | Self::Delete(t) | Self::FireNow(t) => {
                serde_json::to_vec(t)
            }
        };
        encoded.expect("commands are plain data")
    }

    /// Checks names and bounds; cron expressions and time zones are checked by the
    /// scheduler, which knows how to read them.
    pub fn validate(&self) -> Result<(), Rejection> {
        validate_slug("schedule name", self.name(), 63)
            .map_err(|e| Rejection::invalid(e.to_string()))?;
        if let Self::Create(set) | Self::Update(set) = self {
            if set.jitter_secs > 3600 {
                return Err(Rejection::invalid("jitter_secs is at most 3600"));
            }
            if set.max_catch_up == 0 || set.max_catch_up > 10_000 {
                return Err(Rejection::invalid(
                    "max_catch_up must be between 1 and 10000",
                ));
            }
            if let Action::Command {
                aggregate, action, ..
            } = &set.action
            {
                for (what, token) in [("aggregate", aggregate), ("action", action)] {
                    validate_slug(what, token, 63)
                        .map_err(|e| Rejection::invalid(e.to_string()))?;
                }
            }
        }
        Ok(())
    }
}

impl CommandSet for ScheduleCommand {
    fn decode(action: &str, body: &[u8]) -> Result<Self, Rejection> {
        let command = match action {
            "create" => Self::Create(parse_body(action, body)?),
            "update" => Self::Update(parse_body(action, body)?),
            "pause" => Self::Pause(parse_body(action, body)?),
            "resume" => Self::Resume(parse_body(action, body)?),
            "delete" => Self::Delete(parse_body(action, body)?),
            "fire_now" => Self::FireNow(parse_body(action, body)?),
            other => {
                return Err(Rejection::invalid(format!(
                    "unknown schedule action {:?}; expected create, update, pause, resume, delete or fire_now",
                    other.chars().take(40).collect::<String>()
                )))
            }
        };
        command.validate()?;
        Ok(command)
    }
    /// Needs the tenant: see [`schedule_id`]; the command services derive it.
    fn aggregate_id(&self, command_id: Uuid) -> Uuid {
        command_id
    }
    fn expected_version(&self) -> Option<u64> {
        None
    }
    fn action(&self) -> &'static str {
        match self {
            Self::Create(_) => "create",
            Self::Update(_) => "update",
            Self::Pause(_) => "pause",
            Self::Resume(_) => "resume",
            Self::Delete(_) => "delete",
            Self::FireNow(_) => "fire_now",
        }
    }
}

/// Every timer command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerCommand {
    Set(SetTimer),
    Cancel(TimerTarget),
}

impl TimerCommand {
    pub fn key(&self) -> &str {
        match self {
            Self::Set(set) => &set.key,
            Self::Cancel(cancel) => &cancel.key,
        }
    }

    pub fn body(&self) -> Vec<u8> {
        let encoded = match self {
            Self::Set(set) => serde_json::to_vec(set),
            Self::Cancel(cancel) => serde_json::to_vec(cancel),
        };
        encoded.expect("commands are plain data")
    }
}

impl CommandSet for TimerCommand {
    fn decode(action: &str, body: &[u8]) -> Result<Self, Rejection> {
        let command = match action {
            "set" => Self::Set(parse_body(action, body)?),
            "cancel" => Self::Cancel(parse_body(action, body)?),
            other => {
                return Err(Rejection::invalid(format!(
                    "unknown timer action {:?}; expected set or cancel",
                    other.chars().take(40).collect::<String>()
                )))
            }
        };
        validate_slug("timer key", command.key(), 56)
            .map_err(|e| Rejection::invalid(e.to_string()))?;
        if let Self::Set(set) = &command {
            match (set.at, set.after_secs) {
                (Some(_), None) => {}
                (None, Some(secs)) if secs <= 10 * 366 * 24 * 3600 => {}
                (None, Some(_)) => {
                    return Err(Rejection::invalid("after_secs is at most 10 years"))
                }
                _ => return Err(Rejection::invalid("give exactly one of at and after_secs")),
            }
        }
        Ok(command)
    }
    fn aggregate_id(&self, command_id: Uuid) -> Uuid {
        command_id
    }
    fn expected_version(&self) -> Option<u64> {
        None
    }
    fn action(&self) -> &'static str {
        match self {
            Self::Set(_) => "set",
            Self::Cancel(_) => "cancel",
        }
    }
}

/// A schedule's spec took effect (created, updated, or a timer set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ScheduleSet {
    pub name: String,
    pub when: When,
    pub action: Action,
    pub catch_up: CatchUp,
    pub max_catch_up: u32,
    pub payload: serde_json::Value,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub jitter_secs: u32,
    /// Due times are counted from here.
    pub since: DateTime<Utc>,
}

/// A step that has nothing to say but that it happened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ScheduleChanged {}

/// The schedule fired for `due_at`: exactly one such event per due time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ScheduleFired {
    pub due_at: DateTime<Utc>,
    pub fired_at: DateTime<Utc>,
    pub action: Action,
    pub payload: serde_json::Value,
    /// A catch-up fire after downtime.
    #[serde(default)]
    pub caught_up: bool,
    /// `fire_now`: outside the schedule, the progression is unchanged.
    #[serde(default)]
    pub manual: bool,
}

domain_events! {
    /// Everything that happens to a schedule or timer.
    pub enum ScheduleEvent {
        Set(ScheduleSet) = "berth.schedule.set.v1",
        Paused(ScheduleChanged) = "berth.schedule.paused.v1",
        Resumed(ScheduleChanged) = "berth.schedule.resumed.v1",
        Deleted(ScheduleChanged) = "berth.schedule.deleted.v1",
        Fired(ScheduleFired) = "berth.schedule.fired.v1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::RejectionCode;

    #[test]
    fn commands_decode_with_defaults_and_refuse_bad_input() {
        let body = br#"{"name":"nightly","when":{"kind":"cron","expression":"0 7 * * *","timezone":"UTC"}}"#;
        let ScheduleCommand::Create(set) = ScheduleCommand::decode("create", body).unwrap() else {
            panic!("not a create")
        };
        assert_eq!(
            (set.action, set.catch_up, set.max_catch_up),
            (Action::Emit, CatchUp::FireOnce, 100)
        );
        let bad = [
            ("create", br#"{"name":"Nightly","when":{"kind":"at","at":"2026-01-01T00:00:00Z"}}"#.as_slice()),
            ("create", br#"{"name":"n","when":{"kind":"at","at":"2026-01-01T00:00:00Z"},"max_catch_up":0}"#),
            ("create", br#"{"name":"n","when":{"kind":"sometimes"}}"#),
            ("create", br#"{"name":"n","when":{"kind":"at","at":"2026-01-01T00:00:00Z"},"x":1}"#),
            ("explode", b"{}"),
        ];
        for (action, body) in bad {
            assert_eq!(
                ScheduleCommand::decode(action, body).unwrap_err().code,
                RejectionCode::Invalid,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(TimerCommand::decode("set", br#"{"key":"k","after_secs":5}"#).is_ok());
        assert!(TimerCommand::decode("set", br#"{"key":"k"}"#).is_err());
        assert!(TimerCommand::decode("set", br#"{"key":"k.*","after_secs":5}"#).is_err());
    }
}
