//! Aggregates folded from the log: [`Repository`] loads one kind with a cache of folds
//! and appends its events; [`Loaded`] remembers every command id an aggregate has
//! applied, so a command is idempotent for the aggregate's whole life; [`Cause`] says
//! who causes the events being appended, and their ids derive from it ([`event_id`]).
//! Re-exported from [`crate::store`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_nats::HeaderMap;
use berth_schemas::envelope::EventMeta;
use berth_schemas::{Actor, DomainEvent, RecordedEvent, TenantId};
use bytes::Bytes;
use chrono::Utc;
use uuid::Uuid;

use crate::error::Result;
use crate::store::{
    Aggregate, AppendError, Context, EventStore, NewEvent, StoredEvent, SubjectAppend,
};

/// What one command did to an aggregate, as recorded in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedCommand {
    pub version: u64,
    pub events: Vec<RecordedEvent>,
}

/// An aggregate folded from its events.
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    pub state: A,
    /// The stream sequence of the last event; 0 when the aggregate does not exist.
    pub version: u64,
    /// Every command id the aggregate has applied, with what it produced.
    pub applied: HashMap<Uuid, AppliedCommand>,
}

impl<A: Aggregate> Default for Loaded<A> {
    fn default() -> Self {
        Self {
            state: A::default(),
            version: 0,
            applied: HashMap::new(),
        }
    }
}

impl<A: Aggregate> Loaded<A> {
    fn fold(&mut self, event: &StoredEvent) -> Result<()> {
        let decoded: A::Event = event.decode()?;
        self.state.apply(&decoded);
        self.version = event.sequence;
        let applied = self
            .applied
            .entry(event.meta.causation_id)
            .or_insert_with(|| AppliedCommand {
                version: 0,
                events: Vec::new(),
            });
        applied.version = event.sequence;
        applied.events.push(RecordedEvent {
            id: event.meta.id,
            event_type: event.meta.event_type.clone(),
            sequence: event.sequence,
        });
        Ok(())
    }
}

/// Who causes the events being appended.
#[derive(Debug, Clone)]
pub struct Cause {
    /// The command (or event) id; event ids derive from it.
    pub id: Uuid,
    pub actor: Actor,
    pub correlation_id: Uuid,
    pub traceparent: Option<String>,
}

impl Cause {
    /// The cause of what a process appends in reaction to `event`: its id derives from
    /// the event's id and `label` (so a redelivered event causes the same ids, and meets
    /// de-duplication), and it carries on the event's correlation and trace.
    pub fn from_event(event: &StoredEvent, label: &str, actor: Actor) -> Self {
        Self {
            id: Uuid::new_v5(&event.meta.id, label.as_bytes()),
            actor,
            correlation_id: event.meta.correlation_id,
            traceparent: event.meta.traceparent.clone(),
        }
    }

    /// A cause that follows no event (a fire due at a time, a periodic run): its id
    /// derives from `base` and `label`, the same on every replica and every repeat, and
    /// it starts a correlation of its own.
    pub fn derived(base: Uuid, label: &str, actor: Actor) -> Self {
        let id = Uuid::new_v5(&base, label.as_bytes());
        Self {
            id,
            actor,
            correlation_id: id,
            traceparent: None,
        }
    }

    /// The context a decision on behalf of this cause is taken in, at `now`.
    pub fn context(&self, now: chrono::DateTime<Utc>) -> Context {
        Context::new(now, self.id, self.actor.clone())
    }
}

/// Loads and appends one aggregate kind, with a cache of folded states.
pub struct Repository<A: Aggregate> {
    store: EventStore,
    source: String,
    cache: Mutex<HashMap<String, Arc<Loaded<A>>>>,
    locks: crate::locks::KeyedLocks,
}

/// The outcome of an append through a repository.
#[derive(Debug, Clone)]
pub struct Appended {
    pub version: u64,
    pub events: Vec<RecordedEvent>,
}

/// Event ids derive from the cause: UUID v5 of the cause id and the event's index.
pub fn event_id(cause: Uuid, index: usize) -> Uuid {
    Uuid::new_v5(&cause, index.to_string().as_bytes())
}

impl<A: Aggregate> Repository<A> {
    pub fn new(store: EventStore, service: &str) -> Self {
        Self {
            store,
            source: format!("berth/{service}"),
            cache: Mutex::new(HashMap::new()),
            locks: crate::locks::KeyedLocks::default(),
        }
    }

    /// Serialises command handling on one aggregate inside this process, so concurrent
    /// commands queue instead of conflicting; other processes still meet as conflicts.
    pub async fn lock(&self, id: Uuid) -> crate::locks::KeyedGuard<'_> {
        self.locks.lock(id).await
    }

    pub fn subject(tenant: &TenantId, id: Uuid) -> String {
        berth_schemas::subjects::event_subject(tenant, A::KIND, id)
    }

    /// The aggregate as of the log now: the cached fold plus any newer events.
    pub async fn load(&self, tenant: &TenantId, id: Uuid) -> Result<Arc<Loaded<A>>> {
        let subject = Self::subject(tenant, id);
        let cached = self.cached(&subject);
        let after = cached.as_ref().map_or(0, |c| c.version);
        let newer = self.store.read(&subject, after).await?;
        if newer.is_empty() {
            return Ok(cached.unwrap_or_default());
        }
        let mut loaded = cached.map(|c| (*c).clone()).unwrap_or_default();
        for event in &newer {
            loaded.fold(event)?;
        }
        let loaded = Arc::new(loaded);
        self.remember(&subject, &loaded);
        Ok(loaded)
    }

    /// The cached fold, which may be behind the log.
    pub fn cached_state(&self, tenant: &TenantId, id: Uuid) -> Option<Arc<Loaded<A>>> {
        self.cached(&Self::subject(tenant, id))
    }

    fn cached(&self, subject: &str) -> Option<Arc<Loaded<A>>> {
        self.cache.lock().expect("cache lock").get(subject).cloned()
    }

    fn remember(&self, subject: &str, loaded: &Arc<Loaded<A>>) {
        let mut cache = self.cache.lock().expect("cache lock");
        let newer = cache
            .get(subject)
            .is_none_or(|existing| existing.version < loaded.version);
        if newer {
            cache.insert(subject.to_owned(), loaded.clone());
        }
    }

    /// The events `cause` produces on aggregate `id`, ready for the store. Their ids
    /// are `event_id(cause, first_index + i)`: when one cause appends to several
    /// aggregates at once, give each a distinct range.
    pub fn prepare(
        &self,
        tenant: &TenantId,
        id: Uuid,
        loaded: &Loaded<A>,
        cause: &Cause,
        events: &[A::Event],
        first_index: usize,
    ) -> SubjectAppend {
        let now = Utc::now();
        let events = events
            .iter()
            .enumerate()
            .map(|(index, event)| NewEvent {
                meta: EventMeta {
                    id: event_id(cause.id, first_index + index),
                    source: self.source.clone(),
                    event_type: event.event_type().to_owned(),
                    time: now,
                    subject: id,
                    tenant: tenant.clone(),
                    actor: cause.actor.clone(),
                    correlation_id: cause.correlation_id,
                    causation_id: cause.id,
                    traceparent: cause.traceparent.clone(),
                },
                data: event.to_json(),
            })
            .collect();
        SubjectAppend {
            subject: Self::subject(tenant, id),
            expected_version: loaded.version,
            events,
        }
    }

    /// Folds appended events into the cache; returns what the cause recorded.
    pub fn appended(
        &self,
        loaded: &Loaded<A>,
        cause: &Cause,
        append: SubjectAppend,
        sequences: &[u64],
    ) -> Result<Appended> {
        let mut next = loaded.clone();
        for (event, sequence) in append.events.into_iter().zip(sequences) {
            let stored = StoredEvent {
                sequence: *sequence,
                subject: append.subject.clone(),
                headers: HeaderMap::new(),
                data: Bytes::from(event.data),
                meta: event.meta,
            };
            next.fold(&stored)?;
        }
        let recorded = next
            .applied
            .get(&cause.id)
            .cloned()
            .unwrap_or(AppliedCommand {
                version: next.version,
                events: Vec::new(),
            });
        self.remember(&append.subject, &Arc::new(next));
        Ok(Appended {
            version: recorded.version,
            events: recorded.events,
        })
    }

    /// Appends `events` caused by `cause` to the aggregate if it is still at
    /// `loaded.version`, and folds them into the cache.
    pub async fn append(
        &self,
        tenant: &TenantId,
        id: Uuid,
        loaded: &Loaded<A>,
        cause: &Cause,
        events: Vec<A::Event>,
    ) -> Result<Appended, AppendError> {
        let append = self.prepare(tenant, id, loaded, cause, &events, 0);
        let sequences = self
            .store
            .append(
                &append.subject,
                append.expected_version,
                append.events.clone(),
            )
            .await?;
        Ok(self.appended(loaded, cause, append, &sequences)?)
    }

    /// The store this repository appends to.
    pub fn store(&self) -> &EventStore {
        &self.store
    }
}
