//! Every command decoder under property tests: arbitrary bytes and arbitrary JSON (deep,
//! wide, with NUL and odd escapes) sent to every `(kind, action)` in the access table
//! never panic, and what the endpoint's checks let through holds no NUL.
//!
//! CI runs proptest's default case count; `just fuzz` (part of `just bench`) runs
//! `PROPTEST_CASES=1000000`.

use berth_schemas::access::{decode_command, COMMANDS};
use berth_schemas::bounds::check_command_body;
use proptest::prelude::*;
use serde_json::Value;

/// What the endpoint does with a body before any aggregate is loaded.
fn admit(kind: &str, action: &str, body: &[u8]) -> bool {
    check_command_body(body).is_ok() && decode_command(kind, action, body).is_ok()
}

fn row() -> impl Strategy<Value = (&'static str, &'static str)> {
    (0..COMMANDS.len()).prop_map(|i| (COMMANDS[i].kind, COMMANDS[i].action))
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9_-]{0,12}",
        "\\PC{0,24}",
        Just("\u{0}".to_owned()),
        Just("0196f0c2-9a4e-7cc0-8f3e-2b7d9e3f1a00".to_owned()),
        Just("x".repeat(5000)),
    ]
}

/// Arbitrary JSON, biased towards the field names commands use.
fn json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("vm_id".to_owned()),
        Just("pod_id".to_owned()),
        Just("name".to_owned()),
        Just("payload".to_owned()),
        Just("action".to_owned()),
        Just("env".to_owned()),
        Just("command".to_owned()),
        Just("kind".to_owned()),
        Just("amount_minor".to_owned()),
        text(),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_a_decoder((kind, action) in row(), body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = admit(kind, action, &body);
    }

    #[test]
    fn arbitrary_json_never_panics_and_admits_no_nul((kind, action) in row(), value in json()) {
        let body = serde_json::to_vec(&value).unwrap();
        if admit(kind, action, &body) {
            prop_assert!(!body.windows(6).any(|w| w == b"\\u0000"), "{kind}.{action} admitted a NUL: {value}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_overflow((kind, action) in row(), depth in 33usize..20_000) {
        let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        prop_assert!(!admit(kind, action, body.as_bytes()));
        let object = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        prop_assert!(!admit(kind, action, object.as_bytes()));
    }
}
