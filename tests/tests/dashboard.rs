//! The web dashboard in a real browser: Debian's Chromium driven by playwright-core
//! (`web/dashboard/test/dashboard.mjs`) against NATS over WebSocket with per-tenant users,
//! a provisioner and pod-lifecycle on the sim. The page lists the demo tenant's VMs, a
//! stop from outside turns a badge within a second, Stop in the page stops a VM, Reset
//! asks for confirmation, and NATS refuses the demo user another tenant's status. The
//! screenshot lands in `target/dashboard.png`.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_dev::users::Login;
use berth_pod_lifecycle::sim::SimRuntime;
use berth_runtime::Runtime;
use berth_schemas::pod::PodStatus;
use berth_schemas::vm::{VmCommand, VmStatus, VmTarget};
use berth_schemas::TenantId;
use berth_tests::pods::pod_config;
use berth_tests::{fast_settings, instant_sim, meta, sim_datacenter, tenant, TestEnv};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

async fn stop(env: &TestEnv, tenant: &TenantId, vm: Uuid) -> anyhow::Result<()> {
    let stop = VmCommand::Stop(VmTarget {
        vm_id: vm,
        expected_version: None,
    });
    let reply = env.send(tenant, &meta(), &stop).await?;
    anyhow::ensure!(
        berth_tests::accepted_id(&reply).is_some(),
        "stop refused: {reply:?}"
    );
    Ok(())
}

#[tokio::test]
async fn the_dashboard_follows_the_demo_tenant_live_and_never_sees_another_tenant(
) -> anyhow::Result<()> {
    let dashboard = repository().join("web/dashboard");
    anyhow::ensure!(
        dashboard.join("dist/app.js").is_file() && dashboard.join("node_modules/playwright-core").is_dir(),
        "the dashboard is not built: run `just dashboard` (npm ci && npm run build in web/dashboard)"
    );
    let chromium = PathBuf::from("/usr/bin/chromium");
    anyhow::ensure!(
        chromium.is_file(),
        "no /usr/bin/chromium: `apt-get install chromium` (infra/install-deps.sh)"
    );

    let logins = [
        Login::new("demo", Some("demo")),
        Login::new("acme", Some("acme")),
        Login::new("operator", None),
    ];
    let env = TestEnv::start_with_dashboards(logins.iter().map(Login::nats_user).collect()).await?;
    let websocket = format!(
        "ws://127.0.0.1:{}",
        env.nats.websocket_port.context("a websocket port")?
    );
    let provisioner = env
        .provisioner_with(fast_settings(), instant_sim(), sim_datacenter())
        .await?;
    let pods = env
        .pod_lifecycle(
            fast_settings(),
            Arc::new(SimRuntime::default()),
            pod_config(Default::default()),
        )
        .await?;
    let (demo, acme) = (tenant("demo"), tenant("acme"));
    let web = env.create(&demo, "web").await?;
    let db = env.create(&demo, "db").await?;
    let shop = env.create(&acme, "shop").await?;
    for (tenant, vm) in [(&demo, web), (&demo, db), (&acme, shop)] {
        env.wait_vm_status(tenant, vm, VmStatus::Running).await?;
    }
    let blog = env.create_pod(&demo, "blog", "ghost", "basic").await?;
    env.wait_pod_status(&demo, blog, PodStatus::Running).await?;

    let shutdown = CancellationToken::new();
    let rt = Runtime::connect("dashboard", &env.connect, fast_settings(), shutdown.clone()).await?;
    let snapshots = tokio::spawn(async move { berth_dashboard::snapshot::serve(&rt).await });
    let http = berth_dashboard::serve(
        "127.0.0.1:0".parse()?,
        &dashboard.join("dist"),
        shutdown.clone(),
    )
    .await?;
    let url = |user: &str| {
        let login = logins.iter().find(|l| l.user == user).expect("a login");
        berth_dev::users::page_url(http, &websocket, login)
    };
    let screenshot = repository().join("target/dashboard.png");

    let mut browser = tokio::process::Command::new("node")
        .arg("test/dashboard.mjs")
        .current_dir(&dashboard)
        .env("DEMO_URL", url("demo"))
        .env("OPERATOR_URL", url("operator"))
        .env("SCREENSHOT", &screenshot)
        .env("CHROMIUM", &chromium)
        .env("DEMO_VMS", "2")
        .env("ALL_VMS", "3")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting node (apt-get install nodejs npm)")?;
    let mut to_browser = browser.stdin.take().context("node stdin")?;
    let mut from_browser = BufReader::new(browser.stdout.take().context("node stdout")?).lines();
    let mut said = Vec::new();
    let outcome = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = from_browser.next_line().await? {
            said.push(line.clone());
            let answer = match line.as_str() {
                "STOP web" => Some(stop(&env, &demo, web).await.map(|_| "sent")?),
                "STOP shop" => Some(stop(&env, &acme, shop).await.map(|_| "sent")?),
                "RESET dismissed" => {
                    let subject = berth_schemas::subjects::event_subject(&demo, "pod", blog);
                    let events = berth_runtime::EventStore::new(env.js.clone(), "EVENTS")
                        .read(&subject, 0)
                        .await?;
                    let reset = events.iter().any(|e| e.meta.event_type.contains("reset"));
                    Some(if reset { "a reset" } else { "no reset" })
                }
                "DONE" => return Ok(()),
                other if other.starts_with("FAIL") => {
                    anyhow::bail!("the browser test failed: {other}")
                }
                _ => None,
            };
            if let Some(answer) = answer {
                to_browser
                    .write_all(format!("{answer}\n").as_bytes())
                    .await?;
            }
        }
        anyhow::bail!("the browser test ended without DONE")
    })
    .await;
    drop(to_browser);
    if outcome.is_err() {
        // It may be waiting for an answer: it has had its time.
        browser.start_kill()?;
    }
    let status = browser.wait().await?;
    outcome.with_context(|| format!("the browser said: {said:?}"))??;
    anyhow::ensure!(status.success(), "node exited with {status}: {said:?}");
    anyhow::ensure!(
        screenshot.is_file(),
        "no screenshot at {}",
        screenshot.display()
    );

    shutdown.cancel();
    snapshots.await??;
    pods.stop().await?;
    provisioner.stop().await
}
