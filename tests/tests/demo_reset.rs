//! The daily demo reset: a fire of the built-in `demo-reset` schedule gives the public
//! demo a fresh VM and records the outcome with its duration — and never leaves two
//! live demo VMs, even when resets fail.

use std::sync::Arc;
use std::time::Duration;

use berth_provisioner::demo::DemoConfig;
use berth_provisioner::sim::{SimConfig, SimProvider};
use berth_provisioner::ProvisionerConfig;
use berth_runtime::client::send_command;
use berth_runtime::store::{EventStore, StoredEvent};
use berth_schemas::demo::{demo_id, DemoEvent, RESET_SCHEDULE};
use berth_schemas::schedule::{ScheduleCommand, ScheduleTarget};
use berth_schemas::subjects::event_subject;
use berth_schemas::vm::{Plan, VmStatus};
use berth_schemas::{CommandSet, TenantId};
use berth_tests::{accepted_id, eventually, fast_settings, meta, sim_datacenter, tenant, TestEnv};

const WAIT: Duration = Duration::from_secs(60);

fn demo_config() -> ProvisionerConfig {
    ProvisionerConfig {
        demo: Some(DemoConfig {
            tenant: tenant("demo"),
            name: "public-demo".into(),
            plan: Plan::Small,
            image: "debian-12".into(),
            timeout: Duration::from_secs(30),
        }),
        ..sim_datacenter()
    }
}

async fn fire_now(env: &TestEnv) -> anyhow::Result<()> {
    let command = ScheduleCommand::FireNow(ScheduleTarget {
        name: RESET_SCHEDULE.into(),
    });
    let reply = send_command(
        &env.client,
        &TenantId::system(),
        "schedule",
        command.action(),
        &meta(),
        command.body(),
    )
    .await?;
    anyhow::ensure!(accepted_id(&reply).is_some(), "{reply:?}");
    Ok(())
}

async fn demo_events(env: &TestEnv) -> anyhow::Result<Vec<DemoEvent>> {
    let demo = tenant("demo");
    let events: Vec<StoredEvent> = EventStore::new(env.js.clone(), "EVENTS")
        .read(&event_subject(&demo, "demo", demo_id(&demo)), 0)
        .await?;
    Ok(events
        .iter()
        .filter_map(|e| e.decode::<DemoEvent>().ok())
        .collect())
}

/// Waits until `count` resets have finished; returns the finishing events.
async fn finished_resets(env: &TestEnv, count: usize) -> anyhow::Result<Vec<DemoEvent>> {
    eventually(&format!("{count} demo resets to finish"), WAIT, || async {
        let finished: Vec<DemoEvent> = demo_events(env)
            .await?
            .into_iter()
            .filter(|e| !matches!(e, DemoEvent::ResetStarted(_)))
            .collect();
        Ok((finished.len() >= count).then_some(finished))
    })
    .await
}

/// Demo VMs that are not destroyed, as "<id> <status>".
async fn live_demo_vms(db: &sqlx::PgPool) -> anyhow::Result<Vec<String>> {
    let rows = berth_provisioner::projection::list(db, Some(&tenant("demo"))).await?;
    Ok(rows
        .into_iter()
        .filter(|row| row.name == "public-demo" && row.status != VmStatus::Destroyed)
        .map(|row| format!("{} {}", row.id, row.status))
        .collect())
}

#[tokio::test]
async fn a_reset_creates_the_missing_demo_then_recreates_it_with_its_duration() -> anyhow::Result<()>
{
    let env = TestEnv::start().await?;
    let scheduler = env.scheduler(fast_settings()).await?;
    let sim = Arc::new(SimProvider::new(berth_tests::instant_sim()));
    let provisioner = env
        .provisioner_on(fast_settings(), sim, demo_config())
        .await?;

    fire_now(&env).await?;
    let first = finished_resets(&env, 1).await?;
    let DemoEvent::ResetSucceeded(created) = &first[0] else {
        panic!("the first reset failed: {first:?}");
    };
    env.wait_vm_status(&tenant("demo"), created.vm_id, VmStatus::Running)
        .await?;

    fire_now(&env).await?;
    let both = finished_resets(&env, 2).await?;
    let DemoEvent::ResetSucceeded(recreated) = &both[1] else {
        panic!("the second reset failed: {both:?}");
    };
    assert_eq!(
        recreated.vm_id, created.vm_id,
        "the same demo vm, made fresh"
    );
    let history = EventStore::new(env.js.clone(), "EVENTS")
        .read(&event_subject(&tenant("demo"), "vm", created.vm_id), 0)
        .await?;
    assert!(history
        .iter()
        .any(|e| e.meta.event_type == "berth.vm.recreated.v1"));
    assert!(
        recreated.duration_ms > 0 && recreated.duration_ms < 30_000,
        "{recreated:?}"
    );
    let live = eventually("the vms projection to show the demo", WAIT, || async {
        let live = live_demo_vms(&provisioner.db).await?;
        Ok((live.len() == 1 && live[0].ends_with("running")).then_some(live))
    })
    .await?;
    assert_eq!(live.len(), 1);
    provisioner.stop().await?;
    scheduler.stop().await
}

#[tokio::test]
async fn failed_resets_say_why_and_never_leave_two_demo_vms() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let scheduler = env.scheduler(fast_settings()).await?;
    let sim = Arc::new(SimProvider::new(SimConfig {
        latency: Duration::ZERO,
        broken: vec!["create".into()],
        ..SimConfig::default()
    }));
    let provisioner = env
        .provisioner_on(fast_settings(), sim, demo_config())
        .await?;
    for n in 1..=2 {
        fire_now(&env).await?;
        let finished = finished_resets(&env, n).await?;
        let DemoEvent::ResetFailed(failed) = &finished[n - 1] else {
            panic!("reset {n} did not fail: {finished:?}");
        };
        assert!(
            failed.reason.contains("simulated fault: create"),
            "{}",
            failed.reason
        );
    }
    let live = eventually("the first failed demo vm to be destroyed", WAIT, || async {
        let live = live_demo_vms(&provisioner.db).await?;
        Ok((live.len() == 1).then_some(live))
    })
    .await?;
    assert!(live[0].ends_with("failed"), "{live:?}");
    provisioner.stop().await?;
    scheduler.stop().await
}
