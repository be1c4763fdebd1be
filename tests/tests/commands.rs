//! The command path: idempotency, optimistic concurrency, bad input.

use std::collections::HashSet;
use std::time::Duration;

use async_nats::HeaderMap;
use berth_provisioner::vm::Vm;
use berth_runtime::store::{Aggregate, Repository, StoredEvent};
use berth_runtime::{EventStore, Settings};
use berth_schemas::subjects::event_subject;
use berth_schemas::vm::{VmCommand, VmEvent, VmStatus, VmTarget};
use berth_schemas::{CommandReply, RejectionCode, TenantId};
use berth_tests::{create_vm, eventually, fast_settings, instant_sim, meta, tenant, TestEnv};
use futures::future::join_all;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

async fn history(env: &TestEnv, tenant: &TenantId, id: Uuid) -> anyhow::Result<Vec<StoredEvent>> {
    Ok(EventStore::new(env.js.clone(), "EVENTS")
        .read(&event_subject(tenant, "vm", id), 0)
        .await?)
}

async fn wait_until(
    env: &TestEnv,
    tenant: &TenantId,
    id: Uuid,
    status: VmStatus,
) -> anyhow::Result<u64> {
    let repository = Repository::<Vm>::new(EventStore::new(env.js.clone(), "EVENTS"), "test");
    eventually(&format!("vm {id} to be {status}"), WAIT, || async {
        let loaded = repository.load(tenant, id).await?;
        Ok((loaded.state.status == Some(status)).then_some(loaded.version))
    })
    .await
}

#[tokio::test]
async fn a_repeated_command_gives_the_same_reply_and_one_set_of_events_even_after_the_duplicate_window(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let window = Duration::from_millis(500);
    let settings = Settings {
        events_duplicate_window: Some(window),
        ..fast_settings()
    };
    let acme = tenant("acme");
    let command = meta();
    let create = create_vm("web");

    let service = env.provisioner(settings.clone(), instant_sim()).await?;
    let first = env.send(&acme, &command, &create).await?;
    let again = env.send(&acme, &command, &create).await?;
    assert_eq!(first, again, "inside the duplicate window");
    let CommandReply::Accepted {
        aggregate_id: id, ..
    } = first.clone()
    else {
        panic!("{first:?}")
    };
    let stop = meta();
    wait_until(&env, &acme, id, VmStatus::Running).await?;
    let stopped = env
        .send(
            &acme,
            &stop,
            &VmCommand::Stop(VmTarget {
                vm_id: id,
                expected_version: None,
            }),
        )
        .await?;
    service.stop().await?;

    // Outlive the duplicate window, then ask a fresh process (empty cache): the replies
    // must come from the aggregate's memory of applied command ids, not from NATS.
    let first_append = history(&env, &acme, id).await?[0].meta.time;
    tokio::time::sleep_until(tokio::time::Instant::now() + window * 3).await;
    assert!(chrono::Utc::now() - first_append > chrono::TimeDelta::from_std(window)?);
    let service = env.provisioner(settings, instant_sim()).await?;
    assert_eq!(
        env.send(&acme, &command, &create).await?,
        first,
        "after the duplicate window"
    );
    assert_eq!(
        env.send(
            &acme,
            &stop,
            &VmCommand::Stop(VmTarget {
                vm_id: id,
                expected_version: None
            })
        )
        .await?,
        stopped,
        "a stop repeated after the VM stopped is the same accepted stop, not invalid_state"
    );
    let events = history(&env, &acme, id).await?;
    let requested = events
        .iter()
        .filter(|e| e.meta.event_type == "berth.vm.requested.v1")
        .count();
    let stop_requests = events
        .iter()
        .filter(|e| e.meta.event_type == "berth.vm.stop_requested.v1")
        .count();
    assert_eq!(
        (requested, stop_requests),
        (1, 1),
        "one set of events per command"
    );
    service.stop().await
}

/// Every adjacent pair of statuses in a VM's history is a legal step.
fn assert_valid_history(events: &[StoredEvent]) {
    let mut vm = Vm::default();
    let mut previous = None;
    for event in events {
        let decoded: VmEvent = event.decode().expect("decodable");
        vm.apply(&decoded);
        let status = vm.status.expect("exists after its first event");
        use VmStatus::*;
        let legal = match (previous, status) {
            (None, Requested) => true,
            (Some(a), b) if a == b => true,
            (Some(Requested), Provisioning) | (Some(Provisioning), Starting | Stopped) => true,
            (Some(Starting), Running | Stopping) | (Some(Running), Stopping | Restarting) => true,
            (Some(Restarting), Running | Stopping)
            | (Some(Stopping), Stopped)
            | (Some(Stopped), Starting) => true,
            (Some(_), Destroying) | (Some(Destroying), Destroyed) | (Some(_), Failed) => true,
            _ => false,
        };
        assert!(
            legal,
            "illegal step {previous:?} → {status:?} at event {}",
            event.sequence
        );
        previous = Some(status);
    }
}

#[tokio::test]
async fn fifty_concurrent_conflicting_commands_apply_once_or_are_rejected_with_conflict(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let service = env.provisioner(fast_settings(), instant_sim()).await?;
    let acme = tenant("acme");
    let id = env.create(&acme, "web").await?;
    let version = wait_until(&env, &acme, id, VmStatus::Running).await?;

    // 50 commands all conditional on the same version: exactly one can win.
    let commands: Vec<_> = (0..50)
        .map(|i| {
            let target = VmTarget {
                vm_id: id,
                expected_version: Some(version),
            };
            (
                meta(),
                if i % 2 == 0 {
                    VmCommand::Stop(target)
                } else {
                    VmCommand::Restart(target)
                },
            )
        })
        .collect();
    let replies = join_all(commands.iter().map(|(m, c)| env.send(&acme, m, c))).await;
    let mut accepted = Vec::new();
    for ((command_meta, _), reply) in commands.iter().zip(replies) {
        match reply? {
            CommandReply::Accepted { .. } => accepted.push(command_meta.id),
            CommandReply::Rejected(r) => assert_eq!(r.code, RejectionCode::Conflict, "{r}"),
        }
    }
    assert_eq!(accepted.len(), 1, "exactly one conditional command wins");

    // 50 unconditional commands: each is applied once or rejected, never twice.
    let repository = Repository::<Vm>::new(EventStore::new(env.js.clone(), "EVENTS"), "test");
    eventually("the winner to settle", WAIT, || async {
        let status = repository.load(&acme, id).await?.state.status;
        Ok(matches!(status, Some(VmStatus::Running | VmStatus::Stopped)).then_some(()))
    })
    .await?;
    let commands: Vec<_> = (0..50)
        .map(|i| {
            let target = VmTarget {
                vm_id: id,
                expected_version: None,
            };
            let command = match i % 3 {
                0 => VmCommand::Stop(target),
                1 => VmCommand::Start(target),
                _ => VmCommand::Restart(target),
            };
            (meta(), command)
        })
        .collect();
    let replies = join_all(commands.iter().map(|(m, c)| env.send(&acme, m, c))).await;
    for ((command_meta, _), reply) in commands.iter().zip(replies) {
        match reply? {
            CommandReply::Accepted { .. } => accepted.push(command_meta.id),
            CommandReply::Rejected(r) => assert!(
                matches!(
                    r.code,
                    RejectionCode::Conflict | RejectionCode::InvalidState
                ),
                "{r}"
            ),
        }
    }
    let events = history(&env, &acme, id).await?;
    for command_id in &accepted {
        let caused = events
            .iter()
            .filter(|e| e.meta.causation_id == *command_id)
            .count();
        assert_eq!(
            caused, 1,
            "accepted command {command_id} must be applied exactly once"
        );
    }
    let command_ids: HashSet<Uuid> = commands.iter().map(|(m, _)| m.id).collect();
    let applied_unaccepted = events
        .iter()
        .filter(|e| {
            command_ids.contains(&e.meta.causation_id) && !accepted.contains(&e.meta.causation_id)
        })
        .count();
    assert_eq!(
        applied_unaccepted, 0,
        "a rejected command left events behind"
    );
    assert_valid_history(&events);
    service.stop().await
}

fn headers(command_id: &str, actor: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("ce-id", command_id);
    headers.insert("ce-actor", actor);
    headers
}

#[tokio::test]
async fn bad_input_gets_a_typed_rejection_and_changes_nothing() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let service = env.provisioner(fast_settings(), instant_sim()).await?;
    let before = env.events_last_sequence().await?;
    let good = r#"{"name":"web","vcpus":1,"memory_mb":512,"disk_gb":10,"image":"debian-12"}"#;
    let id = Uuid::now_v7().to_string();
    let cases: Vec<(&str, String, HeaderMap, Vec<u8>, RejectionCode)> = vec![
        (
            "malformed JSON",
            "cmd.acme.vm.create".into(),
            headers(&id, "user:t"),
            b"{\"name\":".to_vec(),
            RejectionCode::Invalid,
        ),
        (
            "not an object",
            "cmd.acme.vm.create".into(),
            headers(&id, "user:t"),
            b"[1,2]".to_vec(),
            RejectionCode::Invalid,
        ),
        (
            "unknown field",
            "cmd.acme.vm.create".into(),
            headers(&id, "user:t"),
            br#"{"name":"web","vcpus":1,"memory_mb":512,"disk_gb":10,"image":"x","gpu":true}"#
                .to_vec(),
            RejectionCode::Invalid,
        ),
        (
            "duplicate key",
            "cmd.acme.vm.create".into(),
            headers(&id, "user:t"),
            br#"{"name":"web","name":"db","vcpus":1,"memory_mb":512,"disk_gb":10,"image":"x"}"#
                .to_vec(),
            RejectionCode::Invalid,
        ),
        (
            "upper-case tenant",
            "cmd.ACME.vm.create".into(),
            headers(&id, "user:t"),
            good.into(),
            RejectionCode::Invalid,
        ),
        (
            "wildcard tenant *",
            "cmd.*.vm.create".into(),
            headers(&id, "user:t"),
            good.into(),
            RejectionCode::Invalid,
        ),
        (
            "wildcard tenant >",
            "cmd.>.vm.create".into(),
            headers(&id, "user:t"),
            good.into(),
            RejectionCode::Invalid,
        ),
        (
            "unknown action",
            "cmd.acme.vm.explode".into(),
            headers(&id, "user:t"),
            good.into(),
            RejectionCode::Invalid,
        ),
        (
            "missing command id",
            "cmd.acme.vm.create".into(),
            HeaderMap::new(),
            good.into(),
            RejectionCode::Invalid,
        ),
        (
            "command id not a UUID",
            "cmd.acme.vm.create".into(),
            headers("42", "user:t"),
            good.into(),
            RejectionCode::Invalid,
        ),
        (
            "bad actor",
            "cmd.acme.vm.create".into(),
            headers(&id, "root"),
            good.into(),
            RejectionCode::Invalid,
        ),
        (
            "out of bounds",
            "cmd.acme.vm.create".into(),
            headers(&id, "user:t"),
            br#"{"name":"web","vcpus":1000,"memory_mb":512,"disk_gb":10,"image":"x"}"#.to_vec(),
            RejectionCode::Invalid,
        ),
        (
            "oversized",
            "cmd.acme.vm.create".into(),
            headers(&id, "user:t"),
            format!(
                r#"{{"name":"web","vcpus":1,"memory_mb":512,"disk_gb":10,"image":"{}"}}"#,
                "x".repeat(300 * 1024)
            )
            .into_bytes(),
            RejectionCode::TooLarge,
        ),
        (
            "vm id that is not a UUID",
            "cmd.acme.vm.start".into(),
            headers(&id, "user:t"),
            br#"{"vm_id":"evt.>"}"#.to_vec(),
            RejectionCode::Invalid,
        ),
    ];
    for (what, subject, headers, body, code) in cases {
        let reply = env.send_raw(&subject, headers, body).await;
        let reply = reply.unwrap_or_else(|e| panic!("{what}: no reply: {e}"));
        assert_eq!(
            reply.rejection().map(|r| r.code),
            Some(code),
            "{what}: {reply:?}"
        );
    }
    // A tenant with a dot cannot even be named by a client: it is refused before any subject is built.
    assert!(TenantId::parse("acme.corp").is_err());
    assert!(TenantId::parse("acme>").is_err());
    assert_eq!(
        env.events_last_sequence().await?,
        before,
        "a rejected command appended something"
    );
    service.stop().await
}
