//! The trait every family of domain events implements, and the macro that derives it.

/// An event could not be read back from the log.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("event body of {event_type} does not match its schema: {source}")]
    Body {
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("event header {header} is missing or invalid: {detail}")]
    Header {
        header: &'static str,
        detail: String,
    },
}

/// A family of events of one aggregate kind, each variant with its own `ce-type`.
pub trait DomainEvent: Sized + Send + Sync + Clone + std::fmt::Debug + 'static {
    /// The `ce-type` of this event, e.g. `berth.vm.requested.v1`.
    fn event_type(&self) -> &'static str;
    /// The event's body: its JSON data.
    fn to_json(&self) -> Vec<u8>;
    /// Reads an event back from its `ce-type` and body.
    fn decode(event_type: &str, data: &[u8]) -> Result<Self, DecodeError>;
    /// Every `ce-type` of the family.
    fn event_types() -> &'static [&'static str];
    /// The JSON Schema of every `ce-type` of the family.
    fn json_schemas() -> Vec<(&'static str, schemars::Schema)>;

    /// Whether `event_type` is one of the family's: how a consumer of several families
    /// routes an event before decoding it.
    fn has_type(event_type: &str) -> bool {
        Self::event_types().contains(&event_type)
    }
}

/// Declares an event enum whose variants wrap one body struct each and maps every
/// variant to its `ce-type`.
#[macro_export]
macro_rules! domain_events {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident($body:ty) = $type_name:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            $( $(#[$vmeta])* $variant($body), )+
        }

        impl $crate::event::DomainEvent for $name {
            fn event_type(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => $type_name, )+
                }
            }

            fn to_json(&self) -> Vec<u8> {
                let encoded = match self {
                    $( Self::$variant(body) => serde_json::to_vec(body), )+
                };
                encoded.expect("event bodies are plain data and always serialize")
            }

            fn decode(event_type: &str, data: &[u8]) -> Result<Self, $crate::event::DecodeError> {
                match event_type {
                    $( $type_name => serde_json::from_slice(data).map(Self::$variant).map_err(|source| {
                        $crate::event::DecodeError::Body { event_type: event_type.to_owned(), source }
                    }), )+
                    other => Err($crate::event::DecodeError::UnknownType(other.to_owned())),
                }
            }

            fn event_types() -> &'static [&'static str] {
                &[ $( $type_name, )+ ]
            }

            fn json_schemas() -> Vec<(&'static str, schemars::Schema)> {
                vec![ $( ($type_name, schemars::schema_for!($body)), )+ ]
            }
        }
    };
}
