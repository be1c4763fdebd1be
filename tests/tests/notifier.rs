//! The notifier against a real SMTP server (aiosmtpd), a real HTTP receiver for
//! webhooks, real NATS and Postgres: one mail per event however often it is
//! redelivered, mail that waits for a server to come back, a dead server that fails its
//! mail while webhooks keep flowing, signed webhooks, expiry warnings from a timer.

use std::sync::Arc;
use std::time::Duration;

use berth_notifier::projection::{self, Filter};
use berth_notifier::webhook::Webhook;
use berth_runtime::clock::ManualClock;
use berth_schemas::billing::{CreateSubscription, SubscriptionCommand};
use berth_schemas::demo::{DemoEvent, DemoResetFailed, DemoResetSucceeded};
use berth_schemas::notification::{NotificationCommand, NotificationTarget};
use berth_schemas::{CommandSet, TenantId};
use berth_tests::billing::billing_config;
use berth_tests::notify::{notifier_config, SmtpSink, WebhookReceiver};
use berth_tests::{accepted_id, eventually, meta, tenant, TestEnv};
use chrono::{DateTime, Utc};
use uuid::Uuid;

const SECRET: &str = "test-webhook-secret";

fn ops_webhook(receiver: &WebhookReceiver) -> Webhook {
    format!("ops=generic:{}", receiver.url)
        .parse()
        .expect("a webhook flag")
}

async fn consumer_done(env: &TestEnv, name: &str) -> anyhow::Result<bool> {
    let stream = env.js.get_stream("EVENTS").await?;
    Ok(match stream.consumer_info(name).await {
        Ok(info) => info.num_pending == 0 && info.num_ack_pending == 0,
        Err(_) => false,
    })
}

#[tokio::test]
async fn an_opened_account_gets_one_welcome_mail_however_often_its_event_is_redelivered(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let sink = SmtpSink::start(false).await?;
    let clock = Arc::new(ManualClock::starting_at(Utc::now()));
    let _billing = env.billing(billing_config(&clock)).await?;
    let mut notifier = env.notifier(notifier_config(Some(sink.url()))).await?;
    let ada = tenant("ada");
    env.open_account(&ada, "EUR").await?;

    let mails = sink.wait_for(1, Duration::from_secs(30)).await?;
    let welcome = &mails[0];
    assert_eq!(welcome.rcpt_tos, ["billing@ada.test"]);
    assert_eq!(welcome.mail_from, "noreply@berth.localhost");
    assert_eq!(welcome.subject, "Welcome to berth, ada Ltd");
    let text = welcome.text.as_deref().unwrap_or_default();
    assert!(text.starts_with("Hello ada Ltd,"), "{text}");
    assert!(text.contains("tier pro, billed in EUR"), "{text}");
    let html = welcome.html.as_deref().unwrap_or_default();
    assert!(
        html.contains("<h2>Welcome to berth, ada Ltd</h2>"),
        "{html}"
    );
    assert!(
        welcome.message_id.ends_with("@berth>"),
        "{}",
        welcome.message_id
    );

    // Redeliver every event five times: drop the consumers, so that new ones start
    // from the beginning of the log, and start the notifier again.
    for _ in 0..5 {
        notifier.stop().await?;
        let stream = env.js.get_stream("EVENTS").await?;
        for consumer in ["notifier-rules", "notifier-email"] {
            stream.delete_consumer(consumer).await?;
        }
        notifier = env.notifier(notifier_config(Some(sink.url()))).await?;
        eventually(
            "the redelivered events handled",
            Duration::from_secs(30),
            || async {
                Ok((consumer_done(&env, "notifier-rules").await?
                    && consumer_done(&env, "notifier-email").await?)
                    .then_some(()))
            },
        )
        .await?;
    }
    assert_eq!(
        sink.mails()?.len(),
        1,
        "one mail, however often redelivered"
    );
    // The projection follows the log on its own; wait until it has caught up.
    let rows = eventually(
        "the notifications projection to show the mail sent",
        Duration::from_secs(30),
        || async {
            let rows = projection::list(
                &notifier.db,
                &Filter {
                    limit: 10,
                    ..Default::default()
                },
            )
            .await?;
            Ok(rows
                .first()
                .is_some_and(|row| row.status == "sent")
                .then_some(rows))
        },
    )
    .await?;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("sent", 1));
    notifier.stop().await
}

#[tokio::test]
async fn mail_waits_with_back_off_for_an_smtp_server_that_comes_back() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let mut sink = SmtpSink::reserve(false)?;
    let clock = Arc::new(ManualClock::starting_at(Utc::now()));
    let _billing = env.billing(billing_config(&clock)).await?;
    let mut config = notifier_config(Some(sink.url()));
    config.email.max_attempts = 50;
    let notifier = env.notifier(config).await?;
    env.open_account(&tenant("ada"), "EUR").await?;

    let retrying = env
        .wait_notification(&notifier.db, "two failed attempts", |row| {
            row.rule == "welcome" && row.attempts >= 2
        })
        .await?;
    assert_eq!(retrying.status, "retrying");
    assert!(
        retrying
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("SMTP"),
        "{retrying:?}"
    );
    sink.up().await?;
    let mails = sink.wait_for(1, Duration::from_secs(30)).await?;
    assert_eq!(mails[0].subject, "Welcome to berth, ada Ltd");
    let sent = env
        .wait_notification(&notifier.db, "the welcome sent", |row| row.status == "sent")
        .await?;
    assert!(sent.attempts >= 3, "{sent:?}");
    assert!(sent.sent_at.is_some());
    assert_eq!(sink.mails()?.len(), 1);
    notifier.stop().await
}

/// An SMTP server that accepts connections and never says a word.
async fn black_hole(port: u16) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    Ok(tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    }))
}

async fn demo_reset(env: &TestEnv, event: DemoEvent) -> anyhow::Result<()> {
    env.write_history(
        &TenantId::system(),
        "demo",
        Uuid::now_v7(),
        "provisioner",
        &[(Utc::now(), event)],
    )
    .await
    .map(|_| ())
}

fn succeeded(duration_ms: u64) -> DemoEvent {
    DemoEvent::ResetSucceeded(DemoResetSucceeded {
        trigger: Uuid::now_v7(),
        vm_id: Uuid::now_v7(),
        duration_ms,
    })
}

#[tokio::test]
async fn a_dead_smtp_server_fails_its_mail_while_signed_webhooks_keep_flowing_and_a_retry_delivers(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let mut sink = SmtpSink::reserve(false)?;
    let hole = black_hole(sink.port).await?;
    let receiver = WebhookReceiver::start(SECRET).await?;
    let mut config = notifier_config(Some(sink.url()));
    config.operator_emails = vec!["ops@berth.test".into()];
    config.webhooks = vec![ops_webhook(&receiver)];
    config.webhook_secret = Some(SECRET.into());
    config.email.max_attempts = 3;
    config.send_timeout = Duration::from_secs(1);
    let notifier = env.notifier(config).await?;

    for duration_ms in [1_742, 2_500, 61_000] {
        demo_reset(&env, succeeded(duration_ms)).await?;
    }
    let posts = receiver.wait_for(3, Duration::from_secs(30)).await?;
    let posted_by = Utc::now();
    assert!(
        posts.iter().all(|p| p.signature_valid),
        "every post verifies"
    );
    let mut subjects: Vec<String> = posts
        .iter()
        .map(|p| p.body["subject"].as_str().unwrap_or_default().to_owned())
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "Demo reset succeeded in 1 min 1 s",
            "Demo reset succeeded in 1.7 s",
            "Demo reset succeeded in 2.5 s"
        ]
    );
    assert!(posts.iter().all(|p| p.notification_id.is_some()));
    assert!(!berth_notifier::webhook::verify(
        "another secret",
        &berth_notifier::webhook::signature(SECRET, 1, b"{}"),
        b"{}"
    ));

    // Three mails to the silent server, three attempts each of a second or more.
    let failed = eventually(
        "the three mails failed",
        Duration::from_secs(60),
        || async {
            let rows = projection::list(
                &notifier.db,
                &Filter {
                    status: Some("failed".into()),
                    limit: 10,
                    ..Default::default()
                },
            )
            .await?;
            Ok((rows.len() == 3).then_some(rows))
        },
    )
    .await?;
    for row in &failed {
        assert_eq!((row.channel.as_str(), row.attempts), ("email", 3));
        assert!(
            row.updated_at > posted_by,
            "the webhooks all arrived before the first mail gave up"
        );
    }

    // The server is fixed: an operator retries, and the mails go out.
    hole.abort();
    let _ = hole.await;
    sink.up().await?;
    for row in &failed {
        let retry = NotificationCommand::Retry(NotificationTarget {
            notification_id: row.id,
        });
        let reply = berth_runtime::client::send_command(
            &env.client,
            &TenantId::system(),
            "notification",
            retry.action(),
            &meta(),
            retry.body(),
        )
        .await?;
        assert!(accepted_id(&reply).is_some(), "{reply:?}");
    }
    let mails = sink.wait_for(3, Duration::from_secs(30)).await?;
    assert!(mails.iter().all(|m| m.rcpt_tos == ["ops@berth.test"]));
    eventually(
        "the retried mails sent",
        Duration::from_secs(30),
        || async {
            let sent = projection::list(
                &notifier.db,
                &Filter {
                    status: Some("sent".into()),
                    limit: 10,
                    ..Default::default()
                },
            )
            .await?;
            Ok((sent.iter().filter(|r| r.channel == "email").count() == 3).then_some(()))
        },
    )
    .await?;
    assert_eq!(
        receiver.posts().len(),
        3,
        "the webhooks were not sent again"
    );
    notifier.stop().await
}

#[tokio::test]
async fn demo_reset_mails_carry_the_duration_or_the_reason() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let sink = SmtpSink::start(false).await?;
    let mut config = notifier_config(Some(sink.url()));
    config.operator_emails = vec!["ops@berth.test".into()];
    let notifier = env.notifier(config).await?;
    demo_reset(&env, succeeded(842)).await?;
    demo_reset(
        &env,
        DemoEvent::ResetFailed(DemoResetFailed {
            trigger: Uuid::now_v7(),
            vm_id: Uuid::now_v7(),
            reason: "provision failed: the sim provider is out of capacity".into(),
            duration_ms: 30_000,
        }),
    )
    .await?;
    let mut mails = sink.wait_for(2, Duration::from_secs(30)).await?;
    mails.sort_by(|a, b| a.subject.cmp(&b.subject));
    assert_eq!(mails[0].subject, "Demo reset FAILED after 30.0 s");
    assert!(mails[0]
        .text
        .as_deref()
        .unwrap_or_default()
        .contains("the sim provider is out of capacity"));
    assert_eq!(mails[1].subject, "Demo reset succeeded in 842 ms");
    assert!(mails[1]
        .text
        .as_deref()
        .unwrap_or_default()
        .contains("842 ms"));
    notifier.stop().await
}

#[tokio::test]
async fn a_subscription_warns_of_its_end_seven_days_ahead_through_a_scheduler_timer(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let sink = SmtpSink::start(false).await?;
    let start: DateTime<Utc> = "2026-12-01T10:00:00Z".parse()?;
    let clock = Arc::new(ManualClock::starting_at(start));
    let _scheduler = env
        .scheduler_with(
            berth_tests::fast_settings(),
            berth_scheduler::SchedulerConfig {
                builtins: Vec::new(),
                clock: clock.clone(),
            },
        )
        .await?;
    let _billing = env.billing(billing_config(&clock)).await?;
    let mut config = notifier_config(Some(sink.url()));
    config.clock = clock.clone();
    let _notifier = env.notifier(config).await?;
    let ada = tenant("ada");
    env.open_account(&ada, "EUR").await?;
    let subscribe = SubscriptionCommand::Create(CreateSubscription {
        subscription_id: None,
        product: "ghost".into(),
        variant: "basic".into(),
    });
    let reply = berth_runtime::client::send_command(
        &env.client,
        &ada,
        "subscription",
        subscribe.action(),
        &meta(),
        subscribe.body(),
    )
    .await?;
    let subscription = accepted_id(&reply).expect("subscribed");
    let mails = sink.wait_for(2, Duration::from_secs(30)).await?;
    assert!(mails
        .iter()
        .any(|m| m.subject == "Your ghost subscription is confirmed"));

    // The notifier's timer, under `system` where the tenant cannot touch it.
    let key = berth_schemas::notification::expiry_warning_timer_key(subscription);
    let timer = berth_schemas::subjects::event_subject(
        &berth_schemas::TenantId::system(),
        "schedule",
        berth_schemas::schedule::service_timer_id(&ada, &key),
    );
    eventually(
        "the expiry-warning timer set",
        Duration::from_secs(30),
        || async { Ok((env.last_sequence_of(&timer).await? > 0).then_some(())) },
    )
    .await?;
    clock.advance(chrono::Duration::days(23));
    clock.advance(chrono::Duration::days(1) + chrono::Duration::seconds(1));
    let mails = sink.wait_for(3, Duration::from_secs(30)).await?;
    let warning = mails
        .iter()
        .find(|m| m.subject.contains("ends on"))
        .expect("an expiry warning");
    assert_eq!(
        warning.subject,
        "Your ghost subscription ends on 2027-01-01"
    );
    assert_eq!(warning.rcpt_tos, ["billing@ada.test"]);
    Ok(())
}
