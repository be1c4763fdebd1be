//! Dead letters end to end: a reactor that cannot apply an event until it is configured
//! gives it up into `DLQ`; an operator fixes the configuration and retries the letter;
//! the reactor applies it once, with the event's original ids and sequence, and a second
//! retry finds nothing to send.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use berth_runtime::dlq;
use berth_runtime::reactor::{self, ReactError, Reactor};
use berth_runtime::store::StoredEvent;
use berth_schemas::demo::{DemoEvent, DemoResetSucceeded};
use berth_schemas::TenantId;
use berth_tests::{eventually, fast_settings, TestEnv};
use chrono::Utc;
use uuid::Uuid;

/// Applies demo events only once `configured`; counts what it applied, by event id.
#[derive(Default)]
struct Picky {
    configured: AtomicBool,
    applied: Mutex<HashMap<Uuid, (usize, u64, String)>>,
}

#[async_trait]
impl Reactor for Picky {
    fn name(&self) -> String {
        "test-picky".into()
    }

    fn filter_subjects(&self) -> Vec<String> {
        vec!["evt.*.demo.*".into()]
    }

    async fn react(&self, event: &StoredEvent) -> Result<(), ReactError> {
        if !self.configured.load(Ordering::SeqCst) {
            return Err(ReactError::permanent_because(
                "no_webhook",
                "no webhook URL configured",
            ));
        }
        let mut applied = self.applied.lock().expect("applied");
        let entry =
            applied
                .entry(event.meta.id)
                .or_insert((0, event.sequence, event.subject.clone()));
        entry.0 += 1;
        Ok(())
    }
}

#[tokio::test]
async fn a_poison_event_is_retried_after_the_fix_and_applied_once() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let rt = env.runtime("test", fast_settings()).await?;
    let picky = Arc::new(Picky::default());
    let running = tokio::spawn({
        let rt = rt.clone();
        let picky = picky.clone();
        async move { reactor::run(&rt, picky).await }
    });
    let demo = Uuid::now_v7();
    let event = DemoEvent::ResetSucceeded(DemoResetSucceeded {
        trigger: Uuid::now_v7(),
        vm_id: Uuid::now_v7(),
        duration_ms: 5,
    });
    let sequence = env
        .write_history(
            &TenantId::system(),
            "demo",
            demo,
            "provisioner",
            &[(Utc::now(), event)],
        )
        .await?[0];

    let letters = eventually("the event in the DLQ", Duration::from_secs(30), || async {
        let letters = dlq::list(&env.js, Some("test-picky")).await?;
        Ok((!letters.is_empty()).then_some(letters))
    })
    .await?;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.stream_sequence, sequence);
    assert!(letter.subject.ends_with(&demo.to_string()));
    assert!(
        letter.error.contains("no webhook URL configured"),
        "{letter:?}"
    );
    assert_eq!(letter.error_code.as_deref(), Some("no_webhook"));
    assert_eq!(
        letter.event_type.as_deref(),
        Some("berth.demo.reset_succeeded.v1")
    );
    assert!(picky.applied.lock().expect("applied").is_empty());

    picky.configured.store(true, Ordering::SeqCst);
    dlq::retry(&env.js, letter.sequence).await?;
    let (count, seen_sequence, seen_subject) = eventually(
        "the retried event applied",
        Duration::from_secs(30),
        || async {
            Ok(picky
                .applied
                .lock()
                .expect("applied")
                .values()
                .next()
                .cloned())
        },
    )
    .await?;
    assert_eq!(count, 1);
    assert_eq!(
        seen_sequence, sequence,
        "the reactor sees the original sequence"
    );
    assert_eq!(seen_subject, letter.subject, "and the original subject");
    assert_eq!(
        picky
            .applied
            .lock()
            .expect("applied")
            .keys()
            .next()
            .map(|id| id.to_string()),
        letter.event_id,
        "and the original event id"
    );
    assert!(
        dlq::list(&env.js, Some("test-picky")).await?.is_empty(),
        "the letter left the DLQ"
    );
    assert!(
        dlq::retry(&env.js, letter.sequence).await.is_err(),
        "a second retry finds nothing to send"
    );
    // The retry stream is a work queue: once the reactor acknowledged, nothing is left.
    eventually(
        "the retry acknowledged",
        Duration::from_secs(30),
        || async {
            let info = env
                .js
                .get_stream(berth_schemas::subjects::RETRY_STREAM)
                .await?
                .info()
                .await?
                .clone();
            Ok((info.state.messages == 0).then_some(()))
        },
    )
    .await?;
    assert_eq!(
        picky
            .applied
            .lock()
            .expect("applied")
            .values()
            .next()
            .map(|v| v.0),
        Some(1)
    );
    rt.shutdown.cancel();
    running.await??;
    Ok(())
}
