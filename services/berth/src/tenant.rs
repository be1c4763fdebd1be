//! `berth tenant set-quota`: operator commands on `cmd.system.tenant.*`.

use anyhow::bail;
use berth_runtime::client::send_command;
use berth_runtime::{connect_nats, ConnectArgs};
use berth_schemas::command::CommandMeta;
use berth_schemas::usage::{LimitOverrides, SetQuota, TenantCommand as Command, Tier};
use berth_schemas::{Actor, TenantId};
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    /// Set a tenant's tier (free: 1 VM, 2 vCPU, 4 GB, 20 GB; pro: 3, 4, 8 GB, 160 GB) and overrides.
    SetQuota {
        tenant: TenantId,
        #[arg(long, value_parser = parse_tier)]
        tier: Tier,
        #[arg(long)]
        vms: Option<u32>,
        #[arg(long)]
        vcpus: Option<u32>,
        #[arg(long)]
        memory_mb: Option<u32>,
        #[arg(long)]
        disk_gb: Option<u32>,
        #[arg(long, env = "BERTH_ACTOR", default_value = "user:operator")]
        actor: Actor,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

fn parse_tier(value: &str) -> Result<Tier, String> {
    serde_json::from_value(serde_json::Value::String(value.to_owned()))
        .map_err(|_| format!("unknown tier {value:?}: choose free or pro"))
}

pub async fn run(command: TenantCommand) -> anyhow::Result<()> {
    let TenantCommand::SetQuota {
        tenant,
        tier,
        vms,
        vcpus,
        memory_mb,
        disk_gb,
        actor,
        connect,
    } = command;
    let nats = connect_nats("cli", &connect).await?;
    let command = Command::SetQuota(SetQuota {
        tenant: tenant.clone(),
        tier,
        overrides: LimitOverrides {
            vms,
            vcpus,
            memory_mb,
            disk_gb,
        },
    });
    let reply = send_command(
        &nats,
        &TenantId::system(),
        "tenant",
        "set_quota",
        &CommandMeta::new(actor),
        command.body(),
    )
    .await?;
    if let Some(rejection) = reply.rejection() {
        bail!("rejected ({}): {}", rejection.code, rejection.message);
    }
    println!("quota of {tenant} set");
    Ok(())
}
