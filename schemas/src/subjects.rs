//! Stream names and subject builders. Subjects are only ever built from validated ids.

use uuid::Uuid;

use crate::ids::{validate_subject_token, InvalidToken, TenantId};

/// The append-only event log: `evt.<tenant>.<aggregate>.<id>`.
pub const EVENTS_STREAM: &str = "EVENTS";
/// Last-value status of every projected thing: `status.<tenant>.<kind>.<id>`.
pub const STATUS_STREAM: &str = "STATUS";
/// Messages a consumer gave up on: `dlq.<consumer>`.
pub const DLQ_STREAM: &str = "DLQ";

/// The subject of one aggregate instance's events.
pub fn event_subject(tenant: &TenantId, aggregate: &str, id: Uuid) -> String {
    format!("evt.{tenant}.{aggregate}.{}", id.hyphenated())
}

/// A filter over every instance of one aggregate kind, all tenants.
pub fn event_filter(aggregate: &str) -> String {
    format!("evt.*.{aggregate}.*")
}

/// The subject a command is sent to.
pub fn command_subject(tenant: &TenantId, aggregate: &str, action: &str) -> String {
    format!("cmd.{tenant}.{aggregate}.{action}")
}

/// The filter a service's command endpoint listens on for one aggregate kind.
pub fn command_filter(aggregate: &str) -> String {
    format!("cmd.*.{aggregate}.*")
}

/// The last-value status subject of one projected thing.
pub fn status_subject(tenant: &TenantId, kind: &str, id: &str) -> Result<String, InvalidToken> {
    validate_subject_token("status id", id)?;
    Ok(format!("status.{tenant}.{kind}.{id}"))
}

/// The dead-letter subject of one durable consumer.
pub fn dlq_subject(consumer: &str) -> Result<String, InvalidToken> {
    validate_subject_token("consumer name", consumer)?;
    Ok(format!("dlq.{consumer}"))
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
    fn status_and_dlq_refuse_wildcards() {
        let tenant = TenantId::parse("acme").unwrap();
        assert!(status_subject(&tenant, "vm", "a.b").is_err());
        assert!(dlq_subject("x>").is_err());
        assert_eq!(dlq_subject("provisioner-vm").unwrap(), "dlq.provisioner-vm");
    }
}
