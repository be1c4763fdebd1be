//! The `audit_log` projection: every event — who, what, when — in one table.
//!
//! It reads any event type, so it records the events a domain projection has to park;
//! it parks only what Postgres refuses to store (a body that is not JSON, a `\u0000`
//! that `jsonb` rejects). `berth trace` and the event browser read it.

use async_trait::async_trait;
use sqlx::PgConnection;

use crate::projection::{ApplyError, Projection, StatusUpdate};
use crate::store::StoredEvent;

/// The `audit_log` projection.
pub struct AuditLog;

#[async_trait]
impl Projection for AuditLog {
    fn name(&self) -> &'static str {
        "audit_log"
    }

    fn filter_subjects(&self) -> Vec<String> {
        vec![berth_schemas::subjects::ALL_EVENTS.into()]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["events"]
    }

    async fn create_tables(&self, conn: &mut PgConnection, schema: &str) -> sqlx::Result<()> {
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {schema}.events (
                stream_seq bigint PRIMARY KEY,
                event_id uuid NOT NULL,
                event_type text NOT NULL,
                time timestamptz NOT NULL,
                tenant text NOT NULL,
                subject text NOT NULL,
                aggregate_id uuid NOT NULL,
                actor text NOT NULL,
                correlation_id uuid NOT NULL,
                causation_id uuid NOT NULL,
                data jsonb NOT NULL
            )"
        ))
        .execute(&mut *conn)
        .await?;
        for (index, column) in [
            ("by_aggregate", "aggregate_id, stream_seq"),
            ("by_correlation", "correlation_id, stream_seq"),
        ] {
            sqlx::query(&format!(
                "CREATE INDEX IF NOT EXISTS events_{index} ON {schema}.events ({column})"
            ))
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        schema: &str,
        events: &[StoredEvent],
    ) -> Result<Vec<StatusUpdate>, ApplyError> {
        let mut data = Vec::with_capacity(events.len());
        for event in events {
            let json: serde_json::Value =
                serde_json::from_slice(&event.data).map_err(|e| ApplyError::Event {
                    sequence: event.sequence,
                    reason: format!("the body is not JSON: {e}"),
                })?;
            data.push(json);
        }
        let text = |f: fn(&StoredEvent) -> String| events.iter().map(f).collect::<Vec<_>>();
        sqlx::query(&format!(
            "INSERT INTO {schema}.events
             SELECT * FROM UNNEST($1::bigint[], $2::uuid[], $3::text[], $4::timestamptz[], $5::text[], $6::text[],
                                  $7::uuid[], $8::text[], $9::uuid[], $10::uuid[], $11::jsonb[])
             ON CONFLICT (stream_seq) DO NOTHING"
        ))
        .bind(events.iter().map(|e| e.sequence as i64).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.meta.id).collect::<Vec<_>>())
        .bind(text(|e| e.meta.event_type.clone()))
        .bind(events.iter().map(|e| e.meta.time).collect::<Vec<_>>())
        .bind(text(|e| e.meta.tenant.to_string()))
        .bind(text(|e| e.subject.clone()))
        .bind(events.iter().map(|e| e.meta.subject).collect::<Vec<_>>())
        .bind(text(|e| e.meta.actor.to_string()))
        .bind(events.iter().map(|e| e.meta.correlation_id).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.meta.causation_id).collect::<Vec<_>>())
        .bind(data)
        .execute(conn)
        .await?;
        Ok(Vec::new())
    }
}
