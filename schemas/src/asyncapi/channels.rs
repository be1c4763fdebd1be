//! The channels of the AsyncAPI document: the overview, the subject items each family
//! of channels names, the helpers the channel tables share, and the dead-letter and
//! retry channels. Commands, events and status are in their own modules.

use super::{commands, events, queries, statuses, Action, Channel, Operation, Parameter};

/// The document's `info.description`.
pub const OVERVIEW: &str = "\
berth's subjects on NATS. Events are CloudEvents 1.0 in binary mode: every attribute is a \
lower-case `ce-<name>` header (percent-encoded), the body is the event's JSON data, \
`Nats-Msg-Id` equals `ce-id` on single-event appends. Commands are request/reply with \
headers `ce-id` (the command id, a UUID: the idempotency key), `ce-actor` (`user:<id>`, \
`service:<name>`, `schedule:<id>`), optional `ce-correlationid` and `traceparent`. \
Tokens: tenant `^[a-z0-9][a-z0-9-]{0,62}$`, ids are UUIDs.

Who may send what is one table, `berth_schemas::access::COMMANDS` (docs/security.md): a \
tenant sends its *tenant actions* on `cmd.<tenant>.<kind>.<action>`; an *operator action* \
about a tenant travels on `cmd.system.<kind>.<action>` with the tenant in the header \
`berth-tenant` (honoured only there; on a tenant subject it, and any operator action, is \
`forbidden`). Every body is refused as `invalid` if any string holds a NUL or the JSON \
nests deeper than 32 levels. A create whose id belongs to another tenant is `conflict`. A \
tenant over its share of an endpoint (rate, in flight) is answered `busy` with \
`retry_after_ms`.

Projections publish the current state of each thing on `status.<tenant>.<kind>.<id>` \
(stream STATUS keeps the last message per subject) as `{kind, id, tenant, version, state, \
reason}`: `state` is the kind's row, `reason` why the thing is not where it was asked to \
be, else null. Clients drop a message whose `version` is not newer than what they have.

Each channel's `x-berth-subjects` names the items of the `berth-schemas` crate that build, \
match or store its address.";

pub(super) const EVENTS: &[&str] = &[
    "subjects::EVENTS_STREAM",
    "subjects::event_subject",
    "subjects::event_filter",
    "subjects::tenant_event_filter",
    "subjects::events_filter",
    "subjects::aggregate_event_filter",
    "subjects::id_event_filter",
    "subjects::tenant_events_filter",
    "subjects::ALL_EVENTS",
];
pub(super) const COMMANDS: &[&str] = &[
    "subjects::command_subject",
    "subjects::command_filter",
    "subjects::ALL_COMMANDS",
];
pub(super) const STATUS: &[&str] = &[
    "subjects::STATUS_STREAM",
    "subjects::status_subject",
    "subjects::tenant_status_filter",
    "subjects::ALL_STATUS",
];

pub(super) fn tenant() -> (&'static str, Parameter) {
    ("tenant", Parameter::Described("the tenant id"))
}

pub(super) fn id(what: &'static str) -> (&'static str, Parameter) {
    ("id", Parameter::Described(what))
}

/// `{action}`: the kind's actions in the access table.
pub(super) fn actions(kind: &str) -> (&'static str, Parameter) {
    (
        "action",
        Parameter::OneOf(crate::access::actions_of(kind).map(str::to_owned).collect()),
    )
}

pub(super) fn keyed(messages: &[(&str, &str)]) -> Vec<(String, String)> {
    messages
        .iter()
        .map(|(key, name)| ((*key).to_owned(), (*name).to_owned()))
        .collect()
}

pub(super) fn send(
    id: &'static str,
    summary: &'static str,
    reply: Option<&'static str>,
) -> Operation {
    Operation {
        id,
        action: Action::Send,
        summary,
        reply,
    }
}

pub(super) fn receive(id: &'static str, summary: &'static str) -> Operation {
    Operation {
        id,
        action: Action::Receive,
        summary,
        reply: None,
    }
}

/// Every channel, in the document's order.
pub fn all() -> Vec<Channel> {
    let mut channels = commands::channels();
    channels.extend(queries::channels());
    channels.extend(events::channels());
    channels.extend(statuses::channels());
    channels.extend(failures());
    channels
}

fn failures() -> Vec<Channel> {
    vec![
        Channel {
            id: "deadLetters",
            address: "dlq.{consumer}",
            description: "Messages a reactor gave up on (stream DLQ, kept 30 days): the original \
                body and headers (minus `Nats-*`) plus `Berth-Dlq-Error`, `Berth-Dlq-Subject`, \
                `Berth-Dlq-Stream-Sequence`, `Berth-Dlq-Deliveries`, `Berth-Dlq-Consumer`. The \
                VM and pod reactors (`provisioner-vm`, `pod-lifecycle-pod`) dead-letter only \
                permanent failures: a transient one past `max_deliver` goes to \
                `retry.<consumer>` instead.",
            subjects: &[
                "subjects::DLQ_STREAM",
                "subjects::dlq_subject",
                "subjects::ALL_DEAD_LETTERS",
            ],
            parameters: vec![(
                "consumer",
                Parameter::Described("the durable consumer, `<service>-<purpose>`"),
            )],
            messages: vec![],
            operation: receive(
                "receiveDeadLetters",
                "Operators inspect, retry and drop dead letters (`berth dlq …`).",
            ),
        },
        Channel {
            id: "retries",
            address: "retry.{consumer}",
            description: "Messages a reactor handles again (work-queue stream RETRY), with the \
                same headers as a dead letter: the dead letters operators retry (`berth dlq \
                retry`; `Nats-Msg-Id` `retry:<dlq sequence>`, so retrying one twice publishes \
                once) and the transient failures of the VM and pod reactors past \
                `max_deliver`, retried with capped back-off until they succeed or fail for \
                good. The reactor hands each to the same handler as a live message, with the \
                original subject and sequence.",
            subjects: &["subjects::RETRY_STREAM", "subjects::retry_subject"],
            parameters: vec![(
                "consumer",
                Parameter::Described("the durable consumer the message goes back to"),
            )],
            messages: vec![],
            operation: receive(
                "receiveRetries",
                "Each reactor follows its own `retry.<consumer>`.",
            ),
        },
    ]
}

/// `pod_slots` → `PodSlots`.
pub(super) fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}
