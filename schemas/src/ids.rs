//! Validated identifiers. A value of these types is safe to put into a NATS subject.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The reserved tenant of berth itself (operators, schedules, projections).
pub const SYSTEM_TENANT: &str = "system";

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {why}")]
pub struct InvalidToken {
    pub what: &'static str,
    pub value: String,
    pub why: &'static str,
}

/// A tenant id: `^[a-z0-9][a-z0-9-]{0,62}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct TenantId(#[schemars(regex(pattern = r"^[a-z0-9][a-z0-9-]{0,62}$"))] String);

impl TenantId {
    pub fn parse(value: &str) -> Result<Self, InvalidToken> {
        validate_slug("tenant id", value, 63)?;
        Ok(Self(value.to_owned()))
    }

    pub fn system() -> Self {
        Self(SYSTEM_TENANT.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for TenantId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl FromStr for TenantId {
    type Err = InvalidToken;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks `^[a-z0-9][a-z0-9-]{0,max-1}$`: lower-case, digits and hyphens, so the value
/// can never carry `.`, `*`, `>` or whitespace into a subject.
pub fn validate_slug(what: &'static str, value: &str, max: usize) -> Result<(), InvalidToken> {
    let refuse = |why| {
        Err(InvalidToken {
            what,
            value: value.chars().take(80).collect(),
            why,
        })
    };
    if value.is_empty() {
        return refuse("must not be empty");
    }
    if value.len() > max {
        return refuse("is too long");
    }
    if value.starts_with('-') {
        return refuse("must start with a lower-case letter or digit");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return refuse("may only hold a-z, 0-9 and '-'");
    }
    Ok(())
}

/// Checks a single subject token that is not a slug (e.g. a consumer name): no `.`,
/// `*`, `>`, whitespace or control characters.
pub fn validate_subject_token(what: &'static str, value: &str) -> Result<(), InvalidToken> {
    if value.is_empty() || value.len() > 128 {
        return Err(InvalidToken {
            what,
            value: value.chars().take(80).collect(),
            why: "must hold 1 to 128 characters",
        });
    }
    if value
        .chars()
        .any(|c| matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control())
    {
        return Err(InvalidToken {
            what,
            value: value.chars().take(80).collect(),
            why: "must not contain '.', '*', '>' or whitespace",
        });
    }
    Ok(())
}

/// Who caused a command or event: `user:<id>`, `service:<name>` or `schedule:<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct Actor(String);

impl Actor {
    pub fn parse(value: &str) -> Result<Self, InvalidToken> {
        let refuse = |why| InvalidToken {
            what: "actor",
            value: value.chars().take(80).collect(),
            why,
        };
        let (kind, id) = value
            .split_once(':')
            .ok_or_else(|| refuse("must look like user:<id>, service:<name> or schedule:<id>"))?;
        if !matches!(kind, "user" | "service" | "schedule") {
            return Err(refuse("kind must be user, service or schedule"));
        }
        if id.is_empty()
            || id.len() > 128
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_@.+".contains(&b))
        {
            return Err(refuse(
                "id must hold 1 to 128 of a-z, A-Z, 0-9, '-', '_', '@', '.', '+'",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn service(name: &str) -> Self {
        Self(format!("service:{name}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Actor {
    type Err = InvalidToken;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Actor {
    type Error = InvalidToken;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Actor> for String {
    fn from(actor: Actor) -> Self {
        actor.0
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_refuse_subject_metacharacters_and_upper_case() {
        for bad in [
            "",
            "a.b",
            "a>",
            ">",
            "*",
            "Acme",
            "a b",
            "-lead",
            &"x".repeat(64),
        ] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?} must be refused");
        }
        for good in ["acme", "a", "0", "acme-corp-2", &"x".repeat(63)] {
            assert!(TenantId::parse(good).is_ok(), "{good:?} must be accepted");
        }
    }

    #[test]
    fn actors_name_their_kind() {
        assert!(Actor::parse("user:alice@example.com").is_ok());
        assert!(Actor::parse("service:provisioner").is_ok());
        assert!(Actor::parse("robot:x").is_err());
        assert!(Actor::parse("user:").is_err());
        assert!(Actor::parse("user:a b").is_err());
    }

    #[test]
    fn tenant_ids_deserialize_through_validation() {
        assert!(serde_json::from_str::<TenantId>("\"acme\"").is_ok());
        assert!(serde_json::from_str::<TenantId>("\"ac.me\"").is_err());
    }
}
