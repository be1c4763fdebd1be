//! What the CLI reads, it asks the owning service as an operator (`query.system.…`,
//! [`berth_schemas::query`]); a refusal is an error.

use berth_runtime::client::{query, query_list};
use berth_runtime::{connect_nats, ConnectArgs};
use berth_schemas::{Rejection, TenantId};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Every row list query `kind.list` has for `filter`, page after page.
pub async fn list<F: Serialize, Row: DeserializeOwned>(
    connect: &ConnectArgs,
    kind: &str,
    filter: F,
) -> anyhow::Result<Vec<Row>> {
    list_at_most(connect, kind, filter, None).await
}

/// The first `max` rows of list query `kind.list` for `filter` (all with `None`).
pub async fn list_at_most<F: Serialize, Row: DeserializeOwned>(
    connect: &ConnectArgs,
    kind: &str,
    filter: F,
    max: Option<usize>,
) -> anyhow::Result<Vec<Row>> {
    let nats = connect_nats("cli", connect).await?;
    answered(query_list(&nats, &TenantId::system(), kind, filter, max).await?)
}

/// The answer to query `kind.op`.
pub async fn ask<Req: Serialize, Resp: DeserializeOwned>(
    connect: &ConnectArgs,
    kind: &str,
    op: &str,
    request: &Req,
) -> anyhow::Result<Resp> {
    let nats = connect_nats("cli", connect).await?;
    answered(query(&nats, &TenantId::system(), kind, op, request).await?)
}

/// The answer, or the refusal as the CLI reports every refusal.
pub fn answered<T>(reply: Result<T, Rejection>) -> anyhow::Result<T> {
    reply.map_err(|rejection| {
        anyhow::anyhow!("rejected ({}): {}", rejection.code, rejection.message)
    })
}

/// The answer, or the refusal's message alone: for a service that refuses with the error
/// it met (`event 7 is not parked in vms`, `no template "x"`).
pub fn answered_plainly<T>(reply: Result<T, Rejection>) -> anyhow::Result<T> {
    reply.map_err(|rejection| anyhow::anyhow!(rejection.message))
}
