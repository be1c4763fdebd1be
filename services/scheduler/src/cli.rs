//! The `berth-scheduler` command line: flags, then [`berth_runtime::service::main`] runs
//! [`crate::run`].

use berth_runtime::service::{self, ServiceArgs};
use berth_runtime::Settings;
use clap::Parser;

/// Serves schedule and timer commands and fires them exactly once.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Cli {
    #[command(flatten)]
    service: ServiceArgs,
}

/// Parses the command line and runs the scheduler until SIGINT/SIGTERM.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    service::main(
        "scheduler",
        cli.service,
        Settings::default(),
        |rt| async move { Ok(crate::run(rt, crate::SchedulerConfig::default()).await?) },
    )
}
