//! Plain request/reply endpoints for operators' runs (reconcile, pods debug, billing
//! runs) and reads (the dashboard's snapshot): one replica of the service's queue group
//! answers each request with a JSON body — a report, or a [`Rejection`].
//!
//! [`serve`] owns the whole exchange: it decodes the request (a refusal is answered as
//! it is), runs it, and answers the report; a run that fails is answered `unavailable`
//! with its error, all of its causes included, and the error's code (`error_code`).

#![allow(
    clippy::disallowed_methods,
    reason = "raw NATS belongs to berth-runtime: request endpoints answer on the reply subject here"
)]

use std::future::Future;

use berth_schemas::{Rejection, RejectionCode};
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;

use crate::error::{Coded, Error, Result};
use crate::Runtime;

/// Answers requests on `subject` until shutdown: `decode` makes the typed request of a
/// request's subject and body, `run` answers it; a run that fails is `unavailable`.
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
    E: Coded,
{
    let queue_group = format!("berth-{}", rt.service);
    let (decode, run) = (&decode, &run);
    answer_on(rt, subject, &queue_group, |subject, body| async move {
        let asked = decode(&subject, &body)?;
        run(asked).await.map_err(failed)
    })
    .await
}

/// Answers requests on `subject` in `queue_group` until shutdown with what `answer`
/// makes of a request's subject and body: the report, or the refusal as it is.
pub async fn answer_on<Resp, A, Fut>(
    rt: &Runtime,
    subject: &str,
    queue_group: &str,
    answer: A,
) -> Result<()>
where
    A: Fn(String, Bytes) -> Fut,
    Fut: Future<Output = Result<Resp, Rejection>>,
    Resp: Serialize,
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
        let answer = answer(request.subject.to_string(), request.payload.clone()).await;
        if let Err(e) = rt.nats.publish(reply, body(&answer).into()).await {
            tracing::warn!(error = %e, error.code = "nats", %subject, "could not answer a request");
        }
    }
}

/// The refusal of a run that failed: `unavailable`, with every cause of the error and
/// its code.
fn failed(error: impl Coded) -> Rejection {
    tracing::warn!(error = %error, error.code = error.code(), "a run failed");
    Rejection::new(RejectionCode::Unavailable, format!("{error:#}")).with_error_code(error.code())
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

    use std::fmt::Display;

    #[test]
    fn a_failed_run_is_unavailable_with_its_causes() {
        #[derive(Debug)]
        struct Outer;
        impl std::error::Error for Outer {}
        impl Coded for Outer {
            fn code(&self) -> &'static str {
                "run_failed"
            }
        }
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
            serde_json::json!({
                "code": "unavailable",
                "message": "run failed: the store is gone",
                "error_code": "run_failed"
            })
        );
        let report: Result<_, Rejection> = Ok(serde_json::json!({"checked": 3}));
        assert_eq!(body(&report), br#"{"checked":3}"#);
    }
}
