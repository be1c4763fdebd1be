//! The firing engine: every scheduler replica runs it; the log makes each fire happen
//! once.
//!
//! It follows every schedule event (an ordered consumer over `evt.*.schedule.*` from the
//! start, then live), keeps the schedules' folds in the repository's cache, sleeps until
//! the earliest due time and then appends `schedule.fired` for it. The append's event id
//! derives from (schedule id, due time) and carries the schedule's expected version, so
//! when two replicas — or one replica before and after a restart — fire the same due
//! time, one append lands and the other meets de-duplication or a conflict, reloads and
//! sees the fire already recorded. After downtime the catch-up policy decides which
//! missed due times fire (`skip`, `fire_once`, `fire_all` up to a bound).
//!
//! Why not nats-server's own message schedules (`Nats-Schedule`, 2.14+): they fire into
//! a stream, but catch-up after downtime, time zones with the DST rules above, pausing
//! and the exactly-once record per due time would still have to be built around them;
//! the engine below is the whole mechanism in one place, and its guarantees are tested.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use berth_runtime::decision::{execute, Decision};
use berth_runtime::store::{Aggregate, Cause, Repository};
use berth_runtime::{Error as RuntimeError, Runtime};
use berth_schemas::subjects::{event_filter, EventSubject, EVENTS_STREAM};
use berth_schemas::{Actor, TenantId};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use uuid::Uuid;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::schedule::Schedule;
use crate::slots::{Ledger, LedgerError};
use crate::spec::spec_sequence;

/// The longest the engine sleeps without looking again (a safety net; events and due
/// times wake it earlier).
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// The cause of the fire of `id` for `due_at`: the same on every replica.
pub fn fire_cause(id: Uuid, due_at: DateTime<Utc>) -> Cause {
    let label = format!("fire@{}", due_at.to_rfc3339());
    Cause::derived(id, &label, Actor::service("scheduler"))
}

/// Fires schedules until shutdown.
pub async fn run(rt: &Runtime, ledger: Arc<Ledger>) -> Result<()> {
    let clock = ledger.clock.clone();
    let stream = rt
        .js
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| RuntimeError::nats("the firing engine: get the EVENTS stream", e))?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: event_filter(berth_schemas::schedule::AGGREGATE),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| RuntimeError::nats("the firing engine: follow schedules", e))?;
    let mut events = consumer
        .messages()
        .await
        .map_err(|e| RuntimeError::nats("the firing engine: follow schedules", e))?;
    let mut agenda = Agenda::default();
    let started = clock.now();
    // Two alarms: the next due time on the scheduler's clock, and a real-time one — for
    // news from the event feed (a burst wakes the loop once) and as a safety net.
    let mut due_at: Option<DateTime<Utc>> = None;
    let mut look_again = tokio::time::Instant::now();
    loop {
        let due = async {
            match due_at {
                Some(at) => clock.sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = rt.shutdown.cancelled() => return Ok(()),
            event = events.next() => {
                let message = event
                    .ok_or(Error::FeedEnded)?
                    .map_err(|e| RuntimeError::nats("the firing engine: read schedules", e))?;
                if let Some(target) = EventSubject::parse(message.subject.as_str()) {
                    agenda.changed(target.tenant, target.id);
                }
                let soon = tokio::time::Instant::now() + Duration::from_millis(20);
                look_again = look_again.min(soon);
                continue;
            }
            _ = due => {}
            _ = tokio::time::sleep_until(look_again) => {}
        }
        agenda.fire_due(&ledger, started, clock.as_ref()).await;
        due_at = agenda.earliest();
        look_again = tokio::time::Instant::now() + MAX_SLEEP;
    }
}

/// What the engine knows of the schedules: when each is next due, ordered, so a wake-up
/// touches only the schedules that changed or are due — not all of them (100 000 timers
/// are one ordered set, not 100 000 computations per fire).
#[derive(Default)]
struct Agenda {
    tenants: HashMap<Uuid, TenantId>,
    /// `(next due time, schedule)`, earliest first.
    upcoming: BTreeSet<(DateTime<Utc>, Uuid)>,
    next_due: HashMap<Uuid, DateTime<Utc>>,
    /// Schedules with events this replica has not folded yet: only these are read again.
    changed: HashSet<Uuid>,
    /// Per schedule, the latest due time this replica fired or skipped.
    seen: HashMap<Uuid, DateTime<Utc>>,
}

impl Agenda {
    fn changed(&mut self, tenant: TenantId, id: Uuid) {
        self.tenants.insert(id, tenant);
        self.changed.insert(id);
    }

    fn earliest(&self) -> Option<DateTime<Utc>> {
        self.upcoming.first().map(|(at, _)| *at)
    }

    fn plan(&mut self, id: Uuid, next: Option<DateTime<Utc>>) {
        if let Some(old) = self.next_due.remove(&id) {
            self.upcoming.remove(&(old, id));
        }
        if let Some(at) = next {
            self.next_due.insert(id, at);
            self.upcoming.insert((at, id));
        }
    }

    /// Fires what is due among the schedules that changed or whose next due time has
    /// come, and plans their next due times.
    async fn fire_due(&mut self, ledger: &Ledger, started: DateTime<Utc>, clock: &dyn Clock) {
        let now = clock.now();
        let due: Vec<Uuid> = self
            .upcoming
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| *id)
            .collect();
        let mut look_at: Vec<Uuid> = self.changed.iter().copied().collect();
        look_at.extend(due.into_iter().filter(|id| !self.changed.contains(id)));
        for id in look_at {
            let Some(tenant) = self.tenants.get(&id).cloned() else {
                continue;
            };
            let next = self.fire_one(ledger, &tenant, id, started, clock).await;
            self.plan(id, next);
        }
    }

    /// Fires one schedule's due times; returns when to look at it again.
    async fn fire_one(
        &mut self,
        ledger: &Ledger,
        tenant: &TenantId,
        id: Uuid,
        started: DateTime<Utc>,
        clock: &dyn Clock,
    ) -> Option<DateTime<Utc>> {
        let schedules: &Repository<Schedule> = &ledger.schedules;
        let cached = schedules
            .cached_state(tenant, id)
            .filter(|_| !self.changed.contains(&id));
        let loaded = match cached {
            Some(cached) => Ok(cached),
            None => schedules.load(tenant, id).await,
        };
        let loaded = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::warn!(schedule = %id, error = %e, "could not load a schedule; trying again soon");
                return Some(clock.now() + chrono::Duration::seconds(1));
            }
        };
        self.changed.remove(&id);
        let now = clock.now();
        let (due, next) = loaded.state.due(now, self.seen.get(&id).copied(), started);
        for (due_at, caught_up) in due {
            match fire(ledger, tenant, id, due_at, caught_up, clock.now()).await {
                Ok(()) => {
                    self.seen.insert(id, due_at);
                }
                Err(e) => {
                    tracing::warn!(schedule = %id, %due_at, error = %e, error.code = e.code(), "could not record a fire; trying again soon");
                    return Some(clock.now() + chrono::Duration::milliseconds(500));
                }
            }
        }
        // Skipped (or nothing) up to now: do not look at these due times again.
        let dealt = self.seen.entry(id).or_insert(now);
        *dealt = (*dealt).max(now);
        next
    }
}

/// Appends the fire of `id` for `due_at`, once: a fire another replica recorded first
/// counts as done. The fire names the spec in force; a one-shot's fire frees its slot in
/// the same atomic batch.
async fn fire(
    ledger: &Ledger,
    tenant: &TenantId,
    id: Uuid,
    due_at: DateTime<Utc>,
    caught_up: bool,
    now: DateTime<Utc>,
) -> Result<()> {
    let cause = fire_cause(id, due_at);
    let fired = execute(Schedule::KIND, id, || async {
        let loaded = ledger.schedules.load(tenant, id).await?;
        let Some(spec) = spec_sequence(&loaded) else {
            // Never set (or deleted before it was): nothing to fire.
            return Ok(Decision::done(false));
        };
        let Ok(events) = loaded.state.fire(due_at, now, caught_up, false, spec) else {
            // Fired already, paused or deleted meanwhile.
            return Ok(Decision::done(false));
        };
        let changes = match ledger.changes(tenant, id, &loaded, &cause, &events).await {
            Ok(changes) => changes,
            Err(LedgerError::Store(e)) => return Err(e.into()),
            // Releasing a slot is never refused; say so if it ever is.
            Err(LedgerError::Refused(rejection)) => return Err(Error::Refused(rejection)),
        };
        // A duplicate is another replica's fire: the next look finds it recorded.
        Ok(Decision::append_then(changes, |_| Ok(true)))
    })
    .await?;
    if fired {
        tracing::info!(schedule = %id, %tenant, %due_at, caught_up, "fired");
    }
    Ok(())
}
