//! Every subject berth uses and every stream it keeps, as documented constants and
//! functions. Subjects are only ever built here, from validated ids.
//!
//! - streams: [`EVENTS_STREAM`], [`STATUS_STREAM`], [`DLQ_STREAM`], [`RETRY_STREAM`];
//! - events `evt.<tenant>.<aggregate>.<id>`: [`event_subject`] and the filters over it;
//! - commands `cmd.<tenant>.<kind>.<action>`: [`command_subject`] and the filters over it,
//!   and the two operator requests [`RECONCILE_SUBJECT`] and [`PODS_DEBUG_SUBJECT`];
//! - status `status.<tenant>.<kind>.<id>`: [`status_subject`] with a [`StatusKind`];
//! - dead letters `dlq.<consumer>` and their retries `retry.<consumer>`.
//!
//! The AsyncAPI document ([`crate::asyncapi`]) names, for each channel, the items of this
//! module that build or match its address; a test fails on an item it does not name.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{validate_subject_token, InvalidToken, TenantId, SYSTEM_TENANT};

/// The append-only event log: `evt.<tenant>.<aggregate>.<id>`.
pub const EVENTS_STREAM: &str = "EVENTS";
/// Last-value status of every projected thing: `status.<tenant>.<kind>.<id>`.
pub const STATUS_STREAM: &str = "STATUS";
/// Messages a consumer gave up on: `dlq.<consumer>`.
pub const DLQ_STREAM: &str = "DLQ";
/// The work queue of messages a reactor handles again: `retry.<consumer>`.
pub const RETRY_STREAM: &str = "RETRY";

/// Every event of every tenant (the audit log follows it).
pub const ALL_EVENTS: &str = "evt.>";
/// Every command subject (operators' dashboard users may publish to it).
pub const ALL_COMMANDS: &str = "cmd.>";
/// Every status subject of every tenant (operators' dashboards follow it).
pub const ALL_STATUS: &str = "status.>";
/// Every dead letter of every consumer.
pub const ALL_DEAD_LETTERS: &str = "dlq.>";
/// Operators ask the provisioner to reconcile now (request/reply, one replica answers):
/// body [`Reconcile`](crate::orphan::Reconcile), reply a report or a rejection.
pub const RECONCILE_SUBJECT: &str = "cmd.system.provisioner.reconcile";
/// Operators ask pod-lifecycle to compare its runtime with the pods (request/reply, one
/// replica answers): body [`DebugPods`](crate::pod::DebugPods), reply
/// [`PodsReport`](crate::pod::PodsReport) or a rejection.
pub const PODS_DEBUG_SUBJECT: &str = "cmd.system.pods.debug";

/// The subject of one aggregate instance's events.
pub fn event_subject(tenant: &TenantId, aggregate: &str, id: Uuid) -> String {
    format!("evt.{tenant}.{aggregate}.{}", id.hyphenated())
}

/// A filter over every instance of one aggregate kind, all tenants.
pub fn event_filter(aggregate: &str) -> String {
    format!("evt.*.{aggregate}.*")
}

/// A filter over every instance of one aggregate kind of one tenant.
pub fn tenant_event_filter(tenant: &TenantId, aggregate: &str) -> String {
    format!("evt.{tenant}.{aggregate}.*")
}

/// A filter over the events of one tenant or all (`None`), of one aggregate kind or all.
pub fn events_filter(tenant: Option<&TenantId>, aggregate: Option<&str>) -> String {
    format!(
        "evt.{}.{}.*",
        tenant.map_or("*", TenantId::as_str),
        aggregate.unwrap_or("*")
    )
}

/// A filter over the aggregate of one kind with this id, whichever tenant holds it.
pub fn aggregate_event_filter(aggregate: &str, id: Uuid) -> String {
    format!("evt.*.{aggregate}.{}", id.hyphenated())
}

/// A filter over every aggregate with this id, of any kind and tenant.
pub fn id_event_filter(id: Uuid) -> String {
    format!("evt.*.*.{}", id.hyphenated())
}

/// A filter over every event of one tenant.
pub fn tenant_events_filter(tenant: &TenantId) -> String {
    format!("evt.{tenant}.>")
}

/// The subject a command is sent to.
pub fn command_subject(tenant: &TenantId, aggregate: &str, action: &str) -> String {
    format!("cmd.{tenant}.{aggregate}.{action}")
}

/// The filter a service's command endpoint listens on for one aggregate kind.
pub fn command_filter(aggregate: &str) -> String {
    format!("cmd.*.{aggregate}.*")
}

/// The filter of one action of one kind, from every tenant.
pub fn action_filter(aggregate: &str, action: &str) -> String {
    format!("cmd.*.{aggregate}.{action}")
}

/// The filter of the operators' commands of one kind (`cmd.system.<kind>.*`).
pub fn system_command_filter(aggregate: &str) -> String {
    format!("cmd.{SYSTEM_TENANT}.{aggregate}.*")
}

/// What a status subject is about: the third token of `status.<tenant>.<kind>.<id>`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StatusKind {
    /// A VM, from the `vms` projection.
    Vm,
    /// A server VMs are placed on (tenant `system`), from the `servers` projection.
    Server,
    /// An app pod, from the `pods` projection.
    Pod,
    /// A schedule or one-shot timer, from the `schedules` projection.
    Schedule,
    /// A mail or webhook post, from the `notifications` projection.
    Notification,
    /// A tenant's billing account, from the `billing` projection.
    Account,
    /// An issued invoice, from the `billing` projection.
    Invoice,
    /// A pod subscription, from the `billing` projection.
    Subscription,
    /// A projection's own health (tenant `system`, id the projection's name).
    Projection,
}

impl StatusKind {
    /// Every kind, in declaration order.
    pub const ALL: [StatusKind; 9] = [
        Self::Vm,
        Self::Server,
        Self::Pod,
        Self::Schedule,
        Self::Notification,
        Self::Account,
        Self::Invoice,
        Self::Subscription,
        Self::Projection,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vm => "vm",
            Self::Server => "server",
            Self::Pod => "pod",
            Self::Schedule => "schedule",
            Self::Notification => "notification",
            Self::Account => "account",
            Self::Invoice => "invoice",
            Self::Subscription => "subscription",
            Self::Projection => "projection",
        }
    }
}

impl fmt::Display for StatusKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The last-value status subject of one projected thing.
pub fn status_subject(
    tenant: &TenantId,
    kind: StatusKind,
    id: &str,
) -> Result<String, InvalidToken> {
    validate_subject_token("status id", id)?;
    Ok(format!("status.{tenant}.{kind}.{id}"))
}

/// A filter over every status of one tenant.
pub fn tenant_status_filter(tenant: &TenantId) -> String {
    format!("status.{tenant}.>")
}

/// The dead-letter subject of one durable consumer.
pub fn dlq_subject(consumer: &str) -> Result<String, InvalidToken> {
    validate_subject_token("consumer name", consumer)?;
    Ok(format!("dlq.{consumer}"))
}

/// The subject a consumer's retried dead letters arrive on.
pub fn retry_subject(consumer: &str) -> Result<String, InvalidToken> {
    validate_subject_token("consumer name", consumer)?;
    Ok(format!("retry.{consumer}"))
}

/// The tokens of an event subject, parsed back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSubject {
    pub tenant: TenantId,
    pub aggregate: String,
    pub id: Uuid,
}

impl EventSubject {
    pub fn parse(subject: &str) -> Option<Self> {
        let mut tokens = subject.split('.');
        let (Some("evt"), Some(tenant), Some(aggregate), Some(id), None) = (
            tokens.next(),
            tokens.next(),
            tokens.next(),
            tokens.next(),
            tokens.next(),
        ) else {
            return None;
        };
        Some(Self {
            tenant: TenantId::parse(tenant).ok()?,
            aggregate: aggregate.to_owned(),
            id: Uuid::parse_str(id).ok()?,
        })
    }
}

/// The subject of query `kind.op` asked in `scope` (a tenant, or `system` for operators):
/// `query.<scope>.<kind>.<op>` ([`crate::query`]).
pub fn query_subject(scope: &TenantId, kind: &str, op: &str) -> String {
    format!("{}.{scope}.{kind}.{op}", crate::query::QUERY)
}

/// What a service answers query `kind.op` on, in every scope: `query.*.<kind>.<op>`.
pub fn query_filter(kind: &str, op: &str) -> String {
    format!("{}.*.{kind}.{op}", crate::query::QUERY)
}

/// The subject operators ask `op` (`rebuild`, `status`, `retry`) of projection `name` on:
/// `projection.<name>.<op>` ([`crate::query::projection`]).
pub fn projection_subject(name: &str, op: &str) -> Result<String, InvalidToken> {
    validate_subject_token("projection name", name)?;
    Ok(format!(
        "{}.{name}.{op}",
        crate::query::projection::PROJECTION
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_subjects_round_trip() {
        let tenant = TenantId::parse("acme").unwrap();
        let id = Uuid::now_v7();
        let subject = event_subject(&tenant, "vm", id);
        let parsed = EventSubject::parse(&subject).unwrap();
        assert_eq!(parsed.tenant, tenant);
        assert_eq!(parsed.aggregate, "vm");
        assert_eq!(parsed.id, id);
        assert!(EventSubject::parse("evt.acme.vm").is_none());
        assert!(EventSubject::parse("evt.ACME.vm.x").is_none());
    }

    #[test]
    fn status_dlq_and_retry_refuse_wildcards() {
        let tenant = TenantId::parse("acme").unwrap();
        assert!(status_subject(&tenant, StatusKind::Vm, "a.b").is_err());
        assert!(dlq_subject("x>").is_err());
        assert!(retry_subject("a b").is_err());
        assert_eq!(dlq_subject("provisioner-vm").unwrap(), "dlq.provisioner-vm");
        assert_eq!(
            retry_subject("provisioner-vm").unwrap(),
            "retry.provisioner-vm"
        );
    }

    #[test]
    fn status_kinds_are_their_subject_tokens() {
        for kind in StatusKind::ALL {
            let token = serde_json::to_value(kind).unwrap();
            assert_eq!(token, kind.as_str());
        }
        let tenant = TenantId::system();
        assert_eq!(
            status_subject(&tenant, StatusKind::Projection, "vms").unwrap(),
            "status.system.projection.vms"
        );
    }
}
