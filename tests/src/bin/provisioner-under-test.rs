//! The provisioner binary, built inside this crate so fault tests can start and
//! SIGKILL it as a real process (`CARGO_BIN_EXE_provisioner-under-test`).

fn main() -> anyhow::Result<()> {
    berth_provisioner::cli::main()
}
