//! Deciding and appending, with the retry policy in one place.
//!
//! [`execute`] takes a decision — load what it needs, decide, say what to append and
//! what to answer ([`Decision`]) — and commits it atomically: the changes are an
//! [`AtomicAppend`], one aggregate or several (a VM and its tenant's usage, an invoice
//! and its account), all or nothing. When the append meets a conflict (someone
//! appended first) or a busy server, the decision is taken again from a fresh load
//! after a short randomised pause, at most [`MAX_ATTEMPTS`] times. A duplicate (these
//! very events are in the log already) settles it with the decision's answer — unless
//! the answer is made from what was recorded, which the next attempt then reads from
//! the log.
//!
//! Commands run on it ([`crate::commands::execute_across`]), and so does every process
//! that appends what it decided: a scheduler's fire, an invoice run, a delivery's record.

use std::future::Future;
use std::time::Duration;

use berth_schemas::Rejection;
use rand::Rng;
use uuid::Uuid;

use crate::error::Error;
use crate::reactor::ReactError;
use crate::store::{AppendError, Appended, AtomicAppend};

/// How many times a decision is taken at most, the first time included.
pub(crate) const MAX_ATTEMPTS: u32 = 12;

/// What one attempt at a decision came to: the changes to append, if any, and the
/// answer once they are in the log.
pub struct Decision<'a, T> {
    changes: Option<AtomicAppend<'a>>,
    answer: Answer<'a, T>,
}

/// What a recorded-answer decision makes of what each aggregate recorded.
type FromRecord<'a, T> = Box<dyn FnOnce(Vec<Option<Appended>>) -> Result<T, Error> + Send + 'a>;

enum Answer<'a, T> {
    Given(T),
    FromRecord(FromRecord<'a, T>),
}

impl<'a, T> Decision<'a, T> {
    /// Nothing to append (done before, or nothing to do): the answer is `answer`.
    pub fn done(answer: T) -> Self {
        Self {
            changes: None,
            answer: Answer::Given(answer),
        }
    }

    /// Append `changes`, then answer `answer`.
    pub fn append(changes: AtomicAppend<'a>, answer: T) -> Self {
        Self {
            changes: Some(changes),
            answer: Answer::Given(answer),
        }
    }

    /// Append `changes`, then answer with what `answer` makes of what each aggregate
    /// recorded (in the order they were added).
    pub fn append_then(
        changes: AtomicAppend<'a>,
        answer: impl FnOnce(Vec<Option<Appended>>) -> Result<T, Error> + Send + 'a,
    ) -> Self {
        Self {
            changes: Some(changes),
            answer: Answer::FromRecord(Box::new(answer)),
        }
    }
}

/// Why [`execute`] could not settle a decision.
#[derive(Debug, thiserror::Error)]
pub enum Unsettled {
    /// The store failed (not a conflict): worth trying again later.
    #[error(transparent)]
    Store(#[from] Error),
    /// Every attempt met a conflict.
    #[error("{kind} {id} is changing too fast")]
    Contention { kind: String, id: Uuid },
}

impl Unsettled {
    /// The stable code: the store error's, or `contention`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Store(e) => e.code(),
            Self::Contention { .. } => "contention",
        }
    }
}

impl crate::error::Coded for Unsettled {
    fn code(&self) -> &'static str {
        Unsettled::code(self)
    }
}

impl From<Unsettled> for Rejection {
    fn from(unsettled: Unsettled) -> Self {
        match unsettled {
            Unsettled::Store(e) => crate::commands::unavailable(e),
            Unsettled::Contention { kind, id } => crate::commands::too_much_contention(&kind, id),
        }
    }
}

impl From<Unsettled> for ReactError {
    fn from(unsettled: Unsettled) -> Self {
        ReactError::transient(unsettled)
    }
}

/// Takes the decision `attempt` makes about aggregate `id` of `kind` (the one that
/// names it in messages) and commits its changes, deciding again after a conflict;
/// see the module docs. `attempt`'s own errors end it at once.
pub async fn execute<'a, T, E, F, Fut>(kind: &str, id: Uuid, mut attempt: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Decision<'a, T>, E>>,
    E: From<Unsettled>,
{
    for tries in 0..MAX_ATTEMPTS {
        let Decision { changes, answer } = attempt().await?;
        let committed = match changes {
            Some(changes) => changes.commit().await,
            None => Ok(Vec::new()),
        };
        match (committed, answer) {
            (Ok(_) | Err(AppendError::Duplicate), Answer::Given(answer)) => return Ok(answer),
            (Ok(recorded), Answer::FromRecord(answer)) => {
                return answer(recorded).map_err(|e| Unsettled::Store(e).into())
            }
            (Err(AppendError::Store(e)), _) => return Err(Unsettled::Store(e).into()),
            // A conflict, a busy server, or a duplicate whose record the next look reads.
            (Err(_), _) => contention_pause(tries).await,
        }
    }
    Err(Unsettled::Contention {
        kind: kind.to_owned(),
        id,
    }
    .into())
}

/// A short randomised pause before deciding again after a conflict.
async fn contention_pause(attempt: u32) {
    let pause = rand::rng().random_range(0..=(2u64 << attempt.min(6)));
    tokio::time::sleep(Duration::from_millis(pause)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_decision_without_changes_answers_at_once() {
        let mut attempts = 0;
        let answer: Result<u32, Unsettled> = execute("vm", Uuid::nil(), || {
            attempts += 1;
            async { Ok(Decision::done(7)) }
        })
        .await;
        assert_eq!(answer.unwrap(), 7);
        assert_eq!(attempts, 1);
    }

    #[tokio::test]
    async fn an_attempts_own_error_ends_it() {
        let answer: Result<(), Rejection> = execute("vm", Uuid::nil(), || async {
            Err(Rejection::invalid("no"))
        })
        .await;
        assert_eq!(answer.unwrap_err().message, "no");
    }

    #[test]
    fn contention_is_a_conflict_to_retry_with_the_same_command_id() {
        let id = Uuid::nil();
        let rejection = Rejection::from(Unsettled::Contention {
            kind: "vm".into(),
            id,
        });
        assert_eq!(rejection.code, berth_schemas::RejectionCode::Conflict);
        assert!(rejection.message.contains("retry with the same command id"));
    }
}
