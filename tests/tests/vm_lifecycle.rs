//! A command goes in over NATS, events land in JetStream, the reactor drives the sim
//! provider, the `vms` projection shows the state and the status subject announces it.

use std::time::Duration;

use berth_provisioner::projection;
use berth_runtime::client::wait_for_status;
use berth_schemas::envelope::{missing_attributes, NatsBinary};
use berth_schemas::json_schema::event_schema_file;
use berth_schemas::status::{Status, VmState};
use berth_schemas::subjects::{event_subject, status_subject, StatusKind};
use berth_schemas::vm::{VmCommand, VmStatus, VmTarget};
use berth_schemas::CommandReply;
use berth_tests::{
    accepted_id, create_vm, eventually, fast_settings, instant_sim, meta, tenant, TestEnv,
};
use cloudevents::message::BinaryDeserializer;
use cloudevents::AttributesReader;
use futures::StreamExt;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn create_reaches_running_in_postgres_and_on_the_status_subject() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let service = env.provisioner(fast_settings(), instant_sim()).await?;
    let acme = tenant("acme");

    let reply = env.send(&acme, &meta(), &create_vm("web")).await?;
    let id = accepted_id(&reply).expect("create accepted");
    let CommandReply::Accepted { events, .. } = &reply else {
        unreachable!()
    };
    assert_eq!(
        events.len(),
        2,
        "create with start decides requested + start_requested"
    );

    let status = env
        .wait_vm_status(&tenant("acme"), id, VmStatus::Running)
        .await?;
    assert_eq!(status.tenant.as_str(), "acme");
    assert!(status
        .state
        .host
        .as_deref()
        .is_some_and(|h| h.starts_with("sim-host-")));
    let row = eventually("the vms row to say running", WAIT, || async {
        Ok(projection::get(&service.db, id)
            .await?
            .filter(|row| row.status == VmStatus::Running))
    })
    .await?;
    assert_eq!(row.tenant, "acme");
    assert_eq!(row.name, "web");
    assert_eq!(row.version as u64, status.version);

    // stop → stopped, start → running, destroy → destroyed, each announced.
    for (command, settled) in [
        (
            VmCommand::Stop(VmTarget {
                vm_id: id,
                expected_version: None,
            }),
            VmStatus::Stopped,
        ),
        (
            VmCommand::Start(VmTarget {
                vm_id: id,
                expected_version: None,
            }),
            VmStatus::Running,
        ),
        (
            VmCommand::Restart(VmTarget {
                vm_id: id,
                expected_version: None,
            }),
            VmStatus::Running,
        ),
        (
            VmCommand::Recreate(VmTarget {
                vm_id: id,
                expected_version: None,
            }),
            VmStatus::Running,
        ),
        (
            VmCommand::Destroy(VmTarget {
                vm_id: id,
                expected_version: None,
            }),
            VmStatus::Destroyed,
        ),
    ] {
        let reply = env.send(&acme, &meta(), &command).await?;
        let CommandReply::Accepted { version, .. } = reply else {
            panic!("{command:?} rejected: {reply:?}")
        };
        let subject = status_subject(&acme, StatusKind::Vm, &id.to_string())?;
        wait_for_status(&env.client, &subject, WAIT, |s: &Status<VmState>| {
            s.version > version && s.state.status == settled
        })
        .await?;
    }
    // Another tenant cannot see or touch it.
    let other = env
        .send(
            &tenant("other"),
            &meta(),
            &VmCommand::Stop(VmTarget {
                vm_id: id,
                expected_version: None,
            }),
        )
        .await?;
    assert_eq!(
        other.rejection().map(|r| r.code.as_str()),
        Some("not_found")
    );
    service.stop().await
}

#[tokio::test]
async fn every_event_is_a_complete_cloudevent_whose_body_matches_its_schema() -> anyhow::Result<()>
{
    let env = TestEnv::start().await?;
    let service = env.provisioner(fast_settings(), instant_sim()).await?;
    let acme = tenant("acme");
    let id =
        accepted_id(&env.send(&acme, &meta(), &create_vm("web")).await?).expect("create accepted");
    env.wait_vm_status(&tenant("acme"), id, VmStatus::Running)
        .await?;
    let command = meta();
    env.send(
        &acme,
        &command,
        &VmCommand::Stop(VmTarget {
            vm_id: id,
            expected_version: None,
        }),
    )
    .await?;
    env.wait_vm_status(&tenant("acme"), id, VmStatus::Stopped)
        .await?;

    let schemas = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/json");
    let stream = env.js.get_stream("EVENTS").await?;
    let mut consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await?;
    let total = consumer.info().await?.num_pending;
    assert!(
        total >= 7,
        "a create, start and stop make at least 7 events, found {total}"
    );
    let mut messages = consumer.messages().await?.take(total as usize);
    let mut seen_types = Vec::new();
    while let Some(message) = messages.next().await {
        let message = message?;
        let headers = message.headers.clone().expect("events carry headers");
        if let Some(msg_id) = headers.get("Nats-Msg-Id") {
            assert_eq!(
                Some(msg_id),
                headers.get("ce-id"),
                "single appends de-duplicate on ce-id"
            );
        } else {
            assert!(
                headers.get("Nats-Batch-Id").is_some(),
                "an event without Nats-Msg-Id was part of an atomic batch"
            );
        }
        let event = NatsBinary::new(headers, message.payload.clone()).into_event()?;
        assert_eq!(event.specversion().as_str(), "1.0");
        assert!(
            missing_attributes(&event).is_empty(),
            "{} misses {:?}",
            event.ty(),
            missing_attributes(&event)
        );
        assert!(event.source().to_string().starts_with("berth/"));
        let aggregate = message
            .subject
            .as_str()
            .rsplit('.')
            .next()
            .unwrap_or_default();
        assert_eq!(
            event.subject(),
            Some(aggregate),
            "ce-subject names the aggregate of the NATS subject"
        );
        let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
            schemas.join(event_schema_file(event.ty())),
        )?)?;
        let body: serde_json::Value = serde_json::from_slice(&message.payload)?;
        let validator = jsonschema::validator_for(&schema)?;
        assert!(
            validator.is_valid(&body),
            "{} body {body} does not match its schema",
            event.ty()
        );
        seen_types.push(event.ty().to_owned());
    }
    assert!(seen_types.contains(&"berth.vm.stopped.v1".to_owned()));
    // The stop's events carry the command as their cause.
    let stop_events: Vec<_> = berth_runtime::EventStore::new(env.js.clone(), "EVENTS")
        .read(&event_subject(&acme, "vm", id), 0)
        .await?
        .into_iter()
        .filter(|e| e.meta.causation_id == command.id)
        .collect();
    assert_eq!(stop_events.len(), 1);
    assert_eq!(stop_events[0].meta.actor.as_str(), "user:test");
    service.stop().await
}
