//! The public demo's record (`evt.<tenant>.demo.<id>`): which VM is the demo now.

use berth_schemas::aggregate::{Aggregate, Context, NoCommand};
use berth_schemas::demo::DemoEvent;
use berth_schemas::Rejection;
use uuid::Uuid;

/// The demo's record: the VM that is the demo now.
#[derive(Debug, Clone, Default)]
pub struct Demo {
    pub vm_id: Option<Uuid>,
}

impl Aggregate for Demo {
    const KIND: &'static str = berth_schemas::demo::AGGREGATE;
    type Command = NoCommand;
    type Event = DemoEvent;

    fn apply(&mut self, event: &DemoEvent) {
        if let DemoEvent::ResetStarted(started) = event {
            self.vm_id = Some(started.vm_id);
        }
    }

    fn decide(&self, command: &NoCommand, _context: &Context) -> Result<Vec<DemoEvent>, Rejection> {
        match *command {}
    }
}
