//! The notifier in tests: a real SMTP server (aiosmtpd, `tests/support/smtp_sink.py`)
//! that can be stopped and started again on its port, a real HTTP receiver for webhooks
//! that checks each signature, and the notifier in this process.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use berth_notifier::deliver::Retries;
use berth_notifier::projection::{self, NotificationState};
use berth_notifier::NotifierConfig;
use berth_runtime::{Runtime, Settings};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::wait::eventually;
use crate::{RunningService, TestEnv};

/// One mail as the SMTP server received it.
#[derive(Debug, Clone, Deserialize)]
pub struct ReceivedMail {
    pub received_at: f64,
    pub message_id: String,
    #[serde(default)]
    pub mail_from: String,
    #[serde(default)]
    pub rcpt_tos: Vec<String>,
    #[serde(default)]
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
}

/// aiosmtpd on a fixed port, writing what it receives to a JSON-lines file.
pub struct SmtpSink {
    pub port: u16,
    out: PathBuf,
    count_only: bool,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl SmtpSink {
    /// A sink on a free port, not yet listening (a server that is down).
    pub fn reserve(count_only: bool) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("berth-smtp-").tempdir()?;
        Ok(Self {
            port: berth_dev::devservers::free_port()?,
            out: dir.path().join("mails.jsonl"),
            count_only,
            child: None,
            _dir: dir,
        })
    }

    /// A sink that is up.
    pub async fn start(count_only: bool) -> anyhow::Result<Self> {
        let mut sink = Self::reserve(count_only)?;
        sink.up().await?;
        Ok(sink)
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on its port and waits until it listens.
    pub async fn up(&mut self) -> anyhow::Result<()> {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("support/smtp_sink.py");
        let mut command = Command::new("python3");
        command
            .arg(script)
            .args(["--port", &self.port.to_string()])
            .arg("--out")
            .arg(&self.out)
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        if self.count_only {
            command.arg("--count-only");
        }
        let mut child = command
            .spawn()
            .context("starting tests/support/smtp_sink.py (pip install aiosmtpd)")?;
        let stdout = child.stdout.take().context("sink stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .context("the SMTP sink did not start")??;
        anyhow::ensure!(
            ready.as_deref().is_some_and(|l| l.starts_with("ready")),
            "the SMTP sink said {ready:?}"
        );
        self.child = Some(child);
        Ok(())
    }

    /// Stops the server: the port refuses connections until [`Self::up`].
    pub async fn down(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// Every mail received so far.
    pub fn mails(&self) -> anyhow::Result<Vec<ReceivedMail>> {
        let text = match std::fs::read_to_string(&self.out) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        // A line still being written is not complete JSON yet: it counts next time.
        Ok(text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect())
    }

    /// Waits until at least `count` mails arrived; returns them all.
    pub async fn wait_for(
        &self,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<ReceivedMail>> {
        eventually(
            &format!("{count} mails at the SMTP server"),
            timeout,
            || async {
                let mails = self.mails()?;
                Ok((mails.len() >= count).then_some(mails))
            },
        )
        .await
    }
}

/// One webhook post as the receiver saw it.
#[derive(Debug, Clone)]
pub struct ReceivedPost {
    pub body: serde_json::Value,
    pub notification_id: Option<String>,
    /// Whether `Berth-Signature` verified with the receiver's secret.
    pub signature_valid: bool,
    pub received_at: std::time::Instant,
}

/// An HTTP server that records webhook posts and checks their HMAC signatures.
pub struct WebhookReceiver {
    pub url: String,
    posts: Arc<Mutex<Vec<ReceivedPost>>>,
    stop: CancellationToken,
}

impl WebhookReceiver {
    pub async fn start(secret: &str) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let posts = Arc::new(Mutex::new(Vec::new()));
        let recorded = posts.clone();
        let secret = secret.to_owned();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    let signature_valid = header(berth_notifier::webhook::SIGNATURE_HEADER)
                        .is_some_and(|s| berth_notifier::webhook::verify(&secret, &s, &body));
                    recorded.lock().expect("posts").push(ReceivedPost {
                        body: serde_json::from_slice(&body).unwrap_or_default(),
                        notification_id: header(berth_notifier::webhook::ID_HEADER),
                        signature_valid,
                        received_at: std::time::Instant::now(),
                    });
                    "ok"
                },
            ),
        );
        let stop = CancellationToken::new();
        let until = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(until.cancelled_owned())
                .await;
        });
        Ok(Self { url, posts, stop })
    }

    pub fn posts(&self) -> Vec<ReceivedPost> {
        self.posts.lock().expect("posts").clone()
    }

    pub async fn wait_for(
        &self,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<ReceivedPost>> {
        eventually(&format!("{count} webhook posts"), timeout, || async {
            let posts = self.posts();
            Ok((posts.len() >= count).then_some(posts))
        })
        .await
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The notifier's configuration for tests: built-in rules, fast retries.
pub fn notifier_config(smtp_url: Option<String>) -> NotifierConfig {
    let mut config =
        NotifierConfig::new(berth_notifier::rules::Rules::builtin().expect("the built-in rules"));
    config.smtp_url = smtp_url;
    let fast = Retries {
        max_attempts: 5,
        in_flight: 16,
        backoff_base: Duration::from_millis(200),
        backoff_max: Duration::from_secs(2),
    };
    config.email = fast;
    config.webhook = fast;
    config.send_timeout = Duration::from_secs(5);
    config
}

impl TestEnv {
    /// The notifier in this process.
    pub async fn notifier(&self, config: NotifierConfig) -> anyhow::Result<RunningService> {
        let shutdown = CancellationToken::new();
        let rt = Runtime::connect(
            "notifier",
            &self.connect,
            Settings::default(),
            shutdown.clone(),
        )
        .await?;
        let db = rt.db.clone();
        let task = tokio::spawn(async move { Ok(berth_notifier::run(rt, config).await?) });
        self.wait_for_service("berth-notification").await?;
        Ok(RunningService { shutdown, task, db })
    }

    /// The projected notification, once it exists.
    pub async fn notification(
        &self,
        db: &sqlx::PgPool,
        id: Uuid,
    ) -> anyhow::Result<Option<NotificationState>> {
        Ok(projection::get(db, id).await.unwrap_or(None))
    }

    /// Waits until `check` holds for a projected notification matching `rule`.
    pub async fn wait_notification(
        &self,
        db: &sqlx::PgPool,
        what: &str,
        check: impl Fn(&NotificationState) -> bool,
    ) -> anyhow::Result<NotificationState> {
        eventually(what, Duration::from_secs(60), || async {
            let rows = projection::list(
                db,
                &projection::Filter {
                    limit: 1000,
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_default();
            Ok(rows.into_iter().find(|row| check(row)))
        })
        .await
    }
}
