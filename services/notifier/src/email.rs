//! Mail over SMTP with lettre: `BERTH_SMTP_URL` is lettre's URL form — `smtp://host:25`
//! (plain), `smtp://user:pass@host:587?tls=required` (STARTTLS), `smtps://…:465` (TLS).
//! The password never reaches a log or an event: errors name the server without it.
//!
//! Each mail's `Message-ID` is `<notification-id@berth>`, so in the rare case that a mail
//! was accepted but `notification.sent` could not be recorded (a crash in between) and
//! it goes out again, receivers can tell it is the same mail.

use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use uuid::Uuid;

use crate::templates::Rendered;

/// Why a mail was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The recipient address cannot be mailed: no retry helps.
    #[error("bad address {address:?}: {detail}")]
    BadAddress { address: String, detail: String },
    /// The server refused or could not be reached.
    #[error("{0}")]
    Smtp(String),
}

impl MailError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::BadAddress { .. })
    }
}

/// A configured SMTP channel.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    server: String,
    timeout: Duration,
}

impl Mailer {
    /// `url` in lettre's form; `from` a mailbox (`berth <noreply@example.com>`).
    pub fn new(url: &str, from: &str, timeout: Duration) -> crate::Result<Self> {
        let server = berth_runtime::config::redact_url(url);
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| crate::Error::SmtpUrl {
                server: server.clone(),
                reason: e.to_string(),
            })?
            .timeout(Some(timeout))
            .build();
        let from = from.parse().map_err(|e| crate::Error::Sender {
            from: from.to_owned(),
            reason: format!("{e}"),
        })?;
        Ok(Self {
            transport,
            from,
            server,
            timeout,
        })
    }

    pub async fn send(&self, id: Uuid, to: &str, rendered: &Rendered) -> Result<(), MailError> {
        let recipient: Mailbox =
            to.parse()
                .map_err(|e: lettre::address::AddressError| MailError::BadAddress {
                    address: to.to_owned(),
                    detail: e.to_string(),
                })?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(recipient)
            .subject(&rendered.subject)
            .message_id(Some(format!("<{id}@berth>")))
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(rendered.text.clone()),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(rendered.html.clone()),
                    ),
            )
            .map_err(|e| MailError::Smtp(format!("building the mail: {e}")))?;
        // lettre's timeout covers each command, not a server that never greets.
        match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(MailError::Smtp(format!("SMTP {}: {e}", self.server))),
            Err(_) => Err(MailError::Smtp(format!(
                "SMTP {}: no answer within {:?}",
                self.server, self.timeout
            ))),
        }
    }
}
