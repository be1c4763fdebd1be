//! `berth-provisioner`: the provisioner as its own process.

fn main() -> anyhow::Result<()> {
    berth_provisioner::cli::main()
}
