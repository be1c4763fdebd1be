//! `berth notifications list|show|retry` over the `notifications` projection, and
//! `berth notify preview`: what a rule's template renders for an event in the log (or
//! for the rule's sample), without sending anything.

use anyhow::{bail, Context};
use berth_notifier::context::Contexts;
use berth_notifier::projection::{self, Filter};
use berth_notifier::templates::Templates;
use berth_runtime::{connect_db, connect_nats, ConnectArgs, EventStore};
use berth_schemas::notification::{NotificationCommand, NotificationTarget, Source};
use berth_schemas::subjects::EVENTS_STREAM;
use berth_schemas::{CommandSet, TenantId};
use clap::{Args, Subcommand};
use uuid::Uuid;

use crate::output::{print, print_json, Output};
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
            let db = connect_db(&list.connect.database_url).await?;
            let filter = Filter {
                tenant: list.tenant,
                status: list.failed.then(|| "failed".to_owned()).or(list.status),
                limit: list.limit,
            };
            let rows = projection::list(&db, &filter)
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
                        r.tenant.clone(),
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
        NotificationsCommand::Show { id, connect } => {
            let db = connect_db(&connect.database_url).await?;
            match projection::get(&db, id).await? {
                Some(row) => print_json(&row),
                None => bail!(
                    "no notification {id} (is the notifier running? `berth notifications list`)"
                ),
            }
        }
        NotificationsCommand::Retry { id, mut common } => {
            let db = connect_db(&common.connect.database_url).await?;
            let row = projection::get(&db, id).await?.with_context(|| {
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

pub async fn notify(command: NotifyCommand) -> anyhow::Result<()> {
    let NotifyCommand::Preview(preview) = command;
    let templates = Templates::builtin()?;
    if !templates.has(&preview.template) {
        bail!(
            "no template {:?}; the rules' names are the templates",
            preview.template
        );
    }
    let context = if preview.sample {
        berth_notifier::samples::context(&preview.template, &preview.to)
            .with_context(|| format!("no sample for {}", preview.template))?
    } else {
        let event = preview
            .event
            .as_deref()
            .context("--event <id|sequence> or --sample")?;
        let sequence = match event.parse::<u64>() {
            Ok(sequence) => sequence,
            Err(_) => {
                let id: Uuid = event
                    .parse()
                    .context("--event is an event id or a stream sequence")?;
                let db = connect_db(&preview.connect.database_url).await?;
                let sequence: Option<i64> = sqlx::query_scalar(
                    "SELECT stream_seq FROM audit_log.events WHERE event_id = $1",
                )
                .bind(id)
                .fetch_optional(&db)
                .await
                .context("looking the event up in audit_log")?;
                sequence.with_context(|| format!("no event {id} in audit_log"))? as u64
            }
        };
        let nats = connect_nats("cli", &preview.connect).await?;
        let contexts = Contexts {
            store: EventStore::new(async_nats::jetstream::new(nats), EVENTS_STREAM),
        };
        let source = Source {
            stream: EVENTS_STREAM.into(),
            sequence,
            event_id: Uuid::nil(),
            event_type: String::new(),
        };
        let message = contexts.fetch(&source).await?;
        contexts
            .build(&preview.template, &preview.to, &message)
            .await?
    };
    let rendered = templates.render(&preview.template, &context)?;
    println!(
        "Subject: {}\n\n{}\n--- html ---\n{}",
        rendered.subject, rendered.text, rendered.html
    );
    Ok(())
}
