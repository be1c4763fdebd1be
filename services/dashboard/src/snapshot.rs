//! `cmd.<tenant>.dashboard.snapshot`: the last status of every `status.<tenant>.>`
//! subject (`cmd.system.dashboard.snapshot`: of every tenant), from the last-value
//! `STATUS` stream. The answer is a [`DashboardSnapshot`]; it stays under NATS' payload
//! limit and says when it had to stop.

use async_nats::jetstream::{self, consumer};
use berth_runtime::{Error, Runtime};
use berth_schemas::status::{AnyStatus, DashboardSnapshot, SnapshotEntry};
use berth_schemas::subjects::{action_filter, tenant_status_filter, ALL_STATUS, STATUS_STREAM};
use berth_schemas::{Rejection, TenantId};
use futures::StreamExt;

/// Answers stay below this many bytes (the embedded server allows 1 MB).
pub const MAX_ANSWER_BYTES: usize = 900 * 1024;

/// The last status of every subject matching `filter` (a message that is no status is
/// passed over).
pub async fn read(
    js: &jetstream::Context,
    filter: &str,
) -> berth_runtime::Result<DashboardSnapshot> {
    let stream = js
        .get_stream(STATUS_STREAM)
        .await
        .map_err(|e| Error::nats("get the STATUS stream", e))?;
    let mut ordered = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter.to_owned(),
            deliver_policy: consumer::DeliverPolicy::LastPerSubject,
            ..Default::default()
        })
        .await
        .map_err(|e| Error::nats("read status", e))?;
    let mut snapshot = DashboardSnapshot {
        statuses: Vec::new(),
        truncated: false,
    };
    if ordered
        .info()
        .await
        .map_err(|e| Error::nats("read status", e))?
        .num_pending
        == 0
    {
        return Ok(snapshot);
    }
    let mut size = 0;
    let mut messages = ordered
        .messages()
        .await
        .map_err(|e| Error::nats("read status", e))?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| Error::nats("read status", e))?;
        let remaining = message.info().map(|i| i.pending).unwrap_or(0);
        size += message.subject.len() + message.payload.len() + 32;
        if size > MAX_ANSWER_BYTES {
            snapshot.truncated = true;
            break;
        }
        if let Ok(body) = serde_json::from_slice::<AnyStatus>(&message.payload) {
            snapshot.statuses.push(SnapshotEntry {
                subject: message.subject.to_string(),
                body,
            });
        }
        if remaining == 0 {
            break;
        }
    }
    Ok(snapshot)
}

/// The status filter a snapshot request on `subject` may read.
pub fn filter_for(subject: &str) -> Option<String> {
    let tenant = TenantId::parse(subject.split('.').nth(1)?).ok()?;
    Some(if tenant == TenantId::system() {
        ALL_STATUS.to_owned()
    } else {
        tenant_status_filter(&tenant)
    })
}

/// Answers snapshot requests until shutdown.
pub async fn serve(rt: &Runtime) -> berth_runtime::Result<()> {
    let decode = |subject: &str, _: &[u8]| {
        filter_for(subject)
            .ok_or_else(|| Rejection::invalid("the tenant in the subject is not valid"))
    };
    let subject = action_filter("dashboard", "snapshot");
    berth_runtime::requests::serve(rt, &subject, decode, |filter| {
        let js = rt.js.clone();
        async move { read(&js, &filter).await }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_reads_its_own_statuses_and_system_reads_all() {
        assert_eq!(
            filter_for("cmd.demo.dashboard.snapshot").as_deref(),
            Some("status.demo.>")
        );
        assert_eq!(
            filter_for("cmd.system.dashboard.snapshot").as_deref(),
            Some("status.>")
        );
        assert_eq!(filter_for("cmd.*.dashboard.snapshot"), None);
    }
}
