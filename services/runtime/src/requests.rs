//! Plain request/reply endpoints for operators' runs (reconcile, pods debug, billing
//! runs) and reads (the dashboard's snapshot): one replica of the service's queue group
//! answers each request with a JSON body — a report, or a [`Rejection`].
//!
//! [`serve`] owns the whole exchange: it decodes the request (a refusal is answered as
//! it is), runs it, and answers the report; a run that fails is answered `unavailable`
//! with its error, all of its causes included.

#![allow(
    clippy::disallowed_methods,
    reason = "raw NATS belongs to berth-runtime: request endpoints answer on the reply subject here"
)]

use std::fmt::Display;
use std::future::Future;

use berth_schemas::{Rejection, RejectionCode};
use futures::StreamExt;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::Runtime;

/// Answers requests on `subject` until shutdown: `decode` makes the typed request of a
/// request's subject and body, `run` answers it.
pub async fn serve<Req, Resp, E, D, R, Fut>(
    rt: &Runtime,
    subject: &str,
    decode: D,
    run: R,
) -> Result<()>
where
    D: Fn(&str, &[u8]) -> Result<Req, Rejection>,
    R: Fn(Req) -> Fut,
    Fut: Future<Output = Result<Resp, E>>,
    Resp: Serialize,
    E: Display,
{
    let queue_group = format!("berth-{}", rt.service);
    let mut requests = rt
        .nats
        .queue_subscribe(subject.to_owned(), queue_group)
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
        let answer = match decode(request.subject.as_str(), &request.payload) {
            Ok(asked) => run(asked).await.map_err(failed),
            Err(rejection) => Err(rejection),
        };
        if let Err(e) = rt.nats.publish(reply, body(&answer).into()).await {
            tracing::warn!(error = %e, %subject, "could not answer a request");
        }
    }
}

/// The refusal of a run that failed: `unavailable`, with every cause of the error.
fn failed(error: impl Display) -> Rejection {
    Rejection::new(RejectionCode::Unavailable, format!("{error:#}"))
}

/// The JSON body of an answer: the report, or the rejection.
fn body<Resp: Serialize>(answer: &Result<Resp, Rejection>) -> Vec<u8> {
    match answer {
        Ok(report) => serde_json::to_vec(report),
        Err(rejection) => serde_json::to_vec(rejection),
    }
    .expect("reports and rejections serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_run_is_unavailable_with_its_causes() {
        #[derive(Debug)]
        struct Outer;
        impl Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                if f.alternate() {
                    write!(f, "run failed: the store is gone")
                } else {
                    write!(f, "run failed")
                }
            }
        }
        let answer: Result<(), Rejection> = Err(failed(Outer));
        let json: serde_json::Value = serde_json::from_slice(&body(&answer)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"code": "unavailable", "message": "run failed: the store is gone"})
        );
        let report: Result<_, Rejection> = Ok(serde_json::json!({"checked": 3}));
        assert_eq!(body(&report), br#"{"checked":3}"#);
    }
}
