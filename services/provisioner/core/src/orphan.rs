//! A machine no live VM owns (`evt.system.orphan.<id>`): detected, and removed since or not.

use berth_schemas::aggregate::{Aggregate, Context, NoCommand};
use berth_schemas::orphan::OrphanEvent;
use berth_schemas::Rejection;

/// A machine no live VM owns, as folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Orphan {
    /// Detected and not removed since.
    pub present: bool,
}

impl Aggregate for Orphan {
    const KIND: &'static str = berth_schemas::orphan::AGGREGATE;
    type Command = NoCommand;
    type Event = OrphanEvent;

    fn apply(&mut self, event: &OrphanEvent) {
        self.present = matches!(event, OrphanEvent::Detected(_));
    }

    fn decide(
        &self,
        command: &NoCommand,
        _context: &Context,
    ) -> Result<Vec<OrphanEvent>, Rejection> {
        match *command {}
    }
}
