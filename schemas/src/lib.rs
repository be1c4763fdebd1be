//! berth-schemas: the wire contract every berth service and client shares.
//!
//! - [`ids`]: validated tokens (tenant ids, aggregate ids) — anything that goes into a
//!   NATS subject is checked here first.
//! - [`subjects`]: every stream, subject and status kind, as constants and the functions
//!   that build subjects from validated ids.
//! - [`envelope`]: CloudEvents 1.0 in binary mode over NATS headers (DESIGN §3).
//! - [`command`]: command metadata, replies (generic over what a command prints) and
//!   typed rejections.
//! - [`status`]: the `Status<T>` envelope projections publish, one state type per kind.
//! - [`access`]: who may send each command (tenant or operator), the one table.
//! - [`aggregate`]: the `Aggregate` trait (pure `decide` and `apply`) and a decision's `Context`.
//! - [`bounds`]: size, depth and NUL bounds on what callers send.
//! - [`vm`]: the VM commands and events.
//! - [`suspension`]: what the provisioner and pod-lifecycle stopped for a suspended account.
//! - [`billing`]: accounts, subscriptions, payments, metered usage and invoices.
//! - [`demo`]: the public demo's daily reset (`evt.<tenant>.demo.<id>`).
//! - [`orphan`]: reconciliation requests and reports, machines no VM owns.
//! - [`notification`]: mails and webhook posts, one per source, recipient and channel.
//! - [`pod`]: app pods from the catalog with their volumes (`cmd.<tenant>.pod.*`).
//! - [`schedule`]: schedules and one-shot timers (`cmd.<tenant>.schedule|timer.*`).
//! - [`server`]: hosts VMs are placed on (`cmd.system.server.*`, the `server` aggregate).
//! - [`usage`]: per-tenant quotas (the `usage` aggregate, `tenant.set_quota`).
//! - [`query`]: reads over request/reply (`query.<scope>.<kind>.<op>`), paged, and
//!   operators' requests about projections (`projection.<name>.<op>`).
//! - [`json_schema`]: the generated JSON Schema files in `schemas/json/`.
//! - [`asyncapi`]: the generated `schemas/asyncapi.yaml`, every channel with its messages.
//!
//! Worked example: `vm::VmCommand::decode("create", body)` parses a command body with
//! `deny_unknown_fields` and bounds checks; `vm::VmEvent` maps every event to its
//! `ce-type` and back.

pub mod access;
pub mod aggregate;
pub mod asyncapi;
pub mod billing;
pub mod bounds;
pub mod command;
pub mod demo;
pub mod envelope;
pub mod event;
pub mod ids;
pub mod json_schema;
pub mod notification;
pub mod orphan;
pub mod pod;
pub mod query;
pub mod schedule;
pub mod server;
pub mod status;
pub mod subjects;
pub mod suspension;
pub mod usage;
pub mod vm;

pub use command::{CommandMeta, CommandReply, CommandSet, RecordedEvent, Rejection, RejectionCode};
pub use event::{DecodeError, DomainEvent};
pub use ids::{Actor, InvalidToken, TenantId};
