//! Level-triggered controllers, like Kubernetes': whatever event woke one, it loads the
//! aggregate the event is about, takes the one step the folded state calls for, appends
//! the outcome and looks again, until nothing is left to do ([`settle`]).
//!
//! Redelivered or reordered events therefore do no harm: a step is only taken when the
//! state asks for it, steps are idempotent, and the outcome's event ids derive from the
//! waking event, the step and the version ([`Cause::from_event`]), so a repeat meets
//! de-duplication or a conflict — and the next look decides what is left.
//!
//! A controller's reactor retries a transient failure without end
//! ([`crate::reactor::Reactor::retries_transient_forever`]) and records a step that
//! keeps failing, or that failed for good, with [`record_failure`]. The VM reactor
//! (`berth-provisioner`) and the pod reactor (`berth-pod-lifecycle`) are controllers.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use berth_schemas::subjects::EventSubject;
use berth_schemas::Actor;

use crate::locks::KeyedLocks;
use crate::reactor::{Failure, ReactError};
use crate::store::{Aggregate, AppendError, AtomicAppend, Cause, Loaded, Repository, StoredEvent};

/// What drives one aggregate kind to where it was asked to be.
#[async_trait]
pub trait Controller: Send + Sync {
    type Aggregate: Aggregate;
    type Step: Debug + Copy + Send + Sync;
    /// At most this many steps per wake-up; more is a transient failure (and another
    /// wake-up).
    const MAX_STEPS: usize;

    /// Who appends the outcomes.
    fn actor(&self) -> Actor;
    /// Where the aggregates are loaded from.
    fn repository(&self) -> &Repository<Self::Aggregate>;
    /// Serialises the controller's work on one aggregate in this process.
    fn locks(&self) -> &KeyedLocks;
    /// The step `state` calls for; `None` once it is settled.
    fn next_step(state: &Self::Aggregate) -> Option<Self::Step>;
    /// Takes `step` (a provider call, say) and returns its outcome, to be appended under
    /// `cause`.
    async fn act<'a>(
        &'a self,
        target: &EventSubject,
        loaded: &Arc<Loaded<Self::Aggregate>>,
        step: Self::Step,
        cause: &Cause,
    ) -> Result<AtomicAppend<'a>, ReactError>;
    /// The outcome to append, under `cause`, for a `step` that keeps failing
    /// (`failure.retrying`) or failed for good — undoing what it half made, if it must.
    async fn fail<'a>(
        &'a self,
        target: &EventSubject,
        loaded: &Arc<Loaded<Self::Aggregate>>,
        step: Self::Step,
        failure: &Failure,
        cause: &Cause,
    ) -> Result<AtomicAppend<'a>, ReactError>;
}

/// Takes the steps aggregate `target` calls for, one outcome at a time, until it is
/// settled; the outcomes' causes derive from `event`, the one that woke the controller.
pub async fn settle<C: Controller>(
    controller: &C,
    event: &StoredEvent,
    target: &EventSubject,
) -> Result<(), ReactError> {
    let _guard = controller.locks().lock(target.id).await;
    for _ in 0..C::MAX_STEPS {
        let loaded = load(controller, target).await?;
        let Some(step) = C::next_step(&loaded.state) else {
            return Ok(());
        };
        let label = format!("{step:?}@{}", loaded.version);
        let cause = Cause::from_event(event, &label, controller.actor());
        let outcome = controller.act(target, &loaded, step, &cause).await?;
        // Appended, or someone moved the aggregate first: the next look decides.
        if let Err(AppendError::Store(e)) = outcome.commit().await {
            return Err(ReactError::transient(e));
        }
    }
    Err(ReactError::transient_because(
        "unsettled",
        format!(
            "{} {} still needs work after {} steps",
            C::Aggregate::KIND,
            target.id,
            C::MAX_STEPS
        ),
    ))
}

/// Records that the step the aggregate `event` is about calls for keeps failing, or
/// failed for good ([`Controller::fail`]); nothing if it is settled meanwhile or was
/// asked for something else.
pub async fn record_failure<C: Controller>(
    controller: &C,
    event: &StoredEvent,
    failure: &Failure,
) -> Result<(), ReactError> {
    let Some(target) = EventSubject::parse(&event.subject) else {
        return Ok(());
    };
    let _guard = controller.locks().lock(target.id).await;
    let loaded = load(controller, &target).await?;
    let Some(step) = C::next_step(&loaded.state) else {
        return Ok(());
    };
    let label = if failure.retrying {
        format!("still-failing:{}@{}", failure.attempts, loaded.version)
    } else {
        format!("give-up@{}", loaded.version)
    };
    let cause = Cause::from_event(event, &label, controller.actor());
    let outcome = controller
        .fail(&target, &loaded, step, failure, &cause)
        .await?;
    match outcome.commit().await {
        Ok(_) | Err(AppendError::Duplicate) => Ok(()),
        Err(e) => Err(ReactError::transient_because(
            e.code(),
            format!(
                "recording the failure of {} {}: {e}",
                C::Aggregate::KIND,
                target.id
            ),
        )),
    }
}

async fn load<C: Controller>(
    controller: &C,
    target: &EventSubject,
) -> Result<Arc<Loaded<C::Aggregate>>, ReactError> {
    controller
        .repository()
        .load(&target.tenant, target.id)
        .await
        .map_err(ReactError::transient)
}
