//! Operators hear of every new dead letter: a durable consumer on `DLQ` (from the
//! messages that arrive after it was first created) turns each into the `dlq` rule's
//! notifications. Dead letters of the notifier's own consumers are only logged: a
//! notification about a notification that cannot be delivered could go round forever.
//!
//! This is a plain consumer loop rather than a [`berth_runtime::reactor::Reactor`]: a
//! dead letter need not be a CloudEvent (an undecodable message lands here too), and a
//! reactor would send its own failures back into the stream it reads.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, AckKind};
use berth_runtime::reactor::dlq_headers;
use berth_runtime::Runtime;
use berth_schemas::envelope::header_value;
use berth_schemas::notification::Source;
use berth_schemas::subjects::DLQ_STREAM;
use berth_schemas::TenantId;
use futures::StreamExt;
use tracing::warn;
use uuid::Uuid;

use crate::requests::{Origin, Requester};
use crate::rules::DEAD_LETTER;

const CONSUMER: &str = "notifier-dead-letters";

/// Follows `DLQ` until shutdown.
pub async fn watch(rt: &Runtime, requester: Arc<Requester>) -> berth_runtime::Result<()> {
    let stream = rt
        .js
        .get_stream(DLQ_STREAM)
        .await
        .map_err(|e| berth_runtime::Error::nats("get DLQ stream", e))?;
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            CONSUMER,
            consumer::pull::Config {
                durable_name: Some(CONSUMER.into()),
                deliver_policy: consumer::DeliverPolicy::New,
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(60),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| berth_runtime::Error::nats(format!("create consumer {CONSUMER}"), e))?;
    let messages = consumer
        .messages()
        .await
        .map_err(|e| berth_runtime::Error::nats(format!("consume {CONSUMER}"), e))?;
    messages
        .take_until(rt.shutdown.clone().cancelled_owned())
        .for_each_concurrent(4, |message| {
            let requester = requester.clone();
            async move {
                let message = match message {
                    Ok(message) => message,
                    Err(e) => return warn!(error = %e, "DLQ consumer error"),
                };
                let ack = match notify(&requester, &message).await {
                    Ok(()) => message.ack().await,
                    Err(e) => {
                        warn!(error = %e, "could not request a dead-letter notification; will retry");
                        message.ack_with(AckKind::Nak(Some(Duration::from_secs(5)))).await
                    }
                };
                if let Err(e) = ack {
                    warn!(error = %e, "could not acknowledge a dead letter");
                }
            }
        })
        .await;
    Ok(())
}

async fn notify(requester: &Requester, message: &jetstream::Message) -> Result<(), String> {
    let headers = message.headers.clone().unwrap_or_default();
    let from = header_value(&headers, dlq_headers::CONSUMER).unwrap_or_default();
    if from.starts_with("notifier-") {
        warn!(consumer = %from, subject = %message.subject, "a notifier consumer dead-lettered a message; no notification about it");
        return Ok(());
    }
    let sequence = message.info().map_err(|e| e.to_string())?.stream_sequence;
    let about = format!("dlq:{sequence}");
    let source = Source {
        stream: DLQ_STREAM.into(),
        sequence,
        event_id: Uuid::new_v5(&Uuid::NAMESPACE_OID, about.as_bytes()),
        event_type: DEAD_LETTER.into(),
    };
    let origin = Origin {
        tenant: TenantId::system(),
        correlation_id: source.event_id,
        traceparent: None,
    };
    for rule in requester.rules.matching(DEAD_LETTER, None) {
        requester
            .request(rule, &about, &source, &origin, None)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
