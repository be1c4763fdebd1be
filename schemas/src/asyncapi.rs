//! The AsyncAPI document `schemas/asyncapi.yaml`, generated from Rust: every channel
//! ([`channels::all`]) with the subject items that build or match its address, its
//! parameters, its messages (payloads are the generated files in `schemas/json/`) and the
//! one operation on it.
//!
//! `just schemas` (`BERTH_WRITE_SCHEMAS=1`) writes the document with the schema files;
//! the tests below fail when the checked-in document differs by one byte, when a subject
//! item, a status kind, a command kind, an event type or a schema file is not documented,
//! and when the document names a subject item or a file that does not exist.

pub mod channels;
mod commands;
mod events;
mod queries;
mod statuses;
mod yaml;

use std::collections::BTreeSet;

pub use yaml::Node;

/// The document's path under the crate.
pub const FILE: &str = "asyncapi.yaml";

/// One subject family: an address with its parameters, messages and operation.
#[derive(Debug, Clone)]
pub struct Channel {
    pub id: &'static str,
    /// The subject, `{name}` for each parameter.
    pub address: &'static str,
    pub description: &'static str,
    /// The items that build, match or store the address, as `<module>::<name>` of this
    /// crate (written as `x-berth-subjects`).
    pub subjects: &'static [&'static str],
    pub parameters: Vec<(&'static str, Parameter)>,
    /// `(key, message)`, each message a name in [`messages`].
    pub messages: Vec<(String, String)>,
    pub operation: Operation,
}

/// What one `{name}` in an address may be.
#[derive(Debug, Clone)]
pub enum Parameter {
    Described(&'static str),
    OneOf(Vec<String>),
}

/// Who does what on a channel.
#[derive(Debug, Clone)]
pub struct Operation {
    pub id: &'static str,
    pub action: Action,
    pub summary: &'static str,
    /// The reply's message, for request/reply.
    pub reply: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Send,
    Receive,
}

/// A message: its payload is one generated schema file.
#[derive(Debug, Clone)]
pub struct Message {
    pub name: String,
    /// The `ce-type`, for events.
    pub title: Option<String>,
    pub description: Option<&'static str>,
    /// The file under `schemas/json/`.
    pub payload: String,
}

/// Every message the channels name, each once, in the order first named.
pub fn messages() -> Vec<Message> {
    let mut all = commands::messages();
    all.extend(queries::messages());
    all.extend(statuses::messages());
    all.extend(events::messages());
    all
}

/// The whole document.
pub fn document() -> Node {
    let channels = channels::all();
    let by_name: Vec<Message> = messages();
    let mut used: Vec<&Message> = Vec::new();
    let mut named = |name: &str| {
        let message = by_name
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("a channel names message {name}, which is not defined"));
        if !used.iter().any(|m| m.name == name) {
            used.push(message);
        }
        Node::reference(format!("#/components/messages/{name}"))
    };
    let mut channel_nodes = Vec::new();
    let mut operation_nodes = Vec::new();
    for channel in &channels {
        let mut entries = vec![
            ("address", Node::text(channel.address)),
            ("description", Node::text(channel.description)),
            (
                "x-berth-subjects",
                Node::List(channel.subjects.iter().map(|s| Node::text(*s)).collect()),
            ),
        ];
        if !channel.parameters.is_empty() {
            entries.push((
                "parameters",
                Node::map(channel.parameters.iter().map(|(name, p)| (*name, p.node()))),
            ));
        }
        if !channel.messages.is_empty() {
            entries.push((
                "messages",
                Node::map(
                    channel
                        .messages
                        .iter()
                        .map(|(key, name)| (key.clone(), named(name))),
                ),
            ));
        }
        channel_nodes.push((channel.id, Node::map(entries)));
        let operation = &channel.operation;
        let mut entries = vec![
            ("action", Node::text(operation.action.as_str())),
            (
                "channel",
                Node::reference(format!("#/channels/{}", channel.id)),
            ),
            ("summary", Node::text(operation.summary)),
        ];
        if let Some(reply) = operation.reply {
            entries.push((
                "reply",
                Node::map([("messages", Node::List(vec![named(reply)]))]),
            ));
        }
        operation_nodes.push((operation.id, Node::map(entries)));
    }
    let components = Node::map(
        used.iter()
            .map(|message| (message.name.clone(), message.node())),
    );
    Node::map([
        ("asyncapi", Node::text("3.0.0")),
        (
            "info",
            Node::map([
                ("title", Node::text("berth")),
                ("version", Node::text(env!("CARGO_PKG_VERSION"))),
                ("description", Node::text(channels::OVERVIEW)),
            ]),
        ),
        ("defaultContentType", Node::text(crate::envelope::JSON)),
        ("channels", Node::map(channel_nodes)),
        ("operations", Node::map(operation_nodes)),
        ("components", Node::map([("messages", components)])),
    ])
}

/// The document as it is checked in.
pub fn render() -> String {
    yaml::render(&document())
}

impl Parameter {
    fn node(&self) -> Node {
        match self {
            Self::Described(description) => Node::map([("description", Node::text(*description))]),
            Self::OneOf(values) => Node::map([(
                "enum",
                Node::List(values.iter().map(|v| Node::text(v.clone())).collect()),
            )]),
        }
    }
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Self::Send => "send",
            Self::Receive => "receive",
        }
    }
}

impl Message {
    fn node(&self) -> Node {
        let mut entries = Vec::new();
        if let Some(title) = &self.title {
            entries.push(("title", Node::text(title.clone())));
        }
        if let Some(description) = self.description {
            entries.push(("description", Node::text(description)));
        }
        entries.push((
            "payload",
            Node::reference(format!("./json/{}", self.payload)),
        ));
        Node::map(entries)
    }
}

/// The names of the top-level `pub fn` and `pub const` items of a module's source.
pub fn public_items(source: &str) -> BTreeSet<String> {
    source
        .lines()
        .filter_map(|line| {
            line.strip_prefix("pub fn ")
                .or_else(|| line.strip_prefix("pub const "))
        })
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

/// Whether an item of a module other than `subjects` names a subject or a stream (the
/// drift check holds such modules, e.g. `query`, to the same rule once a channel names
/// one of their items).
pub fn is_subject_item(name: &str) -> bool {
    name.ends_with("_subject")
        || name.ends_with("_filter")
        || name.ends_with("_SUBJECT")
        || name.ends_with("_STREAM")
        || name.starts_with("ALL_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::Path;

    use crate::json_schema;
    use crate::subjects::StatusKind;

    fn root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    /// Fails when `asyncapi.yaml` differs from what the channels generate.
    /// `just schemas` (BERTH_WRITE_SCHEMAS=1) rewrites it.
    #[test]
    fn checked_in_asyncapi_matches_the_channels() {
        let path = root().join(FILE);
        let generated = render();
        #[allow(clippy::disallowed_methods)]
        if std::env::var_os("BERTH_WRITE_SCHEMAS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "{FILE} drifted from schemas/src/asyncapi, run `just schemas`"
        );
    }

    /// Every subject item of `subjects` (and of each module a channel names an item of)
    /// is named by a channel, and every item a channel names exists.
    #[test]
    fn every_subject_item_is_documented() {
        let mut named: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for channel in channels::all() {
            for item in channel.subjects {
                let (module, name) = item
                    .split_once("::")
                    .unwrap_or_else(|| panic!("{}: {item} is not <module>::<name>", channel.id));
                named.entry(module).or_default().insert(name);
            }
        }
        named.entry("subjects").or_default();
        for (module, names) in &named {
            let source = std::fs::read_to_string(root().join("src").join(format!("{module}.rs")))
                .unwrap_or_else(|e| panic!("a channel names module {module}: {e}"));
            let items = public_items(&source);
            for name in names {
                assert!(
                    items.contains(*name),
                    "a channel names {module}::{name}, which does not exist"
                );
            }
            let undocumented: Vec<&String> = items
                .iter()
                .filter(|item| *module == "subjects" || is_subject_item(item))
                .filter(|item| !names.contains(item.as_str()))
                .collect();
            assert!(
                undocumented.is_empty(),
                "no channel in schemas/src/asyncapi names {module}::{undocumented:?}"
            );
        }
    }

    /// Every schema file is some message's payload, and every payload is a schema file.
    #[test]
    fn every_schema_file_is_documented() {
        let files: BTreeSet<String> = json_schema::all().into_iter().map(|(f, _)| f).collect();
        let document = document();
        let components = document.get("components").unwrap().get("messages").unwrap();
        let payloads: BTreeSet<String> = components
            .texts()
            .into_iter()
            .filter_map(|t| t.strip_prefix("./json/"))
            .map(str::to_owned)
            .collect();
        let missing: Vec<_> = files.difference(&payloads).collect();
        assert!(missing.is_empty(), "no message has payload {missing:?}");
        let unknown: Vec<_> = payloads.difference(&files).collect();
        assert!(
            unknown.is_empty(),
            "messages point at no schema file: {unknown:?}"
        );
    }

    /// Every event type, status kind and command kind has its channel.
    #[test]
    fn every_event_status_and_command_is_documented() {
        let document = document();
        let Some(Node::Map(components)) = document.get("components").unwrap().get("messages")
        else {
            panic!("components.messages is a map");
        };
        let titles: BTreeSet<&str> = components
            .iter()
            .filter_map(|(_, message)| message.get("title")?.texts().first().copied())
            .collect();
        for event_type in json_schema::event_types() {
            assert!(
                titles.contains(event_type),
                "{event_type} is not documented"
            );
        }
        let addresses: Vec<&str> = channels::all().iter().map(|c| c.address).collect();
        for kind in StatusKind::ALL {
            assert!(
                addresses.iter().any(|a| a.starts_with("status.")
                    && a.split('.').nth(2) == Some(kind.as_str())),
                "no channel for status kind {kind}"
            );
        }
        for row in crate::access::COMMANDS {
            assert!(
                addresses.iter().any(|a| a.starts_with("cmd.")
                    && a.split('.').nth(2) == Some(row.kind)
                    && a.split('.')
                        .nth(3)
                        .is_some_and(|action| { action == row.action || action.starts_with('{') })),
                "no channel for {}.{}",
                row.kind,
                row.action
            );
        }
    }

    #[test]
    fn channels_and_operations_are_unique() {
        let channels = channels::all();
        let ids: BTreeSet<&str> = channels.iter().map(|c| c.id).collect();
        let operations: BTreeSet<&str> = channels.iter().map(|c| c.operation.id).collect();
        assert_eq!(ids.len(), channels.len());
        assert_eq!(operations.len(), channels.len());
        let names: BTreeSet<String> = messages().into_iter().map(|m| m.name).collect();
        assert_eq!(names.len(), messages().len(), "message names are unique");
    }
}
