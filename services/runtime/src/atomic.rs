//! [`AtomicAppend`]: the events of one cause on several aggregates (of any kinds),
//! appended all or nothing — what a decision commits ([`crate::decision`]). Re-exported
//! from [`crate::store`].

use std::sync::Arc;

use berth_schemas::TenantId;
use uuid::Uuid;

use crate::error::Result;
use crate::store::{
    missing_sequences, Aggregate, AppendError, Appended, Cause, EventStore, Loaded, Repository,
    SubjectAppend,
};

/// Folds one aggregate's appended events into its repository's cache.
type Finish<'a> = Box<dyn FnOnce(&Cause, &[u64]) -> Result<Appended> + Send + 'a>;

/// Events of one cause on several aggregates, appended all or nothing: each aggregate's
/// events go in only if it is still at the version it was loaded at. Event ids get
/// distinct index ranges, so a repeat of the cause meets de-duplication.
pub struct AtomicAppend<'a> {
    cause: Cause,
    store: Option<&'a EventStore>,
    appends: Vec<SubjectAppend>,
    /// Per `add`: how to fold the appended events into the repository's cache.
    finish: Vec<Option<Finish<'a>>>,
    next_index: usize,
    /// Kept until the commit is done (see [`Self::holding`]).
    held: Vec<Box<dyn Send + 'a>>,
}

impl<'a> AtomicAppend<'a> {
    pub fn new(cause: &Cause) -> Self {
        Self {
            cause: cause.clone(),
            store: None,
            appends: Vec::new(),
            finish: Vec::new(),
            next_index: 0,
            held: Vec::new(),
        }
    }

    /// Adds one aggregate's events. No events adds nothing, not even an expectation.
    pub fn add<A: Aggregate>(
        mut self,
        repository: &'a Repository<A>,
        tenant: &TenantId,
        id: Uuid,
        loaded: &Arc<Loaded<A>>,
        events: &[A::Event],
    ) -> Self {
        if events.is_empty() {
            self.finish.push(None);
            return self;
        }
        let append = repository.prepare(tenant, id, loaded, &self.cause, events, self.next_index);
        self.next_index += events.len();
        self.store.get_or_insert(repository.store());
        self.appends.push(append.clone());
        let loaded = loaded.clone();
        self.finish.push(Some(Box::new(move |cause, sequences| {
            repository.appended(&loaded, cause, append, sequences)
        })));
        self
    }

    /// Keeps `guard` (a place in a queue, say) until the commit is done, so whatever
    /// the guard orders comes after this append is in the log and in the cache.
    pub fn holding(mut self, guard: impl Send + 'a) -> Self {
        self.held.push(Box::new(guard));
        self
    }

    /// Whether nothing was added with events: committing it appends nothing.
    pub fn is_empty(&self) -> bool {
        self.appends.is_empty()
    }

    /// Appends everything in one atomic batch; returns, per `add`, what it recorded
    /// (`None` for an `add` without events).
    pub async fn commit(self) -> Result<Vec<Option<Appended>>, AppendError> {
        let Some(store) = self.store else {
            return Ok(self.finish.iter().map(|_| None).collect());
        };
        let mut sequences = store.append_all(self.appends).await?.into_iter();
        let mut recorded = Vec::with_capacity(self.finish.len());
        for finish in self.finish {
            recorded.push(match finish {
                Some(finish) => {
                    let appended = sequences
                        .next()
                        .ok_or_else(|| missing_sequences("an atomic append"))?;
                    Some(finish(&self.cause, &appended)?)
                }
                None => None,
            });
        }
        drop(self.held);
        Ok(recorded)
    }
}
