//! The pod command service: `cmd.<tenant>.pod.<action>`.
//!
//! A tenant acts on its own pods only: a pod id of another tenant is `forbidden`.
//! Operators send the same commands to `cmd.system.pod.<action>` and act on any tenant's
//! pod (the event records the operator as its actor; the audit log keeps it). A create
//! resolves the catalog entry first, so an unknown service or variant is refused before
//! anything is written, then holds one of the tenant's pod slots in the same atomic
//! batch as the pod's first event ([`crate::slots`]): beyond the tenant's cap of live
//! pods it is `quota_exceeded`.

use std::sync::Arc;

use async_trait::async_trait;
use berth_runtime::clock::Clock;
use berth_runtime::commands::{execute_with, recorded_reply, unavailable, CommandService};
use berth_runtime::store::{Cause, Repository};
use berth_schemas::pod::{PodCommand, PodLogs};
use berth_schemas::vm::ExecOutput;
use berth_schemas::{CommandReply, CommandSet, Rejection, RejectionCode, TenantId};
use uuid::Uuid;

use crate::pod::{Decision, Pod};
use crate::runtime::{PodRuntime, RuntimeError};
use crate::slots::PodCaps;
use crate::specs::Specs;

/// Serves pod commands.
pub struct PodCommands {
    pub pods: Arc<Repository<Pod>>,
    /// Creates, each holding one of its tenant's pod slots.
    pub caps: PodCaps,
    pub specs: Arc<Specs>,
    /// Answers `pod.logs`.
    pub runtime: Arc<dyn PodRuntime>,
    pub clock: Arc<dyn Clock>,
}

#[async_trait]
impl CommandService for PodCommands {
    type Command = PodCommand;
    type Output = ExecOutput;

    fn kind(&self) -> &'static str {
        berth_schemas::pod::AGGREGATE
    }

    async fn execute(
        &self,
        tenant: &TenantId,
        cause: &Cause,
        command: &PodCommand,
    ) -> Result<CommandReply<ExecOutput>, Rejection> {
        let id = command.aggregate_id(cause.id);
        let requested = match command {
            PodCommand::Create(_) if tenant.as_str() == berth_schemas::ids::SYSTEM_TENANT => {
                return Err(Rejection::invalid(
                    "pods belong to a tenant: send pod.create to cmd.<tenant>.pod.create",
                ))
            }
            PodCommand::Create(create) => {
                Some(self.specs.catalog.resolve(create, &self.specs.overrides)?)
            }
            _ => None,
        };
        // A create's id was checked against other tenants' pods by the endpoint.
        let owner = if let PodCommand::Create(_) = command {
            tenant.clone()
        } else {
            self.owner(tenant, id).await?
        };
        if let PodCommand::Logs(logs) = command {
            return self.logs(&owner, cause, command, logs).await;
        }
        let decide = |pod: &Pod| {
            pod.decide_with(
                command,
                &Decision {
                    now: self.clock.now(),
                    requested: requested.clone(),
                },
            )
        };
        let reply = if let PodCommand::Create(_) = command {
            self.caps.create(&owner, id, cause, decide).await
        } else {
            execute_with(
                &self.pods,
                &owner,
                id,
                cause,
                command.expected_version(),
                decide,
            )
            .await
        };
        reply.map(CommandReply::with_no_output)
    }
}

impl PodCommands {
    /// The tenant whose pod `id` is: the sender's own, or any for an operator; a pod of
    /// another tenant is `forbidden`, no pod at all `not_found`.
    async fn owner(&self, tenant: &TenantId, id: Uuid) -> Result<TenantId, Rejection> {
        let found = self
            .pods
            .store()
            .tenant_of(berth_schemas::pod::AGGREGATE, id)
            .await
            .map_err(unavailable)?;
        match found {
            None => Err(Rejection::new(
                RejectionCode::NotFound,
                format!("no pod {id}"),
            )),
            Some(owner)
                if owner == *tenant || tenant.as_str() == berth_schemas::ids::SYSTEM_TENANT =>
            {
                Ok(owner)
            }
            Some(_) => Err(Rejection::new(
                RejectionCode::Forbidden,
                format!("pod {id} belongs to another tenant"),
            )),
        }
    }

    /// Reads the workload's output; nothing is recorded.
    async fn logs(
        &self,
        tenant: &TenantId,
        cause: &Cause,
        command: &PodCommand,
        logs: &PodLogs,
    ) -> Result<CommandReply<ExecOutput>, Rejection> {
        let loaded = self
            .pods
            .load(tenant, logs.pod_id)
            .await
            .map_err(unavailable)?;
        if let Some(reply) = recorded_reply(&loaded, logs.pod_id, cause) {
            return Ok(reply.with_no_output());
        }
        loaded.state.decide_with(
            command,
            &Decision {
                now: self.clock.now(),
                requested: None,
            },
        )?;
        let text = self
            .runtime
            .logs(tenant, logs.pod_id, logs.tail, logs.since)
            .await
            .map_err(|e| match e {
                RuntimeError::Transient(reason) => {
                    Rejection::new(RejectionCode::Unavailable, reason)
                }
                other => Rejection::invalid_state(other.to_string()),
            })?;
        Ok(CommandReply::Accepted {
            aggregate_id: logs.pod_id,
            version: loaded.version,
            events: Vec::new(),
            output: Some(ExecOutput {
                exit_code: 0,
                stdout: last_bytes(text, 256 * 1024),
                stderr: String::new(),
            }),
        })
    }
}

/// The end of `text`, at most `max` bytes, cut at a character boundary.
fn last_bytes(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text.split_off(start)
}
