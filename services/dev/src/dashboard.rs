//! `berth dashboard`: the web dashboard on its own, next to services that run elsewhere:
//! the page's files over HTTP and the snapshot endpoint on NATS. The page logs in to
//! NATS over WebSocket as a dashboard user (`nats/dev.conf` shows the permissions).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use berth_runtime::{ConnectArgs, Runtime, Settings};
use clap::Args;
use tokio_util::sync::CancellationToken;

#[derive(Args, Debug)]
pub struct DashboardArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Where the page is served.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The nats-server's WebSocket URL, as the browser reaches it.
    #[arg(long, default_value = "ws://127.0.0.1:4223")]
    websocket_url: String,
    /// The built page (`just dashboard`).
    #[arg(
        long,
        env = "BERTH_DASHBOARD_DIST",
        default_value = "web/dashboard/dist"
    )]
    dist: PathBuf,
}

pub async fn run(args: DashboardArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    crate::signals::until_drained(shutdown.clone(), serve(args, shutdown)).await
}

async fn serve(args: DashboardArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let rt = Runtime::connect(
        "dashboard",
        &args.connect,
        Settings::default(),
        shutdown.clone(),
    )
    .await
    .context("connecting the dashboard")?;
    let http = berth_dashboard::serve(args.listen, &args.dist, shutdown.clone()).await?;
    println!(
        "dashboard on http://{http}/#ws={}&tenant=<tenant or *>&user=<user>&pass=<password>",
        args.websocket_url
    );
    berth_dashboard::snapshot::serve(&rt).await?;
    Ok(())
}
