//! `berth`: the operator CLI and the all-in-one `berth up`.
//!
//! - `up`: the whole control plane in one process (own nats-server and Postgres under
//!   `.berth/` unless `BERTH_NATS_URL` / `BERTH_DATABASE_URL` are set).
//! - `vm`: VM commands over NATS, reads through the provisioner's queries.
//! - `pod`, `pods`, `catalog`: app pods over NATS, reads through pod-lifecycle's
//!   queries; pods beside their runtime and orphans; the service catalog.
//! - `billing`: accounts, subscriptions, payments; usage and invoices through billing's
//!   queries; the operators' runs.
//! - `tenant`: operator commands (quotas); `server`: hosts and their capacity.
//! - `reconcile`, `orphans`: compare the provider with the log; clean up orphans.
//! - `audit`: who did what and when.
//! - `events`: tail the log, show one aggregate's history.
//! - `replay`: have a projection's service rebuild it without downtime.
//! - `state`: an aggregate at any past time or sequence; `trace`: one correlation.
//! - `dlq`: dead letters; `notifications`, `notify`: mail and webhooks.
//! - `status`: projection positions and faults; `projections`: parked events (list,
//!   retry, skip).

mod audit;
mod billing;
mod dlq;
mod events;
mod notifications;
mod output;
mod pod;
mod projections;
mod reads;
mod reconcile;
mod replay;
mod schedules;
mod server;
mod state;
mod tenant;
mod trace;
mod vm;

use clap::{Parser, Subcommand};

/// berth: an event-sourced control plane for hosting providers.
#[derive(Parser, Debug)]
#[command(name = "berth", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the whole control plane in this process, with embedded servers by default.
    Up(Box<berth_dev::up::UpArgs>),
    /// Create, start, stop, restart, destroy, list and show VMs.
    #[command(subcommand)]
    Vm(vm::VmCommand),
    /// Create, restart, reset, scale, delete, list and show app pods; their logs.
    #[command(subcommand)]
    Pod(pod::PodCommand),
    /// Operators: pods beside their runtime, orphaned workloads and volumes.
    #[command(subcommand)]
    Pods(pod::PodsCommand),
    /// The service catalog: what pods can be made of.
    #[command(subcommand)]
    Catalog(pod::CatalogCommand),
    /// Accounts, subscriptions, payments, usage and invoices; operators' billing runs.
    #[command(subcommand)]
    Billing(billing::BillingCommandLine),
    /// The live web dashboard on its own (`berth up` serves it too).
    Dashboard(berth_dev::dashboard::DashboardArgs),
    /// An aggregate as it was at a time or stream sequence; `--diff` between two.
    State(state::StateArgs),
    /// Every event of one correlation, across services, in order.
    Trace(trace::TraceArgs),
    /// Dead letters: list, show, retry (same ids, applied once), drop.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Mails and webhook posts: list, show, retry.
    #[command(subcommand)]
    Notifications(notifications::NotificationsCommand),
    /// Preview what a notification template renders.
    #[command(subcommand)]
    Notify(notifications::NotifyCommand),
    /// Operator commands on tenants (quotas).
    #[command(subcommand)]
    Tenant(tenant::TenantCommand),
    /// Register, drain, undrain, decommission and list servers (hosts).
    #[command(subcommand)]
    Server(server::ServerCommand),
    /// Compare what the provider runs with the log now: lost VMs and orphans.
    Reconcile(reconcile::ReconcileArgs),
    /// Machines no live VM owns: list them, or clean them up.
    #[command(subcommand)]
    Orphans(reconcile::OrphansCommand),
    /// Who did what and when, for a tenant or a VM.
    Audit(audit::AuditArgs),
    /// Cron schedules: list, show, pause, resume, fire now.
    #[command(subcommand)]
    Schedules(schedules::SchedulesCommand),
    /// One-shot timers.
    #[command(subcommand)]
    Timers(schedules::TimersCommand),
    /// Follow the event log or show one aggregate's history.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Rebuild a projection from the log into a shadow schema and swap it in.
    Replay(replay::ReplayArgs),
    /// Show each projection's position and faults.
    Status(replay::StatusArgs),
    /// Events projections parked: list them, retry one after a fix, or skip one.
    #[command(subcommand)]
    Projections(projections::ProjectionsCommand),
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => berth_dev::up::run(*args).await,
        Command::Vm(command) => vm::run(command).await,
        Command::Pod(command) => pod::run(command).await,
        Command::Pods(command) => pod::pods(command).await,
        Command::Catalog(command) => pod::catalog(command).await,
        Command::Billing(command) => billing::run(command).await,
        Command::Notifications(command) => notifications::run(command).await,
        Command::State(args) => state::run(args).await,
        Command::Dashboard(args) => berth_dev::dashboard::run(args).await,
        Command::Trace(args) => trace::run(args).await,
        Command::Dlq(command) => dlq::run(command).await,
        Command::Notify(command) => notifications::notify(command).await,
        Command::Tenant(command) => tenant::run(command).await,
        Command::Server(command) => server::run(command).await,
        Command::Reconcile(args) => reconcile::run(args).await,
        Command::Orphans(command) => reconcile::orphans(command).await,
        Command::Audit(args) => audit::run(args).await,
        Command::Schedules(command) => schedules::run(command).await,
        Command::Timers(command) => schedules::timers(command).await,
        Command::Events(command) => events::run(command).await,
        Command::Replay(args) => replay::run(args).await,
        Command::Status(args) => replay::status(args).await,
        Command::Projections(command) => projections::run(command).await,
    };
    if let Err(error) = result {
        eprintln!("berth: {error:#}");
        std::process::exit(1);
    }
}
