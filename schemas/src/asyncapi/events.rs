//! The event channels (`evt.<tenant>.<aggregate>.<id>`), one message per `ce-type` from
//! the event families.

use super::channels::{id, pascal, receive, tenant, EVENTS};
use super::{Channel, Message, Parameter};
use crate::event::DomainEvent;

/// Every event channel.
pub(super) fn channels() -> Vec<Channel> {
    use crate::billing::{AccountEvent, InvoiceEvent, MeterEvent, SubscriptionEvent};
    use crate::suspension::SuspensionEvent;
    vec![
        Channel {
            id: "serverEvents",
            address: "evt.system.server.{id}",
            description: "A server's registration, drain state and allocations. `allocated` is \
                appended in the same atomic batch as the VM's `placed` (or `resize_requested`) \
                with the server's expected sequence, so concurrent placements cannot overcommit \
                it; `deallocated` with the VM's `destroyed`, `failed` or `placement_failed`.",
            subjects: EVENTS,
            parameters: vec![id("the server id")],
            messages: event_keys(&[crate::server::ServerEvent::event_types()]),
            operation: receive(
                "receiveServerEvents",
                "The provisioner places VMs from server events; only it appends them.",
            ),
        },
        Channel {
            id: "orphanEvents",
            address: "evt.system.orphan.{id}",
            description: "A machine at a provider that no live VM owns (id = UUID v5 of provider \
                and machine name): `detected` once per appearance, `removed` when an operator \
                cleaned it.",
            subjects: EVENTS,
            parameters: vec![id("the orphan id")],
            messages: event_keys(&[crate::orphan::OrphanEvent::event_types()]),
            operation: receive(
                "receiveOrphanEvents",
                "Operators and the audit log see orphans.",
            ),
        },
        Channel {
            id: "scheduleEvents",
            address: "evt.{tenant}.schedule.{id}",
            description: "A schedule's spec, pauses and fires. `fired` happens once per due time: \
                its event id is derived from (schedule id, due time) and it is appended with the \
                schedule's expected sequence, so replicas and restarts cannot fire twice. \
                Listeners follow `fired`; a fire with `action: command` is also sent as that \
                command, with the fire's id as command id and actor `schedule:<id>`. A fire \
                copies neither the action nor the payload: its `spec_sequence` names the `set` \
                event holding them (fires recorded before carry `action` and `payload` \
                themselves).",
            subjects: EVENTS,
            parameters: vec![tenant(), id("the schedule id")],
            messages: event_keys(&[crate::schedule::ScheduleEvent::event_types()]),
            operation: receive(
                "receiveScheduleEvents",
                "Services react to `schedule.fired`; only the scheduler appends schedule events.",
            ),
        },
        Channel {
            id: "scheduleSlotEvents",
            address: "evt.{tenant}.schedule_slots.{id}",
            description: "What a tenant's schedules and timers hold against its caps (one \
                aggregate per tenant, id = UUID v5 of the tenant): `held` when a schedule becomes \
                live (as a cron schedule or a one-shot), `released` when it is deleted or a \
                one-shot has fired, each in the same atomic batch as the schedule event, so the \
                count is race-free across replicas.",
            subjects: EVENTS,
            parameters: vec![tenant(), id("the tenant's slots id")],
            messages: event_keys(&[crate::schedule::SlotEvent::event_types()]),
            operation: receive(
                "receiveScheduleSlotEvents",
                "The audit log; only the scheduler appends them.",
            ),
        },
        Channel {
            id: "demoEvents",
            address: "evt.{tenant}.demo.{id}",
            description: "The public demo's resets (id = UUID v5 of the tenant), appended by the \
                provisioner's process manager on each fire of the built-in schedule \
                `demo-reset` (tenant `system`, 07:00 UTC): `reset_started` names the demo VM, \
                then `reset_succeeded` with the duration from the fire to `running`, or \
                `reset_failed` with the reason.",
            subjects: EVENTS,
            parameters: vec![
                ("tenant", Parameter::Described("the demo tenant")),
                id("the demo id"),
            ],
            messages: event_keys(&[crate::demo::DemoEvent::event_types()]),
            operation: receive(
                "receiveDemoEvents",
                "The notifier mails operators each reset's outcome.",
            ),
        },
        Channel {
            id: "podEvents",
            address: "evt.{tenant}.pod.{id}",
            description: "Everything that happens to a pod; only pod-lifecycle appends them.",
            subjects: EVENTS,
            parameters: vec![tenant(), id("the pod id")],
            messages: event_keys(&[crate::pod::PodEvent::event_types()]),
            operation: receive(
                "receivePodEvents",
                "pod-lifecycle's reactor and the pods projection read pod events.",
            ),
        },
        Channel {
            id: "podSlotEvents",
            address: "evt.{tenant}.pod_slots.{id}",
            description: "What a tenant's pods hold against its cap of 50 live pods (one \
                aggregate per tenant, id = UUID v5 of the tenant; `system` has no pods). `held` \
                is appended in the same atomic batch as a create's `pod.requested`, with this \
                subject's expected sequence, so two creates racing for the last slot on two \
                replicas cannot both land. Releases are lazy: a deletion appends nothing here; \
                once the count reaches the cap, the next create checks the held pods and \
                `released` names those deleted, in the batch of its own `held`. Pods created \
                before the count existed hold no slot.",
            subjects: EVENTS,
            parameters: vec![tenant(), id("the tenant's pod slots id")],
            messages: event_keys(&[crate::pod::PodSlotEvent::event_types()]),
            operation: receive(
                "receivePodSlotEvents",
                "The audit log; only pod-lifecycle's create appends them.",
            ),
        },
        Channel {
            id: "notificationEvents",
            address: "evt.{tenant}.notification.{id}",
            description: "One mail or webhook post; the id is UUID v5 of (source event or \
                rule+aggregate, recipient, channel), so a redelivered source never mails twice. \
                `requested` by the notifier's rules, then `attempt_failed` (with back-off) until \
                `sent` or `failed`.",
            subjects: EVENTS,
            parameters: vec![tenant(), id("the notification id")],
            messages: event_keys(&[crate::notification::NotificationEvent::event_types()]),
            operation: receive(
                "receiveNotificationEvents",
                "The notifier's email and webhook deliverers (separate consumers) and the \
                notifications projection.",
            ),
        },
        Channel {
            id: "billingEvents",
            address: "evt.{tenant}.{kind}.{id}",
            description: "kind `account`: the ledger (invoices posted with their invoice in one \
                atomic append, payments, settlements, overdue, suspended/resumed — the \
                provisioner stops and pod-lifecycle scales down a suspended tenant, and undoes \
                exactly that on resumption); `subscription`; `meter` (one record per VM and \
                hour, event id from both); `invoice` (issued once, immutable); `suspension` \
                (what the provisioner or pod-lifecycle stopped).",
            subjects: EVENTS,
            parameters: vec![
                tenant(),
                (
                    "kind",
                    Parameter::OneOf(
                        ["account", "subscription", "meter", "invoice", "suspension"]
                            .map(str::to_owned)
                            .to_vec(),
                    ),
                ),
                id("the aggregate id"),
            ],
            messages: event_keys(&[
                AccountEvent::event_types(),
                SubscriptionEvent::event_types(),
                MeterEvent::event_types(),
                InvoiceEvent::event_types(),
                SuspensionEvent::event_types(),
            ]),
            operation: receive(
                "receiveBillingEvents",
                "The billing projection, the provisioner (suspension, tier → quota) and \
                pod-lifecycle (suspension, subscriptions) follow them.",
            ),
        },
        Channel {
            id: "usageEvents",
            address: "evt.{tenant}.usage.{id}",
            description: "A tenant's quota and reservations (id = UUID v5 of the tenant). \
                `reserved` is appended in the same atomic batch as the VM's `requested`; \
                `released` with its `destroyed` or `failed`.",
            subjects: EVENTS,
            parameters: vec![tenant(), id("the tenant's usage id")],
            messages: event_keys(&[crate::usage::UsageEvent::event_types()]),
            operation: receive(
                "receiveUsageEvents",
                "The provisioner folds usage to enforce quotas; only it appends them.",
            ),
        },
        Channel {
            id: "vmEvents",
            address: "evt.{tenant}.vm.{id}",
            description: "Every event of one VM, stream EVENTS; the subject's last sequence is \
                the VM's version.",
            subjects: EVENTS,
            parameters: vec![tenant(), id("the VM id")],
            messages: event_keys(&[crate::vm::VmEvent::event_types()]),
            operation: receive(
                "receiveVmEvents",
                "The provisioner's reactor and projections (vms, audit_log) read VM events; only \
                the provisioner appends them.",
            ),
        },
    ]
}

/// What some events mean beyond their schema, by `ce-type`.
const EVENT_NOTES: &[(&str, &str)] = &[
    (
        "berth.vm.provisioning_started.v1",
        "Legacy (logs from before placement); read, never written.",
    ),
    (
        "berth.vm.failed.v1",
        "Only after a half-made machine (a failed place, provision or recreate) was undone: \
        the provider confirmed the destroy, and the VM's quota and server capacity are released \
        in the same atomic append.",
    ),
    (
        "berth.vm.degraded.v1",
        "A step keeps failing and the VM is left as it is (machine, quota and capacity kept): \
        status `degraded` with the step, the reason and the attempts. With `retrying` berth \
        still retries a transient failure with capped back-off (first recorded after \
        `max_deliver` attempts, again at 2×, 4×, …); without it the VM waits for `retry`, \
        `start`, `stop` or `destroy`.",
    ),
    (
        "berth.vm.retry_requested.v1",
        "`vm.retry` on a degraded VM: its failed `step` is asked for again.",
    ),
    (
        "berth.pod.failed.v1",
        "A failed first deploy (its workload and volume removed, confirmed), or health \
        monitoring gave up.",
    ),
    (
        "berth.pod.degraded.v1",
        "A step keeps failing and the pod is left as it is (workload and volume with its data \
        kept): status `degraded` with the step, the reason and the attempts. With `retrying` \
        berth still retries a transient failure; without it the pod waits for its owner to \
        restart, scale, reconfigure or delete it.",
    ),
];

/// `berth.pod_slots.held.v1` → (`pod_slots`, `held`).
fn aggregate_and_verb(event_type: &str) -> (&str, &str) {
    let mut tokens = event_type.split('.').skip(1);
    let aggregate = tokens.next().unwrap_or_default();
    (aggregate, tokens.next().unwrap_or_default())
}

/// `PodSlots` → `podSlots`.
fn camel(snake: &str) -> String {
    let pascal = pascal(snake);
    let mut chars = pascal.chars();
    chars
        .next()
        .map(|first| first.to_ascii_lowercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn event_message_name(event_type: &str) -> String {
    let (aggregate, verb) = aggregate_and_verb(event_type);
    pascal(aggregate) + &pascal(verb)
}

/// The messages of a channel carrying these families: keyed by verb for one family, by
/// aggregate and verb for several.
fn event_keys(families: &[&[&'static str]]) -> Vec<(String, String)> {
    let one_family = families.len() == 1;
    families
        .iter()
        .flat_map(|types| types.iter())
        .map(|event_type| {
            let (aggregate, verb) = aggregate_and_verb(event_type);
            let key = if one_family {
                camel(verb)
            } else {
                camel(&format!("{aggregate}_{verb}"))
            };
            (key, event_message_name(event_type))
        })
        .collect()
}

/// One message per `ce-type`, titled with it.
pub(super) fn messages() -> Vec<Message> {
    crate::json_schema::event_types()
        .into_iter()
        .map(|event_type| Message {
            name: event_message_name(event_type),
            title: Some(event_type.to_owned()),
            description: EVENT_NOTES
                .iter()
                .find(|(t, _)| *t == event_type)
                .map(|(_, note)| *note),
            payload: crate::json_schema::event_schema_file(event_type),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_come_from_the_type() {
        assert_eq!(
            event_message_name("berth.pod_slots.held.v1"),
            "PodSlotsHeld"
        );
        assert_eq!(
            event_keys(&[&["berth.vm.start_requested.v1"]]),
            [("startRequested".to_owned(), "VmStartRequested".to_owned())]
        );
        assert_eq!(
            event_keys(&[&["berth.account.opened.v1"], &["berth.meter.recorded.v1"]])[1],
            ("meterRecorded".to_owned(), "MeterRecorded".to_owned())
        );
    }

    #[test]
    fn every_event_note_names_an_event() {
        let types = crate::json_schema::event_types();
        for (event_type, _) in EVENT_NOTES {
            assert!(types.contains(event_type), "{event_type}");
        }
    }
}
