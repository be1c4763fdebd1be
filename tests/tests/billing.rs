//! Billing end to end against real NATS and Postgres, on a manual clock: usage to the
//! second and invoices to the cent, one invoice per account however often the run is
//! repeated, a restart mid-way and a replay into a fresh database giving the same rows,
//! payments oldest first in the account's currency only, and overdue accounts suspended
//! and resumed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_billing::projection;
use berth_runtime::clock::ManualClock;
use berth_schemas::billing::{
    BillingCommand, CheckOverdue, PaymentCommand, RecordPayment, RunInvoices, RunMeter,
};
use berth_schemas::pod::PodStatus;
use berth_schemas::vm::{Empty, Plan, VmEvent, VmRequested, VmStatus};
use berth_schemas::{CommandReply, CommandSet, RejectionCode, TenantId};
use berth_tests::billing::billing_config;
use berth_tests::{accepted_id, eventually, meta, tenant, TestEnv};
use chrono::{DateTime, Utc};
use uuid::Uuid;

fn at(time: &str) -> DateTime<Utc> {
    time.parse().expect("an RFC 3339 time")
}

fn requested(plan: Plan) -> VmEvent {
    VmEvent::Requested(VmRequested {
        name: "web".into(),
        vcpus: 2,
        memory_mb: 4096,
        disk_gb: 40,
        image: "debian-12".into(),
        plan: Some(plan),
        region: None,
    })
}

/// A medium VM (4 cents an hour) running 10:20–11:45 and 12:00–14:00: 3 h 25 min.
fn three_hours_twenty_five(day: &str) -> Vec<(DateTime<Utc>, VmEvent)> {
    vec![
        (at(&format!("{day}T09:00:00Z")), requested(Plan::Medium)),
        (at(&format!("{day}T10:20:00Z")), VmEvent::Started(Empty {})),
        (at(&format!("{day}T11:45:00Z")), VmEvent::Stopped(Empty {})),
        (at(&format!("{day}T12:00:00Z")), VmEvent::Started(Empty {})),
        (at(&format!("{day}T14:00:00Z")), VmEvent::Stopped(Empty {})),
    ]
}

async fn wait_rows<T, F, Fut>(what: &str, check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    eventually(what, Duration::from_secs(30), check).await
}

async fn pay(
    env: &TestEnv,
    tenant: &TenantId,
    amount_minor: i64,
    currency: &str,
) -> anyhow::Result<CommandReply> {
    let record = PaymentCommand::Record(RecordPayment {
        amount_minor,
        currency: currency.into(),
        reference: format!("psp-{}", Uuid::now_v7()),
    });
    Ok(berth_runtime::client::send_command(
        &env.client,
        tenant,
        "payment",
        record.action(),
        &meta(),
        record.body(),
    )
    .await?)
}

#[tokio::test]
async fn usage_to_the_second_an_invoice_to_the_cent_and_one_invoice_however_often_run(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let clock = Arc::new(ManualClock::starting_at(at("2026-12-01T00:10:00Z")));
    let billing = env.billing(billing_config(&clock)).await?;
    let acme = tenant("acme");
    assert!(accepted_id(&env.open_account(&acme, "EUR").await?).is_some());
    let vm = Uuid::now_v7();
    env.write_vm_history(&acme, vm, &three_hours_twenty_five("2026-11-02"))
        .await?;

    let month = BillingCommand::RunInvoices(RunInvoices {
        month: "2026-11".into(),
    });
    let first = env.billing_run(&month).await?;
    assert_eq!(first["issued"], serde_json::json!(["BER-202611-acme"]));
    let second = env.billing_run(&month).await?;
    assert_eq!(
        (
            second["issued"].as_array().map(Vec::len),
            second["already_issued"].as_u64()
        ),
        (Some(0), Some(1))
    );

    let usage = wait_rows("four usage records", || async {
        let rows = projection::usage(&billing.db, Some(&acme)).await?;
        Ok((rows.len() == 4).then_some(rows))
    })
    .await?;
    let seconds: Vec<i32> = usage.iter().map(|r| r.seconds).collect();
    assert_eq!(
        seconds,
        vec![2400, 2700, 3600, 3600],
        "10:20–11:00, 11:00–11:45, 12–13, 13–14"
    );
    assert_eq!(seconds.iter().sum::<i32>(), 3 * 3600 + 25 * 60);

    let invoices = wait_rows("the invoice", || async {
        let rows = projection::invoices(&billing.db, Some(&acme)).await?;
        Ok((!rows.is_empty()).then_some(rows))
    })
    .await?;
    assert_eq!(invoices.len(), 1, "one invoice per account and month");
    let invoice = &invoices[0];
    // 12 300 s at 4 cents an hour = 13.67 cents, rounded half up once per line.
    assert_eq!(
        (
            invoice.total_minor,
            invoice.currency.as_str(),
            invoice.status.as_str()
        ),
        (14, "EUR", "open")
    );
    assert_eq!(invoice.lines[0]["quantity_seconds"], 12_300);
    assert_eq!(invoice.due_at, at("2026-12-15T00:10:00Z"));
    billing.stop().await
}

#[tokio::test]
async fn a_restart_mid_way_and_a_replay_into_a_fresh_database_give_identical_rows(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let clock = Arc::new(ManualClock::starting_at(at("2026-12-01T00:10:00Z")));
    let first = env.billing(billing_config(&clock)).await?;
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    env.open_account(&acme, "EUR").await?;
    env.open_account(&globex, "USD").await?;
    for (tenant, day) in [
        (&acme, "2026-11-02"),
        (&acme, "2026-11-17"),
        (&globex, "2026-11-09"),
    ] {
        env.write_vm_history(tenant, Uuid::now_v7(), &three_hours_twenty_five(day))
            .await?;
    }
    // Half the month metered, then billing is killed (no drain) and started again.
    env.billing_run(&BillingCommand::Meter(RunMeter {
        until: at("2026-11-10T00:00:00Z"),
    }))
    .await?;
    first.task.abort();
    let restarted = env.billing(billing_config(&clock)).await?;
    let run = env
        .billing_run(&BillingCommand::RunInvoices(RunInvoices {
            month: "2026-11".into(),
        }))
        .await?;
    assert_eq!(run["issued"].as_array().map(Vec::len), Some(2));

    let live = wait_rows("12 usage records and 2 invoices", || async {
        let usage = projection::usage(&restarted.db, None).await?;
        let invoices = projection::invoices(&restarted.db, None).await?;
        Ok((usage.len() == 12 && invoices.len() == 2).then_some((usage, invoices)))
    })
    .await?;
    assert_eq!(
        live.1.iter().map(|i| i.total_minor).collect::<Vec<_>>(),
        vec![27, 17],
        "acme: 24 600 s of medium at 4 ¢/h, one line, rounded once; globex: 12 300 s at 5 US¢/h"
    );

    let fresh = env.another_database().await?;
    let replayed = env.billing_on(&fresh, billing_config(&clock)).await?;
    let replay = wait_rows("the replayed rows", || async {
        // The fresh database has no tables until the projection has made them.
        let (Ok(usage), Ok(invoices)) = (
            projection::usage(&replayed.db, None).await,
            projection::invoices(&replayed.db, None).await,
        ) else {
            return Ok(None);
        };
        Ok((usage.len() == 12 && invoices.len() == 2).then_some((usage, invoices)))
    })
    .await?;
    assert_eq!(replay.0, live.0, "usage records, row by row");
    assert_eq!(replay.1, live.1, "invoices, row by row");
    replayed.stop().await?;
    restarted.stop().await
}

#[tokio::test]
async fn payments_settle_in_the_account_currency_and_overdue_accounts_are_suspended_then_resumed(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let clock = Arc::new(ManualClock::starting_at(at("2026-12-01T00:10:00Z")));
    let billing = env.billing(billing_config(&clock)).await?;
    let acme = tenant("acme");
    env.open_account(&acme, "EUR").await?;
    env.write_vm_history(
        &acme,
        Uuid::now_v7(),
        &three_hours_twenty_five("2026-11-02"),
    )
    .await?;
    env.billing_run(&BillingCommand::RunInvoices(RunInvoices {
        month: "2026-11".into(),
    }))
    .await?;

    let dollars = pay(&env, &acme, 14, "USD").await?;
    assert_eq!(
        dollars.rejection().map(|r| r.code),
        Some(RejectionCode::Invalid),
        "{dollars:?}"
    );

    let account_status = |wanted: &'static str| {
        let db = billing.db.clone();
        let acme = acme.clone();
        async move {
            wait_rows(&format!("account {wanted}"), || async {
                let rows = projection::accounts(&db, Some(&acme)).await?;
                Ok(rows.into_iter().find(|r| r.status == wanted))
            })
            .await
        }
    };
    // Due on 15 December; overdue from the 16th; suspended after seven days of grace.
    clock.advance(chrono::Duration::days(16));
    assert_eq!(
        env.billing_run(&BillingCommand::CheckOverdue(CheckOverdue {}))
            .await?["changed_accounts"],
        1
    );
    clock.advance(chrono::Duration::days(3));
    assert_eq!(
        env.billing_run(&BillingCommand::CheckOverdue(CheckOverdue {}))
            .await?["changed_accounts"],
        0
    );
    clock.advance(chrono::Duration::days(5));
    env.billing_run(&BillingCommand::CheckOverdue(CheckOverdue {}))
        .await?;
    let suspended = account_status("suspended").await?;
    assert_eq!(suspended.balance_due_minor, 14);

    assert!(accepted_id(&pay(&env, &acme, 10, "EUR").await?).is_some());
    assert!(accepted_id(&pay(&env, &acme, 4, "EUR").await?).is_some());
    let resumed = account_status("active").await?;
    assert_eq!((resumed.balance_due_minor, resumed.open_invoices), (0, 0));
    let invoices = projection::invoices(&billing.db, Some(&acme)).await?;
    assert_eq!(invoices[0].status, "paid");
    billing.stop().await
}

mod with_the_other_services {
    use super::*;
    use berth_pod_lifecycle::sim::SimRuntime;
    use berth_schemas::billing::{CancelSubscription, CreateSubscription, SubscriptionCommand};
    use berth_schemas::pod::{CreatePod, PodCommand};
    use berth_schemas::vm::{VmCommand, VmTarget};
    use berth_tests::pods::pod_config;
    use berth_tests::{fast_settings, instant_sim, sim_datacenter};

    #[tokio::test]
    async fn an_overdue_account_has_its_vms_stopped_and_pods_scaled_to_zero_until_it_pays(
    ) -> anyhow::Result<()> {
        let env = TestEnv::start().await?;
        // The VMs run on the real clock; billing's starts just after this month ends, so
        // that this month can be invoiced whatever the date.
        let now = Utc::now();
        let this_month = now.format("%Y-%m").to_string();
        let next_month = at(&format!("{this_month}-01T00:10:00Z")) + chrono::Months::new(1);
        let clock = Arc::new(ManualClock::starting_at(next_month));
        let billing = env.billing(billing_config(&clock)).await?;
        let provisioner = env
            .provisioner_with(fast_settings(), instant_sim(), sim_datacenter())
            .await?;
        let sim = Arc::new(SimRuntime::default());
        let pods = env
            .pod_lifecycle(fast_settings(), sim.clone(), pod_config(Default::default()))
            .await?;
        let acme = tenant("acme");
        env.open_account(&acme, "EUR").await?;
        let running = env.create(&acme, "web").await?;
        let stopped_by_owner = env.create(&acme, "batch").await?;
        env.wait_vm_status(&acme, running, VmStatus::Running)
            .await?;
        env.wait_vm_status(&acme, stopped_by_owner, VmStatus::Running)
            .await?;
        let stop = VmCommand::Stop(VmTarget {
            vm_id: stopped_by_owner,
            expected_version: None,
        });
        env.send(&acme, &meta(), &stop).await?;
        env.wait_vm_status(&acme, stopped_by_owner, VmStatus::Stopped)
            .await?;
        let pod = env.create_pod(&acme, "flows", "n8n", "basic").await?;
        env.wait_pod_status(&acme, pod, PodStatus::Running).await?;

        // The VMs have run since today: this month's invoice has something on it.
        let run = env
            .billing_run(&BillingCommand::RunInvoices(RunInvoices {
                month: this_month.clone(),
            }))
            .await?;
        assert_eq!(run["issued"].as_array().map(Vec::len), Some(1), "{run}");
        clock.advance(chrono::Duration::days(16));
        env.billing_run(&BillingCommand::CheckOverdue(CheckOverdue {}))
            .await?;
        clock.advance(chrono::Duration::days(8));
        env.billing_run(&BillingCommand::CheckOverdue(CheckOverdue {}))
            .await?;

        env.wait_vm_status(&acme, running, VmStatus::Stopped)
            .await?;
        env.wait_pod_status(&acme, pod, PodStatus::Stopped).await?;
        assert!(sim.has_volume(pod), "a suspended pod keeps its volume");

        let due = wait_rows("the amount due", || async {
            Ok(projection::accounts(&billing.db, Some(&acme))
                .await?
                .into_iter()
                .find(|a| a.status == "suspended"))
        })
        .await?
        .balance_due_minor;
        assert!(accepted_id(&pay(&env, &acme, due, "EUR").await?).is_some());
        env.wait_vm_status(&acme, running, VmStatus::Running)
            .await?;
        env.wait_pod_status(&acme, pod, PodStatus::Running).await?;
        let owners_choice =
            berth_provisioner::projection::get(&provisioner.db, stopped_by_owner).await?;
        assert_eq!(
            owners_choice.map(|vm| vm.status),
            Some(VmStatus::Stopped),
            "a VM its owner stopped stays stopped"
        );
        pods.stop().await?;
        provisioner.stop().await?;
        billing.stop().await
    }

    #[tokio::test]
    async fn a_subscription_cancelled_at_period_end_expires_at_the_boundary_and_its_pod_keeps_the_volume(
    ) -> anyhow::Result<()> {
        let env = TestEnv::start().await?;
        let clock = Arc::new(ManualClock::starting_at(at("2026-11-16T12:00:00Z")));
        let scheduler = env
            .scheduler_with(
                fast_settings(),
                berth_scheduler::SchedulerConfig {
                    builtins: Vec::new(),
                    clock: clock.clone(),
                },
            )
            .await?;
        let billing = env.billing(billing_config(&clock)).await?;
        let sim = Arc::new(SimRuntime::default());
        let mut config = pod_config(Default::default());
        config.clock = clock.clone();
        let pods = env
            .pod_lifecycle(fast_settings(), sim.clone(), config)
            .await?;
        let acme = tenant("acme");
        env.open_account(&acme, "EUR").await?;
        let subscribe = SubscriptionCommand::Create(CreateSubscription {
            subscription_id: None,
            product: "n8n".into(),
            variant: "basic".into(),
        });
        let send = |command: SubscriptionCommand| {
            let env = &env;
            let acme = acme.clone();
            async move {
                Ok::<_, anyhow::Error>(
                    berth_runtime::client::send_command(
                        &env.client,
                        &acme,
                        "subscription",
                        command.action(),
                        &meta(),
                        command.body(),
                    )
                    .await?,
                )
            }
        };
        let subscription = accepted_id(&send(subscribe).await?).expect("subscribed");
        let create = PodCommand::Create(CreatePod {
            pod_id: None,
            name: "flows".into(),
            service: "n8n".into(),
            variant: "basic".into(),
            subscription_id: Some(subscription),
            env: Default::default(),
        });
        let pod = accepted_id(&env.send_pod(&acme, &create).await?).expect("a pod");
        env.wait_pod_status(&acme, pod, PodStatus::Running).await?;
        sim.write_file(pod, "/home/node/.n8n/workflows.json", "[]")?;
        let cancel = SubscriptionCommand::Cancel(CancelSubscription {
            subscription_id: subscription,
            at_period_end: true,
        });
        assert!(accepted_id(&send(cancel).await?).is_some());

        // Still paid for: the period ends on 16 December at noon.
        let subject = berth_schemas::subjects::event_subject(&acme, "subscription", subscription);
        clock.advance(chrono::Duration::days(29));
        clock.advance(chrono::Duration::days(1) + chrono::Duration::seconds(1));
        let expired = env.wait_pod_status(&acme, pod, PodStatus::Expired).await?;
        let purge_after: DateTime<Utc> = expired
            .state
            .purge_after
            .context("an expired pod has a purge date")?;
        assert_eq!(
            purge_after,
            at("2026-12-16T12:00:00Z") + chrono::Duration::days(60),
            "the grace runs from the period end"
        );
        assert_eq!(sim.replicas(pod), Some(0));
        assert_eq!(
            sim.read_file(pod, "/home/node/.n8n/workflows.json")
                .as_deref(),
            Some("[]"),
            "the volume is kept"
        );
        let events = berth_runtime::EventStore::new(env.js.clone(), "EVENTS")
            .read(&subject, 0)
            .await?;
        let types: Vec<&str> = events.iter().map(|e| e.meta.event_type.as_str()).collect();
        assert_eq!(
            types,
            vec![
                "berth.subscription.created.v1",
                "berth.subscription.cancelled.v1",
                "berth.subscription.expired.v1"
            ]
        );

        // December's invoice charges the subscription up to the boundary, to the second.
        clock.advance(chrono::Duration::days(16));
        let run = env
            .billing_run(&BillingCommand::RunInvoices(RunInvoices {
                month: "2026-12".into(),
            }))
            .await?;
        assert_eq!(run["issued"].as_array().map(Vec::len), Some(1), "{run}");
        let invoice = wait_rows("December's invoice", || async {
            Ok(projection::invoices(&billing.db, Some(&acme))
                .await?
                .into_iter()
                .find(|i| i.month == "2026-12"))
        })
        .await?;
        // 15.5 days of a 31-day month at 9.00 EUR: 4.50.
        assert_eq!(
            invoice.lines[0]["quantity_seconds"],
            15 * 86_400 + 12 * 3600
        );
        assert_eq!(invoice.total_minor, 450);
        pods.stop().await?;
        billing.stop().await?;
        scheduler.stop().await
    }
}
