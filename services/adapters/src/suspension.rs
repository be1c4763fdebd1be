//! Suspension, the rule the provisioner (VMs) and pod-lifecycle (pods) both follow: when
//! billing suspends an account, a service pauses the tenant's running resources; when
//! billing resumes it, exactly those are started again (one its owner stopped stays
//! stopped). What was paused is recorded in `evt.<tenant>.suspension.<id>`, one record
//! per service ([`Suspendable::scope`]), and every command id derives from the account
//! event, so a redelivered event repeats nothing.

use async_trait::async_trait;
use berth_runtime::commands::execute_with;
use berth_runtime::reactor::ReactError;
use berth_runtime::store::{Cause, Repository, StoredEvent};
use berth_schemas::aggregate::{Aggregate, Context, NoCommand};
use berth_schemas::billing::AccountEvent;
use berth_schemas::suspension::{
    suspension_id, SuspensionApplied, SuspensionEvent, SuspensionLifted,
};
use berth_schemas::{Actor, Rejection, RejectionCode, TenantId};
use uuid::Uuid;

/// What a service paused for a suspension.
#[derive(Debug, Clone, Default)]
pub struct Suspension {
    pub stopped: Vec<Uuid>,
    pub active: bool,
}

impl Aggregate for Suspension {
    const KIND: &'static str = berth_schemas::suspension::AGGREGATE;
    type Command = NoCommand;
    type Event = SuspensionEvent;

    fn apply(&mut self, event: &SuspensionEvent) {
        match event {
            SuspensionEvent::Applied(applied) => {
                self.stopped.clone_from(&applied.stopped);
                self.active = true;
            }
            SuspensionEvent::Lifted(_) => {
                self.stopped.clear();
                self.active = false;
            }
        }
    }

    fn decide(
        &self,
        command: &NoCommand,
        _context: &Context,
    ) -> Result<Vec<SuspensionEvent>, Rejection> {
        match *command {}
    }
}

/// The resources one service pauses for a suspended account.
#[async_trait]
pub trait Suspendable: Send + Sync + 'static {
    /// Names the service's record (`vms`, `pods`).
    fn scope(&self) -> &'static str;
    /// The tenant's resources that are running now and must be paused.
    async fn running(&self, tenant: &TenantId) -> Result<Vec<Uuid>, ReactError>;
    /// Pauses (`pause`) or starts again one resource on behalf of `cause`. A refusal
    /// because the resource moved on meanwhile is its answer, not a failure: return
    /// `Ok` and let [`settled`] log it.
    async fn set_paused(
        &self,
        tenant: &TenantId,
        id: Uuid,
        pause: bool,
        cause: &Cause,
    ) -> Result<(), ReactError>;
    /// The label the command id of pausing (or starting) `id` derives from.
    fn label(&self, id: Uuid, pause: bool) -> String;
}

/// Applies and lifts suspensions for one service's resources.
pub struct SuspensionFollower<S> {
    service: &'static str,
    resources: S,
    suspensions: Repository<Suspension>,
}

impl<S: Suspendable> SuspensionFollower<S> {
    pub fn new(service: &'static str, resources: S, suspensions: Repository<Suspension>) -> Self {
        Self {
            service,
            resources,
            suspensions,
        }
    }

    pub fn resources(&self) -> &S {
        &self.resources
    }

    /// The cause of what the service does for `event`, its id derived from `label`.
    pub fn cause(&self, event: &StoredEvent, label: &str) -> Cause {
        Cause {
            id: Uuid::new_v5(&event.meta.id, label.as_bytes()),
            actor: Actor::service(self.service),
            correlation_id: event.meta.correlation_id,
            traceparent: event.meta.traceparent.clone(),
        }
    }

    /// Acts on a suspension or resumption; other account events change nothing here.
    pub async fn follow(
        &self,
        event: &StoredEvent,
        account: &AccountEvent,
    ) -> Result<(), ReactError> {
        let tenant = &event.meta.tenant;
        match account {
            AccountEvent::Suspended(_) => self.suspend(event, tenant).await,
            AccountEvent::Resumed(_) => self.resume(event, tenant).await,
            _ => Ok(()),
        }
    }

    fn record_label(&self) -> String {
        format!("{}:record", self.resources.scope())
    }

    async fn suspend(&self, event: &StoredEvent, tenant: &TenantId) -> Result<(), ReactError> {
        let scope = self.resources.scope();
        let record = self
            .suspensions
            .load(tenant, suspension_id(tenant, scope))
            .await
            .map_err(ReactError::transient)?;
        if record
            .applied
            .contains_key(&self.cause(event, &self.record_label()).id)
        {
            return Ok(());
        }
        let stopped = self.resources.running(tenant).await?;
        for id in &stopped {
            let cause = self.cause(event, &self.resources.label(*id, true));
            self.resources.set_paused(tenant, *id, true, &cause).await?;
        }
        tracing::info!(%tenant, scope, paused = stopped.len(), "account suspended");
        self.record(
            event,
            tenant,
            SuspensionEvent::Applied(SuspensionApplied { stopped }),
        )
        .await
    }

    async fn resume(&self, event: &StoredEvent, tenant: &TenantId) -> Result<(), ReactError> {
        let scope = self.resources.scope();
        let record = self
            .suspensions
            .load(tenant, suspension_id(tenant, scope))
            .await
            .map_err(ReactError::transient)?;
        if !record.state.active {
            return Ok(());
        }
        let stopped = record.state.stopped.clone();
        for id in &stopped {
            let cause = self.cause(event, &self.resources.label(*id, false));
            self.resources
                .set_paused(tenant, *id, false, &cause)
                .await?;
        }
        tracing::info!(%tenant, scope, started = stopped.len(), "account resumed");
        self.record(
            event,
            tenant,
            SuspensionEvent::Lifted(SuspensionLifted { started: stopped }),
        )
        .await
    }

    async fn record(
        &self,
        event: &StoredEvent,
        tenant: &TenantId,
        what: SuspensionEvent,
    ) -> Result<(), ReactError> {
        let id = suspension_id(tenant, self.resources.scope());
        execute_with(
            &self.suspensions,
            tenant,
            id,
            &self.cause(event, &self.record_label()),
            None,
            |_| Ok(vec![what.clone()]),
        )
        .await
        .map(|_| ())
        .map_err(ReactError::transient)
    }
}

/// What a command a suspension sent came to: `unavailable` is worth another try; any
/// other refusal means the resource moved on meanwhile and is left as it is.
pub fn settled(
    tenant: &TenantId,
    id: Uuid,
    outcome: Result<berth_schemas::CommandReply, Rejection>,
) -> Result<(), ReactError> {
    match outcome {
        Err(rejection) if rejection.code == RejectionCode::Unavailable => {
            Err(ReactError::transient(rejection))
        }
        Err(rejection) => {
            tracing::info!(%tenant, %id, %rejection, "suspension left a resource as it is");
            Ok(())
        }
        Ok(_) => Ok(()),
    }
}
