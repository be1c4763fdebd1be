//! berth-scheduler-core: the pure domain of berth-scheduler — schedules and timers, and when they are due.
//!
//! Aggregates with pure `decide` and `apply` ([`berth_schemas::aggregate::Aggregate`]) and
//! their given → when → then tests. No I/O, no clock reads: this crate depends on the
//! contract ([`berth_schemas`]) only, so the service, the CLI and tests share one
//! definition of what a command may do.

pub mod schedule;
pub mod slots;
pub mod timing;
