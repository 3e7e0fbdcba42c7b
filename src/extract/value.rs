//! Typed values of one record, referring to the parsed tape by index instead of copying.
//!
//! A [`Val`] lives only while its record is processed: `StrRef::Tape(i)` points at a string
//! node of the record's tape (which points into the decrypted buffer), `StrRef::Scratch` at a
//! range of the core's per-record scratch string (JSON text, hashes, masks, casts). Both are
//! plain integers, so rows need no lifetimes and their vectors are reused across records.

use simd_json::{Node, StaticNode};
use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StrRef {
    Tape(u32),
    Scratch { start: u32, len: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Val {
    Null,
    Bool(bool),
    I64(i64),
    F64(f64),
    /// Microseconds since the epoch, UTC.
    Ts(i64),
    Str(StrRef),
}

/// What a [`StrRef`] needs to become a `&str`.
#[derive(Clone, Copy)]
pub struct RecordRefs<'a> {
    pub nodes: &'a [Node<'a>],
    pub scratch: &'a str,
}

impl<'a> RecordRefs<'a> {
    pub fn str(&self, r: StrRef) -> &'a str {
        match r {
            StrRef::Tape(i) => match self.nodes[i as usize] {
                Node::String(s) => s,
                other => panic!("StrRef::Tape({i}) points at a non-string node {other:?}"),
            },
            StrRef::Scratch { start, len } => &self.scratch[start as usize..(start + len) as usize],
        }
    }
}

/// Push `f`'s output to `scratch` and return the range it wrote.
pub fn scratch_push(scratch: &mut String, f: impl FnOnce(&mut String)) -> StrRef {
    let start = scratch.len();
    f(scratch);
    StrRef::Scratch {
        start: start as u32,
        len: (scratch.len() - start) as u32,
    }
}

/// Number of tape nodes the value starting at `i` spans (itself and everything nested in it).
pub fn span(nodes: &[Node], i: usize) -> usize {
    match nodes[i] {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

/// The JSON type name of a node, for messages.
pub fn type_name(node: &Node) -> &'static str {
    match node {
        Node::String(_) => "string",
        Node::Object { .. } => "object",
        Node::Array { .. } => "array",
        Node::Static(StaticNode::Null) => "null",
        Node::Static(StaticNode::Bool(_)) => "boolean",
        Node::Static(StaticNode::F64(_)) => "float",
        Node::Static(_) => "integer",
    }
}

/// Write the JSON text of the value at `i` to `out`; returns the index after it.
pub fn write_json(nodes: &[Node], i: usize, out: &mut String) -> usize {
    match nodes[i] {
        Node::String(s) => {
            write_json_str(s, out);
            i + 1
        }
        Node::Static(s) => {
            match s {
                StaticNode::Null => out.push_str("null"),
                StaticNode::Bool(b) => out.push_str(if b { "true" } else { "false" }),
                StaticNode::I64(v) => {
                    let _ = write!(out, "{v}");
                }
                StaticNode::U64(v) => {
                    let _ = write!(out, "{v}");
                }
                StaticNode::F64(v) => {
                    let _ = write!(out, "{v:?}");
                }
            }
            i + 1
        }
        Node::Array { len, .. } => {
            out.push('[');
            let mut j = i + 1;
            for k in 0..len {
                if k > 0 {
                    out.push(',');
                }
                j = write_json(nodes, j, out);
            }
            out.push(']');
            j
        }
        Node::Object { len, .. } => {
            out.push('{');
            let mut j = i + 1;
            for k in 0..len {
                if k > 0 {
                    out.push(',');
                }
                if let Node::String(key) = nodes[j] {
                    write_json_str(key, out);
                }
                out.push(':');
                j = write_json(nodes, j + 1, out);
            }
            out.push('}');
            j
        }
    }
}

/// A JSON string literal with the escapes RFC 8259 requires.
pub fn write_json_str(s: &str, out: &mut String) {
    out.push('"');
    let mut last = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[last..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(esc);
        }
        last = i + 1;
    }
    out.push_str(&s[last..]);
    out.push('"');
}

/// A short, printable preview of a value for error messages (at most ~64 characters).
pub fn preview(nodes: &[Node], i: usize) -> String {
    const PREVIEW_CHARS_MAX: usize = 64;
    let mut s = String::new();
    write_json(nodes, i, &mut s);
    if s.chars().count() > PREVIEW_CHARS_MAX {
        let cut: String = s.chars().take(PREVIEW_CHARS_MAX).collect();
        format!("{cut}…")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tape_to_json_round_trips_through_serde_json() {
        let text = r#"{"a":[1,-2,3.5,true,null,"x\"y\n\u0001"],"b":{"c":{}},"d":[],"e":18446744073709551615}"#;
        let mut buf = text.as_bytes().to_vec();
        let tape = simd_json::to_tape(&mut buf).unwrap();
        let mut out = String::new();
        let end = write_json(&tape.0, 0, &mut out);
        assert_eq!(end, tape.0.len());
        let want: serde_json::Value = serde_json::from_str(text).unwrap();
        let got: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(got, want);
        assert_eq!(span(&tape.0, 0), tape.0.len());
    }

    #[test]
    fn preview_truncates() {
        let text = format!("\"{}\"", "x".repeat(200));
        let mut buf = text.into_bytes();
        let tape = simd_json::to_tape(&mut buf).unwrap();
        let p = preview(&tape.0, 0);
        assert_eq!(p.chars().count(), 65);
        assert!(p.ends_with('…'));
    }
}
