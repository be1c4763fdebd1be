//! Given → when → then tests of [`super`].

use super::*;
use chrono::{DateTime, Utc};

use berth_schemas::schedule::{
    Action, CatchUp, ScheduleChanged, SetSchedule, When, MAX_TENANT_SCHEDULES,
};
use berth_schemas::RejectionCode;

fn context() -> Context {
    Context::at(chrono::Utc::now())
}

fn utc(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn spec(when: When) -> SetSchedule {
    SetSchedule {
        name: "job".into(),
        when,
        action: Action::Emit,
        catch_up: CatchUp::FireOnce,
        max_catch_up: 1,
        payload: serde_json::Value::Null,
        jitter_secs: 0,
    }
}

fn cron() -> When {
    When::Cron {
        expression: "0 7 * * *".into(),
        timezone: "UTC".into(),
    }
}

fn once() -> When {
    When::At {
        at: utc("2026-01-01T00:05:00Z"),
    }
}

fn folded(events: &[ScheduleEvent]) -> Schedule {
    let mut schedule = Schedule::default();
    for event in events {
        schedule.apply(event);
    }
    schedule
}

#[test]
fn a_schedule_holds_one_slot_while_it_lives() {
    let id = Uuid::now_v7();
    let now = utc("2026-01-01T00:00:00Z");
    let empty = Schedule::default();
    let created = empty.set(&spec(cron()), false, now).unwrap();
    assert_eq!(
        slot_change(id, &empty, &created),
        Some(SlotChange::Hold {
            schedule_id: id,
            kind: SlotKind::Schedule
        })
    );
    let live = folded(&created);
    let paused = vec![ScheduleEvent::Paused(ScheduleChanged {})];
    assert_eq!(slot_change(id, &live, &paused), None, "paused still holds");
    let fired = live.fire(now, now, false, false, 1).unwrap();
    assert_eq!(slot_change(id, &live, &fired), None, "a cron goes on");
    let to_once = live.set(&spec(once()), true, now).unwrap();
    assert_eq!(
        slot_change(id, &live, &to_once),
        Some(SlotChange::Hold {
            schedule_id: id,
            kind: SlotKind::Timer
        }),
        "updated to a one-shot: counted as one"
    );
    let deleted = vec![ScheduleEvent::Deleted(ScheduleChanged {})];
    assert_eq!(
        slot_change(id, &live, &deleted),
        Some(SlotChange::Release { schedule_id: id })
    );

    let timer = folded(&empty.set(&spec(once()), false, now).unwrap());
    let due = utc("2026-01-01T00:05:00Z");
    let fired = timer.fire(due, due, false, false, 1).unwrap();
    assert_eq!(
        slot_change(id, &timer, &fired),
        Some(SlotChange::Release { schedule_id: id }),
        "a one-shot that fired is done"
    );
    let manual = timer.fire(now, now, false, true, 1).unwrap();
    assert_eq!(
        slot_change(id, &timer, &manual),
        None,
        "fire_now is not its fire"
    );
}

#[test]
fn the_cap_refuses_the_next_hold_and_repeats_are_free() {
    let mut slots = Slots::default();
    for _ in 0..MAX_TENANT_SCHEDULES {
        let hold = SlotChange::Hold {
            schedule_id: Uuid::now_v7(),
            kind: SlotKind::Schedule,
        };
        for event in slots.decide(&hold, &context()).unwrap() {
            slots.apply(&event);
        }
    }
    let next = SlotChange::Hold {
        schedule_id: Uuid::now_v7(),
        kind: SlotKind::Schedule,
    };
    let refused = slots.decide(&next, &context()).unwrap_err();
    assert_eq!(refused.code, RejectionCode::QuotaExceeded);
    assert!(refused.message.contains("100 cron schedules"), "{refused}");
    let timer = SlotChange::Hold {
        schedule_id: Uuid::now_v7(),
        kind: SlotKind::Timer,
    };
    assert_eq!(
        slots.decide(&timer, &context()).unwrap().len(),
        1,
        "timers count apart"
    );
    let held = *slots.held.keys().next().unwrap();
    let again = SlotChange::Hold {
        schedule_id: held,
        kind: SlotKind::Schedule,
    };
    assert!(slots.decide(&again, &context()).unwrap().is_empty());
    let release = SlotChange::Release { schedule_id: held };
    for event in slots.decide(&release, &context()).unwrap() {
        slots.apply(&event);
    }
    assert_eq!(
        slots.decide(&next, &context()).unwrap().len(),
        1,
        "room again"
    );
    assert!(
        slots.decide(&release, &context()).unwrap().is_empty(),
        "released once"
    );
}
