//! Billing benchmark: N VMs over a simulated month (each started on day one at some hour,
//! stopped on day 21, started again on day 25), written straight into the log; then the
//! month metered (hourly records for every VM, appended in atomic batches) and invoiced,
//! next to raw JetStream publish-acks with 64 in flight.

use std::sync::Arc;
use std::time::Instant;

use berth_runtime::clock::ManualClock;
use berth_runtime::store::{event_id, NewEvent};
use berth_runtime::EventStore;
use berth_schemas::billing::{BillingCommand, RunInvoices, RunMeter};
use berth_schemas::envelope::EventMeta;
use berth_schemas::subjects::event_subject;
use berth_schemas::vm::{Empty, Plan, VmEvent, VmRequested};
use berth_schemas::{Actor, DomainEvent};
use berth_tests::billing::billing_config;
use berth_tests::{tenant, TestEnv};
use chrono::{DateTime, Duration, Utc};
use futures::{stream as fstream, StreamExt};
use uuid::Uuid;

use crate::{raw_publishes_in_flight, raw_read_rate};

const TENANTS: usize = 100;

/// The month: November 2026.
fn month_start() -> DateTime<Utc> {
    "2026-11-01T00:00:00Z".parse().expect("a time")
}

pub async fn billing(raw_js: &async_nats::jetstream::Context, vms: usize) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let clock = Arc::new(ManualClock::starting_at(
        "2026-12-01T00:10:00Z".parse().expect("a time"),
    ));
    let service = env.billing(billing_config(&clock)).await?;
    for t in 0..TENANTS {
        env.open_account(&tenant(&format!("t{t}")), "EUR").await?;
    }
    eprintln!("… writing {vms} VM histories");
    write_histories(&EventStore::new(env.js.clone(), "EVENTS"), vms).await?;
    let (vm_events, _) = raw_read_rate(&env.js).await?;

    eprintln!("… metering the month");
    let started = Instant::now();
    let until = month_start() + chrono::Months::new(1);
    let metered = env
        .billing_run(&BillingCommand::Meter(RunMeter { until }))
        .await?;
    let meter_seconds = started.elapsed().as_secs_f64();
    let records = metered["records"].as_u64().unwrap_or(0);

    eprintln!("… invoicing the month");
    let started = Instant::now();
    let run = env
        .billing_run(&BillingCommand::RunInvoices(RunInvoices {
            month: "2026-11".into(),
        }))
        .await?;
    let invoice_seconds = started.elapsed().as_secs_f64();
    let issued = run["issued"].as_array().map_or(0, Vec::len);
    // VMs go to the tenants in turn: with fewer VMs than tenants, some have no usage.
    let expected = TENANTS.min(vms);
    anyhow::ensure!(
        issued == expected,
        "issued {issued} of {expected} invoices: {run}"
    );
    service.stop().await?;
    let (raw_rate, _) = raw_publishes_in_flight(raw_js, 50_000).await?;
    println!(
        "{:<28} {records} hourly records from {vm_events} VM events in {:.1} s: {:>7.0} records/s | raw publish-acks (64 in flight) {:>7.0} messages/s | ratio {:.2}x",
        format!("billing: {vms} VMs × month"),
        meter_seconds,
        records as f64 / meter_seconds,
        raw_rate,
        (records as f64 / meter_seconds) / raw_rate,
    );
    println!(
        "{:<28} {issued} invoices ({TENANTS} accounts, {vms} VMs) issued in {:.1} s",
        "billing: invoices", invoice_seconds
    );
    Ok(())
}

/// Appends `vms` VM histories, spread over the tenants, many at once.
async fn write_histories(store: &EventStore, vms: usize) -> anyhow::Result<()> {
    let actor = Actor::parse("service:provisioner")?;
    fstream::iter(0..vms)
        .map(|i| {
            let store = store.clone();
            let actor = actor.clone();
            async move {
                let tenant = tenant(&format!("t{}", i % TENANTS));
                let id = Uuid::now_v7();
                let offset = Duration::minutes((i % (24 * 60)) as i64);
                let start = month_start() + offset;
                let history = [
                    (month_start(), requested()),
                    (start, VmEvent::Started(Empty {})),
                    (start + Duration::days(20), VmEvent::Stopped(Empty {})),
                    (start + Duration::days(24), VmEvent::Started(Empty {})),
                ];
                let events = history
                    .iter()
                    .enumerate()
                    .map(|(index, (at, event))| NewEvent {
                        meta: EventMeta {
                            id: event_id(id, index),
                            source: "berth/bench".into(),
                            event_type: event.event_type().into(),
                            time: *at,
                            subject: id,
                            tenant: tenant.clone(),
                            actor: actor.clone(),
                            correlation_id: id,
                            causation_id: id,
                            traceparent: None,
                        },
                        data: event.to_json(),
                    })
                    .collect();
                store
                    .append(&event_subject(&tenant, "vm", id), 0, events)
                    .await
                    .map_err(|e| anyhow::anyhow!("append: {e}"))
            }
        })
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(())
}

fn requested() -> VmEvent {
    VmEvent::Requested(VmRequested {
        name: "vm".into(),
        vcpus: 1,
        memory_mb: 1024,
        disk_gb: 10,
        image: "debian-12".into(),
        plan: Some(Plan::Small),
        region: None,
    })
}
