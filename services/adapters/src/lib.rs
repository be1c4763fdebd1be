//! berth-adapters: what the provisioner and pod-lifecycle share at their edges, so that
//! neither service imports the other.
//!
//! - [`error`]: [`error::ProviderError`], how a provider or runtime call failed, and the
//!   refusal to act on another tenant's resource.
//! - [`docker`]: ownership labels, hardening, per-tenant networks and the mapping of
//!   engine errors, for VMs and pods alike.
//! - [`suspension`]: the rule both follow when billing suspends an account
//!   ([`suspension::SuspensionFollower`] over a service's [`suspension::Suspendable`]).
//!
//! Worked example: pod-lifecycle's `OnAccount` reactor is a
//! `SuspensionFollower<Pods>` that scales a suspended tenant's pods to 0 and back.

pub mod docker;
pub mod error;
pub mod suspension;
