//! Pods end to end on the sim runtime: restart keeps data, reset wipes it only when
//! confirmed, scale and delete keep or remove the volume as asked, tenants act only on
//! their own pods, health monitoring restarts then gives up, the 60-day grace period on a
//! manual clock deletes what was not renewed, and orphans are found and cleaned.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_pod_lifecycle::sim::SimRuntime;
use berth_runtime::clock::{Clock, ManualClock};
use berth_schemas::pod::{
    DebugPods, DeletePod, EndPod, PodCommand, PodLogs, PodStatus, PodTarget, PodsReport, ResetPod,
    ScalePod, AGGREGATE, GRACE_DAYS,
};
use berth_schemas::schedule::{service_timer_id, service_timer_key};
use berth_schemas::subjects::{aggregate_event_filter, event_subject, PODS_DEBUG_SUBJECT};
use berth_schemas::{CommandReply, RejectionCode};
use berth_tests::pods::pod_config;
use berth_tests::{accepted_id, eventually, fast_settings, tenant, TestEnv};
use chrono::{SubsecRound, Utc};
use uuid::Uuid;

const DATA: &str = "/home/node/.n8n/workflows.json";

fn target(pod_id: Uuid) -> PodTarget {
    PodTarget {
        pod_id,
        expected_version: None,
    }
}

fn reset(pod_id: Uuid, confirm: bool) -> PodCommand {
    PodCommand::Reset(ResetPod {
        pod_id,
        confirm,
        expected_version: None,
    })
}

fn delete(pod_id: Uuid, keep_volume: bool) -> PodCommand {
    PodCommand::Delete(DeletePod {
        pod_id,
        keep_volume,
        expected_version: None,
    })
}

fn rejection_code<O>(reply: &CommandReply<O>) -> Option<RejectionCode> {
    reply.rejection().map(|r| r.code)
}

#[tokio::test]
async fn restart_keeps_the_data_reset_wipes_it_only_when_confirmed() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let sim = Arc::new(SimRuntime::default());
    let pods = env
        .pod_lifecycle(fast_settings(), sim.clone(), pod_config(Default::default()))
        .await?;
    let acme = tenant("acme");
    let id = env.create_pod(&acme, "flows", "n8n", "basic").await?;
    let running = env.wait_pod_status(&acme, id, PodStatus::Running).await?;
    assert_eq!(running.state.volume_mb, 250);
    sim.write_file(id, DATA, "[1, 2, 3]")?;

    let starts = sim.starts(id);
    env.pod_command_until(&acme, &PodCommand::Restart(target(id)), PodStatus::Running)
        .await?;
    assert_eq!(sim.starts(id), starts + 1, "the workload restarted");
    assert_eq!(sim.read_file(id, DATA).as_deref(), Some("[1, 2, 3]"));

    let update = PodCommand::UpdateConfig(berth_schemas::pod::UpdatePodConfig {
        pod_id: id,
        env: [("GENERIC_TIMEZONE".to_owned(), "Europe/Berlin".to_owned())].into(),
        expected_version: None,
    });
    env.pod_command_until(&acme, &update, PodStatus::Running)
        .await?;
    let deployed = sim.env(id).expect("a workload");
    assert_eq!(
        deployed["GENERIC_TIMEZONE"], "Europe/Berlin",
        "the override is deployed"
    );
    assert_eq!(
        deployed["N8N_HOST"], "flows.acme.pods.test",
        "the catalog's env stays"
    );
    assert_eq!(
        sim.starts(id),
        starts + 2,
        "a new config restarts the workload"
    );
    assert_eq!(sim.read_file(id, DATA).as_deref(), Some("[1, 2, 3]"));

    let unconfirmed = env.send_pod(&acme, &reset(id, false)).await?;
    assert_eq!(rejection_code(&unconfirmed), Some(RejectionCode::Invalid));
    assert_eq!(
        sim.read_file(id, DATA).as_deref(),
        Some("[1, 2, 3]"),
        "nothing was wiped"
    );

    env.pod_command_until(&acme, &reset(id, true), PodStatus::Running)
        .await?;
    assert!(sim.has_volume(id), "a fresh volume");
    assert_eq!(sim.read_file(id, DATA), None, "the data is gone");

    let logs = env
        .send_pod(
            &acme,
            &PodCommand::Logs(PodLogs {
                pod_id: id,
                tail: Some(1),
                since: None,
            }),
        )
        .await?;
    let CommandReply::Accepted {
        output: Some(output),
        events,
        ..
    } = logs
    else {
        panic!("logs were refused: {logs:?}");
    };
    assert!(events.is_empty(), "reading logs records nothing");
    assert_eq!(output.stdout.lines().count(), 1);
    pods.stop().await
}

#[tokio::test]
async fn scale_to_zero_and_delete_keep_or_remove_the_volume_as_asked() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let sim = Arc::new(SimRuntime::default());
    let pods = env
        .pod_lifecycle(fast_settings(), sim.clone(), pod_config(Default::default()))
        .await?;
    let acme = tenant("acme");
    let kept = env.create_pod(&acme, "blog", "ghost", "basic").await?;
    let dropped = env.create_pod(&acme, "shop", "wordpress", "free").await?;
    env.wait_pod_status(&acme, kept, PodStatus::Running).await?;
    env.wait_pod_status(&acme, dropped, PodStatus::Running)
        .await?;
    sim.write_file(kept, "/var/lib/ghost/content/post", "hello")?;

    let scale = |pod_id, replicas| {
        PodCommand::Scale(ScalePod {
            pod_id,
            replicas,
            expected_version: None,
        })
    };
    env.pod_command_until(&acme, &scale(kept, 0), PodStatus::Stopped)
        .await?;
    assert_eq!(sim.replicas(kept), Some(0));
    env.pod_command_until(&acme, &scale(kept, 1), PodStatus::Running)
        .await?;
    assert_eq!(
        sim.read_file(kept, "/var/lib/ghost/content/post")
            .as_deref(),
        Some("hello")
    );

    env.send_pod(&acme, &delete(kept, true)).await?;
    env.send_pod(&acme, &delete(dropped, false)).await?;
    env.wait_pod_status(&acme, kept, PodStatus::Deleted).await?;
    env.wait_pod_status(&acme, dropped, PodStatus::Deleted)
        .await?;
    assert_eq!(sim.replicas(kept), None, "no workload left");
    assert!(sim.has_volume(kept), "keep_volume=true keeps it");
    assert!(!sim.has_volume(dropped), "keep_volume=false removes it");

    let volumes = berth_pod_lifecycle::projection::volumes(&pods.db, Some(&acme)).await?;
    let status_of = |id| {
        volumes
            .iter()
            .find(|v| v.pod_id == id)
            .map(|v| v.status.clone())
    };
    assert_eq!(status_of(kept).as_deref(), Some("kept"));
    assert_eq!(status_of(dropped).as_deref(), Some("deleted"));
    pods.stop().await
}

#[tokio::test]
async fn tenants_act_only_on_their_own_pods_and_operators_on_any() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let sim = Arc::new(SimRuntime::default());
    let pods = env
        .pod_lifecycle(fast_settings(), sim.clone(), pod_config(Default::default()))
        .await?;
    let acme = tenant("acme");
    let id = env.create_pod(&acme, "flows", "n8n", "plus").await?;
    env.wait_pod_status(&acme, id, PodStatus::Running).await?;
    let version = env
        .last_sequence_of(&aggregate_event_filter(AGGREGATE, id))
        .await?;

    let intruder = env
        .send_pod(&tenant("globex"), &PodCommand::Restart(target(id)))
        .await?;
    assert_eq!(rejection_code(&intruder), Some(RejectionCode::Forbidden));
    let wipe = env.send_pod(&tenant("globex"), &reset(id, true)).await?;
    assert_eq!(rejection_code(&wipe), Some(RejectionCode::Forbidden));
    assert_eq!(
        env.last_sequence_of(&aggregate_event_filter(AGGREGATE, id))
            .await?,
        version,
        "a refused command writes nothing"
    );

    let unknown = env
        .send_pod(&acme, &PodCommand::Restart(target(Uuid::now_v7())))
        .await?;
    assert_eq!(rejection_code(&unknown), Some(RejectionCode::NotFound));

    let operator = env
        .send_pod(&tenant("system"), &PodCommand::Restart(target(id)))
        .await?;
    let CommandReply::Accepted { version, .. } = operator else {
        panic!("the operator's restart was refused: {operator:?}");
    };
    env.wait_pod_status_after(&acme, id, PodStatus::Running, version + 1)
        .await?;
    let events = berth_runtime::EventStore::new(env.js.clone(), "EVENTS")
        .read(&event_subject(&acme, AGGREGATE, id), 0)
        .await?;
    let restart = events
        .iter()
        .find(|e| e.meta.event_type == "berth.pod.restart_requested.v1")
        .expect("the operator's restart is recorded on the tenant's pod");
    assert_eq!(restart.meta.actor.as_str(), "user:test");
    assert_eq!(restart.meta.tenant.as_str(), "acme");
    pods.stop().await
}

#[tokio::test]
async fn bad_pod_commands_are_refused_with_a_reason() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let pods = env
        .pod_lifecycle(
            fast_settings(),
            Arc::new(SimRuntime::default()),
            pod_config(Default::default()),
        )
        .await?;
    let acme = tenant("acme");
    let meta = berth_tests::meta();
    let cases: [(&str, &[u8], RejectionCode); 4] = [
        (
            "cmd.acme.pod.create",
            br#"{"name":"x","service":"joomla","variant":"basic"}"#,
            RejectionCode::NotFound,
        ),
        (
            "cmd.acme.pod.create",
            br#"{"name":"x","service":"ghost","variant":"basic","replicas":3}"#,
            RejectionCode::Invalid,
        ),
        ("cmd.acme.pod.create", b"{", RejectionCode::Invalid),
        (
            "cmd.system.pod.create",
            br#"{"name":"x","service":"ghost","variant":"basic"}"#,
            RejectionCode::Invalid,
        ),
    ];
    for (subject, body, code) in cases {
        let reply = env
            .send_raw(subject, meta.to_headers(), body.to_vec())
            .await?;
        assert_eq!(
            rejection_code(&reply),
            Some(code),
            "{subject} {}",
            String::from_utf8_lossy(body)
        );
    }
    assert_eq!(
        env.last_sequence_of("evt.>").await?,
        0,
        "nothing was written"
    );
    let _ = acme;
    pods.stop().await
}

#[tokio::test]
async fn an_unhealthy_pod_is_restarted_with_backoff_then_marked_failed() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let sim = Arc::new(SimRuntime::default());
    let pods = env
        .pod_lifecycle(fast_settings(), sim.clone(), pod_config(Default::default()))
        .await?;
    let acme = tenant("acme");
    let id = env.create_pod(&acme, "flows", "n8n", "basic").await?;
    env.wait_pod_status(&acme, id, PodStatus::Running).await?;
    let starts = sim.starts(id);
    sim.set_unhealthy(id, Some("HTTP 502 on /healthz"));
    let failed = env.wait_pod_status(&acme, id, PodStatus::Failed).await?;
    let reason = failed.reason().unwrap_or_default();
    assert!(
        reason.contains("3 automatic restarts") && reason.contains("HTTP 502"),
        "{reason}"
    );
    assert_eq!(
        sim.starts(id),
        starts + 3,
        "exactly three automatic restarts"
    );

    sim.set_unhealthy(id, None);
    env.pod_command_until(&acme, &PodCommand::Restart(target(id)), PodStatus::Running)
        .await?;
    pods.stop().await
}

#[tokio::test]
async fn expiry_keeps_the_volume_sixty_days_then_pod_and_volume_are_deleted() -> anyhow::Result<()>
{
    let env = TestEnv::start().await?;
    let clock = Arc::new(ManualClock::starting_at(Utc::now().trunc_subsecs(0)));
    let scheduler = env
        .scheduler_with(
            fast_settings(),
            berth_scheduler::SchedulerConfig {
                builtins: Vec::new(),
                clock: clock.clone(),
            },
        )
        .await?;
    let sim = Arc::new(SimRuntime::default());
    let mut config = pod_config(Default::default());
    config.clock = clock.clone();
    let pods = env
        .pod_lifecycle(fast_settings(), sim.clone(), config)
        .await?;
    let acme = tenant("acme");
    let expiring = env.create_pod(&acme, "flows", "n8n", "basic").await?;
    let renewed = env.create_pod(&acme, "blog", "ghost", "basic").await?;
    for id in [expiring, renewed] {
        env.wait_pod_status(&acme, id, PodStatus::Running).await?;
        sim.write_file(id, "/data", "precious")?;
        let end = PodCommand::Expire(EndPod {
            pod_id: id,
            at: None,
        });
        assert!(accepted_id(&env.send_pod(&acme, &end).await?).is_some());
    }
    let expired = env
        .wait_pod_status(&acme, expiring, PodStatus::Expired)
        .await?;
    env.wait_pod_status(&acme, renewed, PodStatus::Expired)
        .await?;
    assert_eq!(sim.replicas(expiring), Some(0), "scaled to zero");
    assert!(sim.has_volume(expiring), "the volume stays");

    // The grace timer is armed for exactly sixty days after the expiry: pod-lifecycle's
    // timer, under `system`, out of the tenant's reach.
    let purge_after: chrono::DateTime<Utc> = expired
        .state
        .purge_after
        .context("an expired pod has a purge date")?;
    let system = berth_schemas::TenantId::system();
    let timer = service_timer_id(&acme, &berth_schemas::pod::grace_timer_key(expiring));
    let next_due = eventually("the grace timer", Duration::from_secs(30), || async {
        let rows = berth_scheduler::projection::list(&scheduler.db, Some(&system)).await?;
        Ok(rows
            .into_iter()
            .find(|r| r.id == timer)
            .and_then(|r| r.next_due))
    })
    .await?;
    assert_eq!(next_due, purge_after);
    assert_eq!(
        purge_after - clock.now(),
        chrono::Duration::days(GRACE_DAYS)
    );

    // Renewed on day 30: back with its data, its timer cancelled.
    clock.advance(chrono::Duration::days(30));
    env.pod_command_until(
        &acme,
        &PodCommand::Renew(target(renewed)),
        PodStatus::Running,
    )
    .await?;
    assert_eq!(sim.read_file(renewed, "/data").as_deref(), Some("precious"));
    let renewed_timer = service_timer_id(&acme, &berth_schemas::pod::grace_timer_key(renewed));
    eventually(
        "the renewed pod's timer to be cancelled",
        Duration::from_secs(30),
        || async {
            let rows = berth_scheduler::projection::list(&scheduler.db, Some(&system)).await?;
            Ok(rows
                .into_iter()
                .find(|r| r.id == renewed_timer && r.status == "deleted")
                .map(|_| ()))
        },
    )
    .await?;

    // Day 60: the timer fires and the expired pod goes, volume and all.
    clock.advance(chrono::Duration::days(30));
    env.wait_pod_status(&acme, expiring, PodStatus::Deleted)
        .await?;
    assert!(
        !sim.has_volume(expiring),
        "the volume is deleted with the pod"
    );
    assert_eq!(
        berth_pod_lifecycle::projection::get(&pods.db, renewed)
            .await?
            .map(|r| r.status),
        Some(PodStatus::Running)
    );
    pods.stop().await?;
    scheduler.stop().await
}

#[tokio::test]
async fn pods_debug_finds_what_no_pod_owns_and_cleans_it() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let sim = Arc::new(SimRuntime::default());
    let pods = env
        .pod_lifecycle(fast_settings(), sim.clone(), pod_config(Default::default()))
        .await?;
    let acme = tenant("acme");
    let live = env.create_pod(&acme, "flows", "n8n", "basic").await?;
    env.wait_pod_status(&acme, live, PodStatus::Running).await?;
    let stray = format!("berth-vol-{}", Uuid::now_v7());
    sim.add_stray_volume(&stray, "acme");
    sim.add_stray_volume("berth-vol-handmade", "acme");

    let client = env.client.clone();
    let ask = |clean_orphans| {
        let client = client.clone();
        async move {
            let body = serde_json::to_vec(&DebugPods { clean_orphans })?;
            let reply = berth_runtime::client::request(&client, PODS_DEBUG_SUBJECT, body).await?;
            anyhow::Ok(serde_json::from_slice::<PodsReport>(&reply.payload)?)
        }
    };
    let report = ask(false).await?;
    let mut orphans: Vec<_> = report.orphans.iter().map(|o| o.name.clone()).collect();
    orphans.sort();
    let mut expected = vec![stray.clone(), "berth-vol-handmade".to_owned()];
    expected.sort();
    assert_eq!(orphans, expected);
    let side = report
        .pods
        .iter()
        .find(|p| p.pod_id == live)
        .expect("the live pod");
    assert_eq!(
        (side.runtime_status.as_str(), side.volume_present),
        ("healthy", true)
    );

    let cleaned = ask(true).await?;
    assert_eq!(cleaned.removed.len(), 2);
    assert!(ask(false).await?.orphans.is_empty());
    assert!(sim.has_volume(live), "the live pod's volume is untouched");
    pods.stop().await
}

#[tokio::test]
async fn the_daily_grace_sweep_purges_a_pod_whose_timer_was_lost() -> anyhow::Result<()> {
    use berth_schemas::schedule::{TimerCommand, TimerTarget};
    let env = TestEnv::start().await?;
    let clock = Arc::new(ManualClock::starting_at(Utc::now().trunc_subsecs(0)));
    let sweep_only = berth_scheduler::builtin_schedules()
        .into_iter()
        .filter(|s| s.name == berth_schemas::pod::GRACE_SWEEP_SCHEDULE)
        .collect();
    let scheduler = env
        .scheduler_with(
            fast_settings(),
            berth_scheduler::SchedulerConfig {
                builtins: sweep_only,
                clock: clock.clone(),
            },
        )
        .await?;
    let sim = Arc::new(SimRuntime::default());
    let mut config = pod_config(Default::default());
    config.clock = clock.clone();
    let pods = env
        .pod_lifecycle(fast_settings(), sim.clone(), config)
        .await?;
    let acme = tenant("acme");
    let id = env.create_pod(&acme, "flows", "n8n", "basic").await?;
    env.wait_pod_status(&acme, id, PodStatus::Running).await?;
    env.pod_command_until(
        &acme,
        &PodCommand::Cancel(EndPod {
            pod_id: id,
            at: None,
        }),
        PodStatus::Expired,
    )
    .await?;
    let key = berth_schemas::pod::grace_timer_key(id);
    let system = berth_schemas::TenantId::system();
    let timer = service_timer_id(&acme, &key);
    let active = || async {
        let rows = berth_scheduler::projection::list(&scheduler.db, Some(&system)).await?;
        anyhow::Ok(
            rows.into_iter()
                .find(|r| r.id == timer && r.status == "active")
                .map(|_| ()),
        )
    };
    eventually("the grace timer", Duration::from_secs(30), active).await?;
    // The tenant cannot cancel it: it is pod-lifecycle's, under `system`.
    let cancel = |tenant: &berth_schemas::TenantId, key: String| {
        let client = env.client.clone();
        let tenant = tenant.clone();
        async move {
            let cancel = TimerCommand::Cancel(TimerTarget { key });
            berth_runtime::client::send_command(
                &client,
                &tenant,
                "timer",
                "cancel",
                &berth_tests::meta(),
                cancel.body(),
            )
            .await
        }
    };
    let reply = cancel(&acme, key.clone()).await?;
    assert_eq!(
        reply.rejection().map(|r| r.code),
        Some(berth_schemas::RejectionCode::NotFound),
        "{reply:?}"
    );
    assert!(
        active().await?.is_some(),
        "the tenant's cancel changed nothing"
    );
    // An operator loses it.
    let reply = cancel(&system, service_timer_key(&acme, &key)).await?;
    assert!(accepted_id(&reply).is_some(), "{reply:?}");

    clock.advance(chrono::Duration::days(GRACE_DAYS + 1));
    env.wait_pod_status(&acme, id, PodStatus::Deleted).await?;
    assert!(!sim.has_volume(id));
    let events = berth_runtime::EventStore::new(env.js.clone(), "EVENTS")
        .read(&event_subject(&acme, AGGREGATE, id), 0)
        .await?;
    let purge = events
        .iter()
        .find(|e| e.meta.event_type == "berth.pod.delete_requested.v1")
        .expect("the sweep's delete");
    assert_eq!(purge.meta.actor.as_str(), "service:pod-lifecycle");
    pods.stop().await?;
    scheduler.stop().await
}
