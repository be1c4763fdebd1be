//! Schedules and timers fire exactly once per due time: with two scheduler replicas at
//! once, across a restart with each catch-up policy, and for timers that are replaced
//! or cancelled. A fire's command is sent once, with the fire's id as command id.

use std::collections::BTreeSet;
use std::time::Duration;

use berth_runtime::client::send_command;
use berth_runtime::store::{EventStore, StoredEvent};
use berth_schemas::schedule::{
    schedule_id, timer_name, Action, CatchUp, ScheduleCommand, ScheduleEvent, ScheduleFired,
    ScheduleTarget, SetSchedule, SetTimer, TimerCommand, TimerTarget, When,
};
use berth_schemas::subjects::event_subject;
use berth_schemas::{CommandReply, CommandSet, RejectionCode, TenantId};
use berth_tests::{accepted_id, eventually, fast_settings, meta, tenant, TestEnv};
use chrono::{DateTime, Utc};
use futures::StreamExt;

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
    let acme = tenant("acme");
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
    assert!(fired
        .iter()
        .all(|f| !f.caught_up && !f.manual && f.payload["job"] == "tick"));

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
    let acme = tenant("acme");
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
    assert_eq!(expiry[0].payload, serde_json::json!({"v": 2}));
    assert!(
        fires(&env, &acme, &timer_name("never")).await?.is_empty(),
        "a cancelled timer never fires"
    );
    scheduler.stop().await
}

#[tokio::test]
async fn a_fire_sends_its_command_once_with_the_fire_as_command_id() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let acme = tenant("acme");
    // A stand-in service for the target: answers every command and records its id.
    let mut target = env.client.subscribe("cmd.acme.widget.poke").await?;
    let scheduler = env.scheduler(fast_settings()).await?;
    let set = TimerCommand::Set(SetTimer {
        key: "poke".into(),
        at: None,
        after_secs: Some(1),
        action: Action::Command {
            tenant: acme.clone(),
            aggregate: "widget".into(),
            action: "poke".into(),
            body: serde_json::json!({"hello": "widget"}),
        },
        payload: serde_json::Value::Null,
    });
    assert!(accepted_id(&timer(&env, &acme, set).await?).is_some());
    let request = tokio::time::timeout(WAIT, target.next())
        .await?
        .expect("a command");
    let command_id = request
        .headers
        .as_ref()
        .and_then(|h| h.get("ce-id"))
        .map(|v| v.as_str().to_owned())
        .expect("a command id");
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

    let subject = event_subject(&acme, "schedule", schedule_id(&acme, &timer_name("poke")));
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
        let acme = tenant("acme");
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
        let acme = tenant("acme");
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
