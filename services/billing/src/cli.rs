//! The `berth-billing` command line: flags, telemetry, signals, then [`crate::run`].

use anyhow::Context;
use berth_runtime::telemetry::{self, TelemetryArgs};
use berth_runtime::{ConnectArgs, Runtime, Settings};
use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::prices::PriceList;
use crate::BillingConfig;

/// Runs accounts, payments, metering, invoicing and the overdue check.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Cli {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    telemetry: TelemetryArgs,
    /// Days an invoice may stay overdue before the account is suspended.
    #[arg(long, env = "BERTH_BILLING_GRACE_DAYS", default_value_t = 7)]
    grace_days: i64,
}

/// Parses the command line and runs billing until SIGINT/SIGTERM.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tokio::runtime::Runtime::new()?.block_on(run_cli(cli))
}

async fn run_cli(cli: Cli) -> anyhow::Result<()> {
    let _telemetry = telemetry::init("billing", &cli.telemetry, "info")?;
    let shutdown = CancellationToken::new();
    berth_runtime::shutdown::cancel_on_signals(shutdown.clone());
    let rt = Runtime::connect("billing", &cli.connect, Settings::default(), shutdown)
        .await
        .context("starting billing")?;
    let mut config = BillingConfig::new(PriceList::builtin().context("loading the price list")?);
    config.grace_days = cli.grace_days;
    crate::run(rt, config).await
}
