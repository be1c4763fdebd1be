//! CloudEvents 1.0 in binary mode over NATS headers (DESIGN §3).
//!
//! Every attribute is a lower-case `ce-<name>` header with a percent-encoded value and
//! the body is the event's JSON data. [`EventMeta::encode`] builds a `cloudevents::Event`
//! and writes it through the SDK's [`BinarySerializer`] into a [`NatsBinary`];
//! [`NatsBinary`] is also a [`BinaryDeserializer`], so any stored message can be turned
//! back into a `cloudevents::Event` with `into_event()`. [`EventMeta::decode`] reads the
//! headers directly, which is what the hot paths (projections, reactors) use.

use async_nats::HeaderMap;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use cloudevents::event::SpecVersion;
use cloudevents::message::{
    BinaryDeserializer, BinarySerializer, MessageAttributeValue, Result as CeResult,
};
use cloudevents::{AttributesReader, EventBuilder, EventBuilderV10};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};
use uuid::Uuid;

use crate::event::DecodeError;
use crate::ids::{Actor, TenantId};

/// Header names, all lower-case as the NATS binding of CloudEvents has them.
pub mod headers {
    pub const SPEC_VERSION: &str = "ce-specversion";
    pub const ID: &str = "ce-id";
    pub const SOURCE: &str = "ce-source";
    pub const TYPE: &str = "ce-type";
    pub const TIME: &str = "ce-time";
    pub const SUBJECT: &str = "ce-subject";
    pub const TENANT: &str = "ce-tenant";
    pub const ACTOR: &str = "ce-actor";
    pub const CORRELATION_ID: &str = "ce-correlationid";
    pub const CAUSATION_ID: &str = "ce-causationid";
    pub const CONTENT_TYPE: &str = "content-type";
    pub const TRACEPARENT: &str = "traceparent";
    pub const TRACESTATE: &str = "tracestate";
    /// JetStream de-duplication; always equal to `ce-id`.
    pub const NATS_MSG_ID: &str = "Nats-Msg-Id";
}

/// The content type of every berth event body.
pub const JSON: &str = "application/json";

/// The CloudEvents extensions berth sets on every event.
pub const EXTENSIONS: [&str; 4] = ["tenant", "actor", "correlationid", "causationid"];

const HEADER_UNSAFE: &AsciiSet = &CONTROLS.add(b'%').add(b'"');

/// Reads a header by name, ignoring case, and percent-decodes it.
pub fn header_value(map: &HeaderMap, name: &str) -> Option<String> {
    let raw = map.get(name).or_else(|| {
        map.iter()
            .find(|(key, _)| key.to_string().eq_ignore_ascii_case(name))
            .and_then(|(_, values)| values.first())
    })?;
    let text = raw.as_str();
    Some(
        percent_decode_str(text)
            .decode_utf8()
            .map(|decoded| decoded.into_owned())
            .unwrap_or_else(|_| text.to_owned()),
    )
}

fn encode_header(value: &str) -> String {
    utf8_percent_encode(value, HEADER_UNSAFE).to_string()
}

/// The attributes of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMeta {
    pub id: Uuid,
    /// `berth/<service>`.
    pub source: String,
    pub event_type: String,
    pub time: DateTime<Utc>,
    /// The aggregate id.
    pub subject: Uuid,
    pub tenant: TenantId,
    pub actor: Actor,
    pub correlation_id: Uuid,
    /// The command (or event) that caused this one.
    pub causation_id: Uuid,
    pub traceparent: Option<String>,
}

impl EventMeta {
    /// The event as a CloudEvents SDK event.
    pub fn to_cloudevent(&self, data: &[u8]) -> Result<cloudevents::Event, DecodeError> {
        let json: serde_json::Value =
            serde_json::from_slice(data).map_err(|source| DecodeError::Body {
                event_type: self.event_type.clone(),
                source,
            })?;
        EventBuilderV10::new()
            .id(self.id.to_string())
            .source(self.source.clone())
            .ty(self.event_type.clone())
            .time(self.time)
            .subject(self.subject.to_string())
            .extension("tenant", self.tenant.as_str())
            .extension("actor", self.actor.as_str())
            .extension("correlationid", self.correlation_id.to_string())
            .extension("causationid", self.causation_id.to_string())
            .data(JSON, json)
            .build()
            .map_err(|e| DecodeError::Header {
                header: headers::ID,
                detail: e.to_string(),
            })
    }

    /// Headers and body of the NATS message that carries this event.
    pub fn encode(&self, data: &[u8]) -> Result<(HeaderMap, Bytes), DecodeError> {
        let event = self.to_cloudevent(data)?;
        let NatsBinary {
            mut headers,
            payload,
        } = event
            .deserialize_binary(NatsBinary::default())
            .map_err(|e| DecodeError::Header {
                header: headers::SPEC_VERSION,
                detail: e.to_string(),
            })?;
        if let Some(traceparent) = &self.traceparent {
            headers.insert(headers::TRACEPARENT, traceparent.as_str());
        }
        Ok((headers, payload))
    }

    /// Reads the attributes back from a message's headers.
    pub fn decode(map: &HeaderMap) -> Result<Self, DecodeError> {
        fn required(map: &HeaderMap, header: &'static str) -> Result<String, DecodeError> {
            header_value(map, header).ok_or(DecodeError::Header {
                header,
                detail: "missing".into(),
            })
        }
        fn uuid(map: &HeaderMap, header: &'static str) -> Result<Uuid, DecodeError> {
            let raw = required(map, header)?;
            Uuid::parse_str(&raw).map_err(|e| DecodeError::Header {
                header,
                detail: e.to_string(),
            })
        }
        let spec = required(map, headers::SPEC_VERSION)?;
        if spec != "1.0" {
            return Err(DecodeError::Header {
                header: headers::SPEC_VERSION,
                detail: format!("unsupported spec version {spec}"),
            });
        }
        let time = required(map, headers::TIME)?;
        let time = DateTime::parse_from_rfc3339(&time)
            .map_err(|e| DecodeError::Header {
                header: headers::TIME,
                detail: e.to_string(),
            })?
            .with_timezone(&Utc);
        let tenant =
            TenantId::parse(&required(map, headers::TENANT)?).map_err(|e| DecodeError::Header {
                header: headers::TENANT,
                detail: e.to_string(),
            })?;
        let actor =
            Actor::parse(&required(map, headers::ACTOR)?).map_err(|e| DecodeError::Header {
                header: headers::ACTOR,
                detail: e.to_string(),
            })?;
        Ok(Self {
            id: uuid(map, headers::ID)?,
            source: required(map, headers::SOURCE)?,
            event_type: required(map, headers::TYPE)?,
            time,
            subject: uuid(map, headers::SUBJECT)?,
            tenant,
            actor,
            correlation_id: uuid(map, headers::CORRELATION_ID)?,
            causation_id: uuid(map, headers::CAUSATION_ID)?,
            traceparent: header_value(map, headers::TRACEPARENT),
        })
    }
}

/// A NATS message in CloudEvents binary mode: headers plus body.
#[derive(Debug, Clone, Default)]
pub struct NatsBinary {
    pub headers: HeaderMap,
    pub payload: Bytes,
}

impl NatsBinary {
    pub fn new(headers: HeaderMap, payload: Bytes) -> Self {
        Self { headers, payload }
    }
}

impl BinarySerializer<NatsBinary> for NatsBinary {
    fn set_spec_version(mut self, spec_version: SpecVersion) -> CeResult<Self> {
        self.headers
            .insert(headers::SPEC_VERSION, spec_version.to_string().as_str());
        Ok(self)
    }

    fn set_attribute(mut self, name: &str, value: MessageAttributeValue) -> CeResult<Self> {
        let header = if name == "datacontenttype" {
            headers::CONTENT_TYPE.to_owned()
        } else {
            format!("ce-{name}")
        };
        self.headers
            .insert(header.as_str(), encode_header(&value.to_string()).as_str());
        Ok(self)
    }

    fn set_extension(self, name: &str, value: MessageAttributeValue) -> CeResult<Self> {
        self.set_attribute(name, value)
    }

    fn end_with_data(mut self, bytes: Vec<u8>) -> CeResult<NatsBinary> {
        self.payload = Bytes::from(bytes);
        Ok(self)
    }

    fn end(self) -> CeResult<NatsBinary> {
        Ok(self)
    }
}

impl BinaryDeserializer for NatsBinary {
    fn deserialize_binary<R: Sized, V: BinarySerializer<R>>(self, visitor: V) -> CeResult<R> {
        let spec = header_value(&self.headers, headers::SPEC_VERSION)
            .ok_or(cloudevents::message::Error::WrongEncoding {})?;
        let spec_version = SpecVersion::try_from(spec.as_str())?;
        let attribute_names = spec_version.attribute_names();
        let mut visitor = visitor.set_spec_version(spec_version)?;
        for (name, values) in self.headers.iter() {
            let name = name.to_string().to_ascii_lowercase();
            let Some(value) = values.first() else {
                continue;
            };
            let value = percent_decode_str(value.as_str())
                .decode_utf8_lossy()
                .into_owned();
            if name == headers::CONTENT_TYPE {
                visitor = visitor
                    .set_attribute("datacontenttype", MessageAttributeValue::String(value))?;
                continue;
            }
            let Some(attribute) = name.strip_prefix("ce-") else {
                continue;
            };
            if attribute == "specversion" {
                continue;
            }
            let value = MessageAttributeValue::String(value);
            visitor = if attribute_names.contains(&attribute) {
                visitor.set_attribute(attribute, value)?
            } else {
                visitor.set_extension(attribute, value)?
            };
        }
        if self.payload.is_empty() {
            visitor.end()
        } else {
            visitor.end_with_data(self.payload.to_vec())
        }
    }
}

/// Checks that a CloudEvents SDK event carries everything DESIGN §3 requires.
pub fn missing_attributes(event: &cloudevents::Event) -> Vec<&'static str> {
    let mut missing = Vec::new();
    if event.source().is_empty() {
        missing.push("source");
    }
    if event.time().is_none() {
        missing.push("time");
    }
    if event.subject().is_none() {
        missing.push("subject");
    }
    if event.datacontenttype() != Some(JSON) {
        missing.push("datacontenttype");
    }
    for extension in EXTENSIONS {
        if event.extension(extension).is_none() {
            missing.push(extension);
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::message::BinaryDeserializer;

    fn meta() -> EventMeta {
        EventMeta {
            id: Uuid::now_v7(),
            source: "berth/provisioner".into(),
            event_type: "berth.vm.requested.v1".into(),
            time: Utc::now(),
            subject: Uuid::now_v7(),
            tenant: TenantId::parse("acme").unwrap(),
            actor: Actor::parse("user:alice@example.com").unwrap(),
            correlation_id: Uuid::now_v7(),
            causation_id: Uuid::now_v7(),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        }
    }

    #[test]
    fn binary_mode_round_trips_through_headers() {
        let meta = meta();
        let (headers, payload) = meta.encode(br#"{"name":"web"}"#).unwrap();
        assert_eq!(
            header_value(&headers, "ce-specversion").as_deref(),
            Some("1.0")
        );
        assert_eq!(
            header_value(&headers, "content-type").as_deref(),
            Some(JSON)
        );
        let decoded = EventMeta::decode(&headers).unwrap();
        // RFC 3339 keeps what the SDK keeps; compare everything else exactly.
        assert_eq!(decoded.id, meta.id);
        assert_eq!(decoded.actor, meta.actor);
        assert_eq!(decoded.tenant, meta.tenant);
        assert_eq!(decoded.causation_id, meta.causation_id);
        assert_eq!(decoded.traceparent, meta.traceparent);
        assert_eq!(
            decoded.time.timestamp_micros(),
            meta.time.timestamp_micros()
        );

        let event = NatsBinary::new(headers, payload).into_event().unwrap();
        assert!(
            missing_attributes(&event).is_empty(),
            "{:?}",
            missing_attributes(&event)
        );
        assert_eq!(event.ty(), "berth.vm.requested.v1");
    }

    #[test]
    fn header_values_with_unsafe_characters_are_percent_encoded() {
        assert_eq!(encode_header("a%b\r\n"), "a%25b%0D%0A");
        let mut map = HeaderMap::new();
        map.insert("CE-ACTOR", "user:a%40b");
        assert_eq!(header_value(&map, "ce-actor").as_deref(), Some("user:a@b"));
    }
}
