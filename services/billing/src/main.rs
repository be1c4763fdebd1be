//! `berth-billing`: billing as its own process.

fn main() -> anyhow::Result<()> {
    berth_billing::cli::main()
}
