//! The `berth-notifier` command line: flags, then [`berth_runtime::service::main`] runs
//! [`crate::run`]. [`NotifyArgs`] is shared with `berth up`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use berth_runtime::service::{self, ServiceArgs};
use berth_runtime::Settings;
use clap::Parser;

use crate::rules::Rules;
use crate::webhook::Webhook;
use crate::NotifierConfig;

/// Where notifications go; shared by `berth-notifier` and `berth up`.
#[derive(clap::Args, Debug, Clone)]
pub struct NotifyArgs {
    /// SMTP server in lettre's URL form: smtp://host:25, smtp://user:pass@host:587?tls=required
    /// (STARTTLS), smtps://user:pass@host:465 (TLS). Without it no mail is sent.
    #[arg(long, env = "BERTH_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// The sender of every mail.
    #[arg(
        long,
        env = "BERTH_MAIL_FROM",
        default_value = "berth <noreply@berth.localhost>"
    )]
    pub mail_from: String,
    /// Operators' addresses (comma-separated).
    #[arg(long, env = "BERTH_OPERATOR_EMAILS", value_delimiter = ',')]
    pub operator_emails: Vec<String>,
    /// A webhook for operators: NAME=slack|discord|generic:URL (repeatable; comma-separated in the env).
    #[arg(
        long = "webhook",
        env = "BERTH_WEBHOOKS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub webhooks: Vec<Webhook>,
    /// The HMAC secret generic webhooks are signed with.
    #[arg(long, env = "BERTH_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// A rules file instead of the built-in rules.
    #[arg(long, env = "BERTH_NOTIFY_RULES")]
    pub rules: Option<PathBuf>,
    /// Delivery attempts per round before a notification is failed.
    #[arg(long, env = "BERTH_NOTIFY_MAX_ATTEMPTS", default_value_t = 6)]
    pub max_attempts: u32,
}

impl NotifyArgs {
    pub fn config(&self) -> anyhow::Result<NotifierConfig> {
        let rules = match &self.rules {
            Some(path) => Rules::parse(
                &std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
            )
            .with_context(|| format!("rules file {}", path.display()))?,
            None => Rules::builtin().context("the built-in rules")?,
        };
        let mut config = NotifierConfig::new(rules);
        config.smtp_url = self.smtp_url.clone();
        config.mail_from = self.mail_from.clone();
        config.operator_emails = self
            .operator_emails
            .iter()
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect();
        config.webhooks = self.webhooks.clone();
        config.webhook_secret = self.webhook_secret.clone();
        config.email.max_attempts = self.max_attempts;
        config.webhook.max_attempts = self.max_attempts;
        Ok(config)
    }
}

/// Sends mail and webhook posts from events.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Cli {
    #[command(flatten)]
    service: ServiceArgs,
    #[command(flatten)]
    notify: NotifyArgs,
    /// How long one SMTP exchange or webhook post may take.
    #[arg(long, env = "BERTH_NOTIFY_TIMEOUT_SECS", default_value_t = 10)]
    timeout_secs: u64,
}

/// Parses the command line and runs the notifier until SIGINT/SIGTERM.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = cli.notify.config()?;
    config.send_timeout = Duration::from_secs(cli.timeout_secs);
    service::main(
        "notifier",
        cli.service,
        Settings::default(),
        |rt| async move { Ok(crate::run(rt, config).await?) },
    )
}
