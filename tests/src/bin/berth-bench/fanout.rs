//! Dashboard fan-out: status updates at a fixed rate into the last-value `STATUS`
//! stream (as projections publish them), each received by N subscribers on
//! `status.<tenant>.>` (browser-like plain NATS subscriptions); the delay from publish
//! to receipt, next to the same rate and subscribers over core NATS with no stream.

use std::time::{Duration, Instant};

use berth_tests::TestEnv;
use futures::StreamExt;

/// What one run measured.
struct Run {
    p50_ms: f64,
    p99_ms: f64,
    received: usize,
}

pub async fn fanout(rate: usize, subscribers: usize) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    // Apply the streams (STATUS among them) as any service would.
    let _rt = env
        .runtime("bench", berth_runtime::Settings::default())
        .await?;
    let seconds = 10;
    let through_stream = run(&env, rate, subscribers, seconds, true).await?;
    let core = run(&env, rate, subscribers, seconds, false).await?;
    println!(
        "{:<28} berth p50 {:>6.1} ms  p99 {:>6.1} ms | core NATS p50 {:>6.1} ms  p99 {:>6.1} ms | ratio p99 {:>4.1}x ({rate} updates/s for {seconds} s to {subscribers} subscribers, {} and {} deliveries)",
        "status fan-out (dashboard)",
        through_stream.p50_ms,
        through_stream.p99_ms,
        core.p50_ms,
        core.p99_ms,
        through_stream.p99_ms / core.p99_ms.max(1e-3),
        through_stream.received,
        core.received,
    );
    Ok(())
}

#[allow(
    clippy::disallowed_methods,
    reason = "measures fan-out of messages published straight to NATS and JetStream"
)]
async fn run(
    env: &TestEnv,
    rate: usize,
    subscribers: usize,
    seconds: usize,
    through_stream: bool,
) -> anyhow::Result<Run> {
    let prefix = if through_stream {
        "status.fanout"
    } else {
        "core.fanout"
    };
    let total = rate * seconds;
    let mut receivers = Vec::new();
    for _ in 0..subscribers {
        let client = async_nats::connect(&env.connect.nats_url).await?;
        let mut subscription = client.subscribe(format!("{prefix}.>")).await?;
        client.flush().await?;
        receivers.push(tokio::spawn(async move {
            let mut delays = Vec::with_capacity(total);
            while delays.len() < total {
                let next = tokio::time::timeout(Duration::from_secs(30), subscription.next()).await;
                let Ok(Some(message)) = next else { break };
                let sent: u128 = std::str::from_utf8(&message.payload)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_micros())
                    .unwrap_or(0);
                delays.push(Duration::from_micros(now.saturating_sub(sent) as u64));
            }
            (client, delays)
        }));
    }
    let publisher = async_nats::connect(&env.connect.nats_url).await?;
    let js = async_nats::jetstream::new(publisher.clone());
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let started = Instant::now();
    let mut acks = Vec::new();
    for i in 0..total {
        let due = started + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        // One subject per thing, as `status.<tenant>.<kind>.<id>`: 100 things updated in turn.
        let subject = format!("{prefix}.vm.{}", i % 100);
        let sent = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_micros()
            .to_string();
        if through_stream {
            // Acks are awaited as they come: the client bounds the acks outstanding.
            let ack = js.publish(subject, sent.into()).await?;
            acks.push(tokio::spawn(async move { ack.await }));
        } else {
            publisher.publish(subject, sent.into()).await?;
        }
    }
    for ack in acks {
        ack.await??;
    }
    publisher.flush().await?;
    let mut delays = Vec::new();
    for receiver in receivers {
        let (_client, received) = receiver.await?;
        delays.extend(received);
    }
    let received = delays.len();
    anyhow::ensure!(
        received == total * subscribers,
        "{received} of {} deliveries arrived",
        total * subscribers
    );
    let (p50, p99) = crate::percentiles(delays);
    Ok(Run {
        p50_ms: p50 / 1e3,
        p99_ms: p99 / 1e3,
        received,
    })
}
