//! The notifier's queries ([`berth_schemas::query`], operators'): `notification.list`
//! and `notification.get` from the `notifications` projection, and
//! `notification.preview`: what a rule's template renders for an event in the log (or
//! for the rule's sample), without sending anything.

use berth_runtime::{queries, Runtime};
use berth_schemas::notification::Source;
use berth_schemas::query::{
    page, unavailable, GetRequest, ListRequest, NotificationFilter, Page, PreviewRequest,
    PreviewSource, GET, LIST, NOTIFICATION, PREVIEW,
};
use berth_schemas::subjects::EVENTS_STREAM;
use berth_schemas::{Rejection, RejectionCode};
use sqlx::PgPool;
use uuid::Uuid;

use crate::context::{ContextError, Contexts};
use crate::projection::{self, Filter, NotificationState};
use crate::templates::{Rendered, Templates};

/// Answers the notifier's queries until shutdown.
pub async fn serve(
    rt: &Runtime,
    templates: &Templates,
    contexts: &Contexts,
) -> berth_runtime::Result<()> {
    let db = &rt.db;
    tokio::try_join!(
        queries::serve(rt, NOTIFICATION, LIST, |_, request| notifications(
            db, request
        )),
        queries::serve(rt, NOTIFICATION, GET, |_, request| notification(
            db, request
        )),
        queries::serve(rt, NOTIFICATION, PREVIEW, |_, request| {
            preview(db, templates, contexts, request)
        }),
    )?;
    Ok(())
}

async fn notifications(
    db: &PgPool,
    request: ListRequest<NotificationFilter>,
) -> Result<Page<NotificationState>, Rejection> {
    let filter = Filter {
        tenant: request.filter.tenant.clone(),
        status: request.filter.status.clone(),
        // Newest first: the first page needs no more than itself and one row beyond.
        limit: match request.after {
            None => request.page_rows() as i64 + 1,
            Some(_) => i64::MAX,
        },
    };
    let rows = projection::list(db, &filter)
        .await
        .map_err(|e| unavailable("notifications", e))?;
    page(rows, &request, |row| row.id.to_string())
}

async fn notification(
    db: &PgPool,
    request: GetRequest,
) -> Result<Option<NotificationState>, Rejection> {
    projection::get(db, request.id)
        .await
        .map_err(|e| unavailable("notifications", e))
}

async fn preview(
    db: &PgPool,
    templates: &Templates,
    contexts: &Contexts,
    request: PreviewRequest,
) -> Result<Rendered, Rejection> {
    let not_found = |message| Rejection::new(RejectionCode::NotFound, message);
    if !templates.has(&request.template) {
        return Err(not_found(format!(
            "no template {:?}; the rules' names are the templates",
            request.template
        )));
    }
    let sequence = match request.of {
        PreviewSource::Sample => None,
        PreviewSource::Sequence(sequence) => Some(sequence),
        PreviewSource::EventId(id) => Some(sequence_of(db, id).await?),
    };
    let context = match sequence {
        None => crate::samples::context(&request.template, &request.to)
            .ok_or_else(|| not_found(format!("no sample for {}", request.template)))?,
        Some(sequence) => {
            let source = Source {
                stream: EVENTS_STREAM.into(),
                sequence,
                event_id: Uuid::nil(),
                event_type: String::new(),
            };
            let message = contexts.fetch(&source).await.map_err(unreadable)?;
            contexts
                .build(&request.template, &request.to, &message)
                .await
                .map_err(unreadable)?
        }
    };
    templates
        .render(&request.template, &context)
        .map_err(|e| Rejection::invalid_state(e.to_string()))
}

/// The `EVENTS` sequence of the event with CloudEvent id `id`, from `audit_log`.
async fn sequence_of(db: &PgPool, id: Uuid) -> Result<u64, Rejection> {
    let sequence: Option<i64> =
        sqlx::query_scalar("SELECT stream_seq FROM audit_log.events WHERE event_id = $1")
            .bind(id)
            .fetch_optional(db)
            .await
            .map_err(|e| unavailable("audit_log", e))?;
    let sequence = sequence.ok_or_else(|| {
        Rejection::new(
            RejectionCode::NotFound,
            format!("no event {id} in audit_log"),
        )
    })?;
    Ok(sequence as u64)
}

fn unreadable(error: ContextError) -> Rejection {
    let code = match error {
        ContextError::Gone { .. } => RejectionCode::NotFound,
        ContextError::Unavailable(_) => RejectionCode::Unavailable,
    };
    Rejection::new(code, error.to_string())
}

#[cfg(test)]
mod tests {
    use berth_runtime::projection::Projection;
    use berth_schemas::query::projection::PROJECTIONS;
    use berth_schemas::query::rows;

    use super::*;

    /// What the CLI prints is the contract's row: it must read back unchanged.
    #[test]
    fn renderings_read_back_as_the_contract_ones() {
        let templates = Templates::builtin().unwrap();
        let context = crate::samples::context("welcome", "ada@acme.test").unwrap();
        let rendered = templates.render("welcome", &context).unwrap();
        let json = serde_json::to_string(&rendered).unwrap();
        let read: rows::Rendered = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), json);
    }

    #[test]
    fn its_projection_is_in_the_contract() {
        assert!(PROJECTIONS.contains(&projection::NotificationsProjection.name()));
    }
}
