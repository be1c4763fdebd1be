//! The status channels (`status.<tenant>.<kind>.<id>`), one per [`StatusKind`], each
//! with the kind's [`Status`](crate::status::Status) schema.

use super::channels::{id, pascal, receive, tenant, STATUS};
use super::{Channel, Message};
use crate::subjects::StatusKind;

/// A status channel: one per [`StatusKind`].
struct StatusChannel {
    kind: StatusKind,
    channel: &'static str,
    /// What the id in the subject is.
    id: &'static str,
    description: &'static str,
    operation: &'static str,
    summary: &'static str,
}

const STATUS_CHANNELS: &[StatusChannel] = &[
    StatusChannel {
        kind: StatusKind::Vm,
        channel: "vmStatus",
        id: "the VM id",
        description:
            "The current row of the `vms` projection, published after each commit. `state.status` \
        is `degraded` when a step keeps failing, the reason naming the step and the attempts.",
        operation: "receiveVmStatus",
        summary: "Dashboards and `berth vm … --wait` follow VM status.",
    },
    StatusChannel {
        kind: StatusKind::Server,
        channel: "serverStatus",
        id: "the server id",
        description:
            "The current row of the `servers` projection (capacity, used, free), after each commit.",
        operation: "receiveServerStatus",
        summary: "Dashboards and `berth server list` show capacity.",
    },
    StatusChannel {
        kind: StatusKind::Pod,
        channel: "podStatus",
        id: "the pod id",
        description: "The current row of the `pods` projection, after each commit.",
        operation: "receivePodStatus",
        summary: "Dashboards and `berth pod … --wait` follow pod status.",
    },
    StatusChannel {
        kind: StatusKind::Schedule,
        channel: "scheduleStatus",
        id: "the schedule id",
        description:
            "The current row of the `schedules` projection (fires, last and next due time), after \
        each commit.",
        operation: "receiveScheduleStatus",
        summary: "Dashboards follow schedules and timers.",
    },
    StatusChannel {
        kind: StatusKind::Notification,
        channel: "notificationStatus",
        id: "the notification id",
        description:
            "The current row of the `notifications` projection (status, attempts, last error), \
        after each commit.",
        operation: "receiveNotificationStatus",
        summary: "Operators follow deliveries.",
    },
    StatusChannel {
        kind: StatusKind::Account,
        channel: "accountStatus",
        id: "the account id (UUID v5 of the tenant)",
        description:
            "A tenant's account from the `billing` projection (tier, status, balance due, open \
        invoices), after each commit; the id is the account's.",
        operation: "receiveAccountStatus",
        summary: "Dashboards and shops show the account.",
    },
    StatusChannel {
        kind: StatusKind::Invoice,
        channel: "invoiceStatus",
        id: "the invoice id",
        description:
            "An invoice from the `billing` projection (without its lines), when it is issued, \
        settled or overdue.",
        operation: "receiveInvoiceStatus",
        summary: "Dashboards show invoices.",
    },
    StatusChannel {
        kind: StatusKind::Subscription,
        channel: "subscriptionStatus",
        id: "the subscription id",
        description: "A subscription from the `billing` projection, after each commit.",
        operation: "receiveSubscriptionStatus",
        summary: "Dashboards show subscriptions.",
    },
    StatusChannel {
        kind: StatusKind::Projection,
        channel: "projectionStatus",
        id: "the projection's name (`vms`, `pods`, `billing`, `audit_log`, …)",
        description:
            "A projection's health, published whenever it changes: `degraded` with parked events, \
        `retrying` while it is stuck on a transient error, `ok` again once that is resolved. \
        Its version is the time of the publish in microseconds.",
        operation: "receiveProjectionStatus",
        summary: "Operators watch projection health.",
    },
];

/// One channel per status kind.
pub(super) fn channels() -> Vec<Channel> {
    STATUS_CHANNELS
        .iter()
        .map(|status| {
            let mut parameters = vec![id(status.id)];
            if status_address(status.kind).contains("{tenant}") {
                parameters.insert(0, tenant());
            }
            Channel {
                id: status.channel,
                address: status_address(status.kind),
                description: status.description,
                subjects: STATUS,
                parameters,
                messages: vec![("status".to_owned(), status_message_name(status.kind))],
                operation: receive(status.operation, status.summary),
            }
        })
        .collect()
}

fn status_address(kind: StatusKind) -> &'static str {
    match kind {
        StatusKind::Vm => "status.{tenant}.vm.{id}",
        StatusKind::Pod => "status.{tenant}.pod.{id}",
        StatusKind::Schedule => "status.{tenant}.schedule.{id}",
        StatusKind::Notification => "status.{tenant}.notification.{id}",
        StatusKind::Account => "status.{tenant}.account.{id}",
        StatusKind::Invoice => "status.{tenant}.invoice.{id}",
        StatusKind::Subscription => "status.{tenant}.subscription.{id}",
        StatusKind::Server => "status.system.server.{id}",
        StatusKind::Projection => "status.system.projection.{id}",
    }
}

fn status_message_name(kind: StatusKind) -> String {
    pascal(kind.as_str()) + "Status"
}

/// One message per status kind, its payload `status.<kind>.json`.
pub(super) fn messages() -> Vec<Message> {
    StatusKind::ALL
        .into_iter()
        .map(|kind| Message {
            name: status_message_name(kind),
            title: None,
            description: None,
            payload: crate::json_schema::status_schema_file(kind),
        })
        .collect()
}
