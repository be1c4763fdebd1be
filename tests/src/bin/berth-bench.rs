//! `just bench`: berth's speed next to raw JetStream on the same machine, same run.
//!
//! 1. publish-ack round trip: raw JetStream (a `BENCH` stream with the same storage
//!    settings) vs a berth command (`vm.create`: load, decide, atomic 2-event append, reply);
//! 2. command-to-status: `vm.create` until `status.<tenant>.vm.<id>` says running (sim
//!    provider with no latency) vs the raw publish-ack round trip;
//! 3. rebuild rate: the `vms` projection rebuilt from N events vs a raw ordered consumer
//!    reading the same N events.

use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, consumer, stream};
use berth_provisioner::projection::VmsProjection;
use berth_runtime::client::{status_of, wait_for_status};
use berth_runtime::projection::rebuild;
use berth_runtime::store::{event_id, NewEvent};
use berth_runtime::{EventStore, Settings};
use berth_schemas::envelope::EventMeta;
use berth_schemas::subjects::{event_subject, status_subject};
use berth_schemas::vm::{Empty, VmEvent, VmPlaced, VmProvisioned, VmRequested};
use berth_schemas::{Actor, CommandReply, DomainEvent};
use berth_tests::{create_vm, fast_settings, instant_sim, meta, tenant, TestEnv};
use futures::{stream as fstream, StreamExt};
use uuid::Uuid;

struct Args {
    round_trips: usize,
    status_trips: usize,
    rebuild_events: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        round_trips: 2000,
        status_trips: 300,
        rebuild_events: 200_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value: usize = it.next().context("every flag takes a number")?.parse()?;
        match flag.as_str() {
            "--round-trips" => args.round_trips = value,
            "--status-trips" => args.status_trips = value,
            "--rebuild-events" => args.rebuild_events = value,
            other => anyhow::bail!(
                "unknown flag {other}; use --round-trips N --status-trips N --rebuild-events N"
            ),
        }
    }
    Ok(args)
}

/// p50 and p99 of a set of durations, in microseconds.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at =
        |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e6;
    (at(0.50), at(0.99))
}

fn row(name: &str, berth: (f64, f64), raw: (f64, f64)) {
    println!(
        "{name:<28} berth p50 {:>9.0} µs  p99 {:>9.0} µs | raw p50 {:>7.0} µs  p99 {:>7.0} µs | ratio p50 {:>5.1}x  p99 {:>5.1}x",
        berth.0, berth.1, raw.0, raw.1, berth.0 / raw.0, berth.1 / raw.1
    );
}

async fn raw_publish_round_trips(
    js: &jetstream::Context,
    n: usize,
) -> anyhow::Result<Vec<Duration>> {
    js.create_stream(stream::Config {
        name: "BENCH".into(),
        subjects: vec!["bench.>".into()],
        storage: stream::StorageType::File,
        allow_direct: true,
        ..Default::default()
    })
    .await?;
    let payload = serde_json::to_vec(
        &serde_json::json!({"name":"web","vcpus":1,"memory_mb":512,"disk_gb":10,"image":"debian-12"}),
    )?;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        js.publish(format!("bench.raw.{i}"), payload.clone().into())
            .await?
            .await?;
        samples.push(started.elapsed());
    }
    Ok(samples)
}

/// Appends `vms` VMs of four events each (one atomic batch per VM), many at once.
async fn generate(store: &EventStore, vms: usize) -> anyhow::Result<()> {
    let tenant = tenant("bench");
    let actor = Actor::parse("user:bench")?;
    fstream::iter(0..vms)
        .map(|i| {
            let store = store.clone();
            let tenant = tenant.clone();
            let actor = actor.clone();
            async move {
                let id = Uuid::now_v7();
                let events = [
                    VmEvent::Requested(VmRequested {
                        name: format!("vm-{i}"),
                        vcpus: 1,
                        memory_mb: 512,
                        disk_gb: 10,
                        image: "debian-12".into(),
                        plan: None,
                        region: None,
                    }),
                    VmEvent::StartRequested(Empty {}),
                    VmEvent::Placed(VmPlaced {
                        provider: "sim".into(),
                        server_id: Uuid::nil(),
                        host: "sim-host-1".into(),
                    }),
                    VmEvent::Provisioned(VmProvisioned {
                        provider: "sim".into(),
                        host: "sim-host-1".into(),
                        provider_ref: format!("berth-vm-{id}"),
                    }),
                ];
                let new_events = events
                    .iter()
                    .enumerate()
                    .map(|(index, event)| NewEvent {
                        meta: EventMeta {
                            id: event_id(id, index),
                            source: "berth/bench".into(),
                            event_type: event.event_type().into(),
                            time: chrono::Utc::now(),
                            subject: id,
                            tenant: tenant.clone(),
                            actor: actor.clone(),
                            correlation_id: id,
                            causation_id: id,
                            traceparent: None,
                        },
                        data: event.to_json(),
                    })
                    .collect();
                store
                    .append(&event_subject(&tenant, "vm", id), 0, new_events)
                    .await
            }
        })
        .buffer_unordered(256)
        .for_each(|result| async move {
            result.expect("append");
        })
        .await;
    Ok(())
}

/// Reads every VM event with a raw ordered consumer; returns (events, events/s).
async fn raw_read_rate(js: &jetstream::Context) -> anyhow::Result<(u64, f64)> {
    let stream = js.get_stream("EVENTS").await?;
    let mut consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: "evt.*.vm.*".into(),
            ..Default::default()
        })
        .await?;
    let expected = consumer.info().await?.num_pending;
    let started = Instant::now();
    let mut messages = consumer.messages().await?;
    let mut read = 0u64;
    while let Some(message) = messages.next().await {
        message?;
        read += 1;
        if read == expected {
            break;
        }
    }
    Ok((read, read as f64 / started.elapsed().as_secs_f64()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let env = TestEnv::start().await?;
    let rt = env.runtime("bench", Settings::default()).await?;
    println!(
        "berth bench — nats-server {} (sync_interval: always), one machine, one run",
        env.client.server_info().version
    );
    println!(
        "reproduce: just bench --round-trips {} --status-trips {} --rebuild-events {}",
        args.round_trips, args.status_trips, args.rebuild_events
    );
    println!();

    eprintln!("… raw publish-ack round trips");
    let raw = percentiles(raw_publish_round_trips(&env.js, args.round_trips).await?);

    let service = env.provisioner(fast_settings(), instant_sim()).await?;
    let acme = tenant("acme");
    eprintln!("… command round trips");
    let mut command_samples = Vec::with_capacity(args.round_trips);
    for i in 0..args.round_trips {
        let command = create_vm(&format!("rt-{i}"));
        let started = Instant::now();
        let reply = env.send(&acme, &meta(), &command).await?;
        command_samples.push(started.elapsed());
        anyhow::ensure!(matches!(reply, CommandReply::Accepted { .. }), "{reply:?}");
    }
    eprintln!("… command-to-status round trips");
    let mut status_samples = Vec::with_capacity(args.status_trips);
    let status_tenant = tenant("status");
    for i in 0..args.status_trips {
        let command_meta = meta();
        let command = create_vm(&format!("st-{i}"));
        let subject = status_subject(
            &status_tenant,
            "vm",
            &command.vm_id(command_meta.id).to_string(),
        )?;
        let started = Instant::now();
        let (reply, status) = tokio::join!(
            env.send(&status_tenant, &command_meta, &command),
            wait_for_status(
                &env.client,
                &subject,
                Duration::from_secs(30),
                |s| status_of(s) == Some("running")
            )
        );
        reply?;
        status?;
        status_samples.push(started.elapsed());
    }
    service.stop().await?;

    eprintln!("… generating {} events", args.rebuild_events);
    let vms = args.rebuild_events.div_ceil(4);
    let generated = Instant::now();
    generate(&rt.store, vms).await?;
    let append_rate = (vms * 4) as f64 / generated.elapsed().as_secs_f64();
    eprintln!("… raw ordered-consumer read and projection rebuild");
    let (total, raw_read) = raw_read_rate(&env.js).await?;
    let mut transactions = 0u64;
    let report = rebuild(&rt, &VmsProjection, false, |_| transactions += 1).await?;
    anyhow::ensure!(
        report.events == total,
        "rebuild saw {} of {total} events",
        report.events
    );

    row("command round trip", percentiles(command_samples), raw);
    row("command → running status", percentiles(status_samples), raw);
    println!(
        "{:<28} berth {:>9.0} events/s | raw ordered consumer {:>9.0} events/s | ratio {:>5.2}x ({} events, {} transactions, {:.0} % of the time applying to Postgres)",
        "projection rebuild (vms)",
        report.events_per_second(),
        raw_read,
        report.events_per_second() / raw_read,
        total,
        transactions,
        100.0 * report.apply_seconds / report.seconds
    );
    println!(
        "{:<28} {:>9.0} events/s in atomic batches of 4, 256 appends in flight",
        "event generation", append_rate
    );
    Ok(())
}
