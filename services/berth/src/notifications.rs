//! `berth notifications list|show|retry` through the notifier's `notification.*`
//! queries, and `berth notify preview`: what a rule's template renders for an event in
//! the log (or for the rule's sample), without sending anything — the notifier renders
//! it.

use anyhow::{bail, Context};
use berth_runtime::client::query;
use berth_runtime::{connect_nats, ConnectArgs};
use berth_schemas::notification::{NotificationCommand, NotificationTarget};
use berth_schemas::query::rows::Rendered;
use berth_schemas::query::{
    GetRequest, NotificationFilter, PreviewRequest, PreviewSource, GET, NOTIFICATION, PREVIEW,
};
use berth_schemas::status::NotificationState;
use berth_schemas::{CommandSet, TenantId};
use clap::{Args, Subcommand};
use uuid::Uuid;

use crate::output::{print, print_json, Output};
use crate::reads;
use crate::vm::Common;

#[derive(Subcommand, Debug)]
pub enum NotificationsCommand {
    /// Notifications, newest first: rule, channel, recipient, status, attempts, last error.
    List(ListArgs),
    /// One notification in full.
    Show {
        id: Uuid,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Another round of delivery attempts for a failed notification.
    Retry {
        id: Uuid,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Only this tenant.
    #[arg(long)]
    tenant: Option<TenantId>,
    /// Only failed ones (same as --status failed).
    #[arg(long)]
    failed: bool,
    /// Only this status: pending, retrying, sent, failed.
    #[arg(long, conflicts_with = "failed")]
    status: Option<String>,
    #[arg(long, default_value_t = 100)]
    limit: i64,
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

#[derive(Subcommand, Debug)]
pub enum NotifyCommand {
    /// Print what a template renders (subject, text, HTML) for an event, without sending.
    Preview(PreviewArgs),
}

#[derive(Args, Debug)]
pub struct PreviewArgs {
    /// The template (a rule's name), e.g. `welcome`.
    template: String,
    /// The event: its CloudEvent id (looked up in `audit_log`) or its stream sequence.
    #[arg(long, required_unless_present = "sample")]
    event: Option<String>,
    /// Render the rule's built-in sample instead of an event from the log.
    #[arg(long)]
    sample: bool,
    /// The recipient shown in the context.
    #[arg(long, default_value = "preview@berth.localhost")]
    to: String,
    #[command(flatten)]
    connect: ConnectArgs,
}

pub async fn run(command: NotificationsCommand) -> anyhow::Result<()> {
    match command {
        NotificationsCommand::List(list) => {
            let filter = NotificationFilter {
                tenant: list.tenant,
                status: list.failed.then(|| "failed".to_owned()).or(list.status),
            };
            let limit = usize::try_from(list.limit).unwrap_or(0);
            let rows: Vec<NotificationState> =
                reads::list_at_most(&list.connect, NOTIFICATION, filter, Some(limit))
                    .await
                    .context("reading notifications")?;
            print(
                list.output,
                &[
                    "ID",
                    "TENANT",
                    "RULE",
                    "CHANNEL",
                    "RECIPIENT",
                    "STATUS",
                    "ATTEMPTS",
                    "LAST ERROR",
                ],
                &rows,
                |r| {
                    vec![
                        r.id.to_string(),
                        r.tenant.to_string(),
                        r.rule.clone(),
                        r.channel.clone(),
                        r.recipient.clone(),
                        r.status.clone(),
                        r.attempts.to_string(),
                        r.last_error
                            .clone()
                            .unwrap_or_default()
                            .chars()
                            .take(60)
                            .collect(),
                    ]
                },
            );
        }
        NotificationsCommand::Show { id, connect } => match notification(&connect, id).await? {
            Some(row) => print_json(&row),
            None => {
                bail!("no notification {id} (is the notifier running? `berth notifications list`)")
            }
        },
        NotificationsCommand::Retry { id, mut common } => {
            let row = notification(&common.connect, id).await?.with_context(|| {
                format!("no notification {id} (`berth notifications list --failed`)")
            })?;
            common.tenant = TenantId::parse(&row.tenant)?;
            let retry = NotificationCommand::Retry(NotificationTarget {
                notification_id: id,
            });
            crate::billing::send(&common, "notification", retry.action(), retry.body()).await?;
        }
    }
    Ok(())
}

/// The notification as the notifier shows it.
async fn notification(
    connect: &ConnectArgs,
    id: Uuid,
) -> anyhow::Result<Option<NotificationState>> {
    reads::ask(connect, NOTIFICATION, GET, &GetRequest { id }).await
}

pub async fn notify(command: NotifyCommand) -> anyhow::Result<()> {
    let NotifyCommand::Preview(preview) = command;
    let of = match (preview.sample, preview.event.as_deref()) {
        (true, _) => PreviewSource::Sample,
        (false, None) => bail!("--event <id|sequence> or --sample"),
        (false, Some(event)) => match event.parse::<u64>() {
            Ok(sequence) => PreviewSource::Sequence(sequence),
            Err(_) => PreviewSource::EventId(
                event
                    .parse()
                    .context("--event is an event id or a stream sequence")?,
            ),
        },
    };
    let request = PreviewRequest {
        template: preview.template,
        of,
        to: preview.to,
    };
    let nats = connect_nats("cli", &preview.connect).await?;
    let asked = query(&nats, &TenantId::system(), NOTIFICATION, PREVIEW, &request).await?;
    let rendered: Rendered = reads::answered_plainly(asked)?;
    println!(
        "Subject: {}\n\n{}\n--- html ---\n{}",
        rendered.subject, rendered.text, rendered.html
    );
    Ok(())
}
