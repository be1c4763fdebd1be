//! Billing in tests: billing in this process on a manual clock, VM histories written
//! straight into the log with the times a test needs, operator runs.

use std::sync::Arc;

use berth_billing::prices::PriceList;
use berth_billing::BillingConfig;
use berth_runtime::clock::ManualClock;
use berth_runtime::store::{event_id, NewEvent};
use berth_runtime::{ConnectArgs, EventStore, Runtime, Settings};
use berth_schemas::billing::{AccountCommand, BillingCommand, OpenAccount, BILLING_COMMANDS};
use berth_schemas::envelope::EventMeta;
use berth_schemas::subjects::{command_subject, event_subject};
use berth_schemas::usage::Tier;
use berth_schemas::vm::VmEvent;
use berth_schemas::{Actor, CommandReply, CommandSet, DomainEvent, TenantId};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{meta, RunningService, TestEnv};

/// Billing's configuration on `clock`, the built-in prices.
pub fn billing_config(clock: &Arc<ManualClock>) -> BillingConfig {
    let mut config = BillingConfig::new(PriceList::builtin().expect("the built-in prices"));
    config.clock = clock.clone();
    config
}

impl TestEnv {
    /// Billing in this process, on `connect` (this environment's database by default).
    pub async fn billing_on(
        &self,
        connect: &ConnectArgs,
        config: BillingConfig,
    ) -> anyhow::Result<RunningService> {
        let shutdown = CancellationToken::new();
        let rt =
            Runtime::connect("billing", connect, Settings::default(), shutdown.clone()).await?;
        let db = rt.db.clone();
        let task = tokio::spawn(async move { Ok(berth_billing::run(rt, config).await?) });
        self.wait_for_service("berth-account").await?;
        self.wait_for_service("berth-payment").await?;
        self.wait_for_projection("billing").await?;
        Ok(RunningService { shutdown, task, db })
    }

    /// Billing in this process on this environment's database.
    pub async fn billing(&self, config: BillingConfig) -> anyhow::Result<RunningService> {
        let connect = self.connect.clone();
        self.billing_on(&connect, config).await
    }

    /// A second, empty database on the same Postgres, for replays side by side.
    pub async fn another_database(&self) -> anyhow::Result<ConnectArgs> {
        let admin = self
            .database_url
            .rsplit_once('/')
            .map(|(base, _)| base)
            .unwrap_or_default();
        let database = format!("replay_{}", Uuid::new_v4().simple());
        let mut conn =
            <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{admin}/postgres")).await?;
        sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(&mut conn)
            .await?;
        Ok(ConnectArgs {
            database_url: format!("{admin}/{database}"),
            ..self.connect.clone()
        })
    }

    /// Opens the tenant's account in `currency` (pro tier).
    pub async fn open_account(
        &self,
        tenant: &TenantId,
        currency: &str,
    ) -> anyhow::Result<CommandReply> {
        let open = AccountCommand::Open(OpenAccount {
            name: format!("{tenant} Ltd"),
            billing_email: format!("billing@{tenant}.test"),
            tier: Tier::Pro,
            currency: currency.into(),
        });
        Ok(berth_runtime::client::send_command(
            &self.client,
            tenant,
            "account",
            open.action(),
            &meta(),
            open.body(),
        )
        .await?)
    }

    /// Sends an operator run to `cmd.system.billing.<action>` and returns its JSON report.
    #[allow(
        clippy::disallowed_methods,
        reason = "a request with its own timeout, longer than the client's default that berth_runtime::client::request keeps"
    )]
    pub async fn billing_run(&self, command: &BillingCommand) -> anyhow::Result<serde_json::Value> {
        let subject = command_subject(&TenantId::system(), BILLING_COMMANDS, command.action());
        // Metering a month of many VMs takes longer than the client's default timeout.
        let request = async_nats::Request::new()
            .payload(command.body().into())
            .timeout(Some(std::time::Duration::from_secs(900)));
        let reply = self.client.send_request(subject, request).await?;
        let value: serde_json::Value = serde_json::from_slice(&reply.payload)?;
        if value.get("code").is_some() && value.get("message").is_some() {
            anyhow::bail!("billing refused: {value}");
        }
        Ok(value)
    }

    /// Writes a VM's history into the log as the provisioner would have, each event at
    /// the time given.
    pub async fn write_vm_history(
        &self,
        tenant: &TenantId,
        vm_id: Uuid,
        history: &[(DateTime<Utc>, VmEvent)],
    ) -> anyhow::Result<()> {
        self.write_history(tenant, "vm", vm_id, "provisioner", history)
            .await
            .map(|_| ())
    }

    /// Appends an aggregate's events as service `by` would have, each at the time given;
    /// returns their sequences.
    pub async fn write_history<E: DomainEvent>(
        &self,
        tenant: &TenantId,
        kind: &str,
        id: Uuid,
        by: &str,
        history: &[(DateTime<Utc>, E)],
    ) -> anyhow::Result<Vec<u64>> {
        let store = EventStore::new(self.js.clone(), "EVENTS");
        let subject = event_subject(tenant, kind, id);
        let mut version = self.last_sequence_of(&subject).await?;
        let mut written = Vec::new();
        for (at, event) in history {
            let cause = Uuid::now_v7();
            let new = NewEvent {
                meta: EventMeta {
                    id: event_id(cause, 0),
                    source: "berth/test".into(),
                    event_type: event.event_type().into(),
                    time: *at,
                    subject: id,
                    tenant: tenant.clone(),
                    actor: Actor::service(by),
                    correlation_id: cause,
                    causation_id: cause,
                    traceparent: None,
                },
                data: event.to_json(),
            };
            let sequences = store
                .append(&subject, version, vec![new])
                .await
                .map_err(|e| anyhow::anyhow!("append: {e}"))?;
            version = *sequences.last().expect("a sequence");
            written.push(version);
        }
        Ok(written)
    }
}
