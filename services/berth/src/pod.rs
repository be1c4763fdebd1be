//! `berth pod …`, `berth pods debug|clean-orphans` and `berth catalog list|show`:
//! commands go over NATS; reads, and the catalog pods are made from, are pod-lifecycle's
//! queries.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use berth_runtime::client::{send_command, send_command_with_output, wait_for_status};
use berth_runtime::{connect_nats, ConnectArgs};
use berth_schemas::pod::{
    CreatePod, DebugPods, DeletePod, EndPod, PodCommand as Command, PodLogs, PodStatus, PodTarget,
    PodsReport, ResetPod, ScalePod, UpdatePodConfig,
};
use berth_schemas::query::rows::{Catalog, VolumeRow};
use berth_schemas::query::{EmptyRequest, GetRequest, TenantFilter, CATALOG, GET, POD, VOLUME};
use berth_schemas::status::PodState;
use berth_schemas::status::Status;
use berth_schemas::subjects::{status_subject, StatusKind, PODS_DEBUG_SUBJECT};
use berth_schemas::vm::ExecOutput;
use berth_schemas::{CommandReply, CommandSet, Rejection, TenantId};
use clap::{Args, Subcommand};
use serde::Serialize;
use uuid::Uuid;

use crate::output::{print, print_json, Output};
use crate::reads;
use crate::vm::Common;

#[derive(Args, Debug)]
pub struct Target {
    /// The pod id.
    pod_id: Uuid,
    #[command(flatten)]
    common: Common,
}

#[derive(Subcommand, Debug)]
pub enum PodCommand {
    /// Create a pod from the catalog: `berth pod create --name flows --service n8n --variant basic`.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        service: String,
        #[arg(long)]
        variant: String,
        /// The billing subscription the pod belongs to.
        #[arg(long)]
        subscription_id: Option<Uuid>,
        /// Environment overrides, `NAME=value` (repeat).
        #[arg(long = "env", value_parser = parse_env)]
        env: Vec<(String, String)>,
        #[command(flatten)]
        common: Common,
    },
    /// Restart a pod; its volume and data stay.
    Restart(Target),
    /// Delete the pod's data and start it afresh (needs --confirm).
    Reset {
        pod_id: Uuid,
        /// Yes, delete all of the pod's data.
        #[arg(long)]
        confirm: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Scale a pod to 0 (stopped, volume kept) or 1 (running).
    Scale {
        pod_id: Uuid,
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=1))]
        replicas: u32,
        #[command(flatten)]
        common: Common,
    },
    /// Delete a pod; its volume too unless --keep-volume.
    Delete {
        pod_id: Uuid,
        #[arg(long)]
        keep_volume: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Replace the pod's environment overrides (`NAME=value`, repeat); it restarts with them.
    UpdateConfig {
        pod_id: Uuid,
        #[arg(long = "env", value_parser = parse_env)]
        env: Vec<(String, String)>,
        #[command(flatten)]
        common: Common,
    },
    /// The subscription expired: scale to 0, keep the volume for the grace period.
    Expire(Target),
    /// The subscription was cancelled: as expire.
    Cancel(Target),
    /// The subscription was renewed: bring an expired pod back with its data.
    Renew(Target),
    /// Print the pod's recent output.
    Logs {
        pod_id: Uuid,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<u32>,
        /// Only output after this time (RFC 3339).
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        #[command(flatten)]
        common: Common,
    },
    /// List pods (all tenants with --all-tenants).
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
    /// Show one pod.
    Show {
        pod_id: Uuid,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// List pod volumes: claim name, status, size, mount path.
    Volumes {
        #[command(flatten)]
        connect: ConnectArgs,
        #[arg(long, env = "BERTH_TENANT", default_value = "demo")]
        tenant: TenantId,
        #[arg(long)]
        all_tenants: bool,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
}

#[derive(Subcommand, Debug)]
pub enum PodsCommand {
    /// Pods beside what the runtime has, and orphaned workloads and volumes.
    Debug {
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Remove every orphaned workload and volume found now.
    CleanOrphans {
        /// Yes, delete them (their data is lost).
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum CatalogCommand {
    /// Every service and variant with its sizes.
    List {
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// One service in full.
    Show {
        service: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

pub async fn run(command: PodCommand) -> anyhow::Result<()> {
    let (command, common, settled) = match command {
        PodCommand::List {
            connect,
            tenant,
            all_tenants,
            output,
        } => {
            let filter = TenantFilter {
                tenant: (!all_tenants).then_some(tenant),
            };
            let rows: Vec<PodState> = reads::list(&connect, POD, filter)
                .await
                .context("reading pods")?;
            let header = [
                "ID", "TENANT", "NAME", "SERVICE", "VARIANT", "STATUS", "VOLUME", "REASON",
            ];
            print(output, &header, &rows, pod_cells);
            return Ok(());
        }
        PodCommand::Volumes {
            connect,
            tenant,
            all_tenants,
            output,
        } => {
            let filter = TenantFilter {
                tenant: (!all_tenants).then_some(tenant),
            };
            let rows: Vec<VolumeRow> = reads::list(&connect, VOLUME, filter)
                .await
                .context("reading volumes")?;
            let header = ["CLAIM", "TENANT", "STATUS", "SIZE", "MOUNT", "CLASS"];
            print(output, &header, &rows, volume_cells);
            return Ok(());
        }
        PodCommand::Show { pod_id, connect } => {
            let Some(row) = pod_row(&connect, pod_id).await? else {
                bail!("no pod {pod_id} in the pods projection (it may still be on its way: try again, or `berth events show {pod_id}`)");
            };
            print_json(&row);
            return Ok(());
        }
        PodCommand::Logs {
            pod_id,
            tail,
            since,
            common,
        } => {
            let logs = Command::Logs(PodLogs {
                pod_id,
                tail,
                since,
            });
            return print_logs(logs, &common).await;
        }
        PodCommand::Create {
            name,
            service,
            variant,
            subscription_id,
            env,
            common,
        } => (
            Command::Create(CreatePod {
                pod_id: None,
                name,
                service,
                variant,
                subscription_id,
                env: env.into_iter().collect(),
            }),
            common,
            PodStatus::Running,
        ),
        PodCommand::Restart(t) => (
            Command::Restart(target(t.pod_id)),
            t.common,
            PodStatus::Running,
        ),
        PodCommand::Reset {
            pod_id,
            confirm,
            common,
        } => (
            Command::Reset(ResetPod {
                pod_id,
                confirm,
                expected_version: None,
            }),
            common,
            PodStatus::Running,
        ),
        PodCommand::Scale {
            pod_id,
            replicas,
            common,
        } => (
            Command::Scale(ScalePod {
                pod_id,
                replicas,
                expected_version: None,
            }),
            common,
            if replicas == 0 {
                PodStatus::Stopped
            } else {
                PodStatus::Running
            },
        ),
        PodCommand::Delete {
            pod_id,
            keep_volume,
            common,
        } => (
            Command::Delete(DeletePod {
                pod_id,
                keep_volume,
                expected_version: None,
            }),
            common,
            PodStatus::Deleted,
        ),
        PodCommand::UpdateConfig {
            pod_id,
            env,
            common,
        } => (
            Command::UpdateConfig(UpdatePodConfig {
                pod_id,
                env: env.into_iter().collect::<BTreeMap<_, _>>(),
                expected_version: None,
            }),
            common,
            PodStatus::Running,
        ),
        PodCommand::Expire(t) => (
            Command::Expire(EndPod {
                pod_id: t.pod_id,
                at: None,
            }),
            t.common,
            PodStatus::Expired,
        ),
        PodCommand::Cancel(t) => (
            Command::Cancel(EndPod {
                pod_id: t.pod_id,
                at: None,
            }),
            t.common,
            PodStatus::Expired,
        ),
        PodCommand::Renew(t) => (
            Command::Renew(target(t.pod_id)),
            t.common,
            PodStatus::Running,
        ),
    };
    send(command, &common, settled).await
}

async fn send(command: Command, common: &Common, settled: PodStatus) -> anyhow::Result<()> {
    let nats = connect_nats("cli", &common.connect).await?;
    let meta = common.meta();
    let reply = send_command(
        &nats,
        &common.tenant,
        "pod",
        command.action(),
        &meta,
        command.body(),
    )
    .await?;
    let CommandReply::Accepted {
        aggregate_id,
        version,
        events,
        ..
    } = &reply
    else {
        let rejection = reply.rejection().expect("not accepted");
        bail!("rejected ({}): {}", rejection.code, rejection.message);
    };
    println!(
        "accepted: pod {aggregate_id} at version {version} ({} events)",
        events.len()
    );
    if !common.wait {
        return Ok(());
    }
    // An operator's command on `system` lands on the pod's own tenant's status subject.
    let tenant = if common.tenant.as_str() == berth_schemas::ids::SYSTEM_TENANT {
        let row = pod_row(&common.connect, *aggregate_id).await?;
        let tenant = row.context("the pod is not projected yet")?.tenant;
        TenantId::parse(&tenant)?
    } else {
        common.tenant.clone()
    };
    let subject = status_subject(&tenant, StatusKind::Pod, &aggregate_id.to_string())?;
    let expected = *version + u64::from(!events.is_empty());
    let timeout = Duration::from_secs(common.timeout);
    let status = wait_for_status(&nats, &subject, timeout, |s: &Status<PodState>| {
        s.version >= expected
            && (s.state.status == settled
                || matches!(s.state.status, PodStatus::Failed | PodStatus::Degraded))
    })
    .await?;
    let reason = status.reason().unwrap_or("no reason given");
    match status.state.status {
        PodStatus::Failed => bail!("pod {aggregate_id} failed: {reason}"),
        PodStatus::Degraded => bail!("pod {aggregate_id} is degraded: {reason}"),
        state => println!("pod {aggregate_id} is {state}"),
    }
    Ok(())
}

/// The pod as pod-lifecycle shows it, if it is projected yet.
async fn pod_row(connect: &ConnectArgs, pod_id: Uuid) -> anyhow::Result<Option<PodState>> {
    reads::ask(connect, POD, GET, &GetRequest { id: pod_id })
        .await
        .context("reading pods")
}

async fn print_logs(logs: Command, common: &Common) -> anyhow::Result<()> {
    let nats = connect_nats("cli", &common.connect).await?;
    let reply = send_command_with_output::<ExecOutput>(
        &nats,
        &common.tenant,
        "pod",
        logs.action(),
        &common.meta(),
        logs.body(),
    )
    .await?;
    match reply {
        CommandReply::Accepted {
            output: Some(output),
            ..
        } => {
            print!("{}", output.stdout);
            if !output.stdout.is_empty() && !output.stdout.ends_with('\n') {
                println!();
            }
            Ok(())
        }
        CommandReply::Accepted { .. } => bail!("pod-lifecycle sent no logs"),
        CommandReply::Rejected(rejection) => {
            bail!("rejected ({}): {}", rejection.code, rejection.message)
        }
    }
}

async fn ask(connect: &ConnectArgs, clean_orphans: bool) -> anyhow::Result<PodsReport> {
    let nats = connect_nats("cli", connect).await?;
    let body = serde_json::to_vec(&DebugPods { clean_orphans })?;
    let reply = tokio::time::timeout(
        Duration::from_secs(120),
        berth_runtime::client::request(&nats, PODS_DEBUG_SUBJECT, body),
    )
    .await
    .context("no pods report within 120 s")?
    .with_context(|| {
        format!("nothing answers {PODS_DEBUG_SUBJECT}: is pod-lifecycle running (`just up`)?")
    })?;
    if let Ok(report) = serde_json::from_slice::<PodsReport>(&reply.payload) {
        return Ok(report);
    }
    match serde_json::from_slice::<Rejection>(&reply.payload) {
        Ok(rejection) => bail!("rejected ({}): {}", rejection.code, rejection.message),
        Err(_) => bail!("unreadable reply to {PODS_DEBUG_SUBJECT}"),
    }
}

pub async fn pods(command: PodsCommand) -> anyhow::Result<()> {
    match command {
        PodsCommand::Debug { output, connect } => {
            let report = ask(&connect, false).await?;
            if output == Output::Json {
                print_json(&report);
                return Ok(());
            }
            println!("runtime {}", report.runtime);
            print(
                output,
                &["POD", "TENANT", "NAME", "RECORDED", "RUNTIME", "VOLUME"],
                &report.pods,
                |p| {
                    vec![
                        p.pod_id.to_string(),
                        p.tenant.clone(),
                        p.name.clone(),
                        p.status.clone(),
                        p.runtime_status.clone(),
                        if p.volume_present {
                            "present"
                        } else {
                            "missing"
                        }
                        .to_owned(),
                    ]
                },
            );
            println!("{} orphans", report.orphans.len());
            print(
                output,
                &["KIND", "NAME", "TENANT", "WHY"],
                &report.orphans,
                |o| {
                    vec![
                        o.kind.clone(),
                        o.name.clone(),
                        o.tenant.clone().unwrap_or_default(),
                        o.why.clone(),
                    ]
                },
            );
        }
        PodsCommand::CleanOrphans { yes, connect } => {
            if !yes {
                bail!("this deletes every orphaned workload and volume and their data: run `berth pods debug` to see them, then again with --yes");
            }
            let report = ask(&connect, true).await?;
            for orphan in &report.removed {
                println!("removed {} {}", orphan.kind, orphan.name);
            }
            if report.removed.len() < report.orphans.len() {
                bail!(
                    "{} of {} orphans could not be removed; see pod-lifecycle's log",
                    report.orphans.len() - report.removed.len(),
                    report.orphans.len()
                );
            }
            if report.removed.is_empty() {
                println!("no orphans");
            }
        }
    }
    Ok(())
}

pub async fn catalog(command: CatalogCommand) -> anyhow::Result<()> {
    let (CatalogCommand::List { connect, .. } | CatalogCommand::Show { connect, .. }) = &command;
    let catalog: Catalog = reads::ask(connect, CATALOG, GET, &EmptyRequest {})
        .await
        .context("the service catalog")?;
    match command {
        CatalogCommand::List { output, .. } => {
            let rows: Vec<CatalogLine> = catalog
                .services
                .iter()
                .flat_map(|(name, service)| {
                    service
                        .variants
                        .iter()
                        .map(move |(variant, size)| CatalogLine {
                            cpu_limit_millis: size.cpu_limit_millis,
                            image: &service.image,
                            memory_limit_mb: size.memory_limit_mb,
                            mount_path: &service.volume.mount_path,
                            service: name,
                            variant,
                            volume_mb: size.volume_mb,
                        })
                })
                .collect();
            print(
                output,
                &[
                    "SERVICE",
                    "VARIANT",
                    "VOLUME MB",
                    "MOUNT",
                    "CPU m",
                    "MEMORY MB",
                    "IMAGE",
                ],
                &rows,
                |line| {
                    vec![
                        line.service.to_owned(),
                        line.variant.to_owned(),
                        line.volume_mb.to_string(),
                        line.mount_path.to_owned(),
                        line.cpu_limit_millis.to_string(),
                        line.memory_limit_mb.to_string(),
                        line.image.to_owned(),
                    ]
                },
            );
        }
        CatalogCommand::Show { service, .. } => {
            let Some(found) = catalog.services.get(&service) else {
                bail!(
                    "no service {service:?} in the catalog; it has {}",
                    catalog.names()
                );
            };
            print_json(found);
        }
    }
    Ok(())
}

/// One variant of one service as `catalog list` prints it; its keys in alphabetical
/// order, as the JSON form has always had them.
#[derive(Serialize)]
struct CatalogLine<'a> {
    cpu_limit_millis: u32,
    image: &'a str,
    memory_limit_mb: u32,
    mount_path: &'a str,
    service: &'a str,
    variant: &'a str,
    volume_mb: u32,
}

fn target(pod_id: Uuid) -> PodTarget {
    PodTarget {
        pod_id,
        expected_version: None,
    }
}

fn parse_env(value: &str) -> Result<(String, String), String> {
    value
        .split_once('=')
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("--env takes NAME=value, not {value:?}"))
}

fn pod_cells(row: &PodState) -> Vec<String> {
    vec![
        row.id.to_string(),
        row.tenant.to_string(),
        row.name.clone(),
        row.service.clone(),
        row.variant.clone(),
        row.status.to_string(),
        format!("{} MiB", row.volume_mb),
        row.reason.clone().unwrap_or_default(),
    ]
}

fn volume_cells(row: &VolumeRow) -> Vec<String> {
    vec![
        row.claim_name.clone(),
        row.tenant.to_string(),
        row.status.clone(),
        format!("{} MiB", row.size_mb),
        row.mount_path.clone(),
        row.storage_class.clone().unwrap_or_default(),
    ]
}
