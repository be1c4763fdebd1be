//! The read channels: `query.<scope>.<kind>.<op>` (lists and look-ups from the owning
//! service's read model) and `projection.<name>.<op>` (operators' requests about a
//! projection).

use super::channels::{keyed, send};
use super::{Channel, Message, Parameter};
use crate::query::projection::PROJECTIONS;
use crate::query::QUERIES;

/// Both read channels.
pub(super) fn channels() -> Vec<Channel> {
    let kinds: std::collections::BTreeSet<String> =
        QUERIES.iter().map(|q| q.kind.to_owned()).collect();
    let ops: std::collections::BTreeSet<String> = QUERIES.iter().map(|q| q.op.to_owned()).collect();
    vec![
        Channel {
            id: "query",
            address: "query.{scope}.{kind}.{op}",
            description: "Reads from the service that owns the read model, core NATS \
                request/reply in the owner's queue group. `scope` is a tenant asking about its \
                own things or `system` for operators (across tenants, or one with \
                `filter.tenant`); which queries a tenant may ask is \
                `berth_schemas::query::QUERIES`, the rest are `forbidden`. A list answers a \
                page (`rows`, and `next`, the cursor to send as `after` for the following page; \
                at most 5000 rows and 512 KiB a page, in a stable order). Rows are the kind's \
                status state (`status.<kind>.json`) or, for volumes, usage, subscriptions and \
                invoices, the query rows. A refusal is a `Rejection`.",
            subjects: &["subjects::query_subject", "subjects::query_filter"],
            parameters: vec![
                (
                    "scope",
                    Parameter::Described("a tenant id, or `system` for operators"),
                ),
                ("kind", Parameter::OneOf(kinds.into_iter().collect())),
                ("op", Parameter::OneOf(ops.into_iter().collect())),
            ],
            messages: keyed(&[
                ("list", "ListRequest"),
                ("listSchedules", "ListSchedules"),
                ("listNotifications", "ListNotifications"),
                ("get", "GetRequest"),
                ("preview", "PreviewRequest"),
            ]),
            operation: send(
                "askQuery",
                "The berth CLI, dashboards and other systems read lists and single things.",
                Some("QueryPage"),
            ),
        },
        Channel {
            id: "projectionRequest",
            address: "projection.{name}.{op}",
            description: "Operators' requests to the service that runs a projection: \
                `rebuild` (into a shadow schema, compared with the live one and swapped in \
                unless `dry_run`; progress to the optional `progress` inbox), `status` (its \
                position and parked events) and `retry` (apply a parked event again). Answered \
                with the runtime's report, or a `Rejection`.",
            subjects: &["subjects::projection_subject"],
            parameters: vec![
                (
                    "name",
                    Parameter::OneOf(PROJECTIONS.iter().map(|p| (*p).to_owned()).collect()),
                ),
                (
                    "op",
                    Parameter::OneOf(vec!["rebuild".into(), "status".into(), "retry".into()]),
                ),
            ],
            messages: keyed(&[
                ("rebuild", "RebuildRequest"),
                ("status", "EmptyRequest"),
                ("retry", "RetryParked"),
            ]),
            operation: send(
                "askProjection",
                "`berth replay`, `berth status` and `berth projections retry`.",
                None,
            ),
        },
    ]
}

/// `(name, file, description)` of every read request and reply.
const QUERY_MESSAGES: &[(&str, &str, Option<&str>)] = &[
    (
        "ListRequest",
        "query.list.json",
        Some("A page of a list: `filter` (here the tenant, for operators), `limit`, `after`."),
    ),
    ("ListSchedules", "query.schedule.list.json", None),
    ("ListNotifications", "query.notification.list.json", None),
    ("GetRequest", "query.get.json", None),
    ("PreviewRequest", "query.notification.preview.json", None),
    (
        "QueryPage",
        "reply.query.page.json",
        Some("A list's page; a `get` answers the row or null, a `preview` what rendered."),
    ),
    ("RebuildRequest", "projection.rebuild.json", None),
    ("EmptyRequest", "projection.status.json", None),
    ("RetryParked", "projection.retry.json", None),
];

/// The read messages.
pub(super) fn messages() -> Vec<Message> {
    QUERY_MESSAGES
        .iter()
        .map(|(name, file, description)| Message {
            name: (*name).to_owned(),
            title: None,
            description: *description,
            payload: (*file).to_owned(),
        })
        .collect()
}
