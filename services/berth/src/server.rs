//! `berth server …`: hosts VMs are placed on (`cmd.system.server.*`; the list is the
//! provisioner's `server.list` query).

use anyhow::{bail, Context};
use berth_runtime::client::send_command;
use berth_runtime::{connect_nats, ConnectArgs};
use berth_schemas::command::CommandMeta;
use berth_schemas::query::{EmptyRequest, SERVER};
use berth_schemas::server::{RegisterServer, ServerCommand as Command, ServerTarget};
use berth_schemas::status::ServerState;
use berth_schemas::{Actor, CommandReply, CommandSet, TenantId};
use clap::{Args, Subcommand};

use crate::output::{print, Output};
use crate::reads;

#[derive(Args, Debug)]
pub struct Sending {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Who is acting, as `user:<id>`.
    #[arg(long, env = "BERTH_ACTOR", default_value = "user:operator")]
    actor: Actor,
}

#[derive(Subcommand, Debug)]
pub enum ServerCommand {
    /// Add a host to the pool VMs are placed on (registering again with the same spec is a no-op).
    Register {
        name: String,
        #[arg(long)]
        region: String,
        /// The provider that runs its machines: sim or docker.
        #[arg(long)]
        provider: String,
        #[arg(long)]
        vcpus: u32,
        #[arg(long)]
        memory_mb: u32,
        #[arg(long)]
        disk_gb: u32,
        /// vCPUs sold per physical vCPU (1.0 to 16.0).
        #[arg(long, default_value_t = 1.0)]
        cpu_overcommit: f64,
        /// Memory sold per physical MB (1.0 to 4.0).
        #[arg(long, default_value_t = 1.0)]
        memory_overcommit: f64,
        #[command(flatten)]
        sending: Sending,
    },
    /// No new placements on the server; its VMs stay.
    Drain {
        name: String,
        #[command(flatten)]
        sending: Sending,
    },
    /// Placements on the server resume.
    Undrain {
        name: String,
        #[command(flatten)]
        sending: Sending,
    },
    /// Retire an empty server.
    Decommission {
        name: String,
        #[command(flatten)]
        sending: Sending,
    },
    /// Every server with its capacity, used and free.
    List {
        #[command(flatten)]
        connect: ConnectArgs,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
}

pub async fn run(command: ServerCommand) -> anyhow::Result<()> {
    let target = |name: String| ServerTarget {
        name,
        expected_version: None,
    };
    let (command, sending) = match command {
        ServerCommand::List { connect, output } => {
            let rows: Vec<ServerState> = reads::list(&connect, SERVER, EmptyRequest {})
                .await
                .context("reading servers")?;
            print(
                output,
                &[
                    "NAME", "REGION", "PROVIDER", "STATUS", "VMS", "VCPUS", "MEMORY", "DISK",
                ],
                &rows,
                cells,
            );
            return Ok(());
        }
        ServerCommand::Register {
            name,
            region,
            provider,
            vcpus,
            memory_mb,
            disk_gb,
            cpu_overcommit,
            memory_overcommit,
            sending,
        } => (
            Command::Register(RegisterServer {
                name,
                region,
                provider,
                vcpus,
                memory_mb,
                disk_gb,
                cpu_overcommit,
                memory_overcommit,
            }),
            sending,
        ),
        ServerCommand::Drain { name, sending } => (Command::Drain(target(name)), sending),
        ServerCommand::Undrain { name, sending } => (Command::Undrain(target(name)), sending),
        ServerCommand::Decommission { name, sending } => {
            (Command::Decommission(target(name)), sending)
        }
    };
    let nats = connect_nats("cli", &sending.connect).await?;
    let reply = send_command(
        &nats,
        &TenantId::system(),
        "server",
        command.action(),
        &CommandMeta::new(sending.actor),
        command.body(),
    )
    .await?;
    match reply {
        CommandReply::Accepted {
            events, version, ..
        } => {
            println!(
                "accepted: server {} at version {version} ({} events)",
                command.name(),
                events.len()
            );
            Ok(())
        }
        CommandReply::Rejected(rejection) => {
            bail!("rejected ({}): {}", rejection.code, rejection.message)
        }
    }
}

fn cells(row: &ServerState) -> Vec<String> {
    vec![
        row.name.clone(),
        row.region.clone(),
        row.provider.clone(),
        row.status.clone(),
        row.vms.to_string(),
        format!("{}/{}", row.used_vcpus, row.capacity_vcpus),
        format!("{}/{} MB", row.used_memory_mb, row.capacity_memory_mb),
        format!("{}/{} GB", row.used_disk_gb, row.capacity_disk_gb),
    ]
}
