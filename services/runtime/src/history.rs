//! Time travel: an aggregate as it was at a moment, folded from its events with its own
//! `apply` up to a time or a stream sequence, and what changed between two moments.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::error::Result;
use crate::store::{Aggregate, StoredEvent};

/// A point in the log: an RFC 3339 time or a stream sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    Time(DateTime<Utc>),
    Sequence(u64),
}

impl std::str::FromStr for Point {
    type Err = String;

    fn from_str(value: &str) -> std::result::Result<Self, Self::Err> {
        if let Ok(sequence) = value.parse::<u64>() {
            return Ok(Self::Sequence(sequence));
        }
        DateTime::parse_from_rfc3339(value)
            .map(|at| Self::Time(at.with_timezone(&Utc)))
            .map_err(|_| {
                format!(
                    "{value:?} is neither an RFC 3339 time (2026-12-03T07:00:00Z) nor a stream sequence"
                )
            })
    }
}

impl Point {
    /// Whether `event` had happened at this point.
    pub fn includes(self, event: &StoredEvent) -> bool {
        match self {
            Self::Time(at) => event.meta.time <= at,
            Self::Sequence(sequence) => event.sequence <= sequence,
        }
    }
}

/// An aggregate folded up to a point.
#[derive(Debug, Clone)]
pub struct Folded<A> {
    pub state: A,
    /// The sequence of the last event folded; 0 when the aggregate did not exist yet.
    pub version: u64,
    pub as_of: Option<DateTime<Utc>>,
    pub events: usize,
}

/// Folds `A` from its `events` (in log order) up to `point`.
pub fn fold_at<A: Aggregate>(events: &[StoredEvent], point: Point) -> Result<Folded<A>> {
    let mut folded = Folded {
        state: A::default(),
        version: 0,
        as_of: None,
        events: 0,
    };
    for event in events.iter().take_while(|e| point.includes(e)) {
        folded.state.apply(&event.decode::<A::Event>()?);
        folded.version = event.sequence;
        folded.as_of = Some(event.meta.time);
        folded.events += 1;
    }
    Ok(folded)
}

/// The fields that differ between two JSON values: `(path, from, to)`, by path.
pub fn diff(from: &Value, to: &Value) -> Vec<(String, Value, Value)> {
    fn walk(path: &str, from: &Value, to: &Value, out: &mut Vec<(String, Value, Value)>) {
        match (from, to) {
            (Value::Object(a), Value::Object(b)) => {
                let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
                keys.sort();
                keys.dedup();
                for key in keys {
                    let child = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    walk(
                        &child,
                        a.get(key).unwrap_or(&Value::Null),
                        b.get(key).unwrap_or(&Value::Null),
                        out,
                    );
                }
            }
            _ if from != to => out.push((path.to_owned(), from.clone(), to.clone())),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", from, to, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn points_parse_times_and_sequences_and_say_what_they_want() {
        assert_eq!("42".parse::<Point>().unwrap(), Point::Sequence(42));
        assert!(matches!(
            "2026-12-03T07:00:00Z".parse::<Point>().unwrap(),
            Point::Time(_)
        ));
        assert!("yesterday"
            .parse::<Point>()
            .unwrap_err()
            .contains("RFC 3339"));
    }

    #[test]
    fn diff_names_each_changed_path() {
        let a = json!({"status": "running", "size": {"vcpus": 1, "disk": 10}});
        let b = json!({"status": "stopped", "size": {"vcpus": 2, "disk": 10}, "reason": "x"});
        let changes: Vec<String> = diff(&a, &b).into_iter().map(|(p, _, _)| p).collect();
        assert_eq!(changes, ["reason", "size.vcpus", "status"]);
    }
}
