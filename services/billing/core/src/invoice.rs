//! An issued invoice (`evt.<tenant>.invoice.<id>`): issued once, never changed.

use berth_schemas::aggregate::{Aggregate, Context, NoCommand};
use berth_schemas::billing::{InvoiceEvent, InvoiceIssued};
use berth_schemas::Rejection;

/// An invoice, as folded.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Invoice {
    pub issued: Option<InvoiceIssued>,
}

impl Aggregate for Invoice {
    const KIND: &'static str = berth_schemas::billing::INVOICE;
    type Command = NoCommand;
    type Event = InvoiceEvent;

    fn apply(&mut self, event: &InvoiceEvent) {
        let InvoiceEvent::Issued(issued) = event;
        self.issued = Some(issued.clone());
    }

    fn decide(
        &self,
        command: &NoCommand,
        _context: &Context,
    ) -> Result<Vec<InvoiceEvent>, Rejection> {
        match *command {}
    }
}
