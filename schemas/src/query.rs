//! Reads over request/reply: `query.<scope>.<kind>.<op>`, answered by the service that
//! owns the read model ([`projection`]: what operators ask of the service that runs a
//! projection).
//!
//! - The **scope** is who asks: a tenant, about its own things, or `system` — operators,
//!   across tenants. [`QUERIES`] says which queries a tenant may ask; the others are
//!   operators' only. A tenant's scope is enforced by the answering service
//!   ([`Query::tenant`], [`Query::sees`]), whatever the body names. berth's NATS users
//!   give tenants no `query.` rights yet (the CLI is the one reader, as an operator);
//!   granting a tenant user `query.<tenant>.<kind>.<op>` for the tenant rows of
//!   [`QUERIES`] is then safe.
//! - A **list** is read page by page: [`ListRequest`] carries a filter, a `limit` and
//!   the cursor `after` the previous [`Page`] ended with. A service cuts pages with
//!   [`page`] from its list in the list's stable order, at most
//!   [`MAX_PAGE_ROWS`](paging::MAX_PAGE_ROWS) rows and about
//!   [`MAX_PAGE_BYTES`](paging::MAX_PAGE_BYTES) of JSON, so no reply nears NATS's 1 MB
//!   payload limit however many rows there are.
//! - A **reply** is the answer's JSON, or a [`Rejection`] ([`encode_reply`],
//!   [`decode_reply`]); answers never carry both a `code` and a `message`.
//! - [`rows`]: the rows each query answers with.
//!
//! Worked example: `berth vm list --tenant acme` asks `query.system.vm.list` with
//! `{"filter":{"tenant":"acme"},"limit":500}`; the provisioner answers a
//! `Page<VmState>` whose `next` the CLI sends back as `after` until it is absent.

pub mod paging;
pub mod projection;
pub mod rows;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::access::Sender;
use crate::command::{parse_body, Rejection};
use crate::ids::{TenantId, SYSTEM_TENANT};

pub use crate::subjects::{query_filter, query_subject};
pub use paging::{page, Cursor, Page};

/// The first token of every query subject.
pub const QUERY: &str = "query";

/// VMs (provisioner).
pub const VM: &str = "vm";
/// Hosts VMs are placed on (provisioner).
pub const SERVER: &str = "server";
/// App pods (pod-lifecycle).
pub const POD: &str = "pod";
/// Pod volumes (pod-lifecycle).
pub const VOLUME: &str = "volume";
/// The service catalog pods are made from (pod-lifecycle).
pub const CATALOG: &str = "catalog";
/// Billing accounts (billing).
pub const ACCOUNT: &str = "account";
/// Pod subscriptions (billing).
pub const SUBSCRIPTION: &str = "subscription";
/// Hourly VM usage records (billing).
pub const USAGE: &str = "usage";
/// Invoices (billing).
pub const INVOICE: &str = "invoice";
/// Cron schedules and one-shot timers (scheduler).
pub const SCHEDULE: &str = "schedule";
/// Mails and webhook posts (notifier).
pub const NOTIFICATION: &str = "notification";

/// Rows page by page: a [`ListRequest`], answered with a [`Page`].
pub const LIST: &str = "list";
/// One thing: a [`GetRequest`] (or [`EmptyRequest`] for the catalog), answered with it
/// or `null`.
pub const GET: &str = "get";
/// What a notification template renders: a [`PreviewRequest`], answered with
/// [`rows::Rendered`].
pub const PREVIEW: &str = "preview";

/// One row of the query table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QueryAccess {
    pub kind: &'static str,
    pub op: &'static str,
    /// [`Sender::Tenant`]: a tenant may ask about its own things; [`Sender::Operator`]:
    /// only in the `system` scope.
    pub asker: Sender,
}

const fn tenant(kind: &'static str, op: &'static str) -> QueryAccess {
    QueryAccess {
        kind,
        op,
        asker: Sender::Tenant,
    }
}

const fn operator(kind: &'static str, op: &'static str) -> QueryAccess {
    QueryAccess {
        kind,
        op,
        asker: Sender::Operator,
    }
}

/// Every query berth answers, and who may ask it.
pub const QUERIES: &[QueryAccess] = &[
    tenant(VM, LIST),
    tenant(VM, GET),
    operator(SERVER, LIST),
    tenant(POD, LIST),
    tenant(POD, GET),
    tenant(VOLUME, LIST),
    tenant(CATALOG, GET),
    tenant(ACCOUNT, LIST),
    tenant(SUBSCRIPTION, LIST),
    tenant(USAGE, LIST),
    tenant(INVOICE, LIST),
    tenant(SCHEDULE, LIST),
    // Notifications are the provider's outbox.
    operator(NOTIFICATION, LIST),
    operator(NOTIFICATION, GET),
    operator(NOTIFICATION, PREVIEW),
];

/// A query subject, parsed and checked against [`QUERIES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub scope: TenantId,
    pub access: &'static QueryAccess,
}

impl Query {
    /// Reads `query.<scope>.<kind>.<op>`: a query berth answers, asked by someone who
    /// may ask it there.
    pub fn parse(subject: &str) -> Result<Self, Rejection> {
        let tokens: Vec<&str> = subject.split('.').collect();
        let [QUERY, scope, kind, op] = tokens[..] else {
            return Err(Rejection::invalid(format!(
                "not a query subject: {:?}",
                subject.chars().take(80).collect::<String>()
            )));
        };
        let scope = TenantId::parse(scope).map_err(|e| Rejection::invalid(e.to_string()))?;
        let access = QUERIES
            .iter()
            .find(|row| row.kind == kind && row.op == op)
            .ok_or_else(|| {
                Rejection::invalid(format!(
                    "berth answers no query {:?}",
                    format!("{kind}.{op}").chars().take(80).collect::<String>()
                ))
            })?;
        if access.asker == Sender::Operator && scope.as_str() != SYSTEM_TENANT {
            return Err(Rejection::forbidden(format!(
                "{kind}.{op} is an operators' query: ask it on query.{SYSTEM_TENANT}.{kind}.{op}"
            )));
        }
        Ok(Self { scope, access })
    }

    /// Whether operators ask (the `system` scope, every tenant's rows).
    pub fn by_operator(&self) -> bool {
        self.scope.as_str() == SYSTEM_TENANT
    }

    /// The tenant whose rows to read when the request asks for `requested` (`None`:
    /// every tenant): as asked for operators; a tenant reads only its own rows, and a
    /// request naming another tenant is refused.
    pub fn tenant(&self, requested: Option<&TenantId>) -> Result<Option<TenantId>, Rejection> {
        match requested {
            _ if self.by_operator() => Ok(requested.cloned()),
            Some(other) if *other != self.scope => Err(Rejection::forbidden(format!(
                "tenant {} may not read tenant {other}'s rows",
                self.scope
            ))),
            _ => Ok(Some(self.scope.clone())),
        }
    }

    /// Whether a row of `tenant` may be shown to the asker.
    pub fn sees(&self, tenant: &str) -> bool {
        self.by_operator() || tenant == self.scope.as_str()
    }
}

/// The refusal of a query the service cannot read now (its database is away, say):
/// worth asking again.
pub fn unavailable(what: &str, error: impl std::fmt::Display) -> Rejection {
    Rejection::new(
        crate::command::RejectionCode::Unavailable,
        format!("cannot read {what} now: {error}"),
    )
}

/// A request with no arguments; an empty body reads as one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyRequest {}

/// One thing by its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetRequest {
    pub id: Uuid,
}

/// A page of a list: the rows after `after`, at most `limit` of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListRequest<F> {
    pub filter: F,
    /// At most this many rows ([`paging::DEFAULT_PAGE_ROWS`] when absent,
    /// [`paging::MAX_PAGE_ROWS`] at most); a page may hold fewer to stay within
    /// [`paging::MAX_PAGE_BYTES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `next` of the previous page; the first page when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Cursor>,
}

/// Only one tenant's rows, or every tenant's (operators).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantId>,
}

/// Which notifications: of one tenant, in one status (`pending`, `retrying`, `sent`,
/// `failed`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// Which schedules: of one tenant, of one kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ScheduleKind>,
}

/// Cron schedules or one-shot timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    Cron,
    At,
}

impl ScheduleKind {
    /// As in a schedule row's `kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cron => "cron",
            Self::At => "at",
        }
    }
}

/// What a notification preview renders: template `template` for `to`, from the rule's
/// built-in sample or from an event in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    pub template: String,
    pub of: PreviewSource,
    pub to: String,
}

/// The event a preview renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PreviewSource {
    /// The rule's built-in sample.
    Sample,
    /// The event at this `EVENTS` sequence.
    Sequence(u64),
    /// The event with this CloudEvent id (looked up in `audit_log`).
    EventId(Uuid),
}

/// Decodes a request body strictly (an empty body as `{}`).
pub fn decode_request<R: DeserializeOwned>(query: &str, body: &[u8]) -> Result<R, Rejection> {
    parse_body(query, if body.is_empty() { b"{}" } else { body })
}

/// The body of a reply: the answer, or the rejection.
pub fn encode_reply<T: Serialize>(reply: Result<T, Rejection>) -> Vec<u8> {
    match reply {
        Ok(answer) => serde_json::to_vec(&answer),
        Err(rejection) => serde_json::to_vec(&rejection),
    }
    .expect("answers and rejections serialize")
}

/// Reads a reply: a rejection, or the answer.
pub fn decode_reply<T: DeserializeOwned>(
    body: &[u8],
) -> Result<Result<T, Rejection>, serde_json::Error> {
    if let Ok(rejection) = serde_json::from_slice::<Rejection>(body) {
        return Ok(Err(rejection));
    }
    serde_json::from_slice(body).map(Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::RejectionCode;
    use crate::ids::validate_subject_token;

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    #[test]
    fn a_tenant_reads_its_own_rows_and_operators_any() {
        let tenant = Query::parse("query.acme.vm.list").unwrap();
        assert_eq!(tenant.tenant(None).unwrap(), Some(acme()));
        assert_eq!(tenant.tenant(Some(&acme())).unwrap(), Some(acme()));
        let other = TenantId::parse("globex").unwrap();
        assert_eq!(
            tenant.tenant(Some(&other)).unwrap_err().code,
            RejectionCode::Forbidden
        );
        assert!(tenant.sees("acme") && !tenant.sees("globex"));

        let operator = Query::parse("query.system.vm.list").unwrap();
        assert_eq!(operator.tenant(None).unwrap(), None);
        assert_eq!(operator.tenant(Some(&other)).unwrap(), Some(other.clone()));
        assert!(operator.sees("globex"));
    }

    #[test]
    fn operators_queries_and_unknown_ones_are_refused() {
        let code = |subject| Query::parse(subject).unwrap_err().code;
        assert_eq!(code("query.acme.server.list"), RejectionCode::Forbidden);
        assert_eq!(
            code("query.acme.notification.get"),
            RejectionCode::Forbidden
        );
        assert_eq!(code("query.acme.vm.drop"), RejectionCode::Invalid);
        assert_eq!(code("query.ACME.vm.list"), RejectionCode::Invalid);
        assert_eq!(code("query.acme.vm"), RejectionCode::Invalid);
        assert_eq!(code("cmd.acme.vm.list"), RejectionCode::Invalid);
        assert!(Query::parse("query.system.server.list").is_ok());
    }

    #[test]
    fn every_row_is_unique_and_made_of_subject_tokens() {
        for (i, row) in QUERIES.iter().enumerate() {
            assert!(
                !QUERIES[..i]
                    .iter()
                    .any(|r| r.kind == row.kind && r.op == row.op),
                "{row:?} twice"
            );
            assert!(validate_subject_token("kind", row.kind).is_ok());
            assert!(validate_subject_token("op", row.op).is_ok());
            assert_eq!(
                query_subject(&acme(), row.kind, row.op),
                format!("query.acme.{}.{}", row.kind, row.op)
            );
        }
    }

    #[test]
    fn replies_are_answers_or_rejections() {
        let page = Page {
            rows: vec![1, 2],
            next: Some(Cursor("2".into())),
        };
        let reply = encode_reply(Ok(&page));
        assert_eq!(decode_reply::<Page<u32>>(&reply).unwrap(), Ok(page));
        let refused = encode_reply::<()>(Err(Rejection::forbidden("no")));
        assert_eq!(
            decode_reply::<Page<u32>>(&refused).unwrap(),
            Err(Rejection::forbidden("no"))
        );
        assert_eq!(decode_reply::<Option<u32>>(b"null").unwrap(), Ok(None));
    }

    #[test]
    fn list_requests_are_strict_and_an_empty_body_is_empty() {
        let asked: ListRequest<TenantFilter> =
            decode_request("vm.list", br#"{"filter":{"tenant":"acme"},"limit":10}"#).unwrap();
        assert_eq!(asked.filter.tenant, Some(acme()));
        assert!(
            decode_request::<ListRequest<TenantFilter>>("vm.list", br#"{"filter":{},"x":1}"#)
                .is_err()
        );
        assert!(decode_request::<EmptyRequest>("catalog.get", b"").is_ok());
        let preview: PreviewRequest = decode_request(
            "notification.preview",
            br#"{"template":"welcome","of":{"sequence":7},"to":"a@b"}"#,
        )
        .unwrap();
        assert_eq!(preview.of, PreviewSource::Sequence(7));
    }
}
