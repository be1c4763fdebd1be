//! The per-tenant cap on live pods, on the sim runtime through two pod-lifecycle
//! replicas (cap lowered to 5): concurrent creates leave exactly the cap, the next is
//! `quota_exceeded`, a deleted pod's slot is released lazily by the next create, a
//! repeated create command id is answered from the record even at the cap, another
//! tenant has its own count, and the audit log takes the `pod_slots` events in its stride.

use std::sync::Arc;
use std::time::Duration;

use berth_pod_lifecycle::sim::SimRuntime;
use berth_runtime::audit::AuditLog;
use berth_runtime::client::send_command;
use berth_runtime::parked::{self, HealthState};
use berth_runtime::store::{EventStore, StoredEvent};
use berth_schemas::command::CommandMeta;
use berth_schemas::pod::{
    pod_slots_id, CreatePod, DeletePod, PodCommand, PodSlotEvent, PodSlotHeld, PodSlotsReleased,
    PodStatus, POD_SLOTS_AGGREGATE,
};
use berth_schemas::subjects::event_subject;
use berth_schemas::{CommandReply, CommandSet, DomainEvent, RejectionCode, TenantId};
use berth_tests::pods::pod_config;
use berth_tests::{accepted_id, eventually, fast_settings, instant_sim, meta, tenant, TestEnv};
use futures::future::join_all;

const CAP: usize = 5;
const WAIT: Duration = Duration::from_secs(60);

fn create(name: &str) -> PodCommand {
    PodCommand::Create(CreatePod {
        pod_id: None,
        name: name.into(),
        service: "n8n".into(),
        variant: "basic".into(),
        subscription_id: None,
        env: Default::default(),
    })
}

/// Sends `pod.create` of `name` with the command id and correlation of `meta`.
async fn send_create(
    env: &TestEnv,
    tenant: &TenantId,
    meta: &CommandMeta,
    name: &str,
) -> anyhow::Result<CommandReply> {
    let command = create(name);
    Ok(send_command(
        &env.client,
        tenant,
        "pod",
        command.action(),
        meta,
        command.body(),
    )
    .await?)
}

fn code(reply: &CommandReply) -> Option<RejectionCode> {
    reply.rejection().map(|r| r.code)
}

/// The tenant's `pod_slots` events, decoded, oldest first.
async fn slot_events(env: &TestEnv, tenant: &TenantId) -> anyhow::Result<Vec<PodSlotEvent>> {
    let subject = event_subject(tenant, POD_SLOTS_AGGREGATE, pod_slots_id(tenant));
    let stored = EventStore::new(env.js.clone(), "EVENTS")
        .read(&subject, 0)
        .await?;
    Ok(stored
        .iter()
        .map(StoredEvent::decode)
        .collect::<Result<_, _>>()?)
}

/// The tenant's pods the `pods` projection shows as not deleted.
async fn live_rows(db: &sqlx::PgPool, tenant: &TenantId) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM pods.pods WHERE tenant = $1 AND status <> 'deleted'",
    )
    .bind(tenant.as_str())
    .fetch_one(db)
    .await?)
}

#[tokio::test]
async fn a_tenant_has_at_most_its_cap_of_live_pods_counted_race_free_across_replicas(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    // Both replicas drive one sim, as two replicas would one Docker engine.
    let sim = Arc::new(SimRuntime::default());
    let mut config = pod_config(Default::default());
    config.max_pods_per_tenant = CAP;
    let first = env
        .pod_lifecycle(fast_settings(), sim.clone(), config.clone())
        .await?;
    let second = env
        .pod_lifecycle(fast_settings(), sim.clone(), config)
        .await?;
    // The provisioner runs the audit log, which reads every event.
    let provisioner = env.provisioner(fast_settings(), instant_sim()).await?;
    let acme = tenant("acme");

    // Twelve at once for five slots, through both replicas (one queue group).
    let raced = join_all((0..12).map(|n| {
        let (env, acme) = (&env, &acme);
        async move { send_create(env, acme, &meta(), &format!("race-{n}")).await }
    }))
    .await;
    let mut accepted = Vec::new();
    for reply in raced {
        let reply = reply?;
        match &reply {
            CommandReply::Accepted { aggregate_id, .. } => accepted.push(*aggregate_id),
            CommandReply::Rejected(rejection) => {
                assert_eq!(rejection.code, RejectionCode::QuotaExceeded, "{reply:?}");
                assert!(
                    rejection.message.contains("has 5 pods") && rejection.message.contains("(5)"),
                    "{}",
                    rejection.message
                );
            }
        }
    }
    assert_eq!(accepted.len(), CAP, "exactly the cap");
    for id in &accepted {
        env.wait_pod_status(&acme, *id, PodStatus::Running).await?;
    }
    assert_eq!(live_rows(&first.db, &acme).await?, CAP as i64);
    let held: Vec<PodSlotEvent> = accepted
        .iter()
        .map(|pod_id| PodSlotEvent::Held(PodSlotHeld { pod_id: *pod_id }))
        .collect();
    let mut slots = slot_events(&env, &acme).await?;
    assert_eq!(slots.len(), CAP, "one hold per pod: {slots:?}");
    for hold in &held {
        assert!(slots.contains(hold), "{hold:?} in {slots:?}");
    }

    // The sixth is refused and writes nothing.
    let before = env.last_sequence_of("evt.acme.>").await?;
    let sixth = send_create(&env, &acme, &meta(), "sixth").await?;
    assert_eq!(
        code(&sixth),
        Some(RejectionCode::QuotaExceeded),
        "{sixth:?}"
    );
    assert_eq!(env.last_sequence_of("evt.acme.>").await?, before);
    // Another tenant counts its own pods.
    let globex = tenant("globex");
    assert!(accepted_id(&send_create(&env, &globex, &meta(), "own").await?).is_some());

    // A deleting pod still holds its slot; a deleted one frees it for the next create.
    let gone = accepted[0];
    let delete = PodCommand::Delete(DeletePod {
        pod_id: gone,
        keep_volume: false,
        expected_version: None,
    });
    env.pod_command_until(&acme, &delete, PodStatus::Deleted)
        .await?;
    let next = meta();
    let reply = send_create(&env, &acme, &next, "next").await?;
    let CommandReply::Accepted {
        aggregate_id: admitted,
        version,
        ref events,
        ..
    } = reply
    else {
        panic!("the freed slot was not taken: {reply:?}");
    };
    env.wait_pod_status(&acme, admitted, PodStatus::Running)
        .await?;
    assert_eq!(live_rows(&first.db, &acme).await?, CAP as i64);
    slots = slot_events(&env, &acme).await?;
    assert_eq!(
        slots[CAP..],
        [
            PodSlotEvent::Released(PodSlotsReleased {
                pod_ids: vec![gone]
            }),
            PodSlotEvent::Held(PodSlotHeld { pod_id: admitted }),
        ],
        "released lazily, in the create's batch"
    );

    // Full again. A repeat of the create's command id is answered from the record (not
    // refused, not a second pod), and writes nothing.
    let over = send_create(&env, &acme, &meta(), "over").await?;
    assert_eq!(code(&over), Some(RejectionCode::QuotaExceeded), "{over:?}");
    let before = env.last_sequence_of("evt.acme.>").await?;
    let again = send_create(&env, &acme, &next, "next").await?;
    let CommandReply::Accepted {
        aggregate_id: repeated,
        version: repeated_version,
        events: ref repeated_events,
        ..
    } = again
    else {
        panic!("a repeated create was not answered from the record: {again:?}");
    };
    assert_eq!(
        (repeated, repeated_version, repeated_events),
        (admitted, version, events)
    );
    assert_eq!(env.last_sequence_of("evt.acme.>").await?, before);
    assert_eq!(slot_events(&env, &acme).await?, slots);

    // The audit log recorded every slot event and parked none.
    let rt = env.runtime("test", fast_settings()).await?;
    let audit = eventually("the audit log to catch up", WAIT, || async {
        let status = parked::status(&rt, &AuditLog).await?;
        Ok((status.behind == 0).then_some(status))
    })
    .await?;
    assert_eq!(audit.health.state, HealthState::Ok, "{:?}", audit.health);
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log.events WHERE tenant = 'acme' AND event_type = ANY($1)",
    )
    .bind(PodSlotEvent::event_types().to_vec())
    .fetch_one(&provisioner.db)
    .await?;
    assert_eq!(audited, slots.len() as i64);

    provisioner.stop().await?;
    second.stop().await?;
    first.stop().await
}
