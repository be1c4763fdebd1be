//! Schedules and timers fire exactly once per due time: with two scheduler replicas at
//! once, across a restart with each catch-up policy, and for timers that are replaced
//! or cancelled. A fire's command is sent once, with the fire's id as command id and the
//! schedule as actor.
//!
//! And they stay in their tenant (DESIGN §7): a tenant's schedule or timer may send only
//! its own tenant's tenant actions; payloads are bounded and clean; a tenant holds at
//! most 100 cron schedules and 1000 timers, counted race-free across replicas; a tenant's
//! cron fires at most once a minute; a fire copies no payload. Per-second crons below
//! are `system` schedules, which may fire that often.

use std::collections::BTreeSet;
use std::time::Duration;

use berth_runtime::client::{fired_spec, send_command};
use berth_runtime::store::{EventStore, StoredEvent};
use berth_schemas::schedule::{
    schedule_id, slots_id, timer_name, Action, CatchUp, ScheduleCommand, ScheduleEvent,
    ScheduleFired, ScheduleTarget, SetSchedule, SetTimer, TimerCommand, TimerTarget, When,
    SLOTS_AGGREGATE,
};
use berth_schemas::subjects::event_subject;
use berth_schemas::vm::{VmCommand, VmStatus, VmTarget};
use berth_schemas::{CommandReply, CommandSet, RejectionCode, TenantId};
use berth_tests::{accepted_id, eventually, fast_settings, instant_sim, meta, tenant, TestEnv};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

async fn schedule(
    env: &TestEnv,
    tenant: &TenantId,
    command: ScheduleCommand,
) -> anyhow::Result<CommandReply> {
    Ok(send_command(
        &env.client,
        tenant,
        "schedule",
        command.action(),
        &meta(),
        command.body(),
    )
    .await?)
}

async fn timer(
    env: &TestEnv,
    tenant: &TenantId,
    command: TimerCommand,
) -> anyhow::Result<CommandReply> {
    Ok(send_command(
        &env.client,
        tenant,
        "timer",
        command.action(),
        &meta(),
        command.body(),
    )
    .await?)
}

fn every_second(name: &str, catch_up: CatchUp) -> SetSchedule {
    SetSchedule {
        name: name.into(),
        when: When::Cron {
            expression: "* * * * * *".into(),
            timezone: "UTC".into(),
        },
        action: Action::Emit,
        catch_up,
        max_catch_up: 100,
        jitter_secs: 0,
        payload: serde_json::json!({"job": name}),
    }
}

async fn fires(env: &TestEnv, tenant: &TenantId, name: &str) -> anyhow::Result<Vec<ScheduleFired>> {
    let subject = event_subject(tenant, "schedule", schedule_id(tenant, name));
    let events: Vec<StoredEvent> = EventStore::new(env.js.clone(), "EVENTS")
        .read(&subject, 0)
        .await?;
    Ok(events
        .iter()
        .filter_map(|e| match e.decode::<ScheduleEvent>() {
            Ok(ScheduleEvent::Fired(fired)) => Some(fired),
            _ => None,
        })
        .collect())
}

async fn wait_for_fires(
    env: &TestEnv,
    tenant: &TenantId,
    name: &str,
    count: usize,
) -> anyhow::Result<Vec<ScheduleFired>> {
    eventually(&format!("{name} to fire {count} times"), WAIT, || async {
        let fired = fires(env, tenant, name).await?;
        Ok((fired.len() >= count).then_some(fired))
    })
    .await
}

/// Each fire of `name` with the payload of the spec it fired (fires do not copy it).
async fn fired_payloads(
    env: &TestEnv,
    tenant: &TenantId,
    name: &str,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let store = EventStore::new(env.js.clone(), "EVENTS");
    let subject = event_subject(tenant, "schedule", schedule_id(tenant, name));
    let mut payloads = Vec::new();
    for event in store.read(&subject, 0).await? {
        if let Ok(ScheduleEvent::Fired(fired)) = event.decode::<ScheduleEvent>() {
            payloads.push(fired_spec(&store, &event, &fired).await?.payload);
        }
    }
    Ok(payloads)
}

fn code(reply: &CommandReply) -> Option<RejectionCode> {
    reply.rejection().map(|r| r.code)
}

fn system() -> TenantId {
    TenantId::system()
}

/// A cron schedule due daily at 07:00 UTC (never during a test).
fn daily(name: &str) -> SetSchedule {
    SetSchedule {
        when: When::Cron {
            expression: "0 7 * * *".into(),
            timezone: "UTC".into(),
        },
        ..every_second(name, CatchUp::Skip)
    }
}

fn timer_in(key: &str, after_secs: u64, action: Action) -> TimerCommand {
    TimerCommand::Set(SetTimer {
        key: key.into(),
        at: None,
        after_secs: Some(after_secs),
        action,
        payload: serde_json::Value::Null,
    })
}

fn command(target: &TenantId, aggregate: &str, action: &str, body: serde_json::Value) -> Action {
    Action::Command {
        tenant: target.clone(),
        aggregate: aggregate.into(),
        action: action.into(),
        body,
    }
}

/// Due times one second apart, none twice.
fn assert_consecutive(due: &[DateTime<Utc>]) {
    let unique: BTreeSet<_> = due.iter().collect();
    assert_eq!(unique.len(), due.len(), "a due time fired twice: {due:?}");
    for pair in due.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            chrono::Duration::seconds(1),
            "a due time was lost: {due:?}"
        );
    }
}

#[tokio::test]
async fn two_replicas_fire_each_due_time_once() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let first = env.scheduler(fast_settings()).await?;
    let second = env.scheduler(fast_settings()).await?;
    let acme = system();
    let created = schedule(
        &env,
        &acme,
        ScheduleCommand::Create(every_second("tick", CatchUp::Skip)),
    )
    .await?;
    assert!(accepted_id(&created).is_some(), "{created:?}");
    let again = schedule(
        &env,
        &acme,
        ScheduleCommand::Create(every_second("tick", CatchUp::Skip)),
    )
    .await?;
    assert!(
        matches!(&again, CommandReply::Accepted { events, .. } if events.is_empty()),
        "creating the same schedule again is a no-op: {again:?}"
    );

    let fired = wait_for_fires(&env, &acme, "tick", 4).await?;
    let due: Vec<_> = fired.iter().map(|f| f.due_at).collect();
    assert_consecutive(&due);
    assert!(fired.iter().all(|f| !f.caught_up && !f.manual));
    // A fire names its spec and copies neither its payload nor its action.
    assert!(
        fired
            .iter()
            .all(|f| f.spec_sequence.is_some() && f.payload.is_null() && f.action.is_none()),
        "{fired:?}"
    );
    let payloads = fired_payloads(&env, &acme, "tick").await?;
    assert!(payloads.iter().all(|p| p["job"] == "tick"), "{payloads:?}");

    // Paused: no fires; the count stays put once the pause is recorded.
    let paused = schedule(
        &env,
        &acme,
        ScheduleCommand::Pause(ScheduleTarget {
            name: "tick".into(),
        }),
    )
    .await?;
    assert!(accepted_id(&paused).is_some());
    let at_pause = fires(&env, &acme, "tick").await?.len();
    let manual = schedule(
        &env,
        &acme,
        ScheduleCommand::FireNow(ScheduleTarget {
            name: "tick".into(),
        }),
    )
    .await?;
    assert!(accepted_id(&manual).is_some(), "{manual:?}");
    let after = wait_for_fires(&env, &acme, "tick", at_pause + 1).await?;
    assert!(
        after.last().is_some_and(|f| f.manual),
        "fire-now fires a paused schedule once"
    );
    assert!(
        after.len() <= at_pause + 2,
        "a pause raced at most one fire in flight"
    );
    let refused = schedule(
        &env,
        &acme,
        ScheduleCommand::Pause(ScheduleTarget {
            name: "tick".into(),
        }),
    )
    .await?;
    assert_eq!(
        refused.rejection().map(|r| r.code),
        Some(RejectionCode::InvalidState)
    );
    second.stop().await?;
    first.stop().await
}

#[tokio::test]
async fn after_downtime_each_catch_up_policy_fires_what_it_promises() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let acme = system();
    let scheduler = env.scheduler(fast_settings()).await?;
    for (name, policy) in [
        ("skip", CatchUp::Skip),
        ("once", CatchUp::FireOnce),
        ("all", CatchUp::FireAll),
    ] {
        assert!(accepted_id(
            &schedule(
                &env,
                &acme,
                ScheduleCommand::Create(every_second(name, policy))
            )
            .await?
        )
        .is_some());
    }
    for name in ["skip", "once", "all"] {
        wait_for_fires(&env, &acme, name, 2).await?;
    }
    scheduler.stop().await?;
    let stopped_at = Utc::now();
    let before: Vec<usize> = [
        fires(&env, &acme, "skip").await?.len(),
        fires(&env, &acme, "once").await?.len(),
        fires(&env, &acme, "all").await?.len(),
    ]
    .to_vec();
    // The downtime itself is what is tested: let four due times pass unfired.
    tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_secs(4)).await;
    let restarted_at = Utc::now();
    let scheduler = env.scheduler(fast_settings()).await?;

    let skip = wait_for_fires(&env, &acme, "skip", before[0] + 1).await?;
    let first_after = &skip[before[0]];
    assert!(
        !first_after.caught_up && first_after.due_at >= restarted_at - chrono::Duration::seconds(2),
        "skip: {first_after:?}"
    );

    let once = wait_for_fires(&env, &acme, "once", before[1] + 2).await?;
    let caught_up: Vec<_> = once[before[1]..].iter().filter(|f| f.caught_up).collect();
    let summary: Vec<_> = once
        .iter()
        .map(|f| {
            (
                f.due_at.format("%M:%S").to_string(),
                f.fired_at.format("%M:%S%.3f").to_string(),
                f.caught_up,
            )
        })
        .collect();
    assert_eq!(caught_up.len(), 1, "fire_once: one catch-up fire (stopped {stopped_at}, restarted {restarted_at}): {summary:?}");

    let all = wait_for_fires(&env, &acme, "all", before[2] + 5).await?;
    let due: Vec<_> = all.iter().map(|f| f.due_at).collect();
    assert_consecutive(&due);
    let missed = all
        .iter()
        .filter(|f| f.due_at > stopped_at && f.due_at < restarted_at)
        .count();
    assert!(
        missed >= 3,
        "fire_all fired the missed due times: {missed} of {due:?}"
    );
    assert!(all[before[2]..].iter().any(|f| f.caught_up));
    scheduler.stop().await
}

#[tokio::test]
async fn timers_fire_once_a_set_replaces_and_a_cancel_silences() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let scheduler = env.scheduler(fast_settings()).await?;
    let acme = tenant("acme");
    let set = |key: &str, after_secs: u64, payload: serde_json::Value| {
        TimerCommand::Set(SetTimer {
            key: key.into(),
            at: None,
            after_secs: Some(after_secs),
            action: Action::Emit,
            payload,
        })
    };
    // Replaced: set for an hour, then for one second with another payload.
    assert!(accepted_id(
        &timer(
            &env,
            &acme,
            set("expiry", 3600, serde_json::json!({"v": 1}))
        )
        .await?
    )
    .is_some());
    assert!(
        accepted_id(&timer(&env, &acme, set("expiry", 1, serde_json::json!({"v": 2}))).await?)
            .is_some()
    );
    // Cancelled before it is due; a later timer proves time has passed it.
    assert!(
        accepted_id(&timer(&env, &acme, set("never", 1, serde_json::Value::Null)).await?).is_some()
    );
    let cancel = TimerCommand::Cancel(TimerTarget {
        key: "never".into(),
    });
    assert!(accepted_id(&timer(&env, &acme, cancel).await?).is_some());
    assert!(
        accepted_id(&timer(&env, &acme, set("later", 2, serde_json::Value::Null)).await?).is_some()
    );

    wait_for_fires(&env, &acme, &timer_name("later"), 1).await?;
    let expiry = wait_for_fires(&env, &acme, &timer_name("expiry"), 1).await?;
    assert_eq!(expiry.len(), 1);
    assert_eq!(
        fired_payloads(&env, &acme, &timer_name("expiry")).await?,
        vec![json!({"v": 2})],
        "the payload of the spec in force when it fired"
    );
    // The fire in the log holds no copy of it.
    let subject = event_subject(&acme, "schedule", schedule_id(&acme, &timer_name("expiry")));
    let raw = EventStore::new(env.js.clone(), "EVENTS")
        .read(&subject, 0)
        .await?
        .into_iter()
        .find(|e| e.meta.event_type == "berth.schedule.fired.v1")
        .expect("the fire");
    let data: serde_json::Value = serde_json::from_slice(&raw.data)?;
    assert!(
        data.get("payload").is_none() && data.get("action").is_none(),
        "{data}"
    );
    assert!(
        fires(&env, &acme, &timer_name("never")).await?.is_empty(),
        "a cancelled timer never fires"
    );
    scheduler.stop().await
}

#[tokio::test]
#[allow(
    clippy::disallowed_methods,
    reason = "a stand-in service answers the command on its reply subject"
)]
async fn a_system_fire_sends_its_command_once_with_the_fire_as_command_id_and_the_schedule_as_actor(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let acme = tenant("acme");
    // A stand-in service for the target: answers every command and records its id. Only
    // a `system` schedule may aim at a subject berth does not serve.
    let mut target = env.client.subscribe("cmd.acme.widget.poke").await?;
    let scheduler = env.scheduler(fast_settings()).await?;
    let set = timer_in(
        "poke",
        1,
        command(&acme, "widget", "poke", json!({"hello": "widget"})),
    );
    assert!(accepted_id(&timer(&env, &system(), set).await?).is_some());
    let request = tokio::time::timeout(WAIT, target.next())
        .await?
        .expect("a command");
    let header = |name: &str| {
        request
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
    };
    let command_id = header("ce-id").expect("a command id");
    let reply = serde_json::to_vec(
        &serde_json::json!({"status": "accepted", "aggregate_id": uuid::Uuid::nil(), "version": 1, "events": []}),
    )?;
    env.client
        .publish(
            request.reply.clone().expect("a reply subject"),
            reply.into(),
        )
        .await?;
    let body: serde_json::Value = serde_json::from_slice(&request.payload)?;
    assert_eq!(body, serde_json::json!({"hello": "widget"}));

    let id = schedule_id(&system(), &timer_name("poke"));
    assert_eq!(header("ce-actor"), Some(format!("schedule:{id}")));
    let subject = event_subject(&system(), "schedule", id);
    let events = EventStore::new(env.js.clone(), "EVENTS")
        .read(&subject, 0)
        .await?;
    let fired = events
        .iter()
        .find(|e| e.meta.event_type == "berth.schedule.fired.v1")
        .expect("fired");
    assert_eq!(command_id, fired.meta.id.to_string());
    scheduler.stop().await
}

#[tokio::test]
async fn a_tenant_timer_stops_its_own_vm_once_as_the_schedule() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let provisioner = env.provisioner(fast_settings(), instant_sim()).await?;
    let scheduler = env.scheduler(fast_settings()).await?;
    let acme = tenant("acme");
    let vm = env.create(&acme, "nightly").await?;
    env.wait_vm_status(&acme, vm, VmStatus::Running).await?;
    let stop = VmCommand::Stop(VmTarget {
        vm_id: vm,
        expected_version: None,
    });
    let body: serde_json::Value = serde_json::from_slice(&stop.body())?;
    let set = timer_in("stop-for-the-night", 1, command(&acme, "vm", "stop", body));
    assert!(accepted_id(&timer(&env, &acme, set).await?).is_some());
    env.wait_vm_status(&acme, vm, VmStatus::Stopped).await?;

    let id = schedule_id(&acme, &timer_name("stop-for-the-night"));
    let fires = wait_for_fires(&env, &acme, &timer_name("stop-for-the-night"), 1).await?;
    assert_eq!(fires.len(), 1, "a timer fires once");
    let store = EventStore::new(env.js.clone(), "EVENTS");
    let fire = store
        .read(&event_subject(&acme, "schedule", id), 0)
        .await?
        .into_iter()
        .find(|e| e.meta.event_type == "berth.schedule.fired.v1")
        .expect("the fire");
    let vm_events = store.read(&event_subject(&acme, "vm", vm), 0).await?;
    let requested: Vec<&StoredEvent> = vm_events
        .iter()
        .filter(|e| e.meta.event_type == "berth.vm.stop_requested.v1")
        .collect();
    assert_eq!(requested.len(), 1, "stopped once");
    assert_eq!(requested[0].meta.actor.as_str(), format!("schedule:{id}"));
    assert_eq!(
        requested[0].meta.causation_id, fire.meta.id,
        "the command id is the fire's event id"
    );
    // The timer held one of acme's timer slots until it fired.
    let slots = store
        .read(&event_subject(&acme, SLOTS_AGGREGATE, slots_id(&acme)), 0)
        .await?;
    let types: Vec<&str> = slots.iter().map(|e| e.meta.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "berth.schedule_slots.held.v1",
            "berth.schedule_slots.released.v1"
        ]
    );
    scheduler.stop().await?;
    provisioner.stop().await
}

#[tokio::test]
async fn a_tenant_schedule_or_timer_aimed_beyond_its_own_tenant_actions_is_forbidden(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let scheduler = env.scheduler(fast_settings()).await?;
    let (a, b) = (tenant("a"), tenant("b"));
    let vm = uuid::Uuid::now_v7();
    let aims = [
        (
            "another tenant's vm",
            command(&a, "vm", "stop", json!({"vm_id": vm})),
        ),
        (
            "system's quota",
            command(
                &system(),
                "tenant",
                "set_quota",
                json!({"tenant": "b", "limits": {"vms": 1000}}),
            ),
        ),
        (
            "an operator action of its own tenant",
            command(
                &b,
                "payment",
                "record",
                json!({"amount_minor": 100000, "reference": "free money"}),
            ),
        ),
        (
            "a subject berth does not serve",
            command(&b, "widget", "poke", json!({})),
        ),
    ];
    let before = env.last_sequence_of("evt.b.>").await?;
    for (what, action) in &aims {
        let set = timer_in("sneaky", 1, action.clone());
        let reply = timer(&env, &b, set).await?;
        assert_eq!(
            code(&reply),
            Some(RejectionCode::Forbidden),
            "timer at {what}: {reply:?}"
        );
        let create = ScheduleCommand::Create(SetSchedule {
            action: action.clone(),
            ..daily("sneaky")
        });
        let reply = schedule(&env, &b, create).await?;
        assert_eq!(
            code(&reply),
            Some(RejectionCode::Forbidden),
            "schedule at {what}: {reply:?}"
        );
        assert!(!reply.rejection().expect("refused").message.is_empty());
    }
    assert_eq!(
        env.last_sequence_of("evt.b.>").await?,
        before,
        "nothing appended for b"
    );
    assert_eq!(env.last_sequence_of("evt.b.schedule.>").await?, 0);
    // A system schedule may aim at all of them (set an hour out: nothing fires here).
    for (index, (what, action)) in aims.into_iter().enumerate() {
        let set = timer_in(&format!("operator-{index}"), 3600, action);
        let reply = timer(&env, &system(), set).await?;
        assert!(
            accepted_id(&reply).is_some(),
            "system timer at {what}: {reply:?}"
        );
    }
    scheduler.stop().await
}

#[tokio::test]
async fn unclean_or_oversized_payloads_are_refused_with_typed_codes() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let scheduler = env.scheduler(fast_settings()).await?;
    let b = tenant("b");
    let before = env.last_sequence_of("evt.b.>").await?;
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let cases: [(&str, String, RejectionCode); 5] = [
        (
            "a NUL",
            r#"{"note":"a\u0000b"}"#.to_owned(),
            RejectionCode::Invalid,
        ),
        ("10 000 deep", deep, RejectionCode::Invalid),
        (
            // As much as NATS carries (its max_payload is 1 MiB; a larger message never
            // reaches berth): berth refuses it by size before reading it.
            "1 MiB",
            json!({"blob": "x".repeat(1024 * 1024 - 4096)}).to_string(),
            RejectionCode::TooLarge,
        ),
        (
            "5 KiB from a tenant",
            json!({"blob": "x".repeat(5 * 1024)}).to_string(),
            RejectionCode::TooLarge,
        ),
        (
            "a command body of 20 KiB",
            String::new(),
            RejectionCode::TooLarge,
        ),
    ];
    for (what, payload, expected) in &cases {
        let (timer_body, schedule_body) = if payload.is_empty() {
            let action = json!({"kind": "command", "tenant": "b", "aggregate": "vm", "action": "stop",
                                "body": {"vm_id": uuid::Uuid::nil(), "note": "x".repeat(20 * 1024)}});
            (
                json!({"key": "k", "after_secs": 60, "action": action}).to_string(),
                json!({"name": "n", "when": {"kind": "cron", "expression": "0 7 * * *", "timezone": "UTC"},
                       "action": action})
                .to_string(),
            )
        } else {
            (
                format!(r#"{{"key":"k","after_secs":60,"payload":{payload}}}"#),
                format!(
                    r#"{{"name":"n","when":{{"kind":"cron","expression":"0 7 * * *","timezone":"UTC"}},"payload":{payload}}}"#
                ),
            )
        };
        for (kind, action, body) in [
            ("timer", "set", timer_body),
            ("schedule", "create", schedule_body),
        ] {
            let reply =
                send_command(&env.client, &b, kind, action, &meta(), body.into_bytes()).await?;
            assert_eq!(
                code(&reply),
                Some(*expected),
                "{kind} with {what}: {reply:?}"
            );
        }
    }
    assert_eq!(env.last_sequence_of("evt.b.>").await?, before);
    // Within the bounds it is fine.
    let fine = TimerCommand::Set(SetTimer {
        payload: json!({"blob": "x".repeat(3 * 1024)}),
        ..match timer_in("k", 60, Action::Emit) {
            TimerCommand::Set(set) => set,
            TimerCommand::Cancel(_) => unreachable!(),
        }
    });
    assert!(accepted_id(&timer(&env, &b, fine).await?).is_some());
    scheduler.stop().await
}

#[tokio::test]
async fn a_tenant_holds_at_most_100_schedules_counted_race_free_across_replicas(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let first = env.scheduler(fast_settings()).await?;
    let second = env.scheduler(fast_settings()).await?;
    let busy = tenant("busy");
    let create = |name: String| {
        let env = &env;
        let busy = busy.clone();
        async move { schedule(env, &busy, ScheduleCommand::Create(daily(&name))).await }
    };
    let created = futures::stream::iter((0..95).map(|i| create(format!("job-{i}"))))
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    for reply in created {
        let reply = reply?;
        assert!(accepted_id(&reply).is_some(), "{reply:?}");
    }
    // Ten at once for the last five slots, through both replicas.
    let raced = futures::future::join_all((0..10).map(|i| create(format!("race-{i}")))).await;
    let mut accepted = 0;
    for reply in raced {
        let reply = reply?;
        match code(&reply) {
            None => accepted += 1,
            Some(RejectionCode::QuotaExceeded) => {
                let message = &reply.rejection().expect("refused").message;
                assert!(message.contains("100 cron schedules"), "{message}");
            }
            other => panic!("{other:?}: {reply:?}"),
        }
    }
    assert_eq!(accepted, 5, "exactly the free slots");
    // The 101st is refused; an update or a repeat of one held is no new slot.
    let extra = create("job-extra".into()).await?;
    assert_eq!(
        code(&extra),
        Some(RejectionCode::QuotaExceeded),
        "{extra:?}"
    );
    assert!(accepted_id(&create("job-0".into()).await?).is_some());
    let update = ScheduleCommand::Update(SetSchedule {
        jitter_secs: 5,
        ..daily("job-1")
    });
    assert!(accepted_id(&schedule(&env, &busy, update).await?).is_some());
    // A delete frees one.
    let delete = ScheduleCommand::Delete(ScheduleTarget {
        name: "job-2".into(),
    });
    assert!(accepted_id(&schedule(&env, &busy, delete).await?).is_some());
    assert!(accepted_id(&create("job-extra".into()).await?).is_some());
    let over = create("job-extra-2".into()).await?;
    assert_eq!(code(&over), Some(RejectionCode::QuotaExceeded));
    // `system` has no cap.
    for i in 0..3 {
        let name = format!("system-{i}");
        assert!(accepted_id(
            &schedule(&env, &system(), ScheduleCommand::Create(daily(&name))).await?
        )
        .is_some());
    }
    second.stop().await?;
    first.stop().await
}

#[tokio::test]
async fn a_tenant_holds_at_most_1000_timers_and_a_fired_one_frees_its_slot() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let scheduler = env.scheduler(fast_settings()).await?;
    let busy = tenant("busy");
    let set = |key: String, after_secs: u64| {
        let env = &env;
        let busy = busy.clone();
        async move { timer(env, &busy, timer_in(&key, after_secs, Action::Emit)).await }
    };
    let replies = futures::stream::iter((0..999).map(|i| set(format!("later-{i}"), 3600)))
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    for reply in replies {
        let reply = reply?;
        assert!(accepted_id(&reply).is_some(), "{reply:?}");
    }
    assert!(accepted_id(&set("soon".into(), 1).await?).is_some());
    let over = set("one-more".into(), 3600).await?;
    assert_eq!(code(&over), Some(RejectionCode::QuotaExceeded), "{over:?}");
    // Setting a held key again replaces it in its slot.
    assert!(accepted_id(&set("later-0".into(), 7200).await?).is_some());
    wait_for_fires(&env, &busy, &timer_name("soon"), 1).await?;
    let freed = eventually("the fired timer's slot", WAIT, || async {
        let reply = set("one-more".into(), 3600).await?;
        Ok(accepted_id(&reply).is_some().then_some(()))
    })
    .await;
    freed?;
    let over = set("two-more".into(), 3600).await?;
    assert_eq!(code(&over), Some(RejectionCode::QuotaExceeded));
    let cancel = TimerCommand::Cancel(TimerTarget {
        key: "later-1".into(),
    });
    assert!(accepted_id(&timer(&env, &busy, cancel).await?).is_some());
    assert!(accepted_id(&set("two-more".into(), 3600).await?).is_some());
    scheduler.stop().await
}

#[tokio::test]
async fn per_second_crons_are_for_system_schedules_only() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let scheduler = env.scheduler(fast_settings()).await?;
    let acme = tenant("acme");
    let cron = |name: &str, expression: &str| {
        ScheduleCommand::Create(SetSchedule {
            when: When::Cron {
                expression: expression.into(),
                timezone: "UTC".into(),
            },
            ..daily(name)
        })
    };
    for expression in ["* * * * * *", "*/30 * * * * *", "0,1 * * * * *"] {
        let reply = schedule(&env, &acme, cron("fast", expression)).await?;
        assert_eq!(
            code(&reply),
            Some(RejectionCode::Invalid),
            "{expression}: {reply:?}"
        );
        let message = &reply.rejection().expect("refused").message;
        assert!(message.contains("once a minute"), "{message}");
    }
    assert_eq!(env.last_sequence_of("evt.acme.schedule.>").await?, 0);
    for (name, expression) in [("minutely", "* * * * *"), ("at-thirty", "30 * * * * *")] {
        let reply = schedule(&env, &acme, cron(name, expression)).await?;
        assert!(accepted_id(&reply).is_some(), "{expression}: {reply:?}");
    }
    let reply = schedule(&env, &system(), cron("fast", "* * * * * *")).await?;
    assert!(accepted_id(&reply).is_some(), "{reply:?}");
    wait_for_fires(&env, &system(), "fast", 2).await?;
    scheduler.stop().await
}

mod simulated_time {
    use super::*;
    use berth_scheduler::clock::ManualClock;
    use berth_scheduler::SchedulerConfig;
    use std::sync::Arc;

    fn every_ten_seconds(name: &str, catch_up: CatchUp) -> SetSchedule {
        SetSchedule {
            when: When::Cron {
                expression: "*/10 * * * * *".into(),
                timezone: "UTC".into(),
            },
            ..every_second(name, catch_up)
        }
    }

    fn config(clock: &Arc<ManualClock>) -> SchedulerConfig {
        SchedulerConfig {
            builtins: Vec::new(),
            clock: clock.clone(),
        }
    }

    /// Half a second past a due time, so each step lands just after one.
    fn start() -> DateTime<Utc> {
        "2026-01-01T00:00:00.5Z".parse().expect("a time")
    }

    #[tokio::test]
    async fn a_simulated_hour_fires_360_times_each_once_with_two_replicas() -> anyhow::Result<()> {
        let env = TestEnv::start().await?;
        let clock = Arc::new(ManualClock::starting_at(start()));
        let first = env.scheduler_with(fast_settings(), config(&clock)).await?;
        let second = env.scheduler_with(fast_settings(), config(&clock)).await?;
        let acme = system();
        let set = ScheduleCommand::Create(every_ten_seconds("tenth", CatchUp::Skip));
        assert!(accepted_id(&schedule(&env, &acme, set).await?).is_some());
        for step in 1..=360 {
            clock.advance(chrono::Duration::seconds(10));
            wait_for_fires(&env, &acme, "tenth", step).await?;
        }
        let fired = fires(&env, &acme, "tenth").await?;
        assert_eq!(fired.len(), 360, "one simulated hour of */10");
        let due: Vec<_> = fired.iter().map(|f| f.due_at).collect();
        let unique: BTreeSet<_> = due.iter().collect();
        assert_eq!(unique.len(), 360, "no due time fired twice");
        for pair in due.windows(2) {
            assert_eq!(pair[1] - pair[0], chrono::Duration::seconds(10));
        }
        assert_eq!(due[0], "2026-01-01T00:00:10Z".parse::<DateTime<Utc>>()?);
        assert_eq!(due[359], "2026-01-01T01:00:00Z".parse::<DateTime<Utc>>()?);
        second.stop().await?;
        first.stop().await
    }

    #[tokio::test]
    async fn five_simulated_minutes_down_catch_up_none_one_or_thirty() -> anyhow::Result<()> {
        let env = TestEnv::start().await?;
        let clock = Arc::new(ManualClock::starting_at(start()));
        let acme = system();
        let scheduler = env.scheduler_with(fast_settings(), config(&clock)).await?;
        let policies = [
            ("skip", CatchUp::Skip),
            ("once", CatchUp::FireOnce),
            ("all", CatchUp::FireAll),
        ];
        for (name, policy) in policies {
            let set = ScheduleCommand::Create(every_ten_seconds(name, policy));
            assert!(accepted_id(&schedule(&env, &acme, set).await?).is_some());
        }
        for step in 1..=2 {
            clock.advance(chrono::Duration::seconds(10));
            for (name, _) in policies {
                wait_for_fires(&env, &acme, name, step).await?;
            }
        }
        scheduler.stop().await?;
        // Down from 00:00:20.5 to 00:05:20.5: the 30 due times 00:00:30 … 00:05:20 pass.
        clock.advance(chrono::Duration::minutes(5));
        let scheduler = env.scheduler_with(fast_settings(), config(&clock)).await?;
        wait_for_fires(&env, &acme, "once", 3).await?;
        wait_for_fires(&env, &acme, "all", 32).await?;
        // One more on-time fire each proves the restarted engine has made its decisions.
        clock.advance(chrono::Duration::seconds(10));
        let on_time: DateTime<Utc> = "2026-01-01T00:05:30Z".parse()?;
        for (name, _) in policies {
            eventually(&format!("{name} to fire at 00:05:30"), WAIT, || async {
                let fired = fires(&env, &acme, name).await?;
                Ok(fired
                    .iter()
                    .any(|f| f.due_at == on_time && !f.caught_up)
                    .then_some(()))
            })
            .await?;
        }
        let down_from: DateTime<Utc> = "2026-01-01T00:00:20Z".parse()?;
        let caught_up = |fired: &[ScheduleFired]| {
            fired
                .iter()
                .filter(|f| f.due_at > down_from && f.due_at < on_time)
                .inspect(|f| assert!(f.caught_up, "{f:?}"))
                .count()
        };
        assert_eq!(
            caught_up(&fires(&env, &acme, "skip").await?),
            0,
            "skip: none"
        );
        assert_eq!(
            caught_up(&fires(&env, &acme, "once").await?),
            1,
            "fire_once: one"
        );
        let all = fires(&env, &acme, "all").await?;
        assert_eq!(caught_up(&all), 30, "fire_all: thirty");
        let due: BTreeSet<_> = all.iter().map(|f| f.due_at).collect();
        assert_eq!(due.len(), all.len(), "no due time fired twice");
        scheduler.stop().await
    }
}
