//! The `berth-scheduler` command line: flags, telemetry, signals, then [`crate::run`].

use anyhow::Context;
use berth_runtime::telemetry::{self, TelemetryArgs};
use berth_runtime::{ConnectArgs, Runtime, Settings};
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// Serves schedule and timer commands and fires them exactly once.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Cli {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

/// Parses the command line and runs the scheduler until SIGINT/SIGTERM.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tokio::runtime::Runtime::new()?.block_on(async {
        let _telemetry = telemetry::init("scheduler", &cli.telemetry, "info")?;
        let shutdown = CancellationToken::new();
        berth_runtime::shutdown::cancel_on_signals(shutdown.clone());
        let rt = Runtime::connect("scheduler", &cli.connect, Settings::default(), shutdown)
            .await
            .context("starting the scheduler")?;
        crate::run(rt, crate::SchedulerConfig::default()).await
    })
}
