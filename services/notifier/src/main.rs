//! `berth-notifier`: the notifier as its own process.

fn main() -> anyhow::Result<()> {
    berth_notifier::cli::main()
}
