//! `just bench`: berth's speed next to raw JetStream on the same machine, same run.
//!
//! 1. publish-ack round trip: raw JetStream (a `BENCH` stream with the same storage
//!    settings) vs a berth command (`vm.create`: load, decide, atomic 2-event append, reply);
//! 2. command-to-status: `vm.create` until `status.<tenant>.vm.<id>` says running (sim
//!    provider with no latency) vs the raw publish-ack round trip;
//! 3. rebuild rate: the `vms` projection rebuilt from N events vs a raw ordered consumer
//!    reading the same N events;
//! 4. placement: N creates (64 in flight) on S simulated servers until every VM runs —
//!    creates/s and command latency vs raw publish-acks with the same number in flight;
//! 5. Docker: `vm.create` until running vs a bare `docker create` + `docker start` of
//!    the same image through the same engine API (skipped when no engine answers);
//! 6. pods ([`pods`]): N sim pods created, restarted and reset vs raw publish-acks in
//!    flight; Docker `pod.create` until healthy vs a bare volume + container of the same
//!    image and health check until the engine says healthy;
//! 7. billing ([`billing`]): N VMs over a simulated month metered and invoiced, next to
//!    raw publish-acks in flight;
//! 8. timers ([`timers`]): N one-shot timers due within a minute: lateness and fires/s;
//! 9. notifications ([`notify`]): N events each mailed through the notifier into a local
//!    SMTP sink — mails/s and event-to-delivery latency — next to lettre alone;
//! 10. dashboard fan-out ([`fanout`]): status updates at a fixed rate through `STATUS`
//!     to N subscribers, delay p50/p99 next to core NATS at the same rate;
//! 11. tenant flood ([`flood`]): one tenant sends N commands/s while another tenant's
//!     round trips are measured, next to the same round trips with no flood.

mod billing;
mod fanout;
mod flood;
mod notify;
mod pods;
mod timers;

use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, consumer, stream};
use berth_provisioner::projection::VmsProjection;
use berth_runtime::client::wait_for_status;
use berth_runtime::projection::rebuild;
use berth_runtime::store::{event_id, NewEvent};
use berth_runtime::{EventStore, Settings};
use berth_schemas::envelope::EventMeta;
use berth_schemas::status::{Status, VmState};
use berth_schemas::subjects::{event_subject, status_subject, StatusKind};
use berth_schemas::vm::{Empty, VmEvent, VmPlaced, VmProvisioned, VmRequested, VmStatus};
use berth_schemas::{Actor, CommandReply, DomainEvent};
use berth_tests::{create_vm, fast_settings, instant_sim, meta, tenant, TestEnv};
use futures::{stream as fstream, StreamExt};
use uuid::Uuid;

struct Args {
    round_trips: usize,
    status_trips: usize,
    rebuild_events: usize,
    placements: usize,
    servers: usize,
    docker_trips: usize,
    pods: usize,
    billing_vms: usize,
    timers: usize,
    notifications: usize,
    fanout_rate: usize,
    fanout_subscribers: usize,
    flood_rate: usize,
    flood_samples: usize,
    /// Only this section (`notifications`, `timers`, `billing`), for a quick look.
    only: Option<String>,
}

/// Commands (and raw publishes) in flight at once in the placement run.
pub(crate) const IN_FLIGHT: usize = 64;

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        round_trips: 2000,
        status_trips: 300,
        rebuild_events: 1_000_000,
        placements: 10_000,
        servers: 100,
        docker_trips: 10,
        pods: 1000,
        billing_vms: 2_000,
        timers: 100_000,
        notifications: 10_000,
        fanout_rate: 1000,
        fanout_subscribers: 20,
        flood_rate: 5000,
        flood_samples: 2000,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--only" {
            args.only = Some(it.next().context("--only takes a section name")?);
            continue;
        }
        let value: usize = it.next().context("every flag takes a number")?.parse()?;
        match flag.as_str() {
            "--round-trips" => args.round_trips = value,
            "--status-trips" => args.status_trips = value,
            "--rebuild-events" => args.rebuild_events = value,
            "--placements" => args.placements = value,
            "--servers" => args.servers = value,
            "--docker-trips" => args.docker_trips = value,
            "--pods" => args.pods = value,
            "--billing-vms" => args.billing_vms = value,
            "--timers" => args.timers = value,
            "--notifications" => args.notifications = value,
            "--fanout-rate" => args.fanout_rate = value,
            "--fanout-subscribers" => args.fanout_subscribers = value,
            "--flood-rate" => args.flood_rate = value,
            "--flood-samples" => args.flood_samples = value,
            other => anyhow::bail!(
                "unknown flag {other}; use --round-trips N --status-trips N --rebuild-events N --placements N --servers N --docker-trips N --pods N --billing-vms N --timers N --notifications N --fanout-rate N --fanout-subscribers N --flood-rate N --flood-samples N (or --only notifications|timers|billing|fanout|flood)"
            ),
        }
    }
    Ok(args)
}

/// Settings for a section where one tenant is the whole load: its fair share (which
/// guards other tenants, see the `flood` section) is lifted so the run measures berth's
/// own limits.
pub(crate) fn one_tenant_load() -> Settings {
    Settings {
        tenant_limits: berth_runtime::fairness::TenantLimits {
            rate_per_sec: 1e9,
            burst: u32::MAX,
            in_flight: usize::MAX,
            long_running: usize::MAX,
        },
        ..fast_settings()
    }
}

/// p50 and p99 of a set of durations, in microseconds.
pub(crate) fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
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

#[allow(
    clippy::disallowed_methods,
    reason = "the raw JetStream baseline berth is measured against"
)]
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

/// Events per generated VM: one atomic batch each (requested, placed, provisioned,
/// then stop/start cycles), so a million events take 25 000 fsynced batches.
pub(crate) const EVENTS_PER_VM: usize = 40;

/// Appends `vms` VMs of [`EVENTS_PER_VM`] events each (one atomic batch per VM), many at once.
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
                let mut events = vec![
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
                let cycle = [
                    VmEvent::Started(Empty {}),
                    VmEvent::StopRequested(Empty {}),
                    VmEvent::Stopped(Empty {}),
                    VmEvent::StartRequested(Empty {}),
                ];
                events.extend(
                    cycle
                        .iter()
                        .cycle()
                        .take(EVENTS_PER_VM - events.len())
                        .cloned(),
                );
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
pub(crate) async fn raw_read_rate(js: &jetstream::Context) -> anyhow::Result<(u64, f64)> {
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
        "reproduce: just bench --round-trips {} --status-trips {} --rebuild-events {} --placements {} --servers {} --docker-trips {} --pods {} --billing-vms {} --timers {} --notifications {} --fanout-rate {} --fanout-subscribers {} --flood-rate {} --flood-samples {}",
        args.round_trips, args.status_trips, args.rebuild_events, args.placements, args.servers, args.docker_trips, args.pods, args.billing_vms, args.timers, args.notifications, args.fanout_rate, args.fanout_subscribers, args.flood_rate, args.flood_samples
    );
    println!();
    match args.only.as_deref() {
        Some("notifications") => return notify::notifications(args.notifications).await,
        Some("timers") => return timers::timers(args.timers).await,
        Some("billing") => return billing::billing(&env.js, args.billing_vms).await,
        Some("fanout") => return fanout::fanout(args.fanout_rate, args.fanout_subscribers).await,
        Some("flood") => return flood::flood(args.flood_rate, args.flood_samples).await,
        Some(other) => {
            anyhow::bail!("--only {other}: choose notifications, timers, billing, fanout or flood")
        }
        None => {}
    }

    eprintln!("… raw publish-ack round trips");
    let raw = percentiles(raw_publish_round_trips(&env.js, args.round_trips).await?);

    // Room for every VM the round trips create.
    let roomy = berth_provisioner::ProvisionerConfig {
        servers: berth_provisioner::sim::SimServers {
            count: 8,
            vcpus: 1024,
            memory_mb: 16 * 1024 * 1024,
            disk_gb: 1024 * 1024,
            ..Default::default()
        }
        .specs(),
        ..Default::default()
    };
    let service = env
        .provisioner_with(fast_settings(), instant_sim(), roomy)
        .await?;
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
            StatusKind::Vm,
            &command.vm_id(command_meta.id).to_string(),
        )?;
        let started = Instant::now();
        let (reply, status) = tokio::join!(
            env.send(&status_tenant, &command_meta, &command),
            wait_for_status(
                &env.client,
                &subject,
                Duration::from_secs(30),
                |s: &Status<VmState>| s.state.status == VmStatus::Running
            )
        );
        reply?;
        status?;
        status_samples.push(started.elapsed());
    }
    service.stop().await?;

    eprintln!("… generating {} events", args.rebuild_events);
    let vms = args.rebuild_events.div_ceil(EVENTS_PER_VM);
    let generated = Instant::now();
    generate(&rt.store, vms).await?;
    let append_rate = (vms * EVENTS_PER_VM) as f64 / generated.elapsed().as_secs_f64();
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
        "{:<28} {:>9.0} events/s in atomic batches of {EVENTS_PER_VM}, 256 appends in flight",
        "event generation", append_rate
    );

    eprintln!(
        "… placement of {} vms on {} servers",
        args.placements, args.servers
    );
    let placement = placement(&args).await?;
    let raw = raw_publishes_in_flight(&env.js, args.placements).await?;
    println!(
        "{:<28} berth {:>7.0} creates/s, p50 {:>7.0} µs, p99 {:>7.0} µs, all running after {:.1} s ({:.0} placements/s) | raw {:>7.0} publishes/s, p50 {:>6.0} µs, p99 {:>6.0} µs | ratio {:.2}x throughput, p99 {:.1}x",
        format!("placement ({} on {})", args.placements, args.servers),
        placement.creates_per_second,
        placement.latency.0,
        placement.latency.1,
        placement.all_running_after.as_secs_f64(),
        args.placements as f64 / placement.all_running_after.as_secs_f64(),
        raw.0,
        raw.1 .0,
        raw.1 .1,
        placement.creates_per_second / raw.0,
        placement.latency.1 / raw.1 .1,
    );

    eprintln!("… docker create-to-running");
    match docker_trips(args.docker_trips).await {
        Ok((berth, bare)) => row("docker create → running", berth, bare),
        Err(e) => println!("{:<28} skipped: {e:#}", "docker create → running"),
    }

    pods::sim_pods(&env.js, args.pods).await?;
    eprintln!("… docker pod create-to-healthy");
    match pods::docker_pods(args.docker_trips).await {
        Ok((berth, bare)) => row("docker pod create → healthy", berth, bare),
        Err(e) => println!("{:<28} skipped: {e:#}", "docker pod create → healthy"),
    }
    eprintln!("… billing");
    billing::billing(&env.js, args.billing_vms).await?;
    eprintln!("… timers");
    timers::timers(args.timers).await?;
    eprintln!("… notifications");
    notify::notifications(args.notifications).await?;
    eprintln!("… status fan-out");
    fanout::fanout(args.fanout_rate, args.fanout_subscribers).await?;
    eprintln!("… tenant flood");
    flood::flood(args.flood_rate, args.flood_samples).await?;
    Ok(())
}

struct PlacementRun {
    creates_per_second: f64,
    latency: (f64, f64),
    all_running_after: Duration,
}

/// N creates with IN_FLIGHT at once against a provisioner with `servers` sim servers,
/// then until the last of them is running.
async fn placement(args: &Args) -> anyhow::Result<PlacementRun> {
    use berth_provisioner::projection;
    use berth_provisioner::sim::SimServers;
    use berth_provisioner::ProvisionerConfig;
    let env = TestEnv::start().await?;
    let config = ProvisionerConfig {
        servers: SimServers {
            count: args.servers as u32,
            ..SimServers::default()
        }
        .specs(),
        ..ProvisionerConfig::default()
    };
    let service = env
        .provisioner_with(one_tenant_load(), instant_sim(), config)
        .await?;
    let started = Instant::now();
    let commands: Vec<_> = (0..args.placements)
        .map(|i| {
            (
                tenant(&format!("t{}", i % 50)),
                meta(),
                create_vm(&format!("p-{i}")),
            )
        })
        .collect();
    let latencies: Vec<Duration> = fstream::iter(commands.iter())
        .map(|(tenant, meta, command)| {
            let env = &env;
            async move {
                let sent = Instant::now();
                let reply = env.send(tenant, meta, command).await?;
                anyhow::ensure!(matches!(reply, CommandReply::Accepted { .. }), "{reply:?}");
                Ok(sent.elapsed())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<anyhow::Result<Duration>>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let accepted_after = started.elapsed();
    loop {
        let running: i64 =
            sqlx::query_scalar("SELECT count(*) FROM vms.vms WHERE status = 'running'")
                .fetch_one(&service.db)
                .await?;
        if running as usize >= args.placements {
            break;
        }
        let failed: i64 =
            sqlx::query_scalar("SELECT count(*) FROM vms.vms WHERE status = 'failed'")
                .fetch_one(&service.db)
                .await?;
        anyhow::ensure!(failed == 0, "{failed} placements failed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all_running_after = started.elapsed();
    let rows = projection::list(&service.db, None).await?;
    anyhow::ensure!(rows.len() == args.placements);
    service.stop().await?;
    Ok(PlacementRun {
        creates_per_second: args.placements as f64 / accepted_after.as_secs_f64(),
        latency: percentiles(latencies),
        all_running_after,
    })
}

/// Raw JetStream publish-acks with IN_FLIGHT at once: (publishes/s, (p50, p99) µs).
#[allow(
    clippy::disallowed_methods,
    reason = "the raw JetStream baseline berth is measured against"
)]
pub(crate) async fn raw_publishes_in_flight(
    js: &jetstream::Context,
    n: usize,
) -> anyhow::Result<(f64, (f64, f64))> {
    let payload =
        serde_json::to_vec(&serde_json::json!({"name":"web","plan":"small","image":"debian-12"}))?;
    let started = Instant::now();
    let latencies: Vec<Duration> = fstream::iter(0..n)
        .map(|i| {
            let payload = payload.clone();
            async move {
                let sent = Instant::now();
                js.publish(format!("bench.flight.{i}"), payload.into())
                    .await?
                    .await?;
                anyhow::Ok(sent.elapsed())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    Ok((
        n as f64 / started.elapsed().as_secs_f64(),
        percentiles(latencies),
    ))
}

/// `vm.create` → running on the Docker provider, next to a bare create + start of the
/// same image through the engine API; (berth, bare) percentiles in µs.
async fn docker_trips(n: usize) -> anyhow::Result<((f64, f64), (f64, f64))> {
    use std::sync::Arc;

    use berth_provisioner::docker::{DockerConfig, DockerProvider};
    use berth_provisioner::ProvisionerConfig;
    use berth_schemas::vm::{CreateVm, Plan, VmCommand, VmTarget};
    use bollard::models::{ContainerCreateBody, HostConfig};
    use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};

    const IMAGE: &str = "berth/busybox:test";
    let docker = bollard::Docker::connect_with_defaults()?
        .negotiate_version()
        .await
        .context("no Docker engine answers (infra/docker-up.sh)")?;
    docker
        .inspect_image(IMAGE)
        .await
        .context("no test image (infra/build-test-image.sh)")?;
    let force = RemoveContainerOptionsBuilder::new().force(true).build();
    let mut bare = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("berth-bench-bare-{i}-{}", Uuid::now_v7().simple());
        let started = Instant::now();
        docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                ContainerCreateBody {
                    image: Some(IMAGE.into()),
                    host_config: Some(HostConfig {
                        network_mode: Some("none".into()),
                        nano_cpus: Some(1_000_000_000),
                        memory: Some(1 << 30),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
            .await?;
        docker.start_container(&name, None).await?;
        bare.push(started.elapsed());
        docker.remove_container(&name, Some(force.clone())).await?;
    }

    let env = TestEnv::start().await?;
    let server = format!(
        "docker-bench-{}",
        &Uuid::now_v7().simple().to_string()[24..]
    );
    let provider = DockerProvider::connect(DockerConfig {
        host_name: server.clone(),
        network_mode: Some("none".into()),
    })
    .await?;
    let config = ProvisionerConfig {
        servers: vec![berth_tests::docker_server(&server)],
        ..ProvisionerConfig::default()
    };
    let service = env
        .provisioner_on(fast_settings(), Arc::new(provider), config)
        .await?;
    let acme = tenant("bench");
    let mut berth = Vec::with_capacity(n);
    for i in 0..n {
        let command_meta = meta();
        let create = VmCommand::Create(CreateVm::with_plan(format!("d-{i}"), Plan::Small, IMAGE));
        let vm = create.vm_id(command_meta.id);
        let subject = status_subject(&acme, StatusKind::Vm, &vm.to_string())?;
        let started = Instant::now();
        let (reply, status) = tokio::join!(
            env.send(&acme, &command_meta, &create),
            wait_for_status(
                &env.client,
                &subject,
                Duration::from_secs(60),
                |s: &Status<VmState>| s.state.status == VmStatus::Running
            )
        );
        reply?;
        status?;
        berth.push(started.elapsed());
        let destroy = VmCommand::Destroy(VmTarget {
            vm_id: vm,
            expected_version: None,
        });
        env.send(&acme, &meta(), &destroy).await?;
        env.wait_vm_status(&acme, vm, VmStatus::Destroyed).await?;
    }
    service.stop().await?;
    Ok((percentiles(berth), percentiles(bare)))
}
