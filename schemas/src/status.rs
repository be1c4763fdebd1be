//! What projections publish on `status.<tenant>.<kind>.<id>` after each commit: a
//! [`Status`] envelope around the current state of one thing, one state type per
//! [`StatusKind`] (in [`states`]). The `STATUS` stream keeps the last message per
//! subject; clients drop a message whose `version` is not newer than what they have.
//!
//! Worked example: the `vms` projection publishes
//! `Status::new(vm.id, tenant, version, vm)` for a [`VmState`] on
//! [`Status::subject`]; `berth vm … --wait` reads it back as `Status<VmState>` and
//! compares `state.status` with a [`VmStatus`](crate::vm::VmStatus).

use std::borrow::Cow;
use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::{InvalidToken, TenantId};
use crate::subjects::{status_subject, StatusKind};

mod states;

pub use states::*;

/// The state of one kind of status: what goes into [`Status::state`].
pub trait StatusState:
    Serialize + DeserializeOwned + JsonSchema + Clone + fmt::Debug + PartialEq
{
    /// The kind, as in the subject and the envelope's `kind`.
    const KIND: StatusKind;
    /// The last token of the subject: a UUID, or a projection's name.
    type Id: Serialize
        + DeserializeOwned
        + JsonSchema
        + fmt::Display
        + Clone
        + fmt::Debug
        + PartialEq;

    /// Why the thing is not where it was asked to be, shown as the envelope's `reason`.
    fn reason(&self) -> Option<&str> {
        None
    }
}

/// The body of `status.<tenant>.<kind>.<id>`:
/// `{"kind", "id", "tenant", "version", "state", "reason"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Status<T: StatusState> {
    pub id: T::Id,
    pub tenant: TenantId,
    /// The stream sequence of the last event applied (a projection's health: the time
    /// of the publish in microseconds). Newer messages have a higher version.
    pub version: u64,
    pub state: T,
}

impl<T: StatusState> Status<T> {
    pub fn new(id: T::Id, tenant: TenantId, version: u64, state: T) -> Self {
        Self {
            id,
            tenant,
            version,
            state,
        }
    }

    /// Why the thing is not where it was asked to be, if the state says.
    pub fn reason(&self) -> Option<&str> {
        self.state.reason()
    }

    /// The subject this status is published on.
    pub fn subject(&self) -> Result<String, InvalidToken> {
        status_subject(&self.tenant, T::KIND, &self.id.to_string())
    }

    /// The message body.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("statuses are plain data and always serialize")
    }
}

impl<T: StatusState> Serialize for Status<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut body = serializer.serialize_struct("Status", 6)?;
        body.serialize_field("kind", &T::KIND)?;
        body.serialize_field("id", &self.id)?;
        body.serialize_field("tenant", &self.tenant)?;
        body.serialize_field("version", &self.version)?;
        body.serialize_field("state", &self.state)?;
        body.serialize_field("reason", &self.reason())?;
        body.end()
    }
}

/// The envelope as read: `reason` is derived from the state, so it is not kept.
#[derive(Deserialize)]
#[serde(bound = "T: StatusState")]
struct Received<T: StatusState> {
    kind: StatusKind,
    id: T::Id,
    tenant: TenantId,
    version: u64,
    state: T,
}

impl<'de, T: StatusState> Deserialize<'de> for Status<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let received = Received::<T>::deserialize(deserializer)?;
        if received.kind != T::KIND {
            return Err(serde::de::Error::custom(format!(
                "a {} status, not {}",
                received.kind,
                T::KIND
            )));
        }
        Ok(Self::new(
            received.id,
            received.tenant,
            received.version,
            received.state,
        ))
    }
}

impl<T: StatusState> JsonSchema for Status<T> {
    fn schema_name() -> Cow<'static, str> {
        format!("Status_{}", T::schema_name()).into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": format!(
                "The body of status.<tenant>.{}.<id>, published after each commit.",
                T::KIND
            ),
            "type": "object",
            "properties": {
                "kind": { "const": T::KIND.as_str() },
                "id": generator.subschema_for::<T::Id>(),
                "tenant": generator.subschema_for::<TenantId>(),
                "version": {
                    "description": "The stream sequence of the last event applied; clients drop what is not newer.",
                    "type": "integer",
                    "minimum": 0
                },
                "state": generator.subschema_for::<T>(),
                "reason": {
                    "description": "Why the thing is not where it was asked to be, else null.",
                    "type": ["string", "null"]
                }
            },
            "required": ["kind", "id", "tenant", "version", "state", "reason"]
        })
    }
}

/// A status of any kind, told apart by its `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum AnyStatus {
    Vm(Status<VmState>),
    Server(Status<ServerState>),
    Pod(Status<PodState>),
    Schedule(Status<ScheduleState>),
    Notification(Status<NotificationState>),
    Account(Status<AccountState>),
    Invoice(Status<InvoiceState>),
    Subscription(Status<SubscriptionState>),
    Projection(Status<ProjectionHealth>),
}

impl<'de> Deserialize<'de> for AnyStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Kind {
            kind: StatusKind,
        }
        let body = serde_json::Value::deserialize(deserializer)?;
        let kind = Kind::deserialize(&body)
            .map_err(serde::de::Error::custom)?
            .kind;
        fn typed<T: StatusState, E: serde::de::Error>(
            body: serde_json::Value,
        ) -> Result<Status<T>, E> {
            serde_json::from_value(body).map_err(E::custom)
        }
        Ok(match kind {
            StatusKind::Vm => Self::Vm(typed(body)?),
            StatusKind::Server => Self::Server(typed(body)?),
            StatusKind::Pod => Self::Pod(typed(body)?),
            StatusKind::Schedule => Self::Schedule(typed(body)?),
            StatusKind::Notification => Self::Notification(typed(body)?),
            StatusKind::Account => Self::Account(typed(body)?),
            StatusKind::Invoice => Self::Invoice(typed(body)?),
            StatusKind::Subscription => Self::Subscription(typed(body)?),
            StatusKind::Projection => Self::Projection(typed(body)?),
        })
    }
}

/// One subject's last status in a [`DashboardSnapshot`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SnapshotEntry {
    pub subject: String,
    pub body: AnyStatus,
}

/// The answer to `cmd.<tenant>.dashboard.snapshot`: the last status of every subject the
/// sender may read, cut short (with `truncated`) to stay under NATS' payload limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DashboardSnapshot {
    pub statuses: Vec<SnapshotEntry>,
    pub truncated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::VmStatus;
    use uuid::Uuid;

    fn vm() -> VmState {
        let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        VmState {
            id: Uuid::nil(),
            tenant: "acme".into(),
            name: "web".into(),
            status: VmStatus::Degraded,
            desired_running: true,
            vcpus: 1,
            memory_mb: 512,
            disk_gb: 10,
            image: "debian-12".into(),
            plan: None,
            region: None,
            host: None,
            provider_ref: None,
            reason: Some("start failed 3 times".into()),
            version: 7,
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn the_envelope_carries_its_kind_and_the_states_reason() {
        let status = Status::new(Uuid::nil(), TenantId::parse("acme").unwrap(), 7, vm());
        let body: serde_json::Value = serde_json::from_slice(&status.to_json()).unwrap();
        assert_eq!(body["kind"], "vm");
        assert_eq!(body["reason"], "start failed 3 times");
        assert_eq!(body["state"]["status"], "degraded");
        assert_eq!(
            status.subject().unwrap(),
            format!("status.acme.vm.{}", Uuid::nil())
        );
        let back: Status<VmState> = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(back, status);
        assert_eq!(
            serde_json::from_value::<AnyStatus>(body.clone()).unwrap(),
            AnyStatus::Vm(status)
        );
        assert!(serde_json::from_value::<Status<PodState>>(body).is_err());
    }

    #[test]
    fn statuses_validate_against_their_schema() {
        let status = Status::new(Uuid::nil(), TenantId::parse("acme").unwrap(), 7, vm());
        let schema = schemars::schema_for!(Status<VmState>);
        let validator = jsonschema::validator_for(schema.as_value()).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&status.to_json()).unwrap();
        assert!(validator.is_valid(&body));
        let mut pod = body.clone();
        pod["kind"] = "pod".into();
        assert!(!validator.is_valid(&pod));
    }
}
