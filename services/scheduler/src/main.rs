fn main() -> anyhow::Result<()> {
    berth_scheduler::cli::main()
}
