//! `berth events tail|show`: the event log, straight from JetStream.

use anyhow::Context;
use async_nats::jetstream::{self, consumer, consumer::DeliverPolicy};
use berth_runtime::store::StoredEvent;
use berth_runtime::{connect_nats, ConnectArgs};
use berth_schemas::subjects::{events_filter, id_event_filter, EVENTS_STREAM};
use berth_schemas::TenantId;
use clap::Subcommand;
use futures::StreamExt;
use serde::Serialize;
use uuid::Uuid;

use crate::output::Output;

#[derive(Subcommand, Debug)]
pub enum EventsCommand {
    /// Follow new events (or from --since-seq) until Ctrl-C.
    Tail {
        #[command(flatten)]
        connect: ConnectArgs,
        /// Only this tenant's events.
        #[arg(long)]
        tenant: Option<TenantId>,
        /// Only this aggregate kind (vm, server, …).
        #[arg(long)]
        kind: Option<String>,
        /// Only this event type, e.g. berth.vm.started.v1.
        #[arg(long = "type")]
        event_type: Option<String>,
        /// Start at this stream sequence instead of at new events.
        #[arg(long, conflicts_with = "since")]
        since_seq: Option<u64>,
        /// Start at the first event at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Show the whole history of one aggregate.
    Show {
        aggregate_id: Uuid,
        #[command(flatten)]
        connect: ConnectArgs,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
}

/// One event as the CLI prints it.
#[derive(Debug, Serialize)]
struct Line {
    sequence: u64,
    time: String,
    #[serde(rename = "type")]
    event_type: String,
    subject: String,
    actor: String,
    id: Uuid,
    correlation_id: Uuid,
    causation_id: Uuid,
    data: serde_json::Value,
}

impl Line {
    fn new(event: &StoredEvent) -> Self {
        Self {
            sequence: event.sequence,
            time: event
                .meta
                .time
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            event_type: event.meta.event_type.clone(),
            subject: event.subject.clone(),
            actor: event.meta.actor.to_string(),
            id: event.meta.id,
            correlation_id: event.meta.correlation_id,
            causation_id: event.meta.causation_id,
            data: serde_json::from_slice(&event.data).unwrap_or(serde_json::Value::Null),
        }
    }

    fn print(&self, output: Output) {
        match output {
            Output::Json => println!("{}", serde_json::to_string(self).expect("lines serialize")),
            Output::Table => println!(
                "{:>8}  {}  {:<36}  {:<60}  {:<24}  corr={}",
                self.sequence,
                self.time,
                self.event_type,
                self.subject,
                self.actor,
                self.correlation_id
            ),
        }
    }
}

async fn ordered(
    connect: &ConnectArgs,
    filter: String,
    deliver_policy: DeliverPolicy,
) -> anyhow::Result<(u64, consumer::pull::Ordered)> {
    let nats = connect_nats("cli", connect).await?;
    let js = jetstream::new(nats);
    let stream = js
        .get_stream(EVENTS_STREAM)
        .await
        .context("the EVENTS stream is missing: has berth ever run here?")?;
    let mut consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter,
            deliver_policy,
            ..Default::default()
        })
        .await
        .context("creating an ordered consumer")?;
    let pending = consumer.info().await?.num_pending;
    Ok((pending, consumer.messages().await?))
}

pub async fn run(command: EventsCommand) -> anyhow::Result<()> {
    match command {
        EventsCommand::Tail {
            connect,
            tenant,
            kind,
            event_type,
            since_seq,
            since,
            output,
        } => {
            let filter = events_filter(tenant.as_ref(), kind.as_deref());
            berth_schemas::ids::validate_subject_token("kind", kind.as_deref().unwrap_or("x"))?;
            let policy = match (since_seq, since) {
                (Some(start_sequence), _) => DeliverPolicy::ByStartSequence { start_sequence },
                (None, Some(at)) => DeliverPolicy::ByStartTime {
                    start_time: time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(
                        at.timestamp_nanos_opt()
                            .context("--since is outside the years 1677 to 2262")?,
                    ))?,
                },
                (None, None) => DeliverPolicy::New,
            };
            let (_, mut messages) = ordered(&connect, filter, policy).await?;
            loop {
                let message = tokio::select! {
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                    message = messages.next() => message,
                };
                let Some(message) = message else {
                    return Ok(());
                };
                let event = StoredEvent::from_jetstream(&message?)?;
                if event_type
                    .as_deref()
                    .is_none_or(|t| t == event.meta.event_type)
                {
                    Line::new(&event).print(output);
                }
            }
        }
        EventsCommand::Show {
            aggregate_id,
            connect,
            output,
        } => {
            let (pending, mut messages) =
                ordered(&connect, id_event_filter(aggregate_id), DeliverPolicy::All).await?;
            if pending == 0 {
                anyhow::bail!("no events for {aggregate_id}");
            }
            let mut lines = Vec::new();
            while let Some(message) = messages.next().await {
                let message = message?;
                let remaining = message.info().map(|i| i.pending).unwrap_or(0);
                lines.push(Line::new(&StoredEvent::from_jetstream(&message)?));
                if remaining == 0 {
                    break;
                }
            }
            match output {
                Output::Json => crate::output::print_json(&lines),
                Output::Table => {
                    println!(
                        "{aggregate_id}: {} events, version {}",
                        lines.len(),
                        lines.last().map_or(0, |l| l.sequence)
                    );
                    for line in &lines {
                        line.print(output);
                        println!("          {}", line.data);
                    }
                }
            }
            Ok(())
        }
    }
}
