//! `projection.<name>.<op>` ([`berth_schemas::query::projection`]): what operators ask
//! of the service that runs a projection — `rebuild` it ([`projection::rebuild`]), its
//! `status` ([`parked::status`]) and `retry` a parked event ([`parked::retry`]).
//!
//! [`projection::run`] serves them beside the live runner, one replica per request, each
//! on its own subscription so that a long rebuild never holds up a status.

#![allow(
    clippy::disallowed_methods,
    reason = "raw NATS belongs to berth-runtime: a rebuild publishes its progress to the asker's inbox here"
)]

use std::time::Duration;

use berth_schemas::query::projection::{
    projection_subject, RebuildProgress, RebuildRequest, RetryParked, REBUILD, RETRY, STATUS,
};
use berth_schemas::query::{decode_request, EmptyRequest};
use berth_schemas::{Rejection, RejectionCode};

use crate::error::{Error, Result};
use crate::projection::{self, Progress, Projection};
use crate::{parked, requests, Runtime};

/// How often a rebuild publishes its progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Answers operators' requests about `projection` until shutdown.
pub(crate) async fn serve(rt: &Runtime, projection: &dyn Projection) -> Result<()> {
    let name = projection.name();
    let subject = |op| projection_subject(name, op).map_err(|e| Error::Config(e.to_string()));
    let group = format!("berth-projection-{name}");
    let (rebuilds, statuses, retries) = (subject(REBUILD)?, subject(STATUS)?, subject(RETRY)?);
    tokio::try_join!(
        requests::answer_on(rt, &rebuilds, &group, |_, body| async move {
            rebuild(rt, projection, &body).await
        }),
        requests::answer_on(rt, &statuses, &group, |_, body| async move {
            status(rt, projection, &body).await
        }),
        requests::answer_on(rt, &retries, &group, |_, body| async move {
            retry(rt, projection, &body).await
        }),
    )?;
    Ok(())
}

async fn rebuild(
    rt: &Runtime,
    projection: &dyn Projection,
    body: &[u8],
) -> Result<projection::RebuildReport, Rejection> {
    let request: RebuildRequest = decode_request(REBUILD, body)?;
    let inbox = request.progress.map(progress_inbox).transpose()?;
    let mut published = Duration::ZERO;
    let report = projection::rebuild(rt, projection, request.dry_run, |progress| {
        let Some(inbox) = &inbox else { return };
        if progress.elapsed >= published + PROGRESS_EVERY || progress.applied >= progress.total {
            published = progress.elapsed;
            publish_progress(rt, inbox.clone(), progress);
        }
    })
    .await
    .map_err(refusal)?;
    tracing::info!(
        projection = report.projection,
        events = report.events,
        swapped = report.swapped,
        matches_live = report.matches_live(),
        "projection rebuilt"
    );
    Ok(report)
}

/// Publishes how far a rebuild is, without holding it up.
fn publish_progress(rt: &Runtime, inbox: String, progress: Progress) {
    let body = serde_json::to_vec(&RebuildProgress {
        applied: progress.applied,
        total: progress.total,
        elapsed_ms: u64::try_from(progress.elapsed.as_millis()).unwrap_or(u64::MAX),
    })
    .expect("progress serializes");
    let nats = rt.nats.clone();
    rt.tasks.spawn(async move {
        if let Err(e) = nats.publish(inbox, body.into()).await {
            tracing::debug!(error = %e, "could not publish rebuild progress");
        }
    });
}

/// The inbox a rebuild's progress may go to: a request inbox, never another subject.
fn progress_inbox(subject: String) -> Result<String, Rejection> {
    let plain = subject.len() <= 256
        && !subject.contains(|c: char| matches!(c, '*' | '>') || c.is_whitespace());
    if subject.starts_with("_INBOX") && plain {
        Ok(subject)
    } else {
        Err(Rejection::invalid(
            "progress goes to a request inbox (_INBOX…) only",
        ))
    }
}

async fn status(
    rt: &Runtime,
    projection: &dyn Projection,
    body: &[u8],
) -> Result<parked::ProjectionStatus, Rejection> {
    let EmptyRequest {} = decode_request(STATUS, body)?;
    parked::status(rt, projection).await.map_err(refusal)
}

async fn retry(
    rt: &Runtime,
    projection: &dyn Projection,
    body: &[u8],
) -> Result<parked::Retried, Rejection> {
    let RetryParked { sequence } = decode_request(RETRY, body)?;
    parked::retry(rt, projection, sequence)
        .await
        .map_err(refusal)
}

/// An error as the operator sees it: connections failing are worth another try; the
/// rest (an event that is not parked) is about the request.
fn refusal(error: Error) -> Rejection {
    let code = match error {
        Error::Nats { .. } | Error::Db { .. } => RejectionCode::Unavailable,
        _ => RejectionCode::InvalidState,
    };
    Rejection::new(code, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_goes_to_inboxes_only() {
        assert!(progress_inbox("_INBOX.abc.def".into()).is_ok());
        assert!(progress_inbox("_INBOX_operator.abc".into()).is_ok());
        assert!(progress_inbox("cmd.system.server.drain".into()).is_err());
        assert!(progress_inbox("_INBOX.>".into()).is_err());
        assert!(progress_inbox("_INBOX.a b".into()).is_err());
    }
}
