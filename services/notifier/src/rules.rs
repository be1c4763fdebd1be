//! Which events notify whom: `rules.json`, validated when it is loaded.
//!
//! A rule names the event type it follows (`on`; `dlq` for dead letters), the audience
//! (`customer`: the account's billing address by mail; `operators`: every configured
//! operator address and webhook) and is also the name of its template. A rule on
//! `berth.schedule.fired.v1` follows only the timers whose payload names it
//! (`"notify": "<timer>"`). A `once_per_aggregate` rule notifies once in an aggregate's
//! life (a pod's first `healthy`), the others once per event.

use std::collections::BTreeSet;

use berth_schemas::subjects::event_filter;
use serde::{Deserialize, Serialize};

/// The built-in rules.
pub const BUILTIN: &str = include_str!("../rules.json");

/// The `on` of the rule that follows dead letters.
pub const DEAD_LETTER: &str = "dlq";

/// Who hears of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// The tenant's account, at its billing address.
    Customer,
    /// The configured operator addresses and webhooks.
    Operators,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Also the template's name.
    pub name: String,
    /// A `ce-type`, or `dlq`.
    pub on: String,
    /// For `berth.schedule.fired.v1`: the `notify` value of the timer's payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timer: Option<String>,
    #[serde(default)]
    pub once_per_aggregate: bool,
    pub to: Vec<Audience>,
}

/// The rules file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// How many days before a subscription's period ends the warning goes out.
    pub expiry_warning_days: u32,
    pub rules: Vec<Rule>,
}

/// A rules file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("rules file: {0}")]
    Syntax(#[from] serde_json::Error),
    #[error("rule {rule:?}: {problem}")]
    Invalid { rule: String, problem: String },
}

impl Rules {
    pub fn builtin() -> Result<Self, RulesError> {
        Self::parse(BUILTIN)
    }

    /// Parses and validates: names are unique slugs, `on` is a known event type (or
    /// `dlq`), `timer` only on schedule fires, every rule has an audience.
    pub fn parse(text: &str) -> Result<Self, RulesError> {
        let rules: Rules = serde_json::from_str(text)?;
        let known = berth_schemas::json_schema::event_types();
        let mut names = BTreeSet::new();
        for rule in &rules.rules {
            let invalid = |problem: String| RulesError::Invalid {
                rule: rule.name.clone(),
                problem,
            };
            berth_schemas::ids::validate_slug("rule name", &rule.name.replace('_', "-"), 63)
                .map_err(|e| invalid(e.to_string()))?;
            if !names.insert(rule.name.as_str()) {
                return Err(invalid("appears twice".into()));
            }
            if rule.on != DEAD_LETTER && !known.contains(&rule.on.as_str()) {
                return Err(invalid(format!("unknown event type {:?}", rule.on)));
            }
            if rule.timer.is_some() && rule.on != "berth.schedule.fired.v1" {
                return Err(invalid(
                    "`timer` needs `on: berth.schedule.fired.v1`".into(),
                ));
            }
            if rule.to.is_empty() {
                return Err(invalid("`to` is empty".into()));
            }
        }
        Ok(rules)
    }

    /// The rules an event of `event_type` matches; `timer` is the `notify` value of a
    /// schedule fire's payload.
    pub fn matching<'a>(
        &'a self,
        event_type: &'a str,
        timer: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules
            .iter()
            .filter(move |rule| rule.on == event_type && rule.timer.as_deref() == timer)
    }

    /// The `EVENTS` subjects the rules follow (one filter per aggregate kind).
    pub fn filter_subjects(&self) -> Vec<String> {
        let kinds: BTreeSet<&str> = self
            .rules
            .iter()
            .filter_map(|rule| rule.on.split('.').nth(1))
            .collect();
        kinds.into_iter().map(event_filter).collect()
    }

    pub fn follows_dead_letters(&self) -> bool {
        self.rules.iter().any(|rule| rule.on == DEAD_LETTER)
    }

    pub fn get(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_rules_are_valid_and_follow_their_kinds() {
        let rules = Rules::builtin().unwrap();
        let filters = rules.filter_subjects();
        assert!(filters.contains(&"evt.*.account.*".to_owned()));
        assert!(filters.contains(&"evt.*.schedule.*".to_owned()));
        assert!(!filters.iter().any(|f| f.contains("dlq")));
        assert!(rules.follows_dead_letters());
        let names: Vec<_> = rules
            .matching("berth.account.opened.v1", None)
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(names, ["welcome"]);
        assert_eq!(rules.matching("berth.schedule.fired.v1", None).count(), 0);
        assert_eq!(
            rules
                .matching("berth.schedule.fired.v1", Some("expiry_warning"))
                .count(),
            1
        );
    }

    #[test]
    fn bad_rules_are_refused_with_the_rule_named() {
        let cases = [
            (
                r#"{"expiry_warning_days":7,"rules":[{"name":"x","on":"berth.nope.v1","to":["customer"]}]}"#,
                "unknown event type",
            ),
            (
                r#"{"expiry_warning_days":7,"rules":[{"name":"x","on":"dlq","to":[]}]}"#,
                "`to` is empty",
            ),
            (
                r#"{"expiry_warning_days":7,"rules":[{"name":"x","on":"dlq","to":["customer"],"extra":1}]}"#,
                "unknown field",
            ),
            (
                r#"{"expiry_warning_days":7,"rules":[{"name":"x","on":"dlq","to":["customer"]},{"name":"x","on":"dlq","to":["customer"]}]}"#,
                "twice",
            ),
            (
                r#"{"expiry_warning_days":7,"rules":[{"name":"x","on":"berth.vm.failed.v1","timer":"t","to":["customer"]}]}"#,
                "timer",
            ),
            (
                r#"{"expiry_warning_days":7,"rules":[{"name":"x","on":"dlq","to":["everyone"]}]}"#,
                "unknown variant",
            ),
        ];
        for (text, expected) in cases {
            let error = Rules::parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{error} should say {expected}");
        }
    }
}
