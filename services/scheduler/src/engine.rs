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
use berth_runtime::store::{AppendError, Cause, Repository};
use berth_runtime::Runtime;
use berth_schemas::subjects::{event_filter, EventSubject, EVENTS_STREAM};
use berth_schemas::{Actor, TenantId};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use uuid::Uuid;

use crate::clock::Clock;
use crate::schedule::Schedule;

/// The longest the engine sleeps without looking again (a safety net; events and due
/// times wake it earlier).
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// The cause of the fire of `id` for `due_at`: the same on every replica.
pub fn fire_cause(id: Uuid, due_at: DateTime<Utc>) -> Cause {
    let cause_id = Uuid::new_v5(&id, format!("fire@{}", due_at.to_rfc3339()).as_bytes());
    Cause {
        id: cause_id,
        actor: Actor::service("scheduler"),
        correlation_id: cause_id,
        traceparent: None,
    }
}

/// Fires schedules until shutdown.
pub async fn run(
    rt: &Runtime,
    schedules: Arc<Repository<Schedule>>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    let stream = rt.js.get_stream(EVENTS_STREAM).await?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: event_filter(berth_schemas::schedule::AGGREGATE),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut events = consumer.messages().await?;
    let mut known: BTreeSet<(TenantId, Uuid)> = BTreeSet::new();
    // Schedules with events this replica has not folded yet: only these are read again.
    let mut changed: HashSet<Uuid> = HashSet::new();
    // Per schedule, the latest due time this replica fired or skipped.
    let mut seen: HashMap<Uuid, DateTime<Utc>> = HashMap::new();
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
                let message = event.ok_or_else(|| anyhow::anyhow!("the schedule event feed ended"))??;
                if let Some(target) = EventSubject::parse(message.subject.as_str()) {
                    changed.insert(target.id);
                    known.insert((target.tenant, target.id));
                }
                let soon = tokio::time::Instant::now() + Duration::from_millis(20);
                look_again = look_again.min(soon);
                continue;
            }
            _ = due => {}
            _ = tokio::time::sleep_until(look_again) => {}
        }
        due_at = fire_due(
            &schedules,
            &known,
            &mut changed,
            &mut seen,
            started,
            clock.as_ref(),
        )
        .await;
        look_again = tokio::time::Instant::now() + MAX_SLEEP;
    }
}

/// Fires whatever is due; returns the next due time of all schedules. A schedule is
/// read from the log only when it changed since (its cached fold includes this replica's
/// own fires).
async fn fire_due(
    schedules: &Repository<Schedule>,
    known: &BTreeSet<(TenantId, Uuid)>,
    changed: &mut HashSet<Uuid>,
    seen: &mut HashMap<Uuid, DateTime<Utc>>,
    started: DateTime<Utc>,
    clock: &dyn Clock,
) -> Option<DateTime<Utc>> {
    let mut earliest: Option<DateTime<Utc>> = None;
    for (tenant, id) in known {
        let cached = schedules
            .cached_state(tenant, *id)
            .filter(|_| !changed.contains(id));
        let loaded = match cached {
            Some(cached) => Ok(cached),
            None => schedules.load(tenant, *id).await,
        };
        let loaded = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::warn!(schedule = %id, error = %e, "could not load a schedule; trying again soon");
                earliest = Some(clock.now() + chrono::Duration::seconds(1));
                continue;
            }
        };
        changed.remove(id);
        let now = clock.now();
        let (due, next) = loaded.state.due(now, seen.get(id).copied(), started);
        let mut all_fired = true;
        for (due_at, caught_up) in due {
            match fire(schedules, tenant, *id, due_at, caught_up, clock.now()).await {
                Ok(()) => {
                    seen.insert(*id, due_at);
                }
                Err(e) => {
                    all_fired = false;
                    tracing::warn!(schedule = %id, %due_at, error = %e, "could not record a fire; trying again soon");
                    break;
                }
            }
        }
        if all_fired {
            // Skipped (or nothing) up to now: do not look at these due times again.
            let dealt = seen.entry(*id).or_insert(now);
            *dealt = (*dealt).max(now);
        }
        let retry = (!all_fired).then(|| clock.now() + chrono::Duration::milliseconds(500));
        earliest = [earliest, next, retry].into_iter().flatten().min();
    }
    earliest
}

/// Appends the fire of `id` for `due_at`, once: a fire another replica recorded first
/// counts as done.
async fn fire(
    schedules: &Repository<Schedule>,
    tenant: &TenantId,
    id: Uuid,
    due_at: DateTime<Utc>,
    caught_up: bool,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let cause = fire_cause(id, due_at);
    for _ in 0..5 {
        let loaded = schedules.load(tenant, id).await?;
        let Ok(events) = loaded.state.fire(due_at, now, caught_up, false) else {
            return Ok(()); // fired already, paused or deleted meanwhile
        };
        match schedules.append(tenant, id, &loaded, &cause, events).await {
            Ok(_) => {
                tracing::info!(schedule = %id, %tenant, %due_at, caught_up, "fired");
                return Ok(());
            }
            Err(AppendError::Duplicate) => return Ok(()),
            Err(AppendError::Conflict { .. } | AppendError::Busy) => continue,
            Err(AppendError::Store(e)) => return Err(e.into()),
        }
    }
    anyhow::bail!("schedule {id} kept moving while firing {due_at}")
}
