//! `berth vm …`: commands go over NATS, reads are the provisioner's `vm.*` queries.

use std::time::Duration;

use anyhow::{bail, Context};
use berth_runtime::client::{send_command, send_command_with_output, wait_for_status};
use berth_runtime::{connect_nats, ConnectArgs};
use berth_schemas::command::CommandMeta;
use berth_schemas::query::{GetRequest, TenantFilter, GET, VM};
use berth_schemas::status::Status;
use berth_schemas::status::VmState;
use berth_schemas::subjects::{status_subject, StatusKind};
use berth_schemas::vm::{
    CreateVm, ExecOutput, ExecVm, Plan, ResizeVm, VmCommand as Command, VmStatus, VmTarget,
};
use berth_schemas::{Actor, CommandReply, TenantId};
use clap::{Args, Subcommand};
use uuid::Uuid;

use crate::output::{print, print_json, Output};
use crate::reads;

#[derive(Args, Debug, Clone)]
pub struct Common {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The tenant to act for.
    #[arg(long, env = "BERTH_TENANT", default_value = "demo")]
    pub tenant: TenantId,
    /// Who is acting, as `user:<id>`.
    #[arg(long, env = "BERTH_ACTOR", default_value = "user:operator")]
    actor: Actor,
    /// Wait until the VM shows the outcome on its status subject.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, in seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// The command id (idempotency key); a new UUID v7 by default.
    #[arg(long)]
    command_id: Option<Uuid>,
}

impl Common {
    /// The command's metadata: the given command id, or a new one.
    pub fn meta(&self) -> CommandMeta {
        let mut meta = CommandMeta::new(self.actor.clone());
        if let Some(id) = self.command_id {
            meta.id = id;
            meta.correlation_id = id;
        }
        meta
    }
}

#[derive(Args, Debug)]
pub struct Target {
    /// The VM id.
    vm_id: Uuid,
    /// Act only if the VM is still at this version.
    #[arg(long)]
    expected_version: Option<u64>,
    #[command(flatten)]
    common: Common,
}

#[derive(Subcommand, Debug)]
pub enum VmCommand {
    /// Ask for a new VM (started once provisioned unless --no-start).
    Create {
        #[arg(long)]
        name: String,
        /// small (1 vCPU, 1 GB, 10 GB), medium (2, 4 GB, 40 GB) or large (4, 8 GB, 80 GB).
        #[arg(long, value_parser = parse_plan, conflicts_with_all = ["vcpus", "memory_mb", "disk_gb"])]
        plan: Option<Plan>,
        /// Explicit size (default 1 vCPU, 1024 MB, 10 GB).
        #[arg(long)]
        vcpus: Option<u32>,
        #[arg(long)]
        memory_mb: Option<u32>,
        #[arg(long)]
        disk_gb: Option<u32>,
        #[arg(long)]
        region: Option<String>,
        #[arg(long, default_value = "debian-12")]
        image: String,
        #[arg(long)]
        no_start: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Start a stopped VM.
    Start(Target),
    /// Stop a running VM.
    Stop(Target),
    /// Restart a running VM.
    Restart(Target),
    /// Destroy the machine and provision a fresh one under the same id.
    Recreate(Target),
    /// Give a stopped VM a new size (quota re-checked; disks only grow).
    Resize {
        vm_id: Uuid,
        #[arg(long, value_parser = parse_plan, conflicts_with_all = ["vcpus", "memory_mb", "disk_gb"])]
        plan: Option<Plan>,
        #[arg(long)]
        vcpus: Option<u32>,
        #[arg(long)]
        memory_mb: Option<u32>,
        #[arg(long)]
        disk_gb: Option<u32>,
        #[arg(long)]
        expected_version: Option<u64>,
        #[command(flatten)]
        common: Common,
    },
    /// Destroy a VM.
    Destroy(Target),
    /// Try a degraded VM's failed step again (its machine was left as it was).
    Retry(Target),
    /// Run a command in a running VM and print its output: `berth vm exec <id> -- uname -a`.
    Exec {
        vm_id: Uuid,
        /// Give up after this many seconds (1 to 300).
        #[arg(long, default_value_t = 30)]
        timeout_secs: u32,
        /// The program and its arguments (no shell).
        #[arg(last = true, required = true)]
        command: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// List VMs (all tenants with --all-tenants).
    List {
        #[command(flatten)]
        connect: ConnectArgs,
        #[arg(long, env = "BERTH_TENANT", default_value = "demo")]
        tenant: TenantId,
        #[arg(long)]
        all_tenants: bool,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Show one VM.
    Show {
        vm_id: Uuid,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

pub async fn run(command: VmCommand) -> anyhow::Result<()> {
    let (command, common, settled) = match command {
        VmCommand::List {
            connect,
            tenant,
            all_tenants,
            output,
        } => {
            let filter = TenantFilter {
                tenant: (!all_tenants).then_some(tenant),
            };
            let rows: Vec<VmState> = reads::list(&connect, VM, filter)
                .await
                .context("reading vms")?;
            print(
                output,
                &[
                    "ID", "TENANT", "NAME", "STATUS", "VCPUS", "MEMORY", "DISK", "HOST", "REASON",
                ],
                &rows,
                cells,
            );
            return Ok(());
        }
        VmCommand::Show { vm_id, connect } => {
            let row: Option<VmState> = reads::ask(&connect, VM, GET, &GetRequest { id: vm_id })
                .await
                .context("reading vms")?;
            let Some(row) = row else {
                bail!("no vm {vm_id} in the vms projection (it may still be on its way: try again, or `berth events show {vm_id}`)");
            };
            print_json(&row);
            return Ok(());
        }
        VmCommand::Create {
            name,
            plan,
            region,
            vcpus,
            memory_mb,
            disk_gb,
            image,
            no_start,
            common,
        } => {
            let mut create = match plan {
                Some(plan) => CreateVm::with_plan(name, plan, image),
                None => CreateVm::with_size(
                    name,
                    vcpus.unwrap_or(1),
                    memory_mb.unwrap_or(1024),
                    disk_gb.unwrap_or(10),
                    image,
                ),
            };
            create.region = region;
            create.start = !no_start;
            (
                Command::Create(create),
                common,
                Some(if no_start {
                    VmStatus::Stopped
                } else {
                    VmStatus::Running
                }),
            )
        }
        VmCommand::Start(t) => (
            Command::Start(target(&t)),
            t.common,
            Some(VmStatus::Running),
        ),
        VmCommand::Stop(t) => (Command::Stop(target(&t)), t.common, Some(VmStatus::Stopped)),
        VmCommand::Restart(t) => (
            Command::Restart(target(&t)),
            t.common,
            Some(VmStatus::Running),
        ),
        VmCommand::Recreate(t) => (
            Command::Recreate(target(&t)),
            t.common,
            Some(VmStatus::Running),
        ),
        VmCommand::Resize {
            vm_id,
            plan,
            vcpus,
            memory_mb,
            disk_gb,
            expected_version,
            common,
        } => (
            Command::Resize(ResizeVm {
                vm_id,
                expected_version,
                plan,
                vcpus,
                memory_mb,
                disk_gb,
            }),
            common,
            Some(VmStatus::Stopped),
        ),
        VmCommand::Destroy(t) => (
            Command::Destroy(target(&t)),
            t.common,
            Some(VmStatus::Destroyed),
        ),
        // Whatever the retried step leads to.
        VmCommand::Retry(t) => (Command::Retry(target(&t)), t.common, None),
        VmCommand::Exec {
            vm_id,
            timeout_secs,
            command,
            common,
        } => {
            let exec = Command::Exec(ExecVm {
                vm_id,
                command,
                timeout_secs: Some(timeout_secs),
            });
            return exec_in_vm(exec, &common).await;
        }
    };
    let nats = connect_nats("cli", &common.connect).await?;
    let meta = common.meta();
    let vm_id = command.vm_id(meta.id);
    let reply = send_command(
        &nats,
        &common.tenant,
        "vm",
        command.action(),
        &meta,
        command.body(),
    )
    .await?;
    let CommandReply::Accepted {
        version, events, ..
    } = &reply
    else {
        let rejection = reply.rejection().expect("not accepted");
        bail!("rejected ({}): {}", rejection.code, rejection.message);
    };
    println!(
        "accepted: vm {vm_id} at version {version} ({} events)",
        events.len()
    );
    if common.wait {
        let subject = status_subject(&common.tenant, StatusKind::Vm, &vm_id.to_string())?;
        let expected = *version;
        let timeout = Duration::from_secs(common.timeout);
        let status = wait_for_status(&nats, &subject, timeout, |s: &Status<VmState>| {
            s.version >= expected
                && (reached(s.state.status, settled)
                    || matches!(s.state.status, VmStatus::Failed | VmStatus::Degraded))
        })
        .await?;
        let reason = status.reason().unwrap_or("no reason given");
        match status.state.status {
            VmStatus::Failed => bail!("vm {vm_id} failed: {reason}"),
            VmStatus::Degraded => bail!("vm {vm_id} is degraded: {reason}"),
            state => println!("vm {vm_id} is {state}"),
        }
    }
    Ok(())
}

/// Whether status `status` is what `--wait` waits for: `settled`, or for a command
/// whose outcome depends on the VM (`retry`, `None`), any status it settles in.
fn reached(status: VmStatus, settled: Option<VmStatus>) -> bool {
    match settled {
        Some(settled) => status == settled,
        None => matches!(
            status,
            VmStatus::Running | VmStatus::Stopped | VmStatus::Destroyed
        ),
    }
}

/// Sends `vm.exec`, prints what the command printed and exits with its exit code.
async fn exec_in_vm(exec: Command, common: &Common) -> anyhow::Result<()> {
    let nats = connect_nats("cli", &common.connect).await?;
    let meta = CommandMeta::new(common.actor.clone());
    let reply = send_command_with_output::<ExecOutput>(
        &nats,
        &common.tenant,
        "vm",
        exec.action(),
        &meta,
        exec.body(),
    )
    .await?;
    match reply {
        CommandReply::Accepted {
            output: Some(output),
            ..
        } => {
            print!("{}", output.stdout);
            eprint!("{}", output.stderr);
            if output.exit_code != 0 {
                std::process::exit(i32::try_from(output.exit_code).unwrap_or(1));
            }
            Ok(())
        }
        CommandReply::Accepted { .. } => bail!("the vm ran the command but sent no output"),
        CommandReply::Rejected(rejection) => {
            bail!("rejected ({}): {}", rejection.code, rejection.message)
        }
    }
}

fn target(t: &Target) -> VmTarget {
    VmTarget {
        vm_id: t.vm_id,
        expected_version: t.expected_version,
    }
}

fn cells(row: &VmState) -> Vec<String> {
    vec![
        row.id.to_string(),
        row.tenant.to_string(),
        row.name.clone(),
        row.status.to_string(),
        row.vcpus.to_string(),
        format!("{} MB", row.memory_mb),
        format!("{} GB", row.disk_gb),
        row.host.clone().unwrap_or_default(),
        row.reason.clone().unwrap_or_default(),
    ]
}

fn parse_plan(value: &str) -> Result<Plan, String> {
    serde_json::from_value(serde_json::Value::String(value.to_owned()))
        .map_err(|_| format!("unknown plan {value:?}: choose small, medium or large"))
}
