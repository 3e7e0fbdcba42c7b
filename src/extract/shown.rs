//! What a reject message may say of the value that broke a rule.
//!
//! A rule's message names the field, the rule and the bound (`must be at least 0`), and puts
//! the value at the [`VALUE`] placeholder; the value itself travels beside the message as a
//! [`Shown`] until the record's source decides how much of it may be written ([`Reveal`]):
//!
//! - an envelope (encrypted) source: never any of it — `a string of 11 characters`, `a number`,
//!   `an object of 3 members` — since the quarantine promises no decrypted bytes;
//! - a plaintext source: its JSON text, cut at [`VALUE_SHOWN_CHARS_MAX`] characters (`…`).
//!
//! Invariant: a [`Shown`] never holds more than [`VALUE_SHOWN_CHARS_MAX`] characters of the
//! value, so no path can write more of it, whatever the policy; an unrevealed reject displays
//! as withheld.

use super::value::write_json;
use simd_json::{Node, StaticNode};

/// Where the value goes in a reject message.
pub const VALUE: &str = "{value}";

/// Characters of a rejected value a plaintext source's reject messages show: enough to
/// recognise a bad enum value or date format, too few to copy a document into a log.
pub const VALUE_SHOWN_CHARS_MAX: usize = 32;

/// How much of a rejected value a message may show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reveal {
    /// Its kind and size only (envelope sources).
    Withheld,
    /// Its JSON text, cut at [`VALUE_SHOWN_CHARS_MAX`] characters (plaintext sources).
    Truncated,
}

/// A rejected value: its kind, its size, and at most [`VALUE_SHOWN_CHARS_MAX`] characters of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Shown {
    kind: Kind,
    /// Characters of a string, members of an object, items of an array.
    len: usize,
    /// The JSON text, cut.
    text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    Number,
    Boolean,
    Null,
    Object,
    Array,
    Timestamp,
}

impl Shown {
    /// The value at `nodes[i]` of a parsed record.
    pub fn node(nodes: &[Node], i: usize) -> Shown {
        let (kind, len) = match nodes[i] {
            Node::String(s) => (Kind::String, s.chars().count()),
            Node::Object { len, .. } => (Kind::Object, len),
            Node::Array { len, .. } => (Kind::Array, len),
            Node::Static(StaticNode::Null) => (Kind::Null, 0),
            Node::Static(StaticNode::Bool(_)) => (Kind::Boolean, 0),
            Node::Static(_) => (Kind::Number, 0),
        };
        let mut text = String::new();
        write_json(nodes, i, &mut text);
        Shown {
            kind,
            len,
            text: cut(text),
        }
    }

    /// A string value (quoted in the message, as JSON).
    pub fn string(s: &str) -> Shown {
        Shown {
            kind: Kind::String,
            len: s.chars().count(),
            text: cut(serde_json::to_string(s).expect("a str serializes")),
        }
    }

    /// A number, given as its text.
    pub fn number(text: String) -> Shown {
        Shown {
            kind: Kind::Number,
            len: 0,
            text: cut(text),
        }
    }

    /// A timestamp, given as its RFC 3339 text.
    pub fn timestamp(text: String) -> Shown {
        Shown {
            kind: Kind::Timestamp,
            len: 0,
            text: cut(text),
        }
    }

    /// What a message says of the value under `how`.
    pub fn render(&self, how: Reveal) -> String {
        match how {
            Reveal::Truncated => self.text.clone(),
            Reveal::Withheld => {
                let n = self.len;
                match self.kind {
                    Kind::String => format!("a string of {n} character{}", plural(n)),
                    Kind::Number => "a number".into(),
                    Kind::Boolean => "a boolean".into(),
                    Kind::Null => "null".into(),
                    Kind::Object => format!("an object of {n} member{}", plural(n)),
                    Kind::Array => format!("an array of {n} item{}", plural(n)),
                    Kind::Timestamp => "a timestamp".into(),
                }
            }
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `text` cut at [`VALUE_SHOWN_CHARS_MAX`] characters, with `…` when it was longer.
fn cut(text: String) -> String {
    match text.char_indices().nth(VALUE_SHOWN_CHARS_MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(json: &str) -> Shown {
        let mut buf = json.as_bytes().to_vec();
        let tape = simd_json::to_tape(&mut buf).unwrap();
        Shown::node(&tape.0, 0)
    }

    #[test]
    fn withheld_says_kind_and_size_truncated_says_at_most_the_bound() {
        let ssn = node("\"123-45-6789\"");
        assert_eq!(ssn.render(Reveal::Withheld), "a string of 11 characters");
        assert_eq!(ssn.render(Reveal::Truncated), "\"123-45-6789\"");
        assert_eq!(node("4111111111111111").render(Reveal::Withheld), "a number");
        assert_eq!(node("{\"a\":1}").render(Reveal::Withheld), "an object of 1 member");
        assert_eq!(node("[1,2]").render(Reveal::Withheld), "an array of 2 items");
        let long = node(&format!("\"{}\"", "é".repeat(100)));
        assert_eq!(long.render(Reveal::Withheld), "a string of 100 characters");
        let shown = long.render(Reveal::Truncated);
        assert_eq!(shown.chars().count(), VALUE_SHOWN_CHARS_MAX + 1, "{shown}");
        assert!(shown.ends_with('…'));
        assert_eq!(Shown::string("a\"b").render(Reveal::Truncated), "\"a\\\"b\"");
    }
}
