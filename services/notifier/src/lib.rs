//! berth-notifier: mail over SMTP and webhook posts from events — templated,
//! de-duplicated, and never in anyone's way.
//!
//! - [`rules`]: which events notify whom (`rules.json`, validated);
//! - [`templates`]: a subject, a plain text and an HTML body per rule (minijinja),
//!   rendered from a [`context`] read from the log; [`samples`] for previews and tests;
//! - [`requests`]: the rules reactor — one `notification` per (source, recipient,
//!   channel), its id derived from the three ([`notification`] is the aggregate);
//! - [`deliver`]: one consumer per channel ([`email`] with lettre, [`webhook`] with
//!   reqwest + HMAC), retries with back-off, then `failed`;
//! - [`expiry`]: expiry-warning timers at the scheduler; [`dead_letters`]: operators
//!   hear of new dead letters;
//! - [`commands`]: `notification.retry`; [`projection`]: `notifications`; [`query`]:
//!   `query.system.notification.list|get|preview`.

pub mod cli;
pub mod commands;
pub mod context;
pub mod dead_letters;
pub mod deliver;
pub mod email;
pub mod error;
pub mod expiry;
pub use berth_notifier_core::notification;
pub mod projection;
pub mod query;
pub mod requests;
pub mod rules;
pub mod samples;
pub mod templates;
pub mod webhook;

pub use error::{Error, Result};

use std::sync::Arc;
use std::time::Duration;

use berth_runtime::clock::{Clock, SystemClock};
use berth_runtime::commands::{serve as serve_commands, CommandHandler};
use berth_runtime::store::Repository;
use berth_runtime::{projection as projections, reactor as reactors, Runtime};
use futures::future::BoxFuture;
use futures::FutureExt;
use tracing::info;

use crate::context::Contexts;
use crate::deliver::{Deliverer, Retries, Sender};
use crate::email::Mailer;
use crate::notification::Notification;
use crate::requests::{Recipients, Requester};
use crate::rules::Rules;
use crate::templates::Templates;
use crate::webhook::{Webhook, Webhooks};

/// Where notifications go and how hard delivery tries.
#[derive(Clone)]
pub struct NotifierConfig {
    pub rules: Rules,
    /// Without an SMTP URL no mail is requested (webhooks still are).
    pub smtp_url: Option<String>,
    pub mail_from: String,
    pub operator_emails: Vec<String>,
    pub webhooks: Vec<Webhook>,
    pub webhook_secret: Option<String>,
    pub email: Retries,
    pub webhook: Retries,
    /// How long one SMTP exchange or webhook post may take.
    pub send_timeout: Duration,
    pub clock: Arc<dyn Clock>,
}

impl NotifierConfig {
    pub fn new(rules: Rules) -> Self {
        Self {
            rules,
            smtp_url: None,
            mail_from: "berth <noreply@berth.localhost>".into(),
            operator_emails: Vec::new(),
            webhooks: Vec::new(),
            webhook_secret: None,
            email: Retries::default(),
            webhook: Retries::default(),
            send_timeout: Duration::from_secs(10),
            clock: Arc::new(SystemClock),
        }
    }
}

/// Checks that every rule has a template that renders its sample.
pub fn check_templates(rules: &Rules, templates: &Templates) -> Result<()> {
    match rules.rules.iter().find(|rule| !templates.has(&rule.name)) {
        Some(rule) => Err(Error::MissingTemplate {
            rule: rule.name.clone(),
        }),
        None => Ok(()),
    }
}

/// Runs the notifier until `rt.shutdown` is cancelled.
pub async fn run(rt: Runtime, config: NotifierConfig) -> Result<()> {
    let templates = Arc::new(Templates::builtin()?);
    check_templates(&config.rules, &templates)?;
    let rules = Arc::new(config.rules.clone());
    let notifications = Arc::new(Repository::<Notification>::new(
        rt.store.clone(),
        rt.service,
    ));
    let contexts = Contexts {
        store: rt.store.clone(),
    };
    let mailer = match &config.smtp_url {
        Some(url) => Some(Arc::new(Mailer::new(
            url,
            &config.mail_from,
            config.send_timeout,
        )?)),
        None => {
            info!("no SMTP server configured (BERTH_SMTP_URL): mail is off, webhooks are on");
            None
        }
    };
    let webhooks = Arc::new(Webhooks::new(
        config.webhooks.clone(),
        config.webhook_secret.clone(),
        config.send_timeout,
    )?);
    let requester = Arc::new(Requester {
        rules: rules.clone(),
        recipients: Recipients {
            operator_emails: config.operator_emails.clone(),
            webhooks: webhooks.names().map(str::to_owned).collect(),
            mail: mailer.is_some(),
        },
        contexts: contexts.clone(),
        notifications: notifications.clone(),
    });
    let deliverer = |sender, retries| {
        Arc::new(Deliverer {
            sender,
            notifications: notifications.clone(),
            contexts: contexts.clone(),
            templates: templates.clone(),
            retries,
        })
    };
    let retry = Arc::new(CommandHandler::new(
        Arc::new(commands::NotificationCommands {
            notifications: notifications.clone(),
        }),
        &rt,
    ));

    let mut parts: Vec<BoxFuture<'_, berth_runtime::Result<()>>> = vec![
        serve_commands(&rt, retry).boxed(),
        reactors::run(&rt, requester.clone()).boxed(),
        reactors::run(
            &rt,
            deliverer(Sender::Webhook(webhooks.clone()), config.webhook),
        )
        .boxed(),
        projections::run(&rt, Arc::new(projection::NotificationsProjection)).boxed(),
        query::serve(&rt, &templates, &contexts).boxed(),
    ];
    if let Some(mailer) = mailer {
        parts.push(reactors::run(&rt, deliverer(Sender::Email(mailer), config.email)).boxed());
    }
    if rules
        .rules
        .iter()
        .any(|r| r.timer.as_deref() == Some(expiry::EXPIRY_WARNING))
    {
        let timers = Arc::new(expiry::ExpiryTimers {
            nats: rt.nats.clone(),
            store: rt.store.clone(),
            days_before: rules.expiry_warning_days,
            clock: config.clock.clone(),
        });
        parts.push(reactors::run(&rt, timers).boxed());
    }
    if rules.follows_dead_letters() {
        parts.push(dead_letters::watch(&rt, requester).boxed());
    }
    futures::future::try_join_all(parts).await?;
    Ok(())
}
