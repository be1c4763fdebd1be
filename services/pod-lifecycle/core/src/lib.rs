//! berth-pod-lifecycle-core: the pure domain of berth-pod-lifecycle — app pods: what each pod was asked to be and the next runtime step to get there.
//!
//! Aggregates with pure `decide` and `apply` ([`berth_schemas::aggregate::Aggregate`]) and
//! their given → when → then tests. No I/O, no clock reads: this crate depends on the
//! contract ([`berth_schemas`]) only, so the service, the CLI and tests share one
//! definition of what a command may do.

pub mod pod;
pub mod slots;
