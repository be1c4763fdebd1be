//! The shape of every berth aggregate: a pure `decide` and `apply` (DESIGN §4).
//!
//! An aggregate folds its events with [`Aggregate::apply`] and answers a command with
//! [`Aggregate::decide`], which may read nothing but the folded state, the command and
//! the decision's [`Context`] (the time and who asked). No I/O and no clock reads inside,
//! so every decision is a given → when → then unit test.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Actor, DomainEvent, Rejection};

/// A consistency boundary: pure `decide` and `apply`.
pub trait Aggregate: Default + Clone + Send + Sync + 'static {
    /// The kind, as in `evt.<tenant>.<kind>.<id>`.
    const KIND: &'static str;
    type Command: Send + Sync;
    type Event: DomainEvent;

    fn apply(&mut self, event: &Self::Event);
    fn decide(
        &self,
        command: &Self::Command,
        context: &Context,
    ) -> Result<Vec<Self::Event>, Rejection>;
}

/// The command type of an aggregate that takes no commands (a process appends its
/// events); its `decide` is `match *command {}`.
#[derive(Debug, Clone)]
pub enum NoCommand {}

/// What a decision may know besides the state and the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The time the decision is taken at, from the service's clock.
    pub now: DateTime<Utc>,
    /// The command (or causing event) id; the events' ids derive from it.
    pub command_id: Uuid,
    /// Who asked.
    pub actor: Actor,
}

impl Context {
    pub fn new(now: DateTime<Utc>, command_id: Uuid, actor: Actor) -> Self {
        Self {
            now,
            command_id,
            actor,
        }
    }

    /// A decision at `now` with no command behind it (tests, what-if folds).
    pub fn at(now: DateTime<Utc>) -> Self {
        Self::new(now, Uuid::nil(), Actor::service("berth"))
    }
}
