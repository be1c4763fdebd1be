//! berth-billing-core: the pure domain of berth-billing — accounts, payments and subscriptions.
//!
//! Aggregates with pure `decide` and `apply` ([`berth_schemas::aggregate::Aggregate`]) and
//! their given → when → then tests. No I/O, no clock reads: this crate depends on the
//! contract ([`berth_schemas`]) only, so the service, the CLI and tests share one
//! definition of what a command may do.

pub mod account;
pub mod invoice;
pub mod meter;
pub mod subscription;
