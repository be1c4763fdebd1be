//! Who may send each command (DESIGN §7): one table, read by the command endpoints (a
//! tenant action on a tenant subject, an operator action only from operators), by the
//! scheduler (what a tenant's schedule may send), by the NATS permissions `berth up`
//! writes for tenant users, and by the cross-tenant tests, which generate their matrix
//! from it.
//!
//! An operator command about one tenant's things travels on the operator's own subject,
//! `cmd.system.<kind>.<action>`, with the tenant in the [`TARGET_TENANT`] header; a
//! tenant can never publish there, so it can never send an operator action, whatever it
//! writes into a body or a header. [`route`] builds that subject for a sender.

use crate::command::Rejection;
use crate::ids::{TenantId, SYSTEM_TENANT};
use crate::subjects::command_subject;

/// The header that names the tenant an operator command is about; honoured only on
/// `cmd.system.…` subjects.
pub const TARGET_TENANT: &str = "berth-tenant";

/// Who may send a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sender {
    /// A tenant, about its own things, on `cmd.<tenant>.…` (operators may send it too).
    Tenant,
    /// Only operators and berth's services, on `cmd.system.…`.
    Operator,
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CommandAccess {
    /// The kind token: `cmd.<tenant>.<kind>.<action>`.
    pub kind: &'static str,
    pub action: &'static str,
    pub sender: Sender,
    /// Whether the command can bring a new aggregate into being under a caller-chosen
    /// or command-derived id (the id must then not belong to another tenant).
    pub creates: bool,
    /// Whether it may run long (`vm.exec`): it then runs outside the endpoint's shared
    /// slots, within its tenant's small long-running share.
    pub long_running: bool,
}

const fn tenant(kind: &'static str, action: &'static str) -> CommandAccess {
    CommandAccess {
        kind,
        action,
        sender: Sender::Tenant,
        creates: false,
        long_running: false,
    }
}

const fn tenant_create(kind: &'static str, action: &'static str) -> CommandAccess {
    CommandAccess {
        creates: true,
        ..tenant(kind, action)
    }
}

const fn tenant_long_running(kind: &'static str, action: &'static str) -> CommandAccess {
    CommandAccess {
        long_running: true,
        ..tenant(kind, action)
    }
}

const fn operator(kind: &'static str, action: &'static str) -> CommandAccess {
    CommandAccess {
        sender: Sender::Operator,
        ..tenant(kind, action)
    }
}

/// Every command berth serves, and who may send it.
pub const COMMANDS: &[CommandAccess] = &[
    // VMs: the tenant's own machines.
    tenant_create("vm", "create"),
    tenant("vm", "start"),
    tenant("vm", "stop"),
    tenant("vm", "restart"),
    tenant("vm", "recreate"),
    tenant("vm", "resize"),
    tenant("vm", "destroy"),
    tenant_long_running("vm", "exec"),
    tenant("vm", "retry"),
    // Pods: the tenant runs them; their subscription's life is billing's to drive.
    tenant_create("pod", "create"),
    tenant("pod", "restart"),
    tenant("pod", "reset"),
    tenant("pod", "scale"),
    tenant("pod", "delete"),
    tenant("pod", "update_config"),
    tenant("pod", "logs"),
    operator("pod", "expire"),
    operator("pod", "cancel"),
    operator("pod", "renew"),
    operator("pod", "purge"),
    // Billing: a tenant keeps its contact and its subscriptions; money, tiers and
    // accounts' existence are the provider's.
    operator("account", "open"),
    tenant("account", "update_contact"),
    operator("account", "set_tier"),
    operator("account", "close"),
    operator("payment", "record"),
    tenant_create("subscription", "create"),
    tenant("subscription", "renew"),
    tenant("subscription", "cancel"),
    operator("subscription", "expire"),
    operator("billing", "run_invoices"),
    operator("billing", "meter"),
    operator("billing", "check_overdue"),
    // Schedules and timers: a tenant's schedule may only send tenant actions to its own
    // tenant (checked by the scheduler against this table).
    tenant("schedule", "create"),
    tenant("schedule", "update"),
    tenant("schedule", "pause"),
    tenant("schedule", "resume"),
    tenant("schedule", "delete"),
    tenant("schedule", "fire_now"),
    tenant("timer", "set"),
    tenant("timer", "cancel"),
    // Notifications are the provider's outbox.
    operator("notification", "retry"),
    // The provider's own machinery.
    operator("tenant", "set_quota"),
    operator("server", "register"),
    operator("server", "drain"),
    operator("server", "undrain"),
    operator("server", "decommission"),
    operator("provisioner", "reconcile"),
    operator("pods", "debug"),
    // A dashboard page reads its own tenant's snapshot.
    tenant("dashboard", "snapshot"),
];

/// The row of `cmd.<…>.<kind>.<action>`, if berth serves it.
pub fn lookup(kind: &str, action: &str) -> Option<&'static CommandAccess> {
    COMMANDS
        .iter()
        .find(|row| row.kind == kind && row.action == action)
}

/// Who may send `kind.action`; `None` for a command berth does not serve.
pub fn sender_of(kind: &str, action: &str) -> Option<Sender> {
    lookup(kind, action).map(|row| row.sender)
}

/// Every action a tenant may send, as `(kind, action)`.
pub fn tenant_actions() -> impl Iterator<Item = &'static CommandAccess> {
    COMMANDS.iter().filter(|row| row.sender == Sender::Tenant)
}

/// The actions of one kind, in table order.
pub fn actions_of(kind: &str) -> impl Iterator<Item = &'static str> + '_ {
    COMMANDS
        .iter()
        .filter(move |row| row.kind == kind)
        .map(|row| row.action)
}

/// Where a command about `tenant`'s things is sent, and the [`TARGET_TENANT`] header it
/// needs: a tenant action on the tenant's own subject, an operator action on
/// `cmd.system.<kind>.<action>` naming the tenant. Commands berth does not serve (a
/// schedule's action aimed at another system) keep the tenant's subject.
pub fn route(tenant: &TenantId, kind: &str, action: &str) -> (String, Option<TenantId>) {
    let operator_only = sender_of(kind, action) == Some(Sender::Operator);
    if operator_only && tenant.as_str() != SYSTEM_TENANT {
        (
            command_subject(&TenantId::system(), kind, action),
            Some(tenant.clone()),
        )
    } else {
        (command_subject(tenant, kind, action), None)
    }
}

/// Decodes the body of any command in [`COMMANDS`] with its own strict decoder: what a
/// schedule that will send it later must pass now, and what the decoder fuzz tests run.
pub fn decode_command(kind: &str, action: &str, body: &[u8]) -> Result<(), Rejection> {
    use crate::command::CommandSet;
    fn decoded<T>(result: Result<T, Rejection>) -> Result<(), Rejection> {
        result.map(drop)
    }
    match kind {
        "vm" => decoded(crate::vm::VmCommand::decode(action, body)),
        "pod" => decoded(<crate::pod::PodCommand as CommandSet>::decode(action, body)),
        "account" => decoded(crate::billing::AccountCommand::decode(action, body)),
        "payment" => decoded(crate::billing::PaymentCommand::decode(action, body)),
        "subscription" => decoded(crate::billing::SubscriptionCommand::decode(action, body)),
        "billing" => decoded(crate::billing::BillingCommand::decode(action, body)),
        "schedule" => decoded(crate::schedule::ScheduleCommand::decode(action, body)),
        "timer" => decoded(crate::schedule::TimerCommand::decode(action, body)),
        "notification" => decoded(crate::notification::NotificationCommand::decode(
            action, body,
        )),
        "tenant" => decoded(crate::usage::TenantCommand::decode(action, body)),
        "server" => decoded(crate::server::ServerCommand::decode(action, body)),
        "provisioner" => decoded(crate::orphan::Reconcile::decode(body)),
        "pods" => decoded(crate::pod::DebugPods::decode(body)),
        // The snapshot request has no body to speak of.
        "dashboard" => Ok(()),
        other => Err(Rejection::invalid(format!(
            "berth serves no {:?} commands",
            other.chars().take(40).collect::<String>()
        ))),
    }
}

/// NATS publish permissions of a tenant's own users: exactly its tenant actions.
pub fn tenant_publish_subjects(tenant: &TenantId) -> Vec<String> {
    tenant_actions()
        .map(|row| command_subject(tenant, row.kind, row.action))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_row_is_unique_and_made_of_subject_tokens() {
        let mut seen = HashSet::new();
        for row in COMMANDS {
            assert!(seen.insert((row.kind, row.action)), "{row:?} twice");
            for token in [row.kind, row.action] {
                assert!(
                    token
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit()),
                    "{token:?}"
                );
            }
        }
    }

    #[test]
    fn operator_actions_about_a_tenant_travel_on_the_system_subject() {
        let acme = TenantId::parse("acme").unwrap();
        assert_eq!(
            route(&acme, "payment", "record"),
            ("cmd.system.payment.record".to_owned(), Some(acme.clone()))
        );
        assert_eq!(
            route(&acme, "vm", "stop"),
            ("cmd.acme.vm.stop".to_owned(), None)
        );
        assert_eq!(
            route(&TenantId::system(), "server", "drain"),
            ("cmd.system.server.drain".to_owned(), None)
        );
        assert_eq!(
            route(&acme, "widget", "poke"),
            ("cmd.acme.widget.poke".to_owned(), None)
        );
    }

    /// `nats/dev.conf` documents the permissions `berth up` writes; it must not drift.
    #[test]
    fn the_documented_dev_config_grants_the_demo_user_exactly_its_tenant_actions() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../nats/dev.conf");
        let config = std::fs::read_to_string(path).expect("nats/dev.conf");
        let demo = config
            .split("user: \"demo\"")
            .nth(1)
            .and_then(|rest| rest.split("subscribe").next())
            .expect("the demo user");
        let documented: Vec<&str> = demo
            .split('"')
            .filter(|token| token.starts_with("cmd."))
            .collect();
        let demo = TenantId::parse("demo").unwrap();
        assert_eq!(documented, tenant_publish_subjects(&demo));
    }

    #[test]
    fn tenant_users_may_publish_no_operator_action() {
        let acme = TenantId::parse("acme").unwrap();
        let subjects = tenant_publish_subjects(&acme);
        assert!(subjects.contains(&"cmd.acme.vm.create".to_owned()));
        assert!(!subjects.iter().any(|s| s.ends_with("payment.record")));
        assert!(!subjects.iter().any(|s| s.contains('*') || s.contains('>')));
    }
}
