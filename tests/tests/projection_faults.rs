//! One bad event never freezes others (DESIGN §7, issue 14): a projection parks the
//! event it can never apply, moves on, and shows the fault; operators list, retry and
//! skip parked events; `berth status` counts only the events a projection follows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_provisioner::projection::VmsProjection;
use berth_runtime::audit::AuditLog;
use berth_runtime::client::{last_status, wait_for_status};
use berth_runtime::parked::{self, HealthState, Retried};
use berth_runtime::projection::{
    self, checkpoint, fault_subject, rebuild, ApplyError, Projection, StatusUpdate,
};
use berth_runtime::store::StoredEvent;
use berth_runtime::{Runtime, Settings};
use berth_schemas::envelope::EventMeta;
use berth_schemas::status::{ProjectionHealth, Status};
use berth_schemas::subjects::event_subject;
use berth_schemas::vm::VmStatus;
use berth_schemas::{Actor, TenantId};
use berth_tests::{eventually, fast_settings, instant_sim, tenant, TestEnv};
use sqlx::{PgConnection, PgPool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

/// A `vm.requested` whose body is JSON — with a NUL, which `jsonb` refuses — but not a
/// `VmRequested`: it bypasses every command check, as a bug or an old writer would.
const POISON: &[u8] = br#"{"name":"nul\u0000byte","vcpus":"many"}"#;

/// Publishes an event straight into `EVENTS` with a valid CloudEvents envelope; returns
/// its stream sequence.
#[allow(
    clippy::disallowed_methods,
    reason = "forges an event in EVENTS, past every command check"
)]
async fn publish_event(
    env: &TestEnv,
    tenant: &TenantId,
    aggregate: &str,
    id: Uuid,
    event_type: &str,
    data: &[u8],
) -> anyhow::Result<u64> {
    let meta = EventMeta {
        id: Uuid::now_v7(),
        source: "berth/elsewhere".into(),
        event_type: event_type.into(),
        time: chrono::Utc::now(),
        subject: id,
        tenant: tenant.clone(),
        actor: Actor::parse("user:mallory")?,
        correlation_id: id,
        causation_id: id,
        traceparent: None,
    };
    let (headers, payload) = meta.encode(data)?;
    Ok(env
        .js
        .publish_with_headers(event_subject(tenant, aggregate, id), headers, payload)
        .await?
        .await?
        .sequence)
}

/// Waits until `projection` has parked the event at `sequence`.
async fn wait_parked(
    db: &PgPool,
    projection: &str,
    sequence: u64,
) -> anyhow::Result<parked::ParkedEvent> {
    eventually(
        &format!("{projection} to park event {sequence}"),
        WAIT,
        || async { Ok(parked::get(db, projection, sequence).await?) },
    )
    .await
}

/// Waits until the health on `status.system.projection.<name>` is `state`.
async fn wait_health(
    env: &TestEnv,
    projection: &str,
    state: HealthState,
) -> anyhow::Result<Status<ProjectionHealth>> {
    Ok(wait_for_status(
        &env.client,
        &fault_subject(projection)?,
        WAIT,
        |s: &Status<ProjectionHealth>| s.state.status == state,
    )
    .await?)
}

/// `id → version` of every row of `vms.vms`.
async fn vm_versions(db: &PgPool) -> anyhow::Result<HashMap<Uuid, i64>> {
    let rows: Vec<(Uuid, i64)> = sqlx::query_as("SELECT id, version FROM vms.vms")
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Waits until the VM's row says `status`.
async fn wait_vm_row(db: &PgPool, id: Uuid, status: &str) -> anyhow::Result<()> {
    eventually(&format!("vm {id} to be {status}"), WAIT, || async {
        let found: Option<String> = sqlx::query_scalar("SELECT status FROM vms.vms WHERE id = $1")
            .bind(id)
            .fetch_optional(db)
            .await?;
        Ok((found.as_deref() == Some(status)).then_some(()))
    })
    .await
}

/// Waits until a projection has applied everything it follows.
async fn wait_caught_up(rt: &Runtime, projection: &dyn Projection) -> anyhow::Result<()> {
    eventually(
        &format!("{} to catch up", projection.name()),
        WAIT,
        || async {
            let at = checkpoint(&rt.db, projection.name()).await?;
            Ok((projection::behind(&rt.js, projection, at).await? == 0).then_some(()))
        },
    )
    .await
}

#[tokio::test]
async fn a_poison_event_is_parked_and_every_other_vm_and_tenant_goes_on() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let service = env.provisioner(fast_settings(), instant_sim()).await?;
    let rt = env.runtime("test", fast_settings()).await?;
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let before = env.create(&acme, "before").await?;
    env.wait_vm_status(&acme, before, VmStatus::Running).await?;

    let poison = publish_event(
        &env,
        &acme,
        "vm",
        Uuid::now_v7(),
        "berth.vm.requested.v1",
        POISON,
    )
    .await?;
    let after = env.create(&acme, "after").await?;
    let other = env.create(&globex, "other").await?;
    env.wait_vm_status(&acme, after, VmStatus::Running).await?;
    env.wait_vm_status(&globex, other, VmStatus::Running)
        .await?;
    wait_vm_row(&rt.db, after, "running").await?;
    wait_vm_row(&rt.db, other, "running").await?;

    // Each projection parked exactly the poison, with its own reason.
    let vms = wait_parked(&rt.db, "vms", poison).await?;
    assert_eq!(vms.event_type, "berth.vm.requested.v1");
    assert!(vms.subject.starts_with("evt.acme.vm."), "{}", vms.subject);
    assert_eq!(vms.resolved, None);
    let audit = wait_parked(&rt.db, "audit_log", poison).await?;
    assert!(audit.error.contains("SQLSTATE 22P05"), "{}", audit.error);
    wait_caught_up(&rt, &AuditLog).await?;
    wait_caught_up(&rt, &VmsProjection).await?;
    let all = parked::list(&rt.db, None, true).await?;
    assert_eq!(
        all.iter()
            .map(|p| (p.projection.as_str(), p.sequence as u64))
            .collect::<Vec<_>>(),
        [("audit_log", poison), ("vms", poison)],
        "only the poison is parked: {all:?}"
    );

    // The fault is visible on the status subject and in `berth status`.
    let health = wait_health(&env, "vms", HealthState::Degraded).await?;
    assert_eq!(health.state.parked, 1);
    assert_eq!(health.state.sequence, Some(poison));
    assert!(!health.reason().unwrap_or_default().is_empty());
    let audit_health = wait_health(&env, "audit_log", HealthState::Degraded).await?;
    assert!(audit_health.reason().unwrap_or_default().contains("22P05"));
    let status = parked::status(&rt, &VmsProjection).await?;
    assert_eq!(
        (status.health.state, status.health.parked, status.behind),
        (HealthState::Degraded, 1, 0)
    );

    // Every other event is in the audit log, the poison is not.
    let last = env.events_last_sequence().await?;
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log.events")
        .fetch_one(&rt.db)
        .await?;
    assert_eq!(audited as u64, last - 1);

    // Exactly once: running the projections again applies nothing twice and parks
    // nothing again; each row's version is its last event's sequence.
    let versions = vm_versions(&rt.db).await?;
    let checkpoints = (
        checkpoint(&rt.db, "vms").await?,
        checkpoint(&rt.db, "audit_log").await?,
    );
    service.stop().await?;
    let service = env.provisioner(fast_settings(), instant_sim()).await?;
    let later = env.create(&globex, "later").await?;
    env.wait_vm_status(&globex, later, VmStatus::Running)
        .await?;
    wait_vm_row(&rt.db, later, "running").await?;
    wait_caught_up(&rt, &AuditLog).await?;
    let again = vm_versions(&rt.db).await?;
    for (id, version) in &versions {
        assert_eq!(again.get(id), Some(version), "vm {id} changed on a re-run");
    }
    for (owner, id) in [
        (&acme, before),
        (&acme, after),
        (&globex, other),
        (&globex, later),
    ] {
        let last = env
            .last_sequence_of(&event_subject(owner, "vm", id))
            .await?;
        assert_eq!(again[&id] as u64, last, "vm {id}'s version");
    }
    assert!(checkpoint(&rt.db, "vms").await? > checkpoints.0);
    assert!(checkpoint(&rt.db, "audit_log").await? > checkpoints.1);
    let all = parked::list(&rt.db, None, true).await?;
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all.iter().all(|p| p.attempts == 1), "{all:?}");
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log.events")
        .fetch_one(&rt.db)
        .await?;
    assert_eq!(audited as u64, env.events_last_sequence().await? - 1);

    // A rebuild leaves the parked event out, as the live rows do.
    for projection in [&VmsProjection as &dyn Projection, &AuditLog] {
        let report = rebuild(&rt, projection, true, |_| {}).await?;
        assert!(report.matches_live(), "{report:?}");
    }
    service.stop().await
}

#[tokio::test]
async fn skip_resolves_a_parked_event_and_the_fault_clears() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let service = env.provisioner(fast_settings(), instant_sim()).await?;
    let rt = env.runtime("test", fast_settings()).await?;
    let acme = tenant("acme");
    let poison = publish_event(
        &env,
        &acme,
        "vm",
        Uuid::now_v7(),
        "berth.vm.requested.v1",
        POISON,
    )
    .await?;
    let vm = env.create(&acme, "web").await?;
    env.wait_vm_status(&acme, vm, VmStatus::Running).await?;
    wait_parked(&rt.db, "vms", poison).await?;
    wait_parked(&rt.db, "audit_log", poison).await?;
    wait_health(&env, "vms", HealthState::Degraded).await?;

    // Without a fix a retry fails again: the event stays parked, the try counted.
    let Retried::StillParked { parked: again } = parked::retry(&rt, &VmsProjection, poison).await?
    else {
        panic!("an undecodable event was applied");
    };
    assert_eq!(again.attempts, 2);
    assert_eq!(again.resolved, None);
    assert_eq!(parked::status(&rt, &VmsProjection).await?.health.parked, 1);

    let skipped = parked::skip(&rt, "vms", poison).await?;
    assert_eq!(skipped.resolved.as_deref(), Some("skipped"));
    assert!(skipped.resolved_at.is_some());
    let health = wait_health(&env, "vms", HealthState::Ok).await?;
    assert_eq!(health.state.parked, 0);
    assert_eq!(
        parked::status(&rt, &VmsProjection).await?.health.state,
        HealthState::Ok
    );
    // Skipped, not forgotten.
    assert!(parked::list(&rt.db, Some("vms"), false).await?.is_empty());
    let listed = parked::list(&rt.db, Some("vms"), true).await?;
    assert_eq!(listed, vec![skipped]);
    let twice = parked::skip(&rt, "vms", poison).await.unwrap_err();
    assert!(twice.to_string().contains("already resolved"), "{twice}");
    // The other projection's fault is its own.
    assert_eq!(
        parked::status(&rt, &AuditLog).await?.health.state,
        HealthState::Degraded
    );
    let vms_status: Option<Status<ProjectionHealth>> =
        last_status(&env.js, &fault_subject("vms")?).await?;
    assert_eq!(
        vms_status.expect("a health status").state.status,
        HealthState::Ok
    );

    service.stop().await
}

/// A projection that writes each event's body as text, all in one statement per batch
/// (so a NUL fails the whole batch in Postgres, like the `vms` upsert), refuses
/// `berth.test.refused.v1` until it is "fixed", and counts how often each event was applied.
struct Notes {
    fixed: Arc<AtomicBool>,
}

#[async_trait]
impl Projection for Notes {
    fn name(&self) -> &'static str {
        "notes"
    }

    fn filter_subjects(&self) -> Vec<String> {
        vec!["evt.*.note.*".into()]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["notes"]
    }

    async fn create_tables(&self, conn: &mut PgConnection, schema: &str) -> sqlx::Result<()> {
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {schema}.notes (
                stream_seq bigint PRIMARY KEY,
                body text NOT NULL,
                applied integer NOT NULL DEFAULT 1
            )"
        ))
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        schema: &str,
        events: &[StoredEvent],
    ) -> Result<Vec<StatusUpdate>, ApplyError> {
        let mut bodies = Vec::with_capacity(events.len());
        for event in events {
            if event.meta.event_type == "berth.test.refused.v1"
                && !self.fixed.load(Ordering::SeqCst)
            {
                return Err(ApplyError::Event {
                    sequence: event.sequence,
                    reason: "refused until fixed".into(),
                });
            }
            let body: serde_json::Value = serde_json::from_slice(&event.data)?;
            bodies.push(body["text"].as_str().unwrap_or_default().to_owned());
        }
        sqlx::query(&format!(
            "INSERT INTO {schema}.notes (stream_seq, body)
             SELECT * FROM UNNEST($1::bigint[], $2::text[])
             ON CONFLICT (stream_seq) DO UPDATE SET applied = notes.applied + 1"
        ))
        .bind(events.iter().map(|e| e.sequence as i64).collect::<Vec<_>>())
        .bind(bodies)
        .execute(conn)
        .await?;
        Ok(Vec::new())
    }
}

/// The `notes` projection running on a runtime of its own.
struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<berth_runtime::Result<()>>,
}

async fn run_notes(env: &TestEnv, fixed: &Arc<AtomicBool>) -> anyhow::Result<Running> {
    let shutdown = CancellationToken::new();
    let rt = Runtime::connect("notes", &env.connect, Settings::default(), shutdown.clone()).await?;
    let notes = Arc::new(Notes {
        fixed: fixed.clone(),
    });
    let task = tokio::spawn(async move { projection::run(&rt, notes).await });
    Ok(Running { shutdown, task })
}

impl Running {
    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        Ok(tokio::time::timeout(WAIT, self.task).await???)
    }
}

async fn note(env: &TestEnv, event_type: &str, text: &str) -> anyhow::Result<u64> {
    let body = serde_json::to_vec(&serde_json::json!({ "text": text }))?;
    publish_event(
        env,
        &tenant("acme"),
        "note",
        Uuid::now_v7(),
        event_type,
        &body,
    )
    .await
}

/// `stream_seq → applied` of every note.
async fn notes(db: &PgPool) -> anyhow::Result<HashMap<u64, i32>> {
    let rows: Vec<(i64, i32)> = sqlx::query_as("SELECT stream_seq, applied FROM notes.notes")
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(|(s, a)| (s as u64, a)).collect())
}

#[tokio::test]
async fn failing_events_in_a_batch_are_found_parked_and_retried_and_the_rest_applied_once(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let rt = env.runtime("test", fast_settings()).await?;
    let fixed = Arc::new(AtomicBool::new(false));
    let projection = Notes {
        fixed: fixed.clone(),
    };

    // All in the log before the projection starts: one batch, bad events in the middle.
    let mut good = Vec::new();
    for i in 0..3 {
        good.push(note(&env, "berth.test.noted.v1", &format!("before {i}")).await?);
    }
    let nul = note(&env, "berth.test.noted.v1", "nul\u{0}byte").await?;
    for i in 0..2 {
        good.push(note(&env, "berth.test.noted.v1", &format!("between {i}")).await?);
    }
    let refused = note(&env, "berth.test.refused.v1", "refused").await?;
    good.push(note(&env, "berth.test.noted.v1", "after").await?);

    let running = run_notes(&env, &fixed).await?;
    wait_caught_up(&rt, &projection).await?;
    let applied = notes(&rt.db).await?;
    assert_eq!(
        applied,
        good.iter().map(|s| (*s, 1)).collect::<HashMap<_, _>>(),
        "every good event applied once, the bad ones not at all"
    );
    let parked_events = parked::list(&rt.db, Some("notes"), false).await?;
    assert_eq!(
        parked_events
            .iter()
            .map(|p| p.sequence as u64)
            .collect::<Vec<_>>(),
        [nul, refused]
    );
    assert!(
        parked_events[0].error.contains("SQLSTATE 22021"),
        "{}",
        parked_events[0].error
    );
    assert_eq!(parked_events[1].error, "refused until fixed");
    assert_eq!(checkpoint(&rt.db, "notes").await?, *good.last().unwrap());
    let health = wait_health(&env, "notes", HealthState::Degraded).await?;
    assert_eq!(health.state.parked, 2);
    assert_eq!(health.state.sequence, Some(refused));

    // Run again: nothing before, between or after the parked events is applied twice.
    running.stop().await?;
    let running = run_notes(&env, &fixed).await?;
    let next = note(&env, "berth.test.noted.v1", "next").await?;
    good.push(next);
    wait_caught_up(&rt, &projection).await?;
    assert_eq!(
        notes(&rt.db).await?,
        good.iter().map(|s| (*s, 1)).collect::<HashMap<_, _>>()
    );
    assert!(parked::list(&rt.db, Some("notes"), false)
        .await?
        .iter()
        .all(|p| p.attempts == 1));

    // A retry that fails again keeps the event parked, with the try counted.
    let Retried::StillParked { parked: again } = parked::retry(&rt, &projection, refused).await?
    else {
        panic!("a refused event was applied");
    };
    assert_eq!(
        (again.attempts, again.error.as_str()),
        (2, "refused until fixed")
    );
    let Retried::StillParked { parked: again } = parked::retry(&rt, &projection, nul).await? else {
        panic!("a NUL reached a text column");
    };
    assert!(again.error.contains("22021"), "{}", again.error);
    assert_eq!(
        parked::status(&rt, &projection).await?.health.parked,
        2,
        "both still parked"
    );

    // After the fix a retry applies it, once, and unparks it.
    fixed.store(true, Ordering::SeqCst);
    assert_eq!(
        parked::retry(&rt, &projection, refused).await?,
        Retried::Applied
    );
    assert_eq!(notes(&rt.db).await?.get(&refused), Some(&1));
    assert!(parked::get(&rt.db, "notes", refused).await?.is_none());
    let not_parked = parked::retry(&rt, &projection, refused).await.unwrap_err();
    assert!(
        not_parked.to_string().contains("not parked"),
        "{not_parked}"
    );
    let health = wait_for_status(
        &env.client,
        &fault_subject("notes")?,
        WAIT,
        |s: &Status<ProjectionHealth>| s.state.parked == 1,
    )
    .await?;
    assert_eq!(
        (health.state.status, health.state.sequence),
        (HealthState::Degraded, Some(nul))
    );

    // The NUL can only be skipped; then the projection is healthy again.
    parked::skip(&rt, "notes", nul).await?;
    wait_health(&env, "notes", HealthState::Ok).await?;
    running.stop().await
}

#[tokio::test]
async fn an_idle_projection_is_not_behind_after_traffic_on_other_aggregates() -> anyhow::Result<()>
{
    let env = TestEnv::start().await?;
    let service = env.provisioner(fast_settings(), instant_sim()).await?;
    let rt = env.runtime("test", fast_settings()).await?;
    let acme = tenant("acme");
    let vm = env.create(&acme, "web").await?;
    env.wait_vm_status(&acme, vm, VmStatus::Running).await?;
    wait_vm_row(&rt.db, vm, "running").await?;

    // Traffic that `vms` does not follow: pods and schedules of two tenants.
    let mut others = 0;
    for i in 0..120 {
        let (owner, aggregate) = match i % 3 {
            0 => (tenant("acme"), "pod"),
            1 => (tenant("globex"), "pod"),
            _ => (tenant("globex"), "schedule"),
        };
        let body = serde_json::to_vec(&serde_json::json!({ "n": i }))?;
        publish_event(
            &env,
            &owner,
            aggregate,
            Uuid::now_v7(),
            &format!("berth.{aggregate}.noise.v1"),
            &body,
        )
        .await?;
        others += 1;
    }
    wait_caught_up(&rt, &AuditLog).await?;

    let vms = parked::status(&rt, &VmsProjection).await?;
    let last = env.events_last_sequence().await?;
    assert!(
        last - vms.checkpoint >= others,
        "the log moved on past vms' last event"
    );
    assert_eq!(vms.behind, 0, "{vms:?}");
    assert_eq!(vms.health.state, HealthState::Ok);
    let audit = parked::status(&rt, &AuditLog).await?;
    assert_eq!((audit.checkpoint, audit.behind), (last, 0));
    // A projection that has not run is behind by exactly the events it follows.
    let pods = parked::status(&rt, &berth_pod_lifecycle::projection::PodsProjection).await?;
    assert_eq!((pods.checkpoint, pods.behind), (0, 80));
    service.stop().await
}
