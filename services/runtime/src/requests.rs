//! Plain request/reply endpoints for operators' runs (reconcile, pods debug, billing
//! runs): one replica of the queue group answers each request with a JSON body — a
//! report, or a `Rejection`.

#![allow(
    clippy::disallowed_methods,
    reason = "raw NATS belongs to berth-runtime: request endpoints answer on the reply subject here"
)]

use std::future::Future;

use futures::StreamExt;

use crate::error::{Error, Result};
use crate::Runtime;

/// Answers requests on `subject` in `queue_group` until shutdown; `answer` gets the
/// request's subject and body and returns the reply body.
pub async fn serve<F, Fut>(rt: &Runtime, subject: &str, queue_group: &str, answer: F) -> Result<()>
where
    F: Fn(String, bytes::Bytes) -> Fut,
    Fut: Future<Output = Vec<u8>>,
{
    let mut requests = rt
        .nats
        .queue_subscribe(subject.to_owned(), queue_group.to_owned())
        .await
        .map_err(|e| Error::nats(format!("subscribe to {subject}"), e))?;
    loop {
        let request = tokio::select! {
            _ = rt.shutdown.cancelled() => return Ok(()),
            request = requests.next() => match request {
                Some(request) => request,
                None => return Ok(()),
            },
        };
        let Some(reply) = request.reply.clone() else {
            continue;
        };
        let body = answer(request.subject.to_string(), request.payload.clone()).await;
        if let Err(e) = rt.nats.publish(reply, body.into()).await {
            tracing::warn!(error = %e, %subject, "could not answer a request");
        }
    }
}
