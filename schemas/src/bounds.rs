//! Bounds on what callers may send (DESIGN §7): free-form input is bounded in size and
//! depth and holds no NUL, the one character Postgres refuses in `text` and `jsonb`
//! (one such string in the log would stop every projection that stores it).
//!
//! [`check_command_body`] runs on every command body before it is decoded;
//! [`check_free_form`] bounds one free-form field (a payload, an action body, env
//! values) more tightly than the whole command.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::command::{Rejection, RejectionCode};

/// JSON nested deeper than this is refused (objects and arrays count one level each).
pub const MAX_JSON_DEPTH: usize = 32;

/// A free-form JSON field (a schedule's payload, a command body it carries, a pod's
/// config values) holds at most this many bytes once serialized.
pub const MAX_FREE_FORM_BYTES: usize = 16 * 1024;

/// Refuses a command body whose JSON is nested deeper than [`MAX_JSON_DEPTH`] or holds a
/// NUL in any string or key. Bodies that are not JSON at all are left to the decoder,
/// whose message names the field.
pub fn check_command_body(body: &[u8]) -> Result<(), Rejection> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    // The walk keeps its own depth bound, below serde_json's recursion limit.
    match (CleanValue { depth: 0 }).deserialize(&mut deserializer) {
        Ok(()) => Ok(()),
        Err(e) if e.is_data() => Err(Rejection::invalid(e.to_string())),
        // Syntax errors and truncated input: the typed decoder says what is wrong.
        Err(_) => Ok(()),
    }
}

/// Refuses a free-form value larger than `max_bytes` serialized, nested deeper than
/// [`MAX_JSON_DEPTH`], or holding a NUL.
pub fn check_free_form(
    what: &str,
    value: &serde_json::Value,
    max_bytes: usize,
) -> Result<(), Rejection> {
    let encoded = serde_json::to_vec(value).map_err(|e| Rejection::invalid(e.to_string()))?;
    if encoded.len() > max_bytes {
        return Err(Rejection::new(
            RejectionCode::TooLarge,
            format!(
                "{what} has {} bytes; the limit is {max_bytes}",
                encoded.len()
            ),
        ));
    }
    check_command_body(&encoded).map_err(|e| Rejection::invalid(format!("{what}: {}", e.message)))
}

/// Refuses a free-form string with a NUL or longer than `max_chars`.
pub fn check_text(what: &str, value: &str, max_chars: usize) -> Result<(), Rejection> {
    if value.contains('\0') {
        return Err(Rejection::invalid(format!("{what} must not contain NUL")));
    }
    if value.chars().count() > max_chars {
        return Err(Rejection::invalid(format!(
            "{what} holds at most {max_chars} characters"
        )));
    }
    Ok(())
}

/// Walks any JSON value without keeping it, refusing NUL and excessive depth.
struct CleanValue {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for CleanValue {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl CleanValue {
    fn nested<E: serde::de::Error>(&self) -> Result<Self, E> {
        if self.depth >= MAX_JSON_DEPTH {
            return Err(E::custom(format_args!(
                "JSON nested deeper than {MAX_JSON_DEPTH} levels is refused"
            )));
        }
        Ok(Self {
            depth: self.depth + 1,
        })
    }
}

fn refuse_nul<E: serde::de::Error>(value: &str) -> Result<(), E> {
    if value.contains('\0') {
        return Err(E::custom("strings must not contain NUL (\\u0000)"));
    }
    Ok(())
}

impl<'de> Visitor<'de> for CleanValue {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<(), E> {
        refuse_nul(value)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.nested()?;
        while seq
            .next_element_seed(CleanValue { depth: inner.depth })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.nested()?;
        while map.next_key_seed(CleanKey)?.is_some() {
            map.next_value_seed(CleanValue { depth: inner.depth })?;
        }
        Ok(())
    }
}

/// An object key: a string, checked for NUL.
struct CleanKey;

impl<'de> DeserializeSeed<'de> for CleanKey {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for CleanKey {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<(), E> {
        refuse_nul(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_anywhere_is_refused() {
        for body in [
            r#"{"name":"a\u0000b"}"#,
            r#"{"a\u0000":1}"#,
            r#"{"payload":{"deep":["x","\u0000"]}}"#,
        ] {
            let refused = check_command_body(body.as_bytes()).unwrap_err();
            assert_eq!(refused.code, RejectionCode::Invalid, "{body}");
        }
        assert!(check_command_body(br#"{"name":"a\\u0000b"}"#).is_ok());
        assert!(check_command_body(br#"{"name":"tab\there","n":[1,2.5,null,true]}"#).is_ok());
    }

    #[test]
    fn depth_is_bounded_without_stack_overflow() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(check_command_body(deep(MAX_JSON_DEPTH).as_bytes()).is_ok());
        assert!(check_command_body(deep(MAX_JSON_DEPTH + 1).as_bytes()).is_err());
        assert!(check_command_body(deep(10_000).as_bytes()).is_err());
    }

    #[test]
    fn malformed_json_is_left_to_the_typed_decoder() {
        assert!(check_command_body(b"{").is_ok());
        assert!(check_command_body(b"").is_ok());
    }

    #[test]
    fn free_form_fields_are_bounded() {
        let big = serde_json::json!({ "blob": "x".repeat(MAX_FREE_FORM_BYTES) });
        assert_eq!(
            check_free_form("payload", &big, MAX_FREE_FORM_BYTES)
                .unwrap_err()
                .code,
            RejectionCode::TooLarge
        );
        let nul = serde_json::json!({ "a": "\u{0}" });
        assert!(check_free_form("payload", &nul, MAX_FREE_FORM_BYTES).is_err());
        assert!(check_text("reference", "psp\u{0}", 100).is_err());
        assert!(check_text("reference", "psp-42", 100).is_ok());
    }
}
