//! `berth-pod-lifecycle`: pod-lifecycle as its own process.

fn main() -> anyhow::Result<()> {
    berth_pod_lifecycle::cli::main()
}
