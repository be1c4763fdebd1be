//! Given → when → then tests of [`super`].

use super::*;
use crate::DomainEvent;
use serde_json::json;

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap()
}

fn at(action: Action, payload: serde_json::Value) -> SetSchedule {
    SetSchedule {
        name: "job".into(),
        when: When::At {
            at: "2026-01-01T00:00:00Z".parse().unwrap(),
        },
        action,
        catch_up: CatchUp::FireOnce,
        max_catch_up: 1,
        payload,
        jitter_secs: 0,
    }
}

fn command(target: &str, aggregate: &str, action: &str) -> Action {
    Action::Command {
        tenant: tenant(target),
        aggregate: aggregate.into(),
        action: action.into(),
        body: json!({}),
    }
}

fn code(result: Result<(), Rejection>) -> Option<RejectionCode> {
    result.err().map(|r| r.code)
}

#[test]
fn commands_decode_with_defaults_and_refuse_bad_input() {
    let body =
        br#"{"name":"nightly","when":{"kind":"cron","expression":"0 7 * * *","timezone":"UTC"}}"#;
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
        ("create", br#"{"name":"n","when":{"kind":"at","at":"2026-01-01T00:00:00Z"},"action":{"kind":"command","tenant":"a","aggregate":"vm.x","action":"stop","body":{}}}"#),
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
    // Action tokens are the access table's: underscores are fine.
    let contact = br#"{"key":"k","after_secs":5,"action":{"kind":"command","tenant":"a","aggregate":"account","action":"update_contact","body":{}}}"#;
    assert!(TimerCommand::decode("set", contact).is_ok());
}

#[test]
fn a_tenant_schedule_sends_only_tenant_actions_to_its_own_tenant() {
    let b = tenant("b");
    let check = |action: Action| code(validate_spec(&b, &at(action, json!(null))));
    assert_eq!(check(Action::Emit), None);
    assert_eq!(check(command("b", "vm", "stop")), None);
    assert_eq!(check(command("b", "account", "update_contact")), None);
    assert_eq!(
        check(command("a", "vm", "stop")),
        Some(RejectionCode::Forbidden),
        "another tenant"
    );
    assert_eq!(
        check(command("system", "tenant", "set_quota")),
        Some(RejectionCode::Forbidden),
        "system"
    );
    assert_eq!(
        check(command("b", "payment", "record")),
        Some(RejectionCode::Forbidden),
        "an operator action of its own tenant"
    );
    assert_eq!(
        check(command("b", "widget", "poke")),
        Some(RejectionCode::Forbidden),
        "a subject berth does not serve"
    );
    let message = validate_spec(&b, &at(command("a", "vm", "stop"), json!(null)))
        .unwrap_err()
        .message;
    assert!(message.contains("only to tenant b"), "{message}");

    // `system` schedules may aim anywhere.
    let system = TenantId::system();
    for action in [
        command("a", "vm", "stop"),
        command("b", "payment", "record"),
        command("system", "tenant", "set_quota"),
        command("a", "widget", "poke"),
    ] {
        assert_eq!(code(validate_spec(&system, &at(action, json!(null)))), None);
    }
}

#[test]
fn timers_are_checked_as_the_schedule_they_are() {
    let b = tenant("b");
    let timer = SetTimer {
        key: "k".into(),
        at: None,
        after_secs: Some(60),
        action: command("a", "vm", "stop"),
        payload: json!(null),
    };
    let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let spec = timer.schedule(now).unwrap();
    assert_eq!(spec.name, "timer-k");
    assert_eq!(
        spec.when,
        When::At {
            at: now + chrono::Duration::seconds(60)
        }
    );
    assert_eq!(
        code(validate_spec(&b, &spec)),
        Some(RejectionCode::Forbidden)
    );
    let both = SetTimer {
        at: Some(now),
        ..timer.clone()
    };
    assert_eq!(both.schedule(now).unwrap_err().code, RejectionCode::Invalid);
    let nul = br#"{"key":"k","after_secs":5,"payload":{"a":"\u0000"}}"#;
    assert_eq!(
        TimerCommand::decode("set", nul).unwrap_err().code,
        RejectionCode::Invalid
    );
}

#[test]
fn payloads_and_bodies_are_bounded_and_clean() {
    let b = tenant("b");
    let system = TenantId::system();
    let check = |owner: &TenantId, payload: serde_json::Value| {
        code(validate_spec(owner, &at(Action::Emit, payload)))
    };
    let blob = |bytes: usize| json!({ "blob": "x".repeat(bytes) });
    assert_eq!(check(&b, blob(3 * 1024)), None);
    assert_eq!(
        check(&b, blob(MAX_TENANT_PAYLOAD_BYTES)),
        Some(RejectionCode::TooLarge),
        "over 4 KiB for a tenant"
    );
    assert_eq!(check(&system, blob(MAX_TENANT_PAYLOAD_BYTES)), None);
    assert_eq!(
        check(&system, blob(1024 * 1024)),
        Some(RejectionCode::TooLarge),
        "1 MiB for anyone"
    );
    assert_eq!(
        check(&b, json!({"a": "nul \u{0} here"})),
        Some(RejectionCode::Invalid)
    );
    // Deeper than the bound, as a value …
    let mut deep = json!(1);
    for _ in 0..40 {
        deep = json!([deep]);
    }
    assert_eq!(check(&b, deep.clone()), Some(RejectionCode::Invalid));
    assert_eq!(check(&system, deep), Some(RejectionCode::Invalid));
    // … and 10 000 deep, as sent: refused while decoding, without a stack overflow.
    let body = format!(
        r#"{{"key":"k","after_secs":5,"payload":{}1{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert_eq!(
        TimerCommand::decode("set", body.as_bytes())
            .unwrap_err()
            .code,
        RejectionCode::Invalid
    );

    let with_body = |body: serde_json::Value| Action::Command {
        tenant: b.clone(),
        aggregate: "vm".into(),
        action: "stop".into(),
        body,
    };
    assert_eq!(
        code(validate_spec(
            &b,
            &at(with_body(blob(MAX_BODY_BYTES)), json!(null))
        )),
        Some(RejectionCode::TooLarge)
    );
    assert_eq!(
        code(validate_spec(
            &b,
            &at(with_body(json!({"x": "\u{0}"})), json!(null))
        )),
        Some(RejectionCode::Invalid)
    );
    assert_eq!(
        code(validate_spec(
            &b,
            &at(with_body(blob(8 * 1024)), json!(null))
        )),
        None
    );
}

#[test]
fn service_timers_have_one_key_per_tenant() {
    let (a, b) = (tenant("a"), tenant("b"));
    let key = "sub-end-0193a5b0-7c1e-7000-8000-000000000001";
    assert_ne!(service_timer_key(&a, key), service_timer_key(&b, key));
    assert_eq!(service_timer_key(&a, key), service_timer_key(&a, key));
    let set = TimerCommand::Set(SetTimer {
        key: key.into(),
        at: None,
        after_secs: Some(1),
        action: Action::Emit,
        payload: json!(null),
    });
    let scoped = set.for_service(&a);
    assert_eq!(scoped.key(), service_timer_key(&a, key));
    assert!(TimerCommand::decode("set", &scoped.body()).is_ok());
    assert_eq!(
        service_timer_id(&a, key),
        schedule_id(&TenantId::system(), &timer_name(scoped.key()))
    );
}

#[test]
fn fires_name_their_spec_and_old_fires_still_decode() {
    let old = br#"{"due_at":"2026-01-01T00:00:00Z","fired_at":"2026-01-01T00:00:01Z","action":{"kind":"emit"},"payload":{"notify":"x"},"caught_up":false,"manual":false}"#;
    let ScheduleEvent::Fired(fired) =
        ScheduleEvent::decode("berth.schedule.fired.v1", old).unwrap()
    else {
        panic!("not a fire")
    };
    assert_eq!(
        fired.recorded_spec(),
        Some(FiredSpec {
            action: Action::Emit,
            payload: json!({"notify": "x"})
        })
    );
    let new = ScheduleEvent::Fired(ScheduleFired {
        due_at: fired.due_at,
        fired_at: fired.fired_at,
        spec_sequence: Some(7),
        action: None,
        payload: serde_json::Value::Null,
        caught_up: false,
        manual: false,
    });
    let encoded: serde_json::Value = serde_json::from_slice(&new.to_json()).unwrap();
    assert_eq!(encoded.get("payload"), None, "no copy of the payload");
    assert_eq!(encoded.get("action"), None, "no copy of the action");
    assert_eq!(encoded["spec_sequence"], 7);
    let ScheduleEvent::Fired(decoded) =
        ScheduleEvent::decode(new.event_type(), &new.to_json()).unwrap()
    else {
        panic!("not a fire")
    };
    assert_eq!(decoded.recorded_spec(), None);
    let set = ScheduleEvent::Set(ScheduleSet {
        name: "n".into(),
        when: When::At { at: fired.due_at },
        action: Action::Emit,
        catch_up: CatchUp::FireOnce,
        max_catch_up: 1,
        payload: json!(null),
        jitter_secs: 0,
        since: fired.due_at,
    });
    assert_eq!(set.event_type(), SET_EVENT_TYPE);
}
