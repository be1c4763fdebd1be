//! Given → when → then tests of [`super`].

use std::borrow::Cow;

use super::*;

/// A Postgres error with just a SQLSTATE, as the server would send it.
#[derive(Debug, thiserror::Error)]
#[error("{message} ({code})")]
struct PgError {
    code: &'static str,
    message: &'static str,
}

impl sqlx::error::DatabaseError for PgError {
    fn message(&self) -> &str {
        self.message
    }
    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(self.code))
    }
    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }
    fn kind(&self) -> sqlx::error::ErrorKind {
        sqlx::error::ErrorKind::Other
    }
}

fn postgres(code: &'static str, message: &'static str) -> ApplyError {
    ApplyError::Db(sqlx::Error::Database(Box::new(PgError { code, message })))
}

#[test]
fn bad_data_constraints_decodes_and_schema_bugs_are_deterministic() {
    for (code, message) in [
        ("22P05", "unsupported Unicode escape sequence"),
        ("22021", "invalid byte sequence for encoding \"UTF8\": 0x00"),
        ("22003", "integer out of range"),
        ("23505", "duplicate key value violates unique constraint"),
        ("23502", "null value in column violates not-null constraint"),
        (
            "21000",
            "ON CONFLICT DO UPDATE command cannot affect row a second time",
        ),
        ("42P01", "relation does not exist"),
        ("42703", "column does not exist"),
        ("42601", "syntax error"),
    ] {
        let error = postgres(code, message);
        assert_eq!(classify(&error), ErrorClass::Deterministic, "{code}");
        assert_eq!(describe(&error), format!("{message} (SQLSTATE {code})"));
    }
    let event = ApplyError::Event {
        sequence: 7,
        reason: "unknown event type".into(),
    };
    assert_eq!(classify(&event), ErrorClass::Deterministic);
    assert_eq!(describe(&event), "unknown event type");
    let json = serde_json::from_slice::<serde_json::Value>(b"{").unwrap_err();
    assert_eq!(classify(&json.into()), ErrorClass::Deterministic);
    for error in [
        sqlx::Error::RowNotFound,
        sqlx::Error::ColumnNotFound("name".into()),
        sqlx::Error::Decode("not a uuid".into()),
        sqlx::Error::Encode("too long".into()),
    ] {
        assert_eq!(
            classify(&error.into()),
            ErrorClass::Deterministic,
            "a row or a value error"
        );
    }
}

#[test]
fn connections_locks_and_shutdowns_are_transient() {
    for code in [
        "40001", // serialization failure
        "40P01", // deadlock detected
        "57P01", // admin shutdown
        "57014", // query canceled
        "08006", // connection failure
        "53300", // too many connections
        "55P03", // lock not available
        "42501", // insufficient privilege: fixed by an operator, not in the event
        "XX000", // internal error
    ] {
        assert_eq!(
            classify(&postgres(code, "try again")),
            ErrorClass::Transient,
            "{code}"
        );
    }
    for error in [
        sqlx::Error::PoolTimedOut,
        sqlx::Error::PoolClosed,
        sqlx::Error::WorkerCrashed,
        sqlx::Error::Protocol("unexpected message".into()),
        sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
    ] {
        assert_eq!(classify(&error.into()), ErrorClass::Transient);
    }
}

#[test]
fn retries_back_off_doubling_up_to_a_cap() {
    assert_eq!(retry_delay(1), RETRY_FIRST);
    assert_eq!(retry_delay(2), RETRY_FIRST * 2);
    assert_eq!(retry_delay(3), RETRY_FIRST * 4);
    assert_eq!(retry_delay(10), RETRY_MAX);
    assert_eq!(retry_delay(u32::MAX), RETRY_MAX);
}
