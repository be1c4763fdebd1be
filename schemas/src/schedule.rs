//! Schedules and one-shot timers: `cmd.<tenant>.schedule.<action>`,
//! `cmd.<tenant>.timer.<action>`, events `evt.<tenant>.schedule.<id>`.
//!
//! A timer is a schedule that fires once, named by its key: setting the same key again
//! replaces it, cancelling deletes it. Both live in the `schedule` aggregate, so one
//! engine fires both with the same exactly-once rule: a fire's event id derives from
//! (schedule id, due time).
//!
//! What a schedule may hold (DESIGN §7), checked by [`validate_spec`] for schedules and
//! timers alike:
//! - a schedule of a tenant other than `system` may send a command only to its own
//!   tenant, and only an action the [`access`] table lets a tenant send; anything else is
//!   `forbidden`. `system` schedules (created only on `cmd.system.…`, which tenants
//!   cannot publish to) may send any command to any tenant;
//! - its payload and its command's body are free-form JSON bounded in size and depth and
//!   free of NUL ([`bounds::check_free_form`]): a tenant's payload holds at most
//!   [`MAX_TENANT_PAYLOAD_BYTES`], a body (and a `system` payload) [`MAX_BODY_BYTES`];
//! - a tenant holds at most [`MAX_TENANT_SCHEDULES`] cron schedules and
//!   [`MAX_TENANT_TIMERS`] one-shots, counted by its [`SLOTS_AGGREGATE`] aggregate in the
//!   same atomic append as each change; a tenant's cron fires at most once a minute
//!   (checked by the scheduler, which parses cron).
//!
//! A fire does not copy the payload or the action: [`ScheduleFired::spec_sequence`]
//! names the `schedule.set` event that holds them.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::access::{self, Sender};
use crate::bounds;
use crate::command::{parse_body, CommandSet, Rejection, RejectionCode};
use crate::domain_events;
use crate::ids::{validate_slug, TenantId, SYSTEM_TENANT};

/// The aggregate kind, as it appears in subjects.
pub const AGGREGATE: &str = "schedule";
/// The command kind of one-shot timers: `cmd.<tenant>.timer.<action>`.
pub const TIMER_COMMANDS: &str = "timer";
/// The aggregate kind that counts what schedules and timers a tenant holds:
/// `evt.<tenant>.schedule_slots.<slots_id(tenant)>`.
pub const SLOTS_AGGREGATE: &str = "schedule_slots";
/// The `ce-type` of the event a fire's [`ScheduleFired::spec_sequence`] points at.
pub const SET_EVENT_TYPE: &str = "berth.schedule.set.v1";

/// A tenant other than `system` holds at most this many cron schedules at once.
pub const MAX_TENANT_SCHEDULES: usize = 100;
/// A tenant other than `system` holds at most this many pending one-shots at once
/// (timers, and schedules with `when: at`, until they fire or are deleted).
pub const MAX_TENANT_TIMERS: usize = 1000;
/// A tenant's schedule or timer payload holds at most this many bytes, serialized.
pub const MAX_TENANT_PAYLOAD_BYTES: usize = 4 * 1024;
/// The body of a schedule's command, and a `system` schedule's payload, hold at most
/// this many bytes, serialized.
pub const MAX_BODY_BYTES: usize = bounds::MAX_FREE_FORM_BYTES;
/// A tenant's cron schedule fires at most once in this many seconds.
pub const MIN_TENANT_CRON_INTERVAL_SECS: i64 = 60;

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

/// The key, among the `system` timers, of a service's timer `key` about one of
/// `tenant`'s things. Service timers (a subscription's end, a pod's grace) live under
/// `system`, where the tenant cannot cancel or replace them; the key derives from the
/// tenant and the service's key, so two tenants' timers never share one.
pub fn service_timer_key(tenant: &TenantId, key: &str) -> String {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("berth.service-timer.{tenant}.{key}").as_bytes(),
    )
    .hyphenated()
    .to_string()
}

/// The schedule id of a service's timer `key` about one of `tenant`'s things (see
/// [`service_timer_key`]).
pub fn service_timer_id(tenant: &TenantId, key: &str) -> Uuid {
    schedule_id(
        &TenantId::system(),
        &timer_name(&service_timer_key(tenant, key)),
    )
}

/// The id of a tenant's [`SLOTS_AGGREGATE`]: one per tenant.
pub fn slots_id(tenant: &TenantId) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("berth.schedule-slots.{tenant}").as_bytes(),
    )
}

/// When a schedule is due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum When {
    /// A cron expression (5 fields, or 6 with seconds first) in an IANA time zone. A
    /// tenant's cron fires at most once a minute: its seconds field, if any, is one
    /// fixed value.
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
    /// Also send this command, as actor `schedule:<id>`; its command id is the fire's
    /// event id, so a resend is the same command. A tenant's schedule may name only its
    /// own tenant and a tenant action; the body holds at most 16 KiB.
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
    /// Kept with the schedule for whoever follows its fires (a fire names the spec it
    /// fired, it does not copy the payload). At most 4 KiB for a tenant's schedule
    /// (16 KiB for `system`), no NUL, nested at most 32 deep.
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

/// A token of a schedule's command (`cmd.<tenant>.<aggregate>.<action>`): lower-case
/// letters, digits, `_` and `-`, as in the [`access`] table.
fn validate_command_token(what: &str, value: &str) -> Result<(), Rejection> {
    let well_formed = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if well_formed {
        Ok(())
    } else {
        Err(Rejection::invalid(format!(
            "the action's {what} {:?} must be 1 to 63 of a-z, 0-9, '_' and '-'",
            value.chars().take(80).collect::<String>()
        )))
    }
}

impl SetSchedule {
    /// What every schedule must satisfy, whoever holds it: its name, its bounds, the
    /// tokens of its command and the size, depth and cleanliness of its command's body
    /// and its payload.
    pub fn check_shape(&self) -> Result<(), Rejection> {
        validate_slug("schedule name", &self.name, 63)
            .map_err(|e| Rejection::invalid(e.to_string()))?;
        if self.jitter_secs > 3600 {
            return Err(Rejection::invalid("jitter_secs is at most 3600"));
        }
        if self.max_catch_up == 0 || self.max_catch_up > 10_000 {
            return Err(Rejection::invalid(
                "max_catch_up must be between 1 and 10000",
            ));
        }
        if let Action::Command {
            aggregate,
            action,
            body,
            ..
        } = &self.action
        {
            validate_command_token("aggregate", aggregate)?;
            validate_command_token("action", action)?;
            bounds::check_free_form("the action's body", body, MAX_BODY_BYTES)?;
        }
        bounds::check_free_form("payload", &self.payload, MAX_BODY_BYTES)
    }
}

/// The one check of what a schedule or timer of `tenant` holds (a timer is checked as
/// the schedule it is: [`SetTimer::schedule`]): [`SetSchedule::check_shape`], and for a
/// tenant other than `system`, [`check_action`] and a payload of at most
/// [`MAX_TENANT_PAYLOAD_BYTES`]. Its timing (cron, time zone, a tenant's once a minute)
/// is the scheduler's to check, which parses it.
pub fn validate_spec(tenant: &TenantId, spec: &SetSchedule) -> Result<(), Rejection> {
    spec.check_shape()?;
    if tenant.as_str() == SYSTEM_TENANT {
        return Ok(());
    }
    check_action(tenant, &spec.action)?;
    bounds::check_free_form("payload", &spec.payload, MAX_TENANT_PAYLOAD_BYTES)
}

/// What a schedule of `tenant` may send when it fires: anything for `system`; for a
/// tenant, only a command to itself that the [`access`] table lets a tenant send
/// (`forbidden` otherwise, and for a command berth does not serve: a tenant's schedule
/// cannot poke arbitrary subjects with berth's rights).
pub fn check_action(tenant: &TenantId, action: &Action) -> Result<(), Rejection> {
    let Action::Command {
        tenant: target,
        aggregate,
        action,
        ..
    } = action
    else {
        return Ok(());
    };
    if tenant.as_str() == SYSTEM_TENANT {
        return Ok(());
    }
    if target != tenant {
        return Err(Rejection::forbidden(format!(
            "a schedule of tenant {tenant} may send commands only to tenant {tenant}, not to {target}"
        )));
    }
    match access::sender_of(aggregate, action) {
        Some(Sender::Tenant) => Ok(()),
        Some(Sender::Operator) => Err(Rejection::forbidden(format!(
            "{aggregate}.{action} is an operator action; a tenant's schedule cannot send it"
        ))),
        None => Err(Rejection::forbidden(format!(
            "{aggregate}.{action} is not a command berth serves; a tenant's schedule may send only tenant actions"
        ))),
    }
}

/// `schedule.pause|resume|delete|fire_now`: by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleTarget {
    pub name: String,
}

/// `timer.set`: fire once at an instant or after a duration; the same key replaces.
/// Checked like a schedule ([`validate_spec`]).
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
    /// As a schedule's payload.
    #[serde(default)]
    pub payload: serde_json::Value,
}

/// `after_secs` is at most ten years.
const MAX_AFTER_SECS: u64 = 10 * 366 * 24 * 3600;

impl SetTimer {
    /// The schedule this timer is when set at `now`: `timer-<key>`, once, at `at` or
    /// `after_secs` from `now`.
    pub fn schedule(&self, now: DateTime<Utc>) -> Result<SetSchedule, Rejection> {
        let at = match (self.at, self.after_secs) {
            (Some(at), None) => at,
            (None, Some(secs)) if secs <= MAX_AFTER_SECS => {
                now + chrono::Duration::seconds(secs as i64)
            }
            (None, Some(_)) => return Err(Rejection::invalid("after_secs is at most 10 years")),
            _ => return Err(Rejection::invalid("give exactly one of at and after_secs")),
        };
        Ok(SetSchedule {
            name: timer_name(&self.key),
            when: When::At { at },
            action: self.action.clone(),
            catch_up: CatchUp::FireOnce,
            max_catch_up: 1,
            payload: self.payload.clone(),
            jitter_secs: 0,
        })
    }
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

    /// Checks names, bounds and free-form fields; what the tenant may do
    /// ([`validate_spec`]) and the timing are checked by the scheduler, which knows the
    /// tenant and how to read cron.
    pub fn validate(&self) -> Result<(), Rejection> {
        match self {
            Self::Create(set) | Self::Update(set) => set.check_shape(),
            _ => validate_slug("schedule name", self.name(), 63)
                .map_err(|e| Rejection::invalid(e.to_string())),
        }
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

    /// The same command for the `system` timer that a service keeps about one of
    /// `tenant`'s things: its key becomes [`service_timer_key`].
    pub fn for_service(&self, tenant: &TenantId) -> Self {
        let key = service_timer_key(tenant, self.key());
        match self {
            Self::Set(set) => Self::Set(SetTimer { key, ..set.clone() }),
            Self::Cancel(_) => Self::Cancel(TimerTarget { key }),
        }
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
            // When it is due does not matter to the shape; the scheduler sets it.
            set.schedule(DateTime::UNIX_EPOCH)?.check_shape()?;
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
///
/// A fire names the spec it fired (`spec_sequence`) instead of copying its action and
/// payload (a copy in every fire let a frequent schedule fill the append-only log). The
/// type stays `v1`: new fires omit `action` and `payload`, which are optional now, and
/// fires recorded before still carry them and decode as before (`recorded_spec` gives
/// them); readers of newer fires read the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ScheduleFired {
    pub due_at: DateTime<Utc>,
    pub fired_at: DateTime<Utc>,
    /// The stream sequence of the `schedule.set` event (on the same subject) whose
    /// action and payload this fire carries out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_sequence: Option<u64>,
    /// Only in fires recorded before `spec_sequence`: a copy of the spec's action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Only in fires recorded before `spec_sequence`: a copy of the spec's payload.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub payload: serde_json::Value,
    /// A catch-up fire after downtime.
    #[serde(default)]
    pub caught_up: bool,
    /// `fire_now`: outside the schedule, the progression is unchanged.
    #[serde(default)]
    pub manual: bool,
}

/// What a fire carries out: its spec's action and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiredSpec {
    pub action: Action,
    pub payload: serde_json::Value,
}

impl ScheduleFired {
    /// The action and payload a fire recorded before `spec_sequence` carries in itself;
    /// `None` for a newer fire (read the `schedule.set` at `spec_sequence`).
    pub fn recorded_spec(&self) -> Option<FiredSpec> {
        if self.spec_sequence.is_some() {
            return None;
        }
        self.action.clone().map(|action| FiredSpec {
            action,
            payload: self.payload.clone(),
        })
    }
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

/// What a held slot counts as: a cron schedule or a one-shot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SlotKind {
    /// A cron schedule: at most [`MAX_TENANT_SCHEDULES`] per tenant.
    Schedule,
    /// A one-shot (a timer, or a schedule with `when: at`) until it fires or is deleted:
    /// at most [`MAX_TENANT_TIMERS`] per tenant.
    Timer,
}

impl SlotKind {
    /// What a schedule with this timing counts as.
    pub fn of(when: &When) -> Self {
        match when {
            When::Cron { .. } => Self::Schedule,
            When::At { .. } => Self::Timer,
        }
    }

    /// How many of this kind a tenant may hold.
    pub fn cap(self) -> usize {
        match self {
            Self::Schedule => MAX_TENANT_SCHEDULES,
            Self::Timer => MAX_TENANT_TIMERS,
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Self::Schedule => "cron schedules",
            Self::Timer => "timers and one-shot schedules",
        }
    }
}

/// A tenant's schedule became live (created, set, updated to another kind): it holds a
/// slot of `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SlotHeld {
    pub schedule_id: Uuid,
    pub kind: SlotKind,
}

/// A tenant's schedule stopped being live (deleted, or a one-shot that fired): its slot
/// is free.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SlotReleased {
    pub schedule_id: Uuid,
}

domain_events! {
    /// The slots a tenant's schedules and timers hold, appended in the same atomic batch
    /// as each schedule event that takes or frees one.
    pub enum SlotEvent {
        Held(SlotHeld) = "berth.schedule_slots.held.v1",
        Released(SlotReleased) = "berth.schedule_slots.released.v1",
    }
}

/// The quota refusal when a tenant already holds `held` slots of `kind`.
pub fn over_quota(kind: SlotKind, held: usize) -> Rejection {
    Rejection::new(
        RejectionCode::QuotaExceeded,
        format!(
            "the tenant holds {held} {}, the most a tenant may hold ({}); delete or cancel one first",
            kind.plural(),
            kind.cap()
        ),
    )
}

#[cfg(test)]
mod tests;
