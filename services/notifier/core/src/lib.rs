//! berth-notifier-core: the pure domain of berth-notifier — notifications: one per source, recipient and channel, and their delivery attempts.
//!
//! Aggregates with pure `decide` and `apply` ([`berth_schemas::aggregate::Aggregate`]) and
//! their given → when → then tests. No I/O, no clock reads: this crate depends on the
//! contract ([`berth_schemas`]) only, so the service, the CLI and tests share one
//! definition of what a command may do.

pub mod notification;
