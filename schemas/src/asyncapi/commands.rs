//! The command and request channels (`cmd.<tenant>.<kind>.<action>` and the operators'
//! requests) and their messages, replies included.

use super::channels::{actions, keyed, send, tenant, COMMANDS};
use super::{Channel, Message, Parameter};

/// Every command and request channel.
pub(super) fn channels() -> Vec<Channel> {
    vec![
        Channel {
            id: "vmCommand",
            address: "cmd.{tenant}.vm.{action}",
            description: "VM commands, core NATS request/reply in the queue group \
                `berth-provisioner`. Bodies over 256 KiB are rejected with `too_large`. `retry` \
                (a `VmTarget`) asks a `degraded` VM to try its failed step again; a degraded VM \
                also takes `start`, `stop` and `destroy`. The reply to `exec` carries `output`.",
            subjects: COMMANDS,
            parameters: vec![tenant(), actions("vm")],
            messages: keyed(&[
                ("create", "CreateVm"),
                ("target", "VmTarget"),
                ("resize", "ResizeVm"),
                ("exec", "ExecVm"),
            ]),
            operation: send(
                "sendVmCommand",
                "Other systems and the berth CLI send VM commands.",
                Some("OutputReply"),
            ),
        },
        Channel {
            id: "tenantCommand",
            address: "cmd.system.tenant.{action}",
            description: "Operator commands on tenants; from any tenant but `system` they are \
                `forbidden`.",
            subjects: COMMANDS,
            parameters: vec![actions("tenant")],
            messages: keyed(&[("setQuota", "SetQuota")]),
            operation: send(
                "sendTenantCommand",
                "Operators (and, later, billing) set tenant quotas.",
                Some("CommandReply"),
            ),
        },
        Channel {
            id: "serverCommand",
            address: "cmd.system.server.{action}",
            description: "Operator commands on servers (hosts VMs are placed on); from any \
                tenant but `system` they are `forbidden`. A server's id is the UUID v5 of its \
                name.",
            subjects: COMMANDS,
            parameters: vec![actions("server")],
            messages: keyed(&[("register", "RegisterServer"), ("target", "ServerTarget")]),
            operation: send(
                "sendServerCommand",
                "Operators register, drain and decommission servers.",
                Some("CommandReply"),
            ),
        },
        Channel {
            id: "reconcile",
            address: "cmd.system.provisioner.reconcile",
            description: "Operators ask for a reconciliation now (the provisioner also runs one \
                every minute): core NATS request/reply, queue group `berth-provisioner`. The \
                reply is a report, or a rejection for a malformed body.",
            subjects: &["subjects::RECONCILE_SUBJECT"],
            parameters: vec![],
            messages: keyed(&[("request", "Reconcile")]),
            operation: send(
                "requestReconcile",
                "`berth reconcile` and `berth orphans list|clean`.",
                Some("ReconcileReport"),
            ),
        },
        Channel {
            id: "scheduleCommand",
            address: "cmd.{tenant}.schedule.{action}",
            description: "Cron schedules by name (id = UUID v5 of tenant and name), queue group \
                `berth-scheduler`. `create` with the same spec again changes nothing, with \
                another is `conflict`; `update` replaces; `fire_now` fires once outside the \
                schedule. A schedule of a tenant other than `system` may send (`action: \
                command`) only a tenant action of the access table to its own tenant (else \
                `forbidden`); its payload holds at most 4 KiB and a command body 16 KiB \
                (`too_large`), no NUL, nested at most 32 deep (`invalid`); its cron fires at \
                most once a minute (`invalid`); a tenant holds at most 100 cron schedules and \
                1000 one-shots (`quota_exceeded`). `system` schedules, on \
                `cmd.system.schedule.*`, may send anything to any tenant.",
            subjects: COMMANDS,
            parameters: vec![tenant(), actions("schedule")],
            messages: keyed(&[("set", "SetSchedule"), ("target", "ScheduleTarget")]),
            operation: send(
                "sendScheduleCommand",
                "Services and operators manage schedules (`berth schedules …`).",
                Some("CommandReply"),
            ),
        },
        Channel {
            id: "timerCommand",
            address: "cmd.{tenant}.timer.{action}",
            description: "One-shot timers by key (the schedule `timer-<key>`); `set` with the \
                same key replaces, `cancel` deletes. A timer is checked exactly as the schedule \
                it is. Services keep their timers about a tenant's things (a subscription's \
                end, a pod's grace, an expiry warning) under `system`, keyed by UUID v5 of the \
                tenant and the service's key, out of the tenant's reach.",
            subjects: COMMANDS,
            parameters: vec![tenant(), actions("timer")],
            messages: keyed(&[("set", "SetTimer"), ("cancel", "TimerCancel")]),
            operation: send(
                "sendTimerCommand",
                "Services set one-shot timers under `system` (e.g. delete a pod 60 days after \
                expiry); tenants set their own.",
                Some("CommandReply"),
            ),
        },
        Channel {
            id: "podCommand",
            address: "cmd.{tenant}.pod.{action}",
            description: "Pod commands, queue group `berth-pod-lifecycle`. A tenant acts on its \
                own pods only (another tenant's pod id is `forbidden`); operators send the same \
                commands to `cmd.system.pod.{action}` for any tenant's pod. `reset` without \
                `confirm: true` is `invalid`. `expire`/`cancel` scale to 0 and keep the volume \
                for 60 days (a grace timer at the scheduler then sends `purge`); `renew` inside \
                the period brings the pod back. The reply to `logs` carries `output.stdout`.",
            subjects: COMMANDS,
            parameters: vec![
                (
                    "tenant",
                    Parameter::Described("the tenant id, or system for operators"),
                ),
                actions("pod"),
            ],
            messages: keyed(&[
                ("create", "CreatePod"),
                ("target", "PodTarget"),
                ("reset", "ResetPod"),
                ("scale", "ScalePod"),
                ("delete", "DeletePod"),
                ("updateConfig", "UpdatePodConfig"),
                ("end", "EndPod"),
                ("purge", "PurgePod"),
                ("logs", "PodLogs"),
            ]),
            operation: send(
                "sendPodCommand",
                "Customer portals, billing and the berth CLI send pod commands; the scheduler \
                sends `purge` from grace timers.",
                Some("OutputReply"),
            ),
        },
        Channel {
            id: "podsDebug",
            address: "cmd.system.pods.debug",
            description: "Operators compare pods with their runtime (`berth pods debug`): \
                request/reply, queue group `berth-pod-lifecycle`; `clean_orphans` also removes \
                what no live pod owns.",
            subjects: &["subjects::PODS_DEBUG_SUBJECT"],
            parameters: vec![],
            messages: keyed(&[("request", "DebugPods")]),
            operation: send(
                "requestPodsDebug",
                "Operators list pods beside the runtime and clean orphans.",
                Some("PodsReport"),
            ),
        },
        Channel {
            id: "accountCommand",
            address: "cmd.{tenant}.account.{action}",
            description: "The tenant's account (one per tenant, id = UUID v5 of the tenant), \
                queue group `berth-billing`. `open`, `set_tier` and `close` are operator \
                actions (`cmd.system.account.{action}` with `berth-tenant`); a tenant sends \
                `update_contact`. `open` again with the same details changes nothing, with \
                others is `conflict`; `close` is `invalid_state` while invoices are unpaid.",
            subjects: COMMANDS,
            parameters: vec![tenant(), actions("account")],
            messages: keyed(&[
                ("open", "OpenAccount"),
                ("updateContact", "UpdateContact"),
                ("setTier", "SetTier"),
                ("close", "CloseAccount"),
            ]),
            operation: send(
                "sendBillingCommands",
                "A web shop or the berth CLI opens accounts; payments and subscriptions go to \
                their own channels.",
                Some("CommandReply"),
            ),
        },
        Channel {
            id: "paymentCommand",
            address: "cmd.{tenant}.payment.record",
            description: "Money received (minor units, the account's currency only; another is \
                `invalid`); settles invoices oldest first. An operator action: sent on \
                `cmd.system.payment.record` with the tenant in `berth-tenant`.",
            subjects: COMMANDS,
            parameters: vec![tenant()],
            messages: keyed(&[("record", "RecordPayment")]),
            operation: send(
                "sendPayments",
                "The payment provider's adapter records payments.",
                Some("CommandReply"),
            ),
        },
        Channel {
            id: "subscriptionCommand",
            address: "cmd.{tenant}.subscription.{action}",
            description: "Monthly pod subscriptions, priced from the price list in the \
                account's currency. `expire` (an operator action, on \
                `cmd.system.subscription.expire` with `berth-tenant`) is sent by the period-end \
                timer and ends a subscription only once its period is over and it was not \
                renewed.",
            subjects: COMMANDS,
            parameters: vec![tenant(), actions("subscription")],
            messages: keyed(&[
                ("create", "CreateSubscription"),
                ("target", "SubscriptionTarget"),
                ("cancel", "CancelSubscription"),
            ]),
            operation: send(
                "sendSubscriptionCommands",
                "The shop creates, renews and cancels subscriptions; the scheduler sends \
                `expire`.",
                Some("CommandReply"),
            ),
        },
        Channel {
            id: "notificationCommand",
            address: "cmd.{tenant}.notification.retry",
            description: "Another round of delivery attempts for a notification (operators, \
                after fixing the channel): an operator action, on \
                `cmd.system.notification.retry` with `berth-tenant`.",
            subjects: COMMANDS,
            parameters: vec![tenant()],
            messages: keyed(&[("retry", "NotificationTarget")]),
            operation: send(
                "sendNotificationRetries",
                "Operators retry failed notifications (`berth notifications retry`).",
                Some("CommandReply"),
            ),
        },
        Channel {
            id: "billingRuns",
            address: "cmd.system.billing.{action}",
            description: "Operators' runs, request/reply in the queue group `berth-billing`; the \
                answer is a JSON report or a rejection. All are idempotent.",
            subjects: &[
                "subjects::command_subject",
                "subjects::system_command_filter",
            ],
            parameters: vec![actions("billing")],
            messages: keyed(&[
                ("runInvoices", "RunInvoices"),
                ("meter", "RunMeter"),
                ("checkOverdue", "CheckOverdue"),
            ]),
            operation: send(
                "requestBillingRuns",
                "Operators run invoicing, metering and the overdue check by hand (the schedules \
                run them too).",
                None,
            ),
        },
        Channel {
            id: "dashboardSnapshot",
            address: "cmd.{tenant}.dashboard.snapshot",
            description: "The last status of every `status.<tenant>.>` subject \
                (`cmd.system.dashboard.snapshot`: of every tenant) from the last-value STATUS \
                stream, request/reply in the queue group `berth-dashboard`; the body is \
                ignored. The answer stays under NATS' payload limit and says when it had to \
                stop (`truncated`).",
            subjects: &["subjects::command_subject", "subjects::action_filter"],
            parameters: vec![tenant()],
            messages: vec![],
            operation: send(
                "requestDashboardSnapshot",
                "The web dashboard asks for the current picture after subscribing to status.",
                Some("DashboardSnapshot"),
            ),
        },
    ]
}

/// `(name, file, description)` of every command, request and reply message.
const COMMAND_MESSAGES: &[(&str, &str, Option<&str>)] = &[
    ("CreateVm", "cmd.vm.create.json", None),
    (
        "VmTarget",
        "cmd.vm.target.json",
        Some("start, stop, restart, recreate, destroy, retry"),
    ),
    ("ResizeVm", "cmd.vm.resize.json", None),
    (
        "ExecVm",
        "cmd.vm.exec.json",
        Some("The reply carries `output` (exit_code, stdout, stderr, each stream cut at 64 KiB)."),
    ),
    ("SetQuota", "cmd.tenant.set_quota.json", None),
    ("RegisterServer", "cmd.server.register.json", None),
    (
        "ServerTarget",
        "cmd.server.target.json",
        Some("drain, undrain, decommission"),
    ),
    ("Reconcile", "cmd.provisioner.reconcile.json", None),
    ("ReconcileReport", "reply.provisioner.reconcile.json", None),
    (
        "SetSchedule",
        "cmd.schedule.set.json",
        Some("create, update"),
    ),
    (
        "ScheduleTarget",
        "cmd.schedule.target.json",
        Some("pause, resume, delete, fire_now"),
    ),
    ("SetTimer", "cmd.timer.set.json", None),
    ("TimerCancel", "cmd.timer.cancel.json", None),
    ("CreatePod", "cmd.pod.create.json", None),
    ("PodTarget", "cmd.pod.target.json", Some("restart, renew")),
    ("ResetPod", "cmd.pod.reset.json", None),
    ("ScalePod", "cmd.pod.scale.json", None),
    ("DeletePod", "cmd.pod.delete.json", None),
    ("UpdatePodConfig", "cmd.pod.update_config.json", None),
    ("EndPod", "cmd.pod.end.json", Some("expire, cancel")),
    ("PurgePod", "cmd.pod.purge.json", None),
    ("PodLogs", "cmd.pod.logs.json", None),
    ("DebugPods", "cmd.pods.debug.json", None),
    ("PodsReport", "reply.pods.debug.json", None),
    ("OpenAccount", "cmd.account.open.json", None),
    ("UpdateContact", "cmd.account.update_contact.json", None),
    ("SetTier", "cmd.account.set_tier.json", None),
    ("CloseAccount", "cmd.account.close.json", None),
    ("RecordPayment", "cmd.payment.record.json", None),
    ("CreateSubscription", "cmd.subscription.create.json", None),
    (
        "SubscriptionTarget",
        "cmd.subscription.target.json",
        Some("renew, expire"),
    ),
    ("CancelSubscription", "cmd.subscription.cancel.json", None),
    ("RunInvoices", "cmd.billing.run_invoices.json", None),
    ("RunMeter", "cmd.billing.meter.json", None),
    ("CheckOverdue", "cmd.billing.check_overdue.json", None),
    ("NotificationTarget", "cmd.notification.retry.json", None),
    (
        "CommandReply",
        "command-reply.json",
        Some("The answer to a command that prints nothing."),
    ),
    (
        "OutputReply",
        "command-reply-output.json",
        Some("The answer to a VM or pod command: `vm.exec` and `pod.logs` carry `output`."),
    ),
    ("DashboardSnapshot", "reply.dashboard.snapshot.json", None),
];

/// The command, request and reply messages.
pub(super) fn messages() -> Vec<Message> {
    COMMAND_MESSAGES
        .iter()
        .map(|(name, file, description)| Message {
            name: (*name).to_owned(),
            title: None,
            description: *description,
            payload: (*file).to_owned(),
        })
        .collect()
}
