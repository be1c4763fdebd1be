//! Fair share under a flood: one tenant sends commands at a fixed high rate (open loop,
//! as a hostile script would) while another tenant's command round trips (200 a second)
//! are measured;
//! the quiet tenant's p50/p99 under the flood next to the same commands with no flood,
//! in the same run. The flooding tenant is answered `busy` beyond its share.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_schemas::vm::{VmCommand, VmStatus, VmTarget};
use berth_schemas::{CommandReply, RejectionCode, TenantId};
use berth_tests::{fast_settings, instant_sim, meta, tenant, TestEnv};

use crate::percentiles;

/// How the flood's commands were answered.
#[derive(Default)]
struct Answers {
    accepted_or_refused: AtomicUsize,
    busy: AtomicUsize,
    failed: AtomicUsize,
}

pub async fn flood(rate: usize, samples: usize) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let _provisioner = env.provisioner(fast_settings(), instant_sim()).await?;
    let quiet = tenant("quiet");
    let vm = env.create(&quiet, "steady").await?;
    env.wait_vm_status(&quiet, vm, VmStatus::Running).await?;
    let probe = VmCommand::Start(VmTarget {
        vm_id: vm,
        expected_version: None,
    });

    let unloaded = round_trips(&env, &quiet, &probe, samples).await?;
    let answers = Arc::new(Answers::default());
    let stop = tokio_util::sync::CancellationToken::new();
    let flooding = tokio::spawn(send_flood(
        env.client.clone(),
        rate,
        answers.clone(),
        stop.clone(),
    ));
    // Measure once the flood is being answered at its rate.
    berth_tests::eventually("the flood to be answered", Duration::from_secs(30), || {
        let answered = answers.accepted_or_refused.load(Ordering::Relaxed)
            + answers.busy.load(Ordering::Relaxed);
        async move { Ok((answered >= rate).then_some(())) }
    })
    .await?;
    let loaded = round_trips(&env, &quiet, &probe, samples).await?;
    stop.cancel();
    let sent = flooding.await??;

    let (unloaded, loaded) = (percentiles(unloaded), percentiles(loaded));
    println!(
        "{:<28} quiet tenant under flood p50 {:>7.0} µs  p99 {:>7.0} µs | unloaded p50 {:>7.0} µs  p99 {:>7.0} µs | ratio p99 {:>4.1}x (flood {rate}/s from one tenant: {sent} sent, {} answered, {} busy, {} failed)",
        "tenant flood (fair share)",
        loaded.0,
        loaded.1,
        unloaded.0,
        unloaded.1,
        loaded.1 / unloaded.1,
        answers.accepted_or_refused.load(Ordering::Relaxed),
        answers.busy.load(Ordering::Relaxed),
        answers.failed.load(Ordering::Relaxed),
    );
    Ok(())
}

async fn round_trips(
    env: &TestEnv,
    tenant: &TenantId,
    command: &VmCommand,
    samples: usize,
) -> anyhow::Result<Vec<Duration>> {
    // An ordinary tenant: 200 commands a second, well inside its own share.
    let mut pace = tokio::time::interval(Duration::from_millis(5));
    let mut taken = Vec::with_capacity(samples);
    for _ in 0..samples {
        pace.tick().await;
        let started = Instant::now();
        let reply = env.send(tenant, &meta(), command).await?;
        taken.push(started.elapsed());
        anyhow::ensure!(
            reply.rejection().map(|r| r.code) != Some(RejectionCode::Busy),
            "the quiet tenant was refused: {reply:?}"
        );
    }
    Ok(taken)
}

/// Sends `vm.stop` of a machine the flooder does not have, `rate` per second, each
/// request on its own task (an open loop: the rate does not slow when answers do).
async fn send_flood(
    client: async_nats::Client,
    rate: usize,
    answers: Arc<Answers>,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<usize> {
    let flooder = tenant("flood");
    let command = VmCommand::Stop(VmTarget {
        vm_id: uuid::Uuid::now_v7(),
        expected_version: None,
    });
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let per_tick = rate.div_ceil(100);
    let mut sent = 0;
    while !stop.is_cancelled() {
        tick.tick().await;
        for _ in 0..per_tick {
            sent += 1;
            let client = client.clone();
            let answers = answers.clone();
            let flooder = flooder.clone();
            let command = command.clone();
            tokio::spawn(async move {
                let reply = berth_runtime::client::send_command(
                    &client,
                    &flooder,
                    "vm",
                    command.action(),
                    &meta(),
                    command.body(),
                )
                .await;
                let counter = match reply {
                    Ok(CommandReply::Rejected(r)) if r.code == RejectionCode::Busy => &answers.busy,
                    Ok(_) => &answers.accepted_or_refused,
                    Err(_) => &answers.failed,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            });
        }
    }
    Ok(sent)
}
