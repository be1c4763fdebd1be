//! The `notifications` projection: one row per notification with its status, attempts
//! and last error, and `status.<tenant>.notification.<id>` after each commit.

use async_trait::async_trait;
use berth_runtime::projection::{ApplyError, Projection, StatusUpdate};
use berth_runtime::store::StoredEvent;
use berth_schemas::notification::NotificationEvent;
use berth_schemas::status::Status;
use berth_schemas::subjects::event_filter;
use berth_schemas::TenantId;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

/// A row of `notifications.notifications` is the notification's published state.
pub use berth_schemas::status::NotificationState;

const COLUMNS: &str = "id, tenant, rule, channel, recipient, source_event_id, source_event_type, status, attempts, last_error, requested_at, sent_at, updated_at, version";

fn read_row(row: &sqlx::postgres::PgRow) -> sqlx::Result<NotificationState> {
    Ok(NotificationState {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant")?,
        rule: row.try_get("rule")?,
        channel: row.try_get("channel")?,
        recipient: row.try_get("recipient")?,
        source_event_id: row.try_get("source_event_id")?,
        source_event_type: row.try_get("source_event_type")?,
        status: row.try_get("status")?,
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        requested_at: row.try_get("requested_at")?,
        sent_at: row.try_get("sent_at")?,
        updated_at: row.try_get("updated_at")?,
        version: row.try_get("version")?,
    })
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub tenant: Option<TenantId>,
    pub status: Option<String>,
    pub limit: i64,
}

/// Notifications, newest first.
pub async fn list(db: &sqlx::PgPool, filter: &Filter) -> sqlx::Result<Vec<NotificationState>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM notifications.notifications
         WHERE ($1::text IS NULL OR tenant = $1) AND ($2::text IS NULL OR status = $2)
         ORDER BY requested_at DESC, id LIMIT $3"
    ))
    .bind(filter.tenant.as_ref().map(TenantId::as_str))
    .bind(filter.status.as_deref())
    .bind(filter.limit)
    .fetch_all(db)
    .await?;
    rows.iter().map(read_row).collect()
}

pub async fn get(db: &sqlx::PgPool, id: Uuid) -> sqlx::Result<Option<NotificationState>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM notifications.notifications WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await?;
    row.as_ref().map(read_row).transpose()
}

/// The `notifications` projection.
pub struct NotificationsProjection;

#[async_trait]
impl Projection for NotificationsProjection {
    fn name(&self) -> &'static str {
        "notifications"
    }

    fn filter_subjects(&self) -> Vec<String> {
        vec![event_filter(berth_schemas::notification::AGGREGATE)]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["notifications"]
    }

    async fn create_tables(&self, conn: &mut PgConnection, schema: &str) -> sqlx::Result<()> {
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {schema}.notifications (
                id uuid PRIMARY KEY,
                tenant text NOT NULL,
                rule text NOT NULL,
                channel text NOT NULL,
                recipient text NOT NULL,
                source_event_id uuid NOT NULL,
                source_event_type text NOT NULL,
                status text NOT NULL,
                attempts integer NOT NULL,
                last_error text,
                requested_at timestamptz NOT NULL,
                sent_at timestamptz,
                updated_at timestamptz NOT NULL,
                version bigint NOT NULL
            )"
        ))
        .execute(&mut *conn)
        .await?;
        sqlx::query(&format!(
            "CREATE INDEX IF NOT EXISTS notifications_by_status ON {schema}.notifications (status, requested_at)"
        ))
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn current_status(
        &self,
        conn: &mut PgConnection,
        schema: &str,
    ) -> sqlx::Result<Vec<StatusUpdate>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM {schema}.notifications"))
            .fetch_all(conn)
            .await?;
        rows.iter()
            .map(|row| read_row(row).map(|row| status_update(&row)))
            .collect::<sqlx::Result<Vec<_>>>()
            .map(|updates| updates.into_iter().flatten().collect())
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        schema: &str,
        events: &[StoredEvent],
    ) -> Result<Vec<StatusUpdate>, ApplyError> {
        let mut changed = std::collections::BTreeMap::new();
        for event in events {
            let decoded: NotificationEvent = event.decode().map_err(|e| ApplyError::Event {
                sequence: event.sequence,
                reason: e.to_string(),
            })?;
            let id = event.meta.subject;
            let at = event.meta.time;
            let version = event.sequence as i64;
            let sql: String;
            let query = match &decoded {
                NotificationEvent::Requested(requested) => {
                    sql = format!(
                        "INSERT INTO {schema}.notifications
                        (id, tenant, rule, channel, recipient, source_event_id, source_event_type,
                         status, attempts, requested_at, updated_at, version)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8, $9)
                     ON CONFLICT (id) DO NOTHING RETURNING {COLUMNS}"
                    );
                    sqlx::query(&sql)
                        .bind(id)
                        .bind(event.meta.tenant.as_str())
                        .bind(&requested.rule)
                        .bind(requested.channel.as_str())
                        .bind(&requested.recipient)
                        .bind(requested.source.event_id)
                        .bind(&requested.source.event_type)
                        .bind(at)
                        .bind(version)
                }
                NotificationEvent::AttemptFailed(failed) => {
                    sql = format!(
                        "UPDATE {schema}.notifications SET status = 'retrying', attempts = $2,
                        last_error = $3, updated_at = $4, version = $5
                     WHERE id = $1 RETURNING {COLUMNS}"
                    );
                    sqlx::query(&sql)
                        .bind(id)
                        .bind(failed.attempt as i32)
                        .bind(&failed.error)
                        .bind(at)
                        .bind(version)
                }
                NotificationEvent::Sent(sent) => {
                    sql = format!(
                        "UPDATE {schema}.notifications SET status = 'sent', attempts = $2,
                        sent_at = $3, updated_at = $3, version = $4
                     WHERE id = $1 RETURNING {COLUMNS}"
                    );
                    sqlx::query(&sql)
                        .bind(id)
                        .bind(sent.attempt as i32)
                        .bind(at)
                        .bind(version)
                }
                NotificationEvent::Failed(failed) => {
                    sql = format!(
                        "UPDATE {schema}.notifications SET status = 'failed', attempts = $2,
                        last_error = $3, updated_at = $4, version = $5
                     WHERE id = $1 RETURNING {COLUMNS}"
                    );
                    sqlx::query(&sql)
                        .bind(id)
                        .bind(failed.attempts as i32)
                        .bind(&failed.error)
                        .bind(at)
                        .bind(version)
                }
                NotificationEvent::RetryRequested(_) => {
                    sql = format!(
                    "UPDATE {schema}.notifications SET status = 'pending', updated_at = $2, version = $3
                     WHERE id = $1 RETURNING {COLUMNS}"
                    );
                    sqlx::query(&sql).bind(id).bind(at).bind(version)
                }
            };
            if let Some(row) = query.fetch_optional(&mut *conn).await? {
                changed.insert(id, read_row(&row)?);
            }
        }
        Ok(changed.values().filter_map(status_update).collect())
    }
}

fn status_update(row: &NotificationState) -> Option<StatusUpdate> {
    let tenant = TenantId::parse(&row.tenant).ok()?;
    let status = Status::new(row.id, tenant, row.version as u64, row.clone());
    StatusUpdate::of(&status).ok()
}
