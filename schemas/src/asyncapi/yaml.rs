//! A small YAML writer for the AsyncAPI document: ordered maps, flow style for short
//! one-line maps and lists, literal blocks wrapped at [`WIDTH`] for long text.

/// Text longer than this (at its indentation) becomes a wrapped literal block.
const WIDTH: usize = 92;

/// One node of the document, maps in the order they are written.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Text(String),
    List(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text(text.into())
    }

    /// A map from `(key, value)` pairs, in order.
    pub fn map<K: Into<String>>(entries: impl IntoIterator<Item = (K, Node)>) -> Self {
        Self::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// `{ $ref: <target> }`.
    pub fn reference(target: impl Into<String>) -> Self {
        Self::map([("$ref", Self::text(target))])
    }

    /// The value under `key`, if this is a map that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Self::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Every text anywhere under this node, depth first.
    pub fn texts(&self) -> Vec<&str> {
        match self {
            Self::Text(text) => vec![text.as_str()],
            Self::List(items) => items.iter().flat_map(Node::texts).collect(),
            Self::Map(entries) => entries.iter().flat_map(|(_, v)| v.texts()).collect(),
        }
    }
}

/// The document as YAML text, ending with a newline.
pub fn render(document: &Node) -> String {
    let mut out = String::new();
    match document {
        Node::Map(entries) => write_entries(&mut out, entries, 0),
        other => out.push_str(&format!("{}\n", flow(other).expect("a one-line document"))),
    }
    out
}

fn write_entries(out: &mut String, entries: &[(String, Node)], indent: usize) {
    for (key, value) in entries {
        let pad = " ".repeat(indent);
        let key = scalar(key);
        match value {
            Node::Text(text) if fits(indent + key.len() + 2, text) => {
                out.push_str(&format!("{pad}{key}: {}\n", scalar(text)));
            }
            Node::Text(text) => {
                out.push_str(&format!("{pad}{key}: |\n"));
                for line in wrap(text, WIDTH.saturating_sub(indent + 2).max(40)) {
                    if line.is_empty() {
                        out.push('\n');
                    } else {
                        out.push_str(&format!("{pad}  {line}\n"));
                    }
                }
            }
            other => match flow(other).filter(|f| indent + key.len() + 2 + f.len() <= WIDTH) {
                Some(flow) => out.push_str(&format!("{pad}{key}: {flow}\n")),
                None => {
                    out.push_str(&format!("{pad}{key}:\n"));
                    write_block(out, other, indent + 2);
                }
            },
        }
    }
}

fn write_block(out: &mut String, node: &Node, indent: usize) {
    match node {
        Node::Map(entries) => write_entries(out, entries, indent),
        Node::List(items) => {
            let pad = " ".repeat(indent);
            for item in items {
                match flow(item) {
                    Some(flow) => out.push_str(&format!("{pad}- {flow}\n")),
                    None => {
                        out.push_str(&format!("{pad}-\n"));
                        write_block(out, item, indent + 2);
                    }
                }
            }
        }
        Node::Text(text) => out.push_str(&format!("{}{}\n", " ".repeat(indent), scalar(text))),
    }
}

/// The node on one line (`{ a: b }`, `[a, b]`), if it has no long or multi-line text.
fn flow(node: &Node) -> Option<String> {
    match node {
        Node::Text(text) if !text.contains('\n') => Some(scalar(text)),
        Node::Text(_) => None,
        Node::List(items) => {
            let items: Option<Vec<String>> = items.iter().map(flow).collect();
            Some(format!("[{}]", items?.join(", ")))
        }
        Node::Map(entries) if entries.is_empty() => Some("{}".to_owned()),
        Node::Map(entries) => {
            let entries: Option<Vec<String>> = entries
                .iter()
                .map(|(k, v)| Some(format!("{}: {}", scalar(k), flow(v)?)))
                .collect();
            Some(format!("{{ {} }}", entries?.join(", ")))
        }
    }
}

fn fits(used: usize, text: &str) -> bool {
    !text.contains('\n') && used + scalar(text).len() <= WIDTH
}

/// A one-line text as a plain or single-quoted YAML scalar.
fn scalar(text: &str) -> String {
    if is_plain(text) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "''"))
    }
}

/// Whether `text` reads back as the same string without quotes, in block and flow context.
fn is_plain(text: &str) -> bool {
    const RESERVED: [&str; 10] = [
        "true", "false", "null", "yes", "no", "on", "off", "y", "n", "~",
    ];
    let Some(first) = text.chars().next() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == '_' || first == '$')
        && !text.ends_with(' ')
        && !text.contains("  ")
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " _.-/$".contains(c))
        && !RESERVED.contains(&text.to_ascii_lowercase().as_str())
}

/// `text` cut into lines of at most `width` characters at spaces (a longer word keeps
/// its own line); its own line breaks stay.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.trim_end().split('\n') {
        let mut line = String::new();
        for word in paragraph.split(' ') {
            if !line.is_empty() && line.len() + 1 + word.len() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_are_quoted_only_when_needed() {
        assert_eq!(scalar("vmCommand"), "vmCommand");
        assert_eq!(scalar("the tenant id"), "the tenant id");
        assert_eq!(
            scalar("cmd.{tenant}.vm.{action}"),
            "'cmd.{tenant}.vm.{action}'"
        );
        assert_eq!(scalar("it's"), "'it''s'");
        assert_eq!(scalar("3.0.0"), "'3.0.0'");
        assert_eq!(scalar("null"), "'null'");
        assert_eq!(scalar("a: b"), "'a: b'");
    }

    #[test]
    fn short_maps_flow_and_long_text_wraps() {
        let long = "word ".repeat(40);
        let document = Node::map([
            ("asyncapi", Node::text("3.0.0")),
            (
                "channel",
                Node::map([
                    ("address", Node::text("evt.{tenant}.vm.{id}")),
                    ("description", Node::text(long.trim())),
                    (
                        "messages",
                        Node::map([("a", Node::reference("#/components/messages/A"))]),
                    ),
                    ("list", Node::List(vec![Node::text("a"), Node::text("b")])),
                ]),
            ),
        ]);
        let text = render(&document);
        assert!(text.starts_with("asyncapi: '3.0.0'\nchannel:\n  address: 'evt.{tenant}.vm.{id}'\n  description: |\n    word word"));
        assert!(text.contains("  messages: { a: { $ref: '#/components/messages/A' } }\n"));
        assert!(text.contains("  list: [a, b]\n"));
        assert!(text.lines().all(|line| line.len() <= WIDTH));
    }
}
