//! The notification templates (`templates/<rule>.j2`, minijinja): each extends
//! `_layout.j2` and fills a `subject`, a plain `text` and an HTML `body` block (escaped;
//! the layout wraps it into the `html` page). Undefined values are errors, so a
//! template that names a field the event does not have fails loudly, in the test that
//! renders every rule's sample.

use chrono::{DateTime, Utc};
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

macro_rules! builtin_templates {
    ($($name:literal),+ $(,)?) => {
        &[$(($name, include_str!(concat!("../templates/", $name, ".j2")))),+]
    };
}

/// `(name, source)` of every built-in template.
pub const BUILTIN: &[(&str, &str)] = builtin_templates![
    "_layout",
    "welcome",
    "subscription_confirmed",
    "pod_ready",
    "vm_ready",
    "expiry_warning",
    "invoice_issued",
    "payment_received",
    "account_suspended",
    "account_resumed",
    "pod_failed",
    "provisioning_failed",
    "demo_reset_succeeded",
    "demo_reset_failed",
    "dead_letter",
];

/// A notification ready to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// A template that could not be rendered.
#[derive(Debug, thiserror::Error)]
#[error("template {template}: {source:#}")]
pub struct TemplateError {
    pub template: String,
    #[source]
    pub source: minijinja::Error,
}

/// The compiled templates.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    pub fn builtin() -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.add_filter("money", money);
        env.add_filter("duration", duration);
        env.add_filter("datetime", |value: String| {
            format_time(&value, "%Y-%m-%d %H:%M UTC")
        });
        env.add_filter("date", |value: String| format_time(&value, "%Y-%m-%d"));
        env.add_filter("megabytes", megabytes);
        for (name, source) in BUILTIN {
            env.add_template(name, source)
                .map_err(|source| TemplateError {
                    template: (*name).to_owned(),
                    source,
                })?;
        }
        Ok(Self { env })
    }

    pub fn has(&self, name: &str) -> bool {
        !name.starts_with('_') && BUILTIN.iter().any(|(known, _)| *known == name)
    }

    /// Renders the three parts of template `name` from `context`.
    pub fn render(
        &self,
        name: &str,
        context: &serde_json::Value,
    ) -> Result<Rendered, TemplateError> {
        let error = |source| TemplateError {
            template: name.to_owned(),
            source,
        };
        let template = self.env.get_template(name).map_err(error)?;
        let mut captured = template.render_captured(context).map_err(error)?;
        let (subject, text, html) = captured
            .with_state_mut(|state| -> Result<_, minijinja::Error> {
                Ok((
                    state.render_block("subject")?,
                    state.render_block("text")?,
                    state.render_block("html")?,
                ))
            })
            .map_err(error)?;
        Ok(Rendered {
            subject: subject.split_whitespace().collect::<Vec<_>>().join(" "),
            text: text.trim().to_owned() + "\n",
            html: html.trim().to_owned(),
        })
    }
}

/// `1234 | money("EUR")` → `12.34 EUR` (currencies with two minor digits).
fn money(minor: i64, currency: String) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let minor = minor.unsigned_abs();
    format!("{sign}{}.{:02} {currency}", minor / 100, minor % 100)
}

/// Milliseconds for people: `850 ms`, `12.3 s`, `4 min 5 s`.
fn duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

fn megabytes(mb: u64) -> String {
    if mb >= 1024 && mb.is_multiple_of(1024) {
        format!("{} GB", mb / 1024)
    } else {
        format!("{mb} MB")
    }
}

fn format_time(value: &str, format: &str) -> Result<String, minijinja::Error> {
    let at: DateTime<Utc> = value.parse().map_err(|e| {
        minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("{value:?} is not an RFC 3339 time: {e}"),
        )
    })?;
    Ok(at.format(format).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_format_for_people() {
        assert_eq!(money(123_456, "EUR".into()), "1234.56 EUR");
        assert_eq!(money(-5, "USD".into()), "-0.05 USD");
        assert_eq!(duration(742), "742 ms");
        assert_eq!(duration(12_345), "12.3 s");
        assert_eq!(duration(245_000), "4 min 5 s");
        assert_eq!(megabytes(2048), "2 GB");
        assert_eq!(megabytes(500), "500 MB");
    }

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let templates = Templates::builtin().unwrap();
        let context = json!({
            "event": {"tenant": "acme", "data": {"tier": "pro", "currency": "EUR"}},
            "account": {"name": "Ada & <Co>", "billing_email": "ada@example.com"},
        });
        let rendered = templates.render("welcome", &context).unwrap();
        assert_eq!(rendered.subject, "Welcome to berth, Ada & <Co>");
        assert!(rendered.text.contains("Hello Ada & <Co>,"));
        assert!(
            rendered.html.contains("Ada &amp; &lt;Co&gt;"),
            "{}",
            rendered.html
        );
        assert!(!rendered.html.contains("<Co>"));
        assert!(rendered.html.starts_with("<!doctype html>"));
    }

    #[test]
    fn a_missing_field_is_an_error_not_a_blank() {
        let templates = Templates::builtin().unwrap();
        let context = json!({"event": {"tenant": "acme", "data": {}}, "account": {"name": "A"}});
        let error = templates
            .render("welcome", &context)
            .unwrap_err()
            .to_string();
        assert!(error.contains("welcome"), "{error}");
    }
}
