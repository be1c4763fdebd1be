//! berth-provisioner-core: the pure domain of berth-provisioner — VMs, the servers they are placed on, and each tenant's usage against its quota.
//!
//! Aggregates with pure `decide` and `apply` ([`berth_schemas::aggregate::Aggregate`]) and
//! their given → when → then tests. No I/O, no clock reads: this crate depends on the
//! contract ([`berth_schemas`]) only, so the service, the CLI and tests share one
//! definition of what a command may do.

pub mod demo;
pub mod orphan;
pub mod server;
pub mod usage;
pub mod vm;
