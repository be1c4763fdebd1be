//! The `account` aggregate: the tenant's contact, tier and currency, and its ledger —
//! invoices posted, payments recorded, which invoices are settled or overdue, and
//! whether the account is suspended. One aggregate decides all of the money, so a
//! payment settles invoices oldest first atomically.

use berth_schemas::aggregate::{Aggregate, Context};
use berth_schemas::billing::{
    AccountCommand, AccountEvent, AccountOpened, AccountSuspended, InvoicePosted, InvoiceRef,
    Nothing, PaymentRecorded, RecordPayment,
};
use berth_schemas::{Rejection, RejectionCode};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An invoice not paid yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenInvoice {
    pub invoice_id: Uuid,
    pub number: String,
    pub total_minor: i64,
    pub due_at: DateTime<Utc>,
    pub overdue: bool,
}

/// An account as folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub opened: Option<AccountOpened>,
    pub closed: bool,
    pub suspended: bool,
    /// Unpaid invoices, oldest first.
    pub open_invoices: Vec<OpenInvoice>,
    /// Every invoice ever posted.
    pub posted: std::collections::BTreeSet<Uuid>,
    /// Paid but not yet applied to an invoice.
    pub credit_minor: i64,
    pub paid_invoices: u32,
}

impl Account {
    fn require_open(&self) -> Result<&AccountOpened, Rejection> {
        match &self.opened {
            None => Err(Rejection::new(
                RejectionCode::NotFound,
                "this tenant has no account; send account.open first",
            )),
            Some(_) if self.closed => Err(Rejection::invalid_state("the account is closed")),
            Some(opened) => Ok(opened),
        }
    }

    /// What the account owes.
    pub fn balance_due_minor(&self) -> i64 {
        self.open_invoices
            .iter()
            .map(|i| i.total_minor)
            .sum::<i64>()
            - self.credit_minor
    }

    /// Settles open invoices, oldest first, while the credit covers them whole; resumes
    /// a suspended account once nothing overdue is left.
    fn settlements(&self, mut credit: i64) -> Vec<AccountEvent> {
        let mut events = Vec::new();
        let mut overdue_left = false;
        for invoice in &self.open_invoices {
            if credit >= invoice.total_minor {
                credit -= invoice.total_minor;
                events.push(AccountEvent::InvoiceSettled(InvoiceRef {
                    invoice_id: invoice.invoice_id,
                }));
            } else {
                overdue_left |= invoice.overdue;
                credit = 0;
            }
        }
        if self.suspended && !overdue_left {
            events.push(AccountEvent::Resumed(Nothing {}));
        }
        events
    }

    /// Posts an issued invoice (once) and settles it from credit if it can.
    pub fn post_invoice(&self, posted: InvoicePosted) -> Result<Vec<AccountEvent>, Rejection> {
        self.require_open()?;
        if self.posted.contains(&posted.invoice_id) {
            return Ok(Vec::new());
        }
        let mut with_invoice = self.clone();
        let event = AccountEvent::InvoicePosted(posted);
        with_invoice.apply(&event);
        let mut events = vec![event];
        events.extend(
            with_invoice
                .settlements(with_invoice.credit_minor)
                .into_iter()
                .filter(|e| !matches!(e, AccountEvent::Resumed(_))),
        );
        Ok(events)
    }

    /// Records a payment in the account's currency and settles what it covers.
    pub fn record_payment(&self, payment: &RecordPayment) -> Result<Vec<AccountEvent>, Rejection> {
        let opened = self.require_open()?;
        if payment.currency != opened.currency {
            return Err(Rejection::invalid(format!(
                "the account is billed in {}; a payment in {} cannot be mixed in",
                opened.currency, payment.currency
            )));
        }
        let mut events = vec![AccountEvent::PaymentRecorded(PaymentRecorded {
            amount_minor: payment.amount_minor,
            reference: payment.reference.clone(),
        })];
        events.extend(self.settlements(self.credit_minor + payment.amount_minor));
        Ok(events)
    }

    /// Marks invoices past their due date overdue, and suspends the account when the
    /// oldest has been overdue for longer than `grace`.
    pub fn check_overdue(&self, now: DateTime<Utc>, grace: Duration) -> Vec<AccountEvent> {
        if self.opened.is_none() || self.closed {
            return Vec::new();
        }
        let mut events: Vec<AccountEvent> = self
            .open_invoices
            .iter()
            .filter(|i| !i.overdue && i.due_at < now)
            .map(|i| {
                AccountEvent::InvoiceOverdue(InvoiceRef {
                    invoice_id: i.invoice_id,
                })
            })
            .collect();
        let past_grace = self.open_invoices.iter().find(|i| i.due_at + grace < now);
        if let (false, Some(invoice)) = (self.suspended, past_grace) {
            events.push(AccountEvent::Suspended(AccountSuspended {
                reason: format!(
                    "invoice {} was due {} and is unpaid after {} days of grace",
                    invoice.number,
                    invoice.due_at.format("%Y-%m-%d"),
                    grace.num_days()
                ),
            }));
        }
        events
    }
}

impl Aggregate for Account {
    const KIND: &'static str = berth_schemas::billing::ACCOUNT;
    type Command = AccountCommand;
    type Event = AccountEvent;

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened(opened) => self.opened = Some(opened.clone()),
            AccountEvent::ContactUpdated(update) => {
                if let Some(opened) = &mut self.opened {
                    if let Some(name) = &update.name {
                        opened.name.clone_from(name);
                    }
                    if let Some(email) = &update.billing_email {
                        opened.billing_email.clone_from(email);
                    }
                }
            }
            AccountEvent::TierSet(set) => {
                if let Some(opened) = &mut self.opened {
                    opened.tier = set.tier;
                }
            }
            AccountEvent::Closed(_) => self.closed = true,
            AccountEvent::InvoicePosted(posted) => {
                self.posted.insert(posted.invoice_id);
                self.open_invoices.push(OpenInvoice {
                    invoice_id: posted.invoice_id,
                    number: posted.number.clone(),
                    total_minor: posted.total_minor,
                    due_at: posted.due_at,
                    overdue: false,
                })
            }
            AccountEvent::PaymentRecorded(payment) => self.credit_minor += payment.amount_minor,
            AccountEvent::InvoiceSettled(settled) => {
                if let Some(at) = self
                    .open_invoices
                    .iter()
                    .position(|i| i.invoice_id == settled.invoice_id)
                {
                    let invoice = self.open_invoices.remove(at);
                    self.credit_minor -= invoice.total_minor;
                    self.paid_invoices += 1;
                }
            }
            AccountEvent::InvoiceOverdue(overdue) => {
                for invoice in &mut self.open_invoices {
                    if invoice.invoice_id == overdue.invoice_id {
                        invoice.overdue = true;
                    }
                }
            }
            AccountEvent::Suspended(_) => self.suspended = true,
            AccountEvent::Resumed(_) => self.suspended = false,
        }
    }

    fn decide(
        &self,
        command: &AccountCommand,
        _context: &Context,
    ) -> Result<Vec<AccountEvent>, Rejection> {
        match command {
            AccountCommand::Open(open) => {
                let wanted = AccountOpened {
                    name: open.name.clone(),
                    billing_email: open.billing_email.clone(),
                    tier: open.tier,
                    currency: open.currency.clone(),
                };
                match &self.opened {
                    None => Ok(vec![AccountEvent::Opened(wanted)]),
                    Some(opened) if *opened == wanted => Ok(Vec::new()),
                    Some(_) => Err(Rejection::new(
                        RejectionCode::Conflict,
                        "this tenant already has an account; use update_contact or set_tier",
                    )),
                }
            }
            AccountCommand::UpdateContact(update) => {
                self.require_open()?;
                Ok(vec![AccountEvent::ContactUpdated(update.clone())])
            }
            AccountCommand::SetTier(set) => {
                let opened = self.require_open()?;
                if opened.tier == set.tier {
                    return Ok(Vec::new());
                }
                Ok(vec![AccountEvent::TierSet(set.clone())])
            }
            AccountCommand::Close(_) => {
                self.require_open()?;
                let due = self.balance_due_minor();
                if due > 0 {
                    return Err(Rejection::invalid_state(format!(
                        "the account owes {due} (minor units) on {} invoices; settle them first",
                        self.open_invoices.len()
                    )));
                }
                Ok(vec![AccountEvent::Closed(Nothing {})])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use berth_schemas::billing::OpenAccount;
    use berth_schemas::usage::Tier;

    fn context() -> Context {
        Context::at(chrono::Utc::now())
    }

    fn opened() -> Account {
        let mut account = Account::default();
        let open = AccountCommand::Open(OpenAccount {
            name: "Acme".into(),
            billing_email: "billing@acme.test".into(),
            tier: Tier::Pro,
            currency: "EUR".into(),
        });
        for event in account.decide(&open, &context()).unwrap() {
            account.apply(&event);
        }
        account
    }

    fn apply_all(account: &mut Account, events: Vec<AccountEvent>) {
        for event in events {
            account.apply(&event);
        }
    }

    fn invoice(n: u8, total_minor: i64, due_at: &str) -> InvoicePosted {
        InvoicePosted {
            invoice_id: Uuid::from_u128(u128::from(n)),
            number: format!("INV-{n}"),
            total_minor,
            due_at: due_at.parse().unwrap(),
        }
    }

    fn pay(amount_minor: i64, currency: &str) -> RecordPayment {
        RecordPayment {
            amount_minor,
            currency: currency.into(),
            reference: "psp-1".into(),
        }
    }

    #[test]
    fn payments_settle_invoices_oldest_first_and_keep_the_rest_as_credit() {
        let mut account = opened();
        let events = account
            .post_invoice(invoice(1, 1000, "2026-02-15T00:00:00Z"))
            .unwrap();
        apply_all(&mut account, events);
        let events = account
            .post_invoice(invoice(2, 500, "2026-03-15T00:00:00Z"))
            .unwrap();
        apply_all(&mut account, events);
        let events = account.record_payment(&pay(1200, "EUR")).unwrap();
        assert!(
            matches!(events.as_slice(), [AccountEvent::PaymentRecorded(_), AccountEvent::InvoiceSettled(s)] if s.invoice_id == Uuid::from_u128(1))
        );
        apply_all(&mut account, events);
        assert_eq!(
            (account.open_invoices.len(), account.credit_minor),
            (1, 200)
        );
        assert_eq!(account.balance_due_minor(), 300);
        let events = account.record_payment(&pay(300, "EUR")).unwrap();
        apply_all(&mut account, events);
        assert_eq!((account.open_invoices.len(), account.credit_minor), (0, 0));
        let posted = account
            .post_invoice(invoice(2, 500, "2026-03-15T00:00:00Z"))
            .unwrap();
        assert!(posted.is_empty(), "an invoice is posted once, paid or not");
    }

    #[test]
    fn mixed_currencies_are_refused() {
        let rejection = opened().record_payment(&pay(100, "USD")).unwrap_err();
        assert_eq!(rejection.code, RejectionCode::Invalid);
        assert!(rejection.message.contains("EUR"), "{}", rejection.message);
    }

    #[test]
    fn overdue_then_suspended_after_the_grace_then_resumed_by_payment() {
        let mut account = opened();
        let events = account
            .post_invoice(invoice(1, 1000, "2026-02-15T00:00:00Z"))
            .unwrap();
        apply_all(&mut account, events);
        let grace = Duration::days(7);
        let day = |d: &str| d.parse::<DateTime<Utc>>().unwrap();
        assert!(account
            .check_overdue(day("2026-02-14T06:00:00Z"), grace)
            .is_empty());
        let overdue = account.check_overdue(day("2026-02-16T06:00:00Z"), grace);
        assert!(matches!(
            overdue.as_slice(),
            [AccountEvent::InvoiceOverdue(_)]
        ));
        apply_all(&mut account, overdue);
        assert!(account
            .check_overdue(day("2026-02-20T06:00:00Z"), grace)
            .is_empty());
        let suspended = account.check_overdue(day("2026-02-23T06:00:00Z"), grace);
        assert!(
            matches!(suspended.as_slice(), [AccountEvent::Suspended(s)] if s.reason.contains("INV-1"))
        );
        apply_all(&mut account, suspended);
        assert!(
            account
                .check_overdue(day("2026-02-24T06:00:00Z"), grace)
                .is_empty(),
            "suspended once"
        );
        let partial = account.record_payment(&pay(999, "EUR")).unwrap();
        assert!(!partial
            .iter()
            .any(|e| matches!(e, AccountEvent::Resumed(_))));
        apply_all(&mut account, partial);
        let rest = account.record_payment(&pay(1, "EUR")).unwrap();
        assert!(matches!(
            rest.as_slice(),
            [_, AccountEvent::InvoiceSettled(_), AccountEvent::Resumed(_)]
        ));
    }

    #[test]
    fn an_account_with_debt_cannot_close() {
        let mut account = opened();
        let events = account
            .post_invoice(invoice(1, 1000, "2026-02-15T00:00:00Z"))
            .unwrap();
        apply_all(&mut account, events);
        let rejection = account
            .decide(&AccountCommand::Close(Default::default()), &context())
            .unwrap_err();
        assert_eq!(rejection.code, RejectionCode::InvalidState);
    }
}
