//! The `berth-billing` command line: flags, then [`berth_runtime::service::main`] runs
//! [`crate::run`].

use anyhow::Context;
use berth_runtime::service::{self, ServiceArgs};
use berth_runtime::Settings;
use clap::Parser;

use crate::prices::PriceList;
use crate::BillingConfig;

/// Runs accounts, payments, metering, invoicing and the overdue check.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Cli {
    #[command(flatten)]
    service: ServiceArgs,
    /// Days an invoice may stay overdue before the account is suspended.
    #[arg(long, env = "BERTH_BILLING_GRACE_DAYS", default_value_t = 7)]
    grace_days: i64,
}

/// Parses the command line and runs billing until SIGINT/SIGTERM.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = BillingConfig::new(PriceList::builtin().context("loading the price list")?);
    config.grace_days = cli.grace_days;
    service::main(
        "billing",
        cli.service,
        Settings::default(),
        |rt| async move { Ok(crate::run(rt, config).await?) },
    )
}
