//! Faults: processes killed mid-append and mid-batch, rebuilds under load, events a
//! projection cannot apply, provider calls that keep failing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::message::OutboundMessage;
use berth_provisioner::projection;
use berth_provisioner::projection::VmsProjection;
use berth_provisioner::sim::SimConfig;
use berth_runtime::client::{last_status, wait_for_status};
use berth_runtime::projection::{checkpoint, rebuild};
use berth_runtime::{EventStore, Settings};
use berth_schemas::envelope::EventMeta;
use berth_schemas::status::{HealthState, ProjectionHealth, Status, VmState};
use berth_schemas::subjects::{event_subject, status_subject, StatusKind};
use berth_schemas::vm::VmStatus;
use berth_schemas::{Actor, CommandReply};
use berth_tests::{
    accepted_id, create_vm, eventually, fast_settings, instant_sim, meta, tenant, ChildService,
    TestEnv,
};
use futures::future::join_all;
use futures::StreamExt;
use jetstream_extra::batch_publish::BatchPublishExt;
use rand::Rng;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);
const BINARY: &str = env!("CARGO_BIN_EXE_provisioner-under-test");

/// Subject → message count for every VM subject in the log.
async fn vm_subjects(env: &TestEnv) -> anyhow::Result<HashMap<String, usize>> {
    let stream = env.js.get_stream("EVENTS").await?;
    let mut subjects = stream.info_with_subjects("evt.*.vm.*").await?;
    let mut counts = HashMap::new();
    while let Some(entry) = subjects.next().await {
        let (subject, count) = entry?;
        counts.insert(subject, count);
    }
    Ok(counts)
}

#[tokio::test]
async fn a_batch_that_is_never_committed_leaves_nothing_in_the_log() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let _rt = env.runtime("test", Settings::default()).await?;
    let subject = event_subject(&tenant("acme"), "vm", Uuid::now_v7());
    let mut batch = env.js.batch_publish().build();
    batch
        .add_message(OutboundMessage {
            subject: subject.clone().into(),
            payload: "{}".into(),
            headers: None,
        })
        .await?;
    // The publisher dies here: the commit never comes.
    batch.discard();
    let store = EventStore::new(env.js.clone(), "EVENTS");
    assert!(store.read(&subject, 0).await?.is_empty());
    assert_eq!(env.events_last_sequence().await?, 0);
    Ok(())
}

#[tokio::test]
async fn killing_the_provisioner_mid_append_leaves_both_events_of_a_create_or_neither(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let acme = tenant("acme");
    // Requests caught by the kill give up after 5 s instead of the default 10 s.
    let impatient = async_nats::ConnectOptions::new()
        .request_timeout(Some(Duration::from_secs(5)))
        .connect(&env.nats.url)
        .await?;
    for round in 0..4 {
        let child = ChildService::start_provisioner(&env, BINARY, &["--sim-latency-ms", "0"])?;
        env.wait_for_service("berth-vm").await?;
        let replies = Arc::new(AtomicU64::new(0));
        let kill_after = rand::rng().random_range(1..30);
        let all_answered = AtomicBool::new(false);
        let sends = (0..120).map(|i| {
            let replies = replies.clone();
            let impatient = &impatient;
            let acme = &acme;
            async move {
                let command = create_vm(&format!("vm-{round}-{i}"));
                let sent = berth_runtime::client::send_command(
                    impatient,
                    acme,
                    "vm",
                    "create",
                    &meta(),
                    command.body(),
                )
                .await;
                // Only accepted creates count: a `busy` answer (over the tenant's share
                // of 64 in flight) comes at once and says nothing about the appends.
                if matches!(sent, Ok(CommandReply::Accepted { .. })) {
                    replies.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        let killer = async {
            // Usually mid-way; under heavy load the creates may all be answered first,
            // and then the kill still lands among the reactor's appends.
            eventually("some creates to be answered", WAIT, || async {
                let enough = replies.load(Ordering::SeqCst) >= kill_after
                    || all_answered.load(Ordering::SeqCst);
                Ok(enough.then_some(()))
            })
            .await?;
            child.kill().await
        };
        let sending = async {
            join_all(sends).await;
            all_answered.store(true, Ordering::SeqCst);
        };
        let (_, killed) = tokio::join!(sending, killer);
        killed?;
    }
    let subjects = vm_subjects(&env).await?;
    assert!(!subjects.is_empty());
    let store = EventStore::new(env.js.clone(), "EVENTS");
    for subject in subjects.keys() {
        let events = store.read(subject, 0).await?;
        let types: Vec<&str> = events
            .iter()
            .take(2)
            .map(|e| e.meta.event_type.as_str())
            .collect();
        assert_eq!(
            types,
            ["berth.vm.requested.v1", "berth.vm.start_requested.v1"],
            "{subject} holds half a create"
        );
        assert_eq!(events[0].meta.causation_id, events[1].meta.causation_id);
    }
    Ok(())
}

/// Waits until every VM in the log is running and `vms` has applied every event.
async fn wait_quiet(env: &TestEnv, db: &sqlx::PgPool, vms: usize) -> anyhow::Result<()> {
    eventually(
        "every vm running and the projection caught up",
        WAIT,
        || async {
            let rows = projection::list(db, None).await?;
            let running = rows
                .iter()
                .filter(|r| r.status == VmStatus::Running)
                .count();
            let last = env.last_sequence_of("evt.*.vm.*").await?;
            Ok((running == vms && checkpoint(db, "vms").await? == last).then_some(()))
        },
    )
    .await
}

#[tokio::test]
async fn a_projection_killed_mid_batch_resumes_to_the_same_rows_as_a_rebuild() -> anyhow::Result<()>
{
    let env = TestEnv::start().await?;
    let rt = env.runtime("test", Settings::default()).await?;
    let acme = tenant("acme");
    // Kill the process while the projection is behind the log; a round in which the
    // projection happened to catch up first is repeated.
    let mut killed_behind = false;
    for round in 0..5 {
        let child = ChildService::start_provisioner(
            &env,
            BINARY,
            &["--sim-latency-ms", "2", "--ack-wait-secs", "2"],
        )?;
        env.wait_for_service("berth-vm").await?;
        let commands: Vec<_> = (0..150)
            .map(|i| (meta(), create_vm(&format!("vm-{round}-{i}"))))
            .collect();
        let sends = join_all(commands.iter().map(|(m, c)| env.send(&acme, m, c)));
        let start = checkpoint(&rt.db, "vms").await?;
        let killer = async {
            let target = start + rand::rng().random_range(50..300);
            eventually("the projection to be part-way", WAIT, || async {
                Ok((checkpoint(&rt.db, "vms").await? >= target).then_some(()))
            })
            .await?;
            let behind =
                checkpoint(&rt.db, "vms").await? < env.last_sequence_of("evt.*.vm.*").await?;
            child.kill().await?;
            anyhow::Ok(behind)
        };
        let (replies, killed) = tokio::join!(sends, killer);
        assert!(replies
            .iter()
            .any(|r| matches!(r, Ok(CommandReply::Accepted { .. }))));
        if killed? {
            killed_behind = true;
            break;
        }
    }
    assert!(
        killed_behind,
        "in five rounds the projection was never behind when killed"
    );

    // Events the killed process held come back after the ack wait.
    let child = ChildService::start_provisioner(
        &env,
        BINARY,
        &["--sim-latency-ms", "0", "--ack-wait-secs", "2"],
    )?;
    let created = vm_subjects(&env).await?.len();
    wait_quiet(&env, &rt.db, created).await?;
    let report = rebuild(&rt, &VmsProjection, true, |_| {}).await?;
    assert!(report.matches_live(), "{report:?}");
    assert_eq!(report.tables[0].live.rows as usize, created);
    child.kill().await
}

#[tokio::test]
async fn replay_while_commands_arrive_serves_throughout_and_ends_equal_to_live(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let service = env.provisioner(fast_settings(), instant_sim()).await?;
    let rt = env.runtime("test", fast_settings()).await?;
    let acme = tenant("acme");
    let writing = AtomicBool::new(true);
    let writer = async {
        let mut accepted = 0;
        for i in 0..120 {
            if let Ok(CommandReply::Accepted { .. }) = env
                .send(&acme, &meta(), &create_vm(&format!("vm-{i}")))
                .await
            {
                accepted += 1;
            }
        }
        writing.store(false, Ordering::SeqCst);
        accepted
    };
    let reader = async {
        let mut reads = 0u64;
        let mut highest = 0usize;
        while writing.load(Ordering::SeqCst) {
            let rows = projection::list(&rt.db, Some(&acme)).await?;
            assert!(
                rows.len() >= highest,
                "a read during the rebuild lost rows: {} < {highest}",
                rows.len()
            );
            highest = rows.len();
            reads += 1;
            tokio::task::yield_now().await;
        }
        anyhow::Ok(reads)
    };
    let rebuilder = async {
        let mut swaps = 0;
        while writing.load(Ordering::SeqCst) {
            let report = rebuild(&rt, &VmsProjection, false, |_| {}).await?;
            assert!(report.swapped);
            swaps += 1;
        }
        anyhow::Ok(swaps)
    };
    let (accepted, reads, swaps) = tokio::join!(writer, reader, rebuilder);
    assert!(reads? > 0);
    assert!(swaps? > 0, "no rebuild ran while commands arrived");
    wait_quiet(&env, &rt.db, accepted).await?;
    let report = rebuild(&rt, &VmsProjection, true, |_| {}).await?;
    assert!(report.matches_live(), "{report:?}");
    service.stop().await
}

#[tokio::test]
#[allow(
    clippy::disallowed_methods,
    reason = "forges an event in EVENTS, past every command check"
)]
async fn a_projection_parks_an_event_it_cannot_apply_and_goes_on() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let service = env.provisioner(fast_settings(), instant_sim()).await?;
    let rt = env.runtime("test", fast_settings()).await?;
    let acme = tenant("acme");
    let id = Uuid::now_v7();
    let meta = EventMeta {
        id: Uuid::now_v7(),
        source: "berth/elsewhere".into(),
        event_type: "berth.vm.exploded.v1".into(),
        time: chrono::Utc::now(),
        subject: id,
        tenant: acme.clone(),
        actor: Actor::parse("user:mallory")?,
        correlation_id: id,
        causation_id: id,
        traceparent: None,
    };
    let (headers, payload) = meta.encode(b"{}")?;
    let bad = env
        .js
        .publish_with_headers(event_subject(&acme, "vm", id), headers, payload)
        .await?
        .await?
        .sequence;
    let after = accepted_id(
        &env.send(&acme, &berth_tests::meta(), &create_vm("after"))
            .await?,
    )
    .expect("the create after the bad event is accepted");

    // The bad event is parked with a visible fault; vms goes past it.
    let parked = eventually("vms to park the bad event", WAIT, || async {
        let parked = berth_runtime::parked::list(&rt.db, Some("vms"), false).await?;
        Ok((!parked.is_empty()).then_some(parked))
    })
    .await?;
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].sequence as u64, bad);
    assert!(
        parked[0].error.contains("berth.vm.exploded.v1"),
        "{}",
        parked[0].error
    );
    let status = wait_for_status(
        &env.client,
        "status.system.projection.vms",
        WAIT,
        |s: &Status<ProjectionHealth>| s.state.status == HealthState::Degraded,
    )
    .await?;
    assert_eq!(status.state.parked, 1, "{status:?}");
    eventually("vms to go past the bad event", WAIT, || async {
        Ok((checkpoint(&rt.db, "vms").await? >= bad).then_some(()))
    })
    .await?;
    eventually("the VM created after it to be projected", WAIT, || async {
        Ok(projection::get(&rt.db, after).await?)
    })
    .await?;
    eventually("audit_log to go past the bad event", WAIT, || async {
        Ok((checkpoint(&rt.db, "audit_log").await? > bad).then_some(()))
    })
    .await?;
    service.stop().await
}

#[tokio::test]
async fn a_failing_provider_is_retried_with_back_off_and_the_vm_degraded_never_dead_lettered(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let settings = Settings {
        reactor_max_deliver: 3,
        ..fast_settings()
    };
    let always_failing = SimConfig {
        latency: Duration::ZERO,
        failure_rate: 1.0,
        ..SimConfig::default()
    };
    let service = env.provisioner(settings, always_failing).await?;
    let acme = tenant("acme");
    let id = env.create(&acme, "doomed").await?;
    let subject = status_subject(&acme, StatusKind::Vm, &id.to_string())?;
    // Transient failures are never given up on (DESIGN §7): after max_deliver attempts the
    // VM says so, and the retry consumer keeps trying.
    let status = wait_for_status(&env.client, &subject, WAIT, |s: &Status<VmState>| {
        s.state.status == VmStatus::Degraded
    })
    .await?;
    let reason = status.reason().unwrap_or_default();
    assert!(
        reason.starts_with("provision failing after 3 attempts, still retrying: simulated failure"),
        "{reason}"
    );
    // It is told again at twice max_deliver: still retried, past the DLQ's old limit.
    wait_for_status(&env.client, &subject, WAIT, |s: &Status<VmState>| {
        s.reason()
            .is_some_and(|r| r.starts_with("provision failing after 6 attempts"))
    })
    .await?;
    let letters = berth_runtime::dlq::list(&env.js, Some("provisioner-vm")).await?;
    assert!(
        letters.is_empty(),
        "dead-lettered for transience: {letters:?}"
    );
    service.stop().await
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let child = ChildService::start_provisioner(&env, BINARY, &["--sim-latency-ms", "50"])?;
    env.wait_for_service("berth-vm").await?;
    let acme = tenant("acme");
    let id = env.create(&acme, "web").await?;
    let status = child.terminate().await?;
    assert!(status.success(), "the provisioner exited with {status}");
    // Whatever was in flight was finished or handed back: a new process completes it.
    let child = ChildService::start_provisioner(
        &env,
        BINARY,
        &["--sim-latency-ms", "0", "--ack-wait-secs", "2"],
    )?;
    let subject = status_subject(&acme, StatusKind::Vm, &id.to_string())?;
    wait_for_status(&env.client, &subject, WAIT, |s: &Status<VmState>| {
        s.state.status == VmStatus::Running
    })
    .await?;
    child.kill().await
}

#[tokio::test]
async fn status_subjects_are_restored_when_a_projection_starts() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let service = env.provisioner(fast_settings(), instant_sim()).await?;
    let acme = tenant("acme");
    let id = env.create(&acme, "web").await?;
    let subject = status_subject(&acme, StatusKind::Vm, &id.to_string())?;
    let is_running = |s: &Status<VmState>| s.state.status == VmStatus::Running;
    let running = wait_for_status(&env.client, &subject, WAIT, is_running).await?;
    service.stop().await?;

    // Lose every status, as a crash between commit and publish would lose one.
    env.js.get_stream("STATUS").await?.purge().await?;
    assert!(last_status::<serde_json::Value>(&env.js, &subject)
        .await?
        .is_none());

    let service = env.provisioner(fast_settings(), instant_sim()).await?;
    let restored = wait_for_status(&env.client, &subject, WAIT, is_running).await?;
    assert_eq!(restored.version, running.version);
    service.stop().await
}
