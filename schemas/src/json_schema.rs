//! The JSON Schema of every command, reply, event and status, as checked in under
//! `schemas/json/`.

use schemars::{schema_for, Schema};

use crate::command::CommandReply;
use crate::demo::DemoEvent;
use crate::event::DomainEvent;
use crate::orphan::{OrphanEvent, Reconcile, ReconcileReport};
use crate::pod::{
    CreatePod, DebugPods, DeletePod, EndPod, PodEvent, PodLogs, PodTarget, PodsReport, PurgePod,
    ResetPod, ScalePod, UpdatePodConfig,
};
use crate::schedule::{ScheduleEvent, ScheduleTarget, SetSchedule, SetTimer, TimerTarget};
use crate::server::{RegisterServer, ServerEvent, ServerTarget};
use crate::status::{
    AccountState, DashboardSnapshot, InvoiceState, NotificationState, PodState, ProjectionHealth,
    ScheduleState, ServerState, Status, StatusState, SubscriptionState, VmState,
};
use crate::subjects::StatusKind;
use crate::usage::{SetQuota, UsageEvent};
use crate::vm::{CreateVm, ExecOutput, ExecVm, ResizeVm, VmEvent, VmTarget};

/// `(file name, schema)` for every generated file.
pub fn all() -> Vec<(String, Schema)> {
    let mut files = vec![
        ("cmd.vm.create.json".to_owned(), schema_for!(CreateVm)),
        ("cmd.vm.target.json".to_owned(), schema_for!(VmTarget)),
        ("cmd.vm.resize.json".to_owned(), schema_for!(ResizeVm)),
        ("cmd.vm.exec.json".to_owned(), schema_for!(ExecVm)),
        (
            "cmd.tenant.set_quota.json".to_owned(),
            schema_for!(SetQuota),
        ),
        (
            "cmd.server.register.json".to_owned(),
            schema_for!(RegisterServer),
        ),
        (
            "cmd.server.target.json".to_owned(),
            schema_for!(ServerTarget),
        ),
        ("command-reply.json".to_owned(), schema_for!(CommandReply)),
        (
            "query.list.json".to_owned(),
            schema_for!(crate::query::ListRequest<crate::query::TenantFilter>),
        ),
        (
            "query.schedule.list.json".to_owned(),
            schema_for!(crate::query::ListRequest<crate::query::ScheduleFilter>),
        ),
        (
            "query.notification.list.json".to_owned(),
            schema_for!(crate::query::ListRequest<crate::query::NotificationFilter>),
        ),
        (
            "query.get.json".to_owned(),
            schema_for!(crate::query::GetRequest),
        ),
        (
            "query.notification.preview.json".to_owned(),
            schema_for!(crate::query::PreviewRequest),
        ),
        (
            "reply.query.page.json".to_owned(),
            schema_for!(crate::query::Page<serde_json::Value>),
        ),
        (
            "projection.rebuild.json".to_owned(),
            schema_for!(crate::query::projection::RebuildRequest),
        ),
        (
            "projection.status.json".to_owned(),
            schema_for!(crate::query::EmptyRequest),
        ),
        (
            "projection.retry.json".to_owned(),
            schema_for!(crate::query::projection::RetryParked),
        ),
        (
            "command-reply-output.json".to_owned(),
            schema_for!(CommandReply<ExecOutput>),
        ),
        (
            "reply.dashboard.snapshot.json".to_owned(),
            schema_for!(DashboardSnapshot),
        ),
        ("cmd.pod.create.json".to_owned(), schema_for!(CreatePod)),
        ("cmd.pod.target.json".to_owned(), schema_for!(PodTarget)),
        ("cmd.pod.reset.json".to_owned(), schema_for!(ResetPod)),
        ("cmd.pod.scale.json".to_owned(), schema_for!(ScalePod)),
        ("cmd.pod.delete.json".to_owned(), schema_for!(DeletePod)),
        (
            "cmd.pod.update_config.json".to_owned(),
            schema_for!(UpdatePodConfig),
        ),
        ("cmd.pod.end.json".to_owned(), schema_for!(EndPod)),
        ("cmd.pod.purge.json".to_owned(), schema_for!(PurgePod)),
        ("cmd.pod.logs.json".to_owned(), schema_for!(PodLogs)),
        ("cmd.pods.debug.json".to_owned(), schema_for!(DebugPods)),
        (
            "cmd.account.open.json".to_owned(),
            schema_for!(crate::billing::OpenAccount),
        ),
        (
            "cmd.account.update_contact.json".to_owned(),
            schema_for!(crate::billing::UpdateContact),
        ),
        (
            "cmd.account.set_tier.json".to_owned(),
            schema_for!(crate::billing::SetTier),
        ),
        (
            "cmd.account.close.json".to_owned(),
            schema_for!(crate::billing::CloseAccount),
        ),
        (
            "cmd.payment.record.json".to_owned(),
            schema_for!(crate::billing::RecordPayment),
        ),
        (
            "cmd.subscription.create.json".to_owned(),
            schema_for!(crate::billing::CreateSubscription),
        ),
        (
            "cmd.subscription.target.json".to_owned(),
            schema_for!(crate::billing::SubscriptionTarget),
        ),
        (
            "cmd.subscription.cancel.json".to_owned(),
            schema_for!(crate::billing::CancelSubscription),
        ),
        (
            "cmd.billing.run_invoices.json".to_owned(),
            schema_for!(crate::billing::RunInvoices),
        ),
        (
            "cmd.billing.meter.json".to_owned(),
            schema_for!(crate::billing::RunMeter),
        ),
        (
            "cmd.billing.check_overdue.json".to_owned(),
            schema_for!(crate::billing::CheckOverdue),
        ),
        ("reply.pods.debug.json".to_owned(), schema_for!(PodsReport)),
        (
            "cmd.notification.retry.json".to_owned(),
            schema_for!(crate::notification::NotificationTarget),
        ),
        ("cmd.schedule.set.json".to_owned(), schema_for!(SetSchedule)),
        (
            "cmd.schedule.target.json".to_owned(),
            schema_for!(ScheduleTarget),
        ),
        ("cmd.timer.set.json".to_owned(), schema_for!(SetTimer)),
        ("cmd.timer.cancel.json".to_owned(), schema_for!(TimerTarget)),
        (
            "cmd.provisioner.reconcile.json".to_owned(),
            schema_for!(Reconcile),
        ),
        (
            "reply.provisioner.reconcile.json".to_owned(),
            schema_for!(ReconcileReport),
        ),
    ];
    files.extend(
        status_schemas()
            .into_iter()
            .map(|(kind, schema)| (status_schema_file(kind), schema)),
    );
    files.extend(
        event_schemas()
            .into_iter()
            .map(|(event_type, schema)| (event_schema_file(event_type), schema)),
    );
    files
}

/// The JSON Schema of the body of `cmd.<…>.<kind>.<action>`, for every command in the
/// access table (`None` for one with no body, `dashboard.snapshot`, and for a command
/// berth does not serve). Tests generate their matrices from it.
pub fn command_body(kind: &str, action: &str) -> Option<Schema> {
    use crate::billing::*;
    use crate::notification::NotificationTarget;
    Some(match (kind, action) {
        ("vm", "create") => schema_for!(CreateVm),
        ("vm", "resize") => schema_for!(ResizeVm),
        ("vm", "exec") => schema_for!(ExecVm),
        ("vm", "start" | "stop" | "restart" | "recreate" | "destroy" | "retry") => {
            schema_for!(VmTarget)
        }
        ("pod", "create") => schema_for!(CreatePod),
        ("pod", "reset") => schema_for!(ResetPod),
        ("pod", "scale") => schema_for!(ScalePod),
        ("pod", "delete") => schema_for!(DeletePod),
        ("pod", "update_config") => schema_for!(UpdatePodConfig),
        ("pod", "logs") => schema_for!(PodLogs),
        ("pod", "expire" | "cancel") => schema_for!(EndPod),
        ("pod", "purge") => schema_for!(PurgePod),
        ("pod", "restart" | "renew") => schema_for!(PodTarget),
        ("account", "open") => schema_for!(OpenAccount),
        ("account", "update_contact") => schema_for!(UpdateContact),
        ("account", "set_tier") => schema_for!(SetTier),
        ("account", "close") => schema_for!(CloseAccount),
        ("payment", "record") => schema_for!(RecordPayment),
        ("subscription", "create") => schema_for!(CreateSubscription),
        ("subscription", "cancel") => schema_for!(CancelSubscription),
        ("subscription", "renew" | "expire") => schema_for!(SubscriptionTarget),
        ("billing", "run_invoices") => schema_for!(RunInvoices),
        ("billing", "meter") => schema_for!(RunMeter),
        ("billing", "check_overdue") => schema_for!(CheckOverdue),
        ("schedule", "create" | "update") => schema_for!(SetSchedule),
        ("schedule", "pause" | "resume" | "delete" | "fire_now") => schema_for!(ScheduleTarget),
        ("timer", "set") => schema_for!(SetTimer),
        ("timer", "cancel") => schema_for!(TimerTarget),
        ("notification", "retry") => schema_for!(NotificationTarget),
        ("tenant", "set_quota") => schema_for!(SetQuota),
        ("server", "register") => schema_for!(RegisterServer),
        ("server", "drain" | "undrain" | "decommission") => schema_for!(ServerTarget),
        ("provisioner", "reconcile") => schema_for!(Reconcile),
        ("pods", "debug") => schema_for!(DebugPods),
        _ => return None,
    })
}

/// `(ce-type, schema)` for every event of every family.
pub fn event_schemas() -> Vec<(&'static str, Schema)> {
    VmEvent::json_schemas()
        .into_iter()
        .chain(UsageEvent::json_schemas())
        .chain(ServerEvent::json_schemas())
        .chain(OrphanEvent::json_schemas())
        .chain(ScheduleEvent::json_schemas())
        .chain(crate::schedule::SlotEvent::json_schemas())
        .chain(DemoEvent::json_schemas())
        .chain(PodEvent::json_schemas())
        .chain(crate::pod::PodSlotEvent::json_schemas())
        .chain(crate::billing::AccountEvent::json_schemas())
        .chain(crate::billing::MeterEvent::json_schemas())
        .chain(crate::billing::SubscriptionEvent::json_schemas())
        .chain(crate::billing::InvoiceEvent::json_schemas())
        .chain(crate::suspension::SuspensionEvent::json_schemas())
        .chain(crate::notification::NotificationEvent::json_schemas())
        .collect()
}

/// `(kind, schema)` of the [`Status`] envelope of every kind.
pub fn status_schemas() -> Vec<(StatusKind, Schema)> {
    fn of<T: StatusState>() -> (StatusKind, Schema) {
        (T::KIND, schema_for!(Status<T>))
    }
    vec![
        of::<VmState>(),
        of::<ServerState>(),
        of::<PodState>(),
        of::<ScheduleState>(),
        of::<NotificationState>(),
        of::<AccountState>(),
        of::<InvoiceState>(),
        of::<SubscriptionState>(),
        of::<ProjectionHealth>(),
    ]
}

/// The file name of a status kind's schema.
pub fn status_schema_file(kind: StatusKind) -> String {
    format!("status.{kind}.json")
}

/// Every `ce-type` berth appends.
pub fn event_types() -> Vec<&'static str> {
    event_schemas().into_iter().map(|(t, _)| t).collect()
}

/// The file name of an event type's schema.
pub fn event_schema_file(event_type: &str) -> String {
    format!("{event_type}.json")
}

/// The text a schema is checked in as.
pub fn render(schema: &Schema) -> String {
    let mut text = serde_json::to_string_pretty(schema).expect("schemas serialize");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn every_command_in_the_access_table_has_a_body_schema() {
        for row in crate::access::COMMANDS {
            let schema = command_body(row.kind, row.action);
            assert_eq!(
                schema.is_some(),
                row.kind != "dashboard",
                "{}.{}",
                row.kind,
                row.action
            );
        }
    }

    /// Fails when `schemas/json/` differs from what the types generate.
    /// `just schemas` (BERTH_WRITE_SCHEMAS=1) rewrites the files.
    #[test]
    fn checked_in_schemas_match_the_types() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("json");
        #[allow(clippy::disallowed_methods)]
        let write = std::env::var_os("BERTH_WRITE_SCHEMAS").is_some();
        let mut drifted = Vec::new();
        let expected: Vec<_> = all()
            .into_iter()
            .map(|(name, s)| (name, render(&s)))
            .collect();
        for (name, text) in &expected {
            let path = dir.join(name);
            if write {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, text).unwrap();
            } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                drifted.push(name.clone());
            }
        }
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if !expected.iter().any(|(known, _)| *known == name) {
                drifted.push(format!("{name} (no type generates it)"));
            }
        }
        assert!(
            drifted.is_empty(),
            "schemas/json drifted from the types, run `just schemas`: {drifted:?}"
        );
    }

    #[test]
    fn event_bodies_validate_against_their_schemas() {
        use crate::vm::{VmFailed, VmRequested};
        let events = [
            VmEvent::Requested(VmRequested {
                name: "web".into(),
                vcpus: 1,
                memory_mb: 512,
                disk_gb: 10,
                image: "debian-12".into(),
                plan: None,
                region: None,
            }),
            VmEvent::Failed(VmFailed {
                operation: "start".into(),
                reason: "x".into(),
            }),
        ];
        for event in events {
            let schema = VmEvent::json_schemas()
                .into_iter()
                .find(|(t, _)| *t == event.event_type())
                .unwrap()
                .1;
            let validator = jsonschema::validator_for(schema.as_value()).unwrap();
            let body: serde_json::Value = serde_json::from_slice(&event.to_json()).unwrap();
            assert!(validator.is_valid(&body));
            assert!(!validator.is_valid(&serde_json::json!({"name": 3})));
        }
    }
}
