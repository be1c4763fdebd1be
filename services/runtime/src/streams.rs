//! Stream definitions from `nats/streams/*.json`, applied idempotently at start.
//!
//! A missing stream is created; an existing one is updated to the definition. A change
//! the server cannot make in place (storage type, for example) refuses to start: the
//! event log is never deleted and recreated.

use async_nats::jetstream::{self, stream};

use crate::config::Settings;
use crate::error::{Error, Result};

/// The checked-in definitions, embedded so every binary carries them.
pub const DEFINITIONS: [(&str, &str); 4] = [
    (
        "events.json",
        include_str!("../../../nats/streams/events.json"),
    ),
    (
        "status.json",
        include_str!("../../../nats/streams/status.json"),
    ),
    ("dlq.json", include_str!("../../../nats/streams/dlq.json")),
    (
        "retry.json",
        include_str!("../../../nats/streams/retry.json"),
    ),
];

/// The parsed definitions, with the settings' overrides.
pub fn definitions(settings: &Settings) -> Result<Vec<stream::Config>> {
    DEFINITIONS
        .iter()
        .map(|(file, text)| {
            let mut config: stream::Config = serde_json::from_str(text)
                .map_err(|e| Error::Config(format!("nats/streams/{file}: {e}")))?;
            if config.name == berth_schemas::subjects::EVENTS_STREAM {
                if let Some(window) = settings.events_duplicate_window {
                    config.duplicate_window = window;
                }
            }
            Ok(config)
        })
        .collect()
}

fn is_not_found(error: &jetstream::context::GetStreamError) -> bool {
    matches!(
        error.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(api)
            if api.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// Creates or updates every stream.
pub async fn apply(js: &jetstream::Context, settings: &Settings) -> Result<()> {
    for config in definitions(settings)? {
        let name = config.name.clone();
        match js.get_stream(&name).await {
            Ok(_) => {
                js.update_stream(config).await.map_err(|e| {
                    Error::Config(format!(
                        "stream {name} differs from its definition in nats/streams and cannot be updated in place ({e}); berth will not recreate it"
                    ))
                })?;
            }
            Err(e) if is_not_found(&e) => {
                js.create_stream(config)
                    .await
                    .map_err(|e| Error::nats(format!("create stream {name}"), e))?;
            }
            Err(e) => return Err(Error::nats(format!("look up stream {name}"), e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_parse_and_keep_the_log_append_only() {
        let configs = definitions(&Settings::default()).unwrap();
        let events = configs.iter().find(|c| c.name == "EVENTS").unwrap();
        assert!(events.deny_delete && events.deny_purge && events.allow_direct);
        assert!(events.allow_atomic_publish);
        assert!(events.duplicate_window >= std::time::Duration::from_secs(600));
        let status = configs.iter().find(|c| c.name == "STATUS").unwrap();
        assert_eq!(status.max_messages_per_subject, 1);
    }
}
