//! berth-dev: what only development and tests need, kept out of every service binary.
//!
//! - [`devservers`]: a private nats-server and Postgres under a directory (`berth up`,
//!   the test harness and the benches start theirs with it).
//! - [`users`]: the dashboard's NATS logins, a user per tenant and one for the
//!   operator, kept 0600 beside the embedded servers' data.
//! - [`up`]: `berth up`, the whole control plane in one process with embedded servers,
//!   the `sim` provider, demo data and the dashboard.
//! - [`signals`]: the first Ctrl-C drains, a second stops with an error.
//! - [`dashboard`]: `berth dashboard`, the dashboard on its own next to services that
//!   run elsewhere.
//!
//! This is the one crate that links every service (to run them in one process); the
//! `berth` CLI reaches services only through it for `up` and `dashboard`.

pub mod dashboard;
pub mod devservers;
pub mod signals;
pub mod up;
pub mod users;
