//! `berth-scheduler`: the scheduler as its own process.

fn main() -> anyhow::Result<()> {
    berth_scheduler::cli::main()
}
