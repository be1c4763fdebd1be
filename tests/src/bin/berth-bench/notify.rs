//! Notifier benchmark: N demo-reset events, each mailed to one operator through the
//! notifier (rules → `notification.requested` → the email deliverer → SMTP), into a
//! local aiosmtpd sink; next to the same N mails sent straight with lettre to a sink of
//! the same kind, with the same number in flight.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use berth_notifier::email::Mailer;
use berth_notifier::templates::Templates;
use berth_runtime::store::{event_id, NewEvent};
use berth_runtime::EventStore;
use berth_schemas::demo::{DemoEvent, DemoResetSucceeded};
use berth_schemas::envelope::EventMeta;
use berth_schemas::notification::{notification_id, Channel};
use berth_schemas::subjects::event_subject;
use berth_schemas::{Actor, DomainEvent, TenantId};
use berth_tests::notify::{notifier_config, SmtpSink};
use berth_tests::TestEnv;
use chrono::Utc;
use futures::{stream as fstream, StreamExt};
use uuid::Uuid;

const OPERATOR: &str = "ops@berth.test";
const IN_FLIGHT: usize = 16;

pub async fn notifications(count: usize) -> anyhow::Result<()> {
    eprintln!("… {count} mails straight through lettre");
    let baseline = baseline(count).await?;

    eprintln!("… {count} notifications through the notifier");
    let env = TestEnv::start().await?;
    let sink = SmtpSink::start(true).await?;
    let mut config = notifier_config(Some(sink.url()));
    config.operator_emails = vec![OPERATOR.into()];
    config.email.in_flight = IN_FLIGHT;
    let notifier = env.notifier(config).await?;
    let store = EventStore::new(env.js.clone(), "EVENTS");
    let started = Instant::now();
    let started_unix = Utc::now().timestamp_micros() as f64 / 1e6;
    let written: Vec<(Uuid, f64)> = fstream::iter(0..count)
        .map(|_| write_reset(&store))
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let sent_at: HashMap<String, f64> = written
        .into_iter()
        .map(|(event, at)| {
            let id = notification_id(&event.to_string(), OPERATOR, Channel::Email);
            (format!("<{id}@berth>"), at)
        })
        .collect();
    let mails = sink.wait_for(count, Duration::from_secs(1800)).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut latencies: Vec<Duration> = mails
        .iter()
        .filter_map(|m| {
            let at = sent_at.get(&m.message_id)?;
            Some(Duration::from_secs_f64((m.received_at - at).max(0.0)))
        })
        .collect();
    anyhow::ensure!(
        latencies.len() == count,
        "{} of {count} mails matched their events",
        latencies.len()
    );
    anyhow::ensure!(
        mails.len() == count,
        "{} mails for {count} events",
        mails.len()
    );
    latencies.sort();
    let (p50, p99) = crate::percentiles(latencies);
    let last = mails.iter().map(|m| m.received_at).fold(0.0, f64::max);
    let rate = count as f64 / (last - started_unix).max(elapsed.min(1e-3));
    println!(
        "{:<28} berth {rate:>7.0} mails/s (event → delivered p50 {:>6.0} ms, p99 {:>6.0} ms) | lettre alone {baseline:>7.0} mails/s | ratio {:>4.2}x ({IN_FLIGHT} in flight, {count} mails)",
        "notifications → SMTP",
        p50 / 1e3,
        p99 / 1e3,
        rate / baseline
    );
    notifier.stop().await
}

/// Mails per second with lettre alone into a fresh sink.
async fn baseline(count: usize) -> anyhow::Result<f64> {
    let sink = SmtpSink::start(true).await?;
    let mailer = Mailer::new(
        &sink.url(),
        "berth <noreply@berth.localhost>",
        Duration::from_secs(10),
    )?;
    let templates = Templates::builtin()?;
    let context =
        berth_notifier::samples::context("demo_reset_succeeded", OPERATOR).expect("a sample");
    let rendered = templates.render("demo_reset_succeeded", &context)?;
    let started = Instant::now();
    let results: Vec<_> = fstream::iter(0..count)
        .map(|_| mailer.send(Uuid::now_v7(), OPERATOR, &rendered))
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(results.iter().all(Result::is_ok), "the baseline lost mails");
    sink.wait_for(count, Duration::from_secs(60)).await?;
    Ok(count as f64 / elapsed)
}

/// One demo-reset event on a fresh aggregate; its id and the time it was written.
async fn write_reset(store: &EventStore) -> anyhow::Result<(Uuid, f64)> {
    let system = TenantId::system();
    let demo = Uuid::now_v7();
    let event = DemoEvent::ResetSucceeded(DemoResetSucceeded {
        trigger: Uuid::now_v7(),
        vm_id: Uuid::now_v7(),
        duration_ms: 1_234,
    });
    let cause = Uuid::now_v7();
    let id = event_id(cause, 0);
    let now = Utc::now();
    let new = NewEvent {
        meta: EventMeta {
            id,
            source: "berth/bench".into(),
            event_type: event.event_type().into(),
            time: now,
            subject: demo,
            tenant: system.clone(),
            actor: Actor::service("provisioner"),
            correlation_id: cause,
            causation_id: cause,
            traceparent: None,
        },
        data: event.to_json(),
    };
    store
        .append(&event_subject(&system, "demo", demo), 0, vec![new])
        .await
        .map_err(|e| anyhow::anyhow!("append: {e}"))?;
    Ok((id, now.timestamp_micros() as f64 / 1e6))
}
