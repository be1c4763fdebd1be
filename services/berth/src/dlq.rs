//! `berth dlq list|show|retry|drop` over the `DLQ` stream ([`berth_runtime::dlq`]).

use berth_runtime::dlq;
use berth_runtime::{connect_nats, ConnectArgs};
use clap::Subcommand;

use crate::output::{print, print_json, Output};

#[derive(Subcommand, Debug)]
pub enum DlqCommand {
    /// Dead letters, oldest first: consumer, original subject, deliveries, error.
    List {
        /// Only this consumer's (e.g. `provisioner-vms`).
        #[arg(long)]
        consumer: Option<String>,
        #[command(flatten)]
        connect: ConnectArgs,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// One dead letter with its headers and body.
    Show {
        sequence: u64,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Send dead letters back to their consumer (same event ids, so nothing happens
    /// twice) and remove them from the DLQ.
    Retry {
        #[arg(required = true)]
        sequences: Vec<u64>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Remove dead letters for good.
    Drop {
        #[arg(required = true)]
        sequences: Vec<u64>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

async fn jetstream(connect: &ConnectArgs) -> anyhow::Result<async_nats::jetstream::Context> {
    Ok(async_nats::jetstream::new(
        connect_nats("cli", connect).await?,
    ))
}

pub async fn run(command: DlqCommand) -> anyhow::Result<()> {
    match command {
        DlqCommand::List {
            consumer,
            connect,
            output,
        } => {
            let letters = dlq::list(&jetstream(&connect).await?, consumer.as_deref()).await?;
            print(
                output,
                &[
                    "SEQ",
                    "TIME",
                    "CONSUMER",
                    "SUBJECT",
                    "EVENT",
                    "DELIVERIES",
                    "ERROR",
                ],
                &letters,
                |l| {
                    vec![
                        l.sequence.to_string(),
                        l.time.format("%Y-%m-%d %H:%M:%S").to_string(),
                        l.consumer.clone(),
                        format!("{} #{}", l.subject, l.stream_sequence),
                        l.event_type.clone().unwrap_or_default(),
                        l.deliveries.to_string(),
                        l.error.chars().take(80).collect(),
                    ]
                },
            );
        }
        DlqCommand::Show { sequence, connect } => {
            let (letter, headers, payload) =
                dlq::get(&jetstream(&connect).await?, sequence).await?;
            let headers: std::collections::BTreeMap<String, Vec<String>> = headers
                .iter()
                .map(|(name, values)| {
                    (
                        name.to_string(),
                        values.iter().map(|v| v.to_string()).collect(),
                    )
                })
                .collect();
            let body = serde_json::from_slice::<serde_json::Value>(&payload).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&payload).into_owned())
            });
            print_json(&serde_json::json!({"letter": letter, "headers": headers, "body": body}));
        }
        DlqCommand::Retry { sequences, connect } => {
            let js = jetstream(&connect).await?;
            for sequence in sequences {
                let letter = dlq::retry(&js, sequence).await?;
                println!(
                    "retried {sequence}: {} #{} back to {}",
                    letter.subject, letter.stream_sequence, letter.consumer
                );
            }
        }
        DlqCommand::Drop { sequences, connect } => {
            let js = jetstream(&connect).await?;
            for sequence in sequences {
                dlq::drop_letter(&js, sequence).await?;
                println!("dropped {sequence}");
            }
        }
    }
    Ok(())
}
