//! Webhook posts: Slack-shaped (`{"text"}`), Discord-shaped (`{"content"}`) or generic
//! JSON signed with HMAC-SHA256 for receivers that verify it.
//!
//! The generic body is `{"id", "rule", "subject", "text", "event"}`; the header
//! `Berth-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` with the
//! shared secret (`BERTH_WEBHOOK_SECRET`) lets a receiver check both origin and
//! freshness; `Berth-Notification-Id` lets it drop a repeat.
//!
//! The timestamp is the moment of the post (each retry signs anew) and is covered by the
//! MAC, so it cannot be changed without the secret. [`check`] — what a receiver should
//! do — refuses a signature whose timestamp is more than [`TOLERANCE_SECS`] (5 minutes)
//! in the past (a replay of a captured post) or in the future (a forged or skewed
//! clock); within that window a receiver drops repeats by `Berth-Notification-Id`.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use uuid::Uuid;

use crate::templates::Rendered;

pub const SIGNATURE_HEADER: &str = "Berth-Signature";
pub const ID_HEADER: &str = "Berth-Notification-Id";
/// How far, in seconds, a signature's timestamp may be from the receiver's clock.
pub const TOLERANCE_SECS: i64 = 5 * 60;

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is not t=<unix seconds>,v1=<hex>")]
    Malformed,
    #[error("the signature does not match the body and timestamp")]
    Mismatch,
    #[error("the signature is {age_secs} s old, more than {TOLERANCE_SECS} s: a replay")]
    Stale { age_secs: i64 },
    #[error("the signature is {ahead_secs} s in the future, more than {TOLERANCE_SECS} s")]
    Future { ahead_secs: i64 },
}

/// The shape of a webhook's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Slack,
    Discord,
    Generic,
}

/// One configured webhook: `NAME=FORMAT:URL`, e.g. `ops=slack:https://hooks…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub name: String,
    pub format: Format,
    pub url: String,
}

impl FromStr for Webhook {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let usage = || format!("webhook {value:?}: expected NAME=slack|discord|generic:URL");
        let (name, rest) = value.split_once('=').ok_or_else(usage)?;
        let (format, url) = rest.split_once(':').ok_or_else(usage)?;
        let format = match format {
            "slack" => Format::Slack,
            "discord" => Format::Discord,
            "generic" => Format::Generic,
            _ => return Err(usage()),
        };
        berth_schemas::ids::validate_slug("webhook name", name, 63).map_err(|e| e.to_string())?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(usage());
        }
        Ok(Self {
            name: name.to_owned(),
            format,
            url: url.to_owned(),
        })
    }
}

/// The configured webhooks and the client that posts to them.
pub struct Webhooks {
    client: reqwest::Client,
    hooks: BTreeMap<String, Webhook>,
    secret: Option<String>,
}

impl Webhooks {
    pub fn new(
        hooks: Vec<Webhook>,
        secret: Option<String>,
        timeout: Duration,
    ) -> crate::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent("berth-notifier")
            .build()
            .map_err(crate::Error::HttpClient)?;
        Ok(Self {
            client,
            hooks: hooks.into_iter().map(|h| (h.name.clone(), h)).collect(),
            secret,
        })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.hooks.keys().map(String::as_str)
    }

    /// Posts one notification; `event` is the template context's `event`.
    pub async fn post(
        &self,
        id: Uuid,
        name: &str,
        rule: &str,
        rendered: &Rendered,
        event: &Value,
    ) -> Result<(), String> {
        let hook = self
            .hooks
            .get(name)
            .ok_or_else(|| format!("no webhook named {name:?} is configured"))?;
        let body = match hook.format {
            Format::Slack => json!({"text": format!("*{}*\n{}", rendered.subject, rendered.text)}),
            Format::Discord => json!({
                "content": format!("**{}**\n{}", rendered.subject, rendered.text)
                    .chars().take(2000).collect::<String>(),
            }),
            Format::Generic => json!({
                "id": id,
                "rule": rule,
                "subject": rendered.subject,
                "text": rendered.text,
                "event": event,
            }),
        };
        let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        let mut request = self
            .client
            .post(&hook.url)
            .header("Content-Type", "application/json")
            .header(ID_HEADER, id.to_string());
        if let (Format::Generic, Some(secret)) = (hook.format, &self.secret) {
            let timestamp = chrono::Utc::now().timestamp();
            request = request.header(SIGNATURE_HEADER, signature(secret, timestamp, &body));
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| format!("webhook {name}: {}", without_url(e)))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("webhook {name}: HTTP {}", response.status()))
        }
    }
}

/// HMAC-SHA256 of `"<timestamp>.<body>"` with `secret`.
fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// `t=<timestamp>,v1=<hex HMAC-SHA256("<timestamp>.<body>")>`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(digest))
}

/// Checks a `Berth-Signature` header against the body and the receiver's clock `now`
/// (unix seconds): the MAC must match and the signed timestamp lie within
/// [`TOLERANCE_SECS`] of `now`, either way.
pub fn check(secret: &str, header: &str, body: &[u8], now: i64) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut given = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => given = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(timestamp), Some(given)) = (timestamp, given) else {
        return Err(SignatureError::Malformed);
    };
    mac(secret, timestamp, body)
        .verify_slice(&given)
        .map_err(|_| SignatureError::Mismatch)?;
    let age_secs = now.saturating_sub(timestamp);
    if age_secs > TOLERANCE_SECS {
        return Err(SignatureError::Stale { age_secs });
    }
    if -age_secs > TOLERANCE_SECS {
        return Err(SignatureError::Future {
            ahead_secs: -age_secs,
        });
    }
    Ok(())
}

/// [`check`] against the system clock: what a receiver does.
pub fn verify(secret: &str, header: &str, body: &[u8]) -> bool {
    check(secret, header, body, chrono::Utc::now().timestamp()).is_ok()
}

/// A webhook URL may carry a token in its path: errors name the failure, not the URL.
fn without_url(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_flags_parse_and_bad_ones_say_the_form() {
        let hook: Webhook = "ops=slack:https://hooks.example/T1".parse().unwrap();
        assert_eq!(hook.format, Format::Slack);
        assert_eq!(hook.url, "https://hooks.example/T1");
        for bad in [
            "ops",
            "ops=teams:https://x",
            "ops=slack:ftp://x",
            "o.p=generic:http://x",
        ] {
            assert!(bad.parse::<Webhook>().is_err(), "{bad}");
        }
    }

    const NOW: i64 = 1_700_000_000;

    #[test]
    fn signatures_verify_only_with_the_same_secret_and_body() {
        let header = signature("s3cret", NOW, b"{}");
        assert_eq!(check("s3cret", &header, b"{}", NOW), Ok(()));
        assert_eq!(
            check("other", &header, b"{}", NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check("s3cret", &header, b"{ }", NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check("s3cret", "v1=00", b"{}", NOW),
            Err(SignatureError::Malformed)
        );
        let fresh = signature("s3cret", chrono::Utc::now().timestamp(), b"{}");
        assert!(verify("s3cret", &fresh, b"{}"));
        assert!(
            !verify("s3cret", &header, b"{}"),
            "2023's post is stale now"
        );
    }

    #[test]
    fn the_timestamp_is_signed_and_must_be_within_five_minutes_either_way() {
        let header = signature("s3cret", NOW, b"{}");
        // The receiver's clock moves; the signed moment does not.
        assert_eq!(check("s3cret", &header, b"{}", NOW + 300), Ok(()));
        assert_eq!(
            check("s3cret", &header, b"{}", NOW + 301),
            Err(SignatureError::Stale { age_secs: 301 }),
            "a replay after five minutes"
        );
        assert_eq!(check("s3cret", &header, b"{}", NOW - 300), Ok(()));
        assert_eq!(
            check("s3cret", &header, b"{}", NOW - 301),
            Err(SignatureError::Future { ahead_secs: 301 })
        );
        // Moving the timestamp forward to pass the window breaks the MAC.
        let replayed = header.replace(&format!("t={NOW}"), &format!("t={}", NOW + 3600));
        assert_eq!(
            check("s3cret", &replayed, b"{}", NOW + 3600),
            Err(SignatureError::Mismatch)
        );
    }
}
