//! Query endpoints ([`berth_schemas::query`]): a service answers `query.<scope>.<kind>.<op>`
//! from its own read model with [`serve`] and a handler that gets the checked
//! [`Query`] (who asks) and the decoded request.
//!
//! Worked example: the provisioner's `query::serve` answers `vm.list` with
//! `queries::serve(rt, VM, LIST, |query, request| vms(db, query, request))`.

use std::future::Future;

use berth_schemas::query::{decode_request, query_filter, Query};
use berth_schemas::Rejection;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Result;
use crate::{requests, Runtime};

/// Answers query `kind.op` in every scope until shutdown, one replica of the service per
/// request.
pub async fn serve<Req, Resp, Fut>(
    rt: &Runtime,
    kind: &str,
    op: &str,
    handler: impl Fn(Query, Req) -> Fut,
) -> Result<()>
where
    Req: DeserializeOwned,
    Resp: Serialize,
    Fut: Future<Output = Result<Resp, Rejection>>,
{
    let queue_group = format!("berth-{}", rt.service);
    let handler = &handler;
    requests::answer_on(
        rt,
        &query_filter(kind, op),
        &queue_group,
        |subject, body| async move { answer(&subject, &body, handler).await },
    )
    .await
}

/// Checks who asks on `subject`, decodes `body` and runs `handler`.
async fn answer<Req, Resp, Fut>(
    subject: &str,
    body: &[u8],
    handler: impl FnOnce(Query, Req) -> Fut,
) -> Result<Resp, Rejection>
where
    Req: DeserializeOwned,
    Fut: Future<Output = Result<Resp, Rejection>>,
{
    let query = Query::parse(subject)?;
    let request = decode_request(subject, body)?;
    handler(query, request).await
}
