//! Timers benchmark: N one-shot timers due within one minute, written straight into the
//! log ahead of time, fired by one scheduler on the system clock; fire lateness
//! (`fired_at − due_at` as recorded in each `schedule.fired`) p50/p99 and fires/s.

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::OrderedConfig;
use berth_runtime::store::{event_id, NewEvent};
use berth_runtime::EventStore;
use berth_schemas::envelope::EventMeta;
use berth_schemas::schedule::{
    schedule_id, timer_name, Action, CatchUp, ScheduleEvent, ScheduleSet, When,
};
use berth_schemas::subjects::event_subject;
use berth_schemas::{Actor, DomainEvent};
use berth_tests::{fast_settings, tenant, TestEnv};
use chrono::Utc;
use futures::{stream as fstream, StreamExt};
use uuid::Uuid;

use crate::percentiles;

pub async fn timers(n: usize) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    // Connecting a runtime applies the stream definitions.
    let _streams = env
        .runtime("bench", berth_runtime::Settings::default())
        .await?;
    let store = EventStore::new(env.js.clone(), "EVENTS");
    let bench = tenant("bench");
    // Due from two minutes on (writing them and starting up fit in that), over a minute.
    let first_due = Utc::now() + chrono::Duration::seconds(120);
    let spread_ms = 60_000.0 / n as f64;
    let actor = Actor::parse("service:bench")?;
    eprintln!("… writing {n} timers");
    fstream::iter(0..n)
        .map(|i| {
            let store = store.clone();
            let bench = bench.clone();
            let actor = actor.clone();
            async move {
                let name = timer_name(&format!("t{i}"));
                let id = schedule_id(&bench, &name);
                let at = first_due + chrono::Duration::milliseconds((i as f64 * spread_ms) as i64);
                let event = ScheduleEvent::Set(ScheduleSet {
                    name,
                    when: When::At { at },
                    action: Action::Emit,
                    catch_up: CatchUp::FireOnce,
                    max_catch_up: 1,
                    payload: serde_json::Value::Null,
                    jitter_secs: 0,
                    since: Utc::now(),
                });
                let cause = Uuid::now_v7();
                let new = NewEvent {
                    meta: EventMeta {
                        id: event_id(cause, 0),
                        source: "berth/bench".into(),
                        event_type: event.event_type().into(),
                        time: Utc::now(),
                        subject: id,
                        tenant: bench.clone(),
                        actor,
                        correlation_id: cause,
                        causation_id: cause,
                        traceparent: None,
                    },
                    data: event.to_json(),
                };
                store
                    .append(&event_subject(&bench, "schedule", id), 0, vec![new])
                    .await
                    .map_err(|e| anyhow::anyhow!("append: {e}"))
            }
        })
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(
        Utc::now() < first_due,
        "writing {n} timers took past their due time: use fewer"
    );
    let scheduler = env
        .scheduler_with(
            fast_settings(),
            berth_scheduler::SchedulerConfig {
                builtins: Vec::new(),
                ..Default::default()
            },
        )
        .await?;
    eprintln!("… waiting for {n} fires");
    let stream = env.js.get_stream("EVENTS").await?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: "evt.bench.schedule.*".into(),
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut lateness = Vec::with_capacity(n);
    let mut last_fired = first_due;
    let deadline = Instant::now() + Duration::from_secs(900);
    while lateness.len() < n {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(remaining, messages.next())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "only {} of {n} timers fired within 15 minutes",
                    lateness.len()
                )
            })?
            .ok_or_else(|| anyhow::anyhow!("the event feed ended"))??;
        let stored = berth_runtime::store::StoredEvent::from_jetstream(&message)?;
        if let Ok(ScheduleEvent::Fired(fired)) = stored.decode::<ScheduleEvent>() {
            lateness.push((fired.fired_at - fired.due_at).to_std().unwrap_or_default());
            last_fired = last_fired.max(fired.fired_at);
        }
    }
    scheduler.stop().await?;
    let (p50, p99) = percentiles(lateness);
    let window = (last_fired - first_due).num_milliseconds().max(1) as f64 / 1000.0;
    println!(
        "{:<28} {n} due within 60 s: all fired {:.1} s after the first was due, {:>6.0} fires/s; lateness p50 {:>7.0} µs, p99 {:>9.0} µs",
        format!("timers ({n})"),
        window,
        n as f64 / window.max(60.0),
        p50,
        p99
    );
    Ok(())
}
