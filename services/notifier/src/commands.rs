//! `cmd.<tenant>.notification.retry`: another round of attempts for a failed
//! notification (operators, once the channel is fixed).

use std::sync::Arc;

use async_trait::async_trait;
use berth_runtime::commands::{execute_on, CommandService};
use berth_runtime::store::{Cause, Repository};
use berth_schemas::notification::NotificationCommand;
use berth_schemas::{CommandReply, Rejection, TenantId};

use crate::notification::Notification;

pub struct NotificationCommands {
    pub notifications: Arc<Repository<Notification>>,
}

#[async_trait]
impl CommandService for NotificationCommands {
    type Command = NotificationCommand;
    type Output = ();

    fn kind(&self) -> &'static str {
        berth_schemas::notification::AGGREGATE
    }

    async fn execute(
        &self,
        tenant: &TenantId,
        cause: &Cause,
        command: &NotificationCommand,
    ) -> Result<CommandReply, Rejection> {
        execute_on(&self.notifications, tenant, cause, command).await
    }
}
