//! Flatten: find each schema column's value in a parsed record, without building dotted names.
//!
//! The walk follows the schema's [`Trie`]: at each object it matches keys against the trie
//! node's children; a matched leaf records the tape index of its value in the column's slot;
//! a matched inner node descends; everything else is skipped in O(1) using the tape's subtree
//! counts. Recursion depth is therefore bounded by the schema's nesting, whatever the input.
//!
//! Keys are joined with `.`; a key that itself contains `.` is not split, so it matches no
//! dotted column. Duplicate keys: the last one wins (as in most JSON parsers).

use super::schema::{Trie, TRIE_ROOT};
use super::value::{span, type_name};
use super::{Reject, Rule, Stage};
use simd_json::Node;

/// Fill `slots[c]` with the tape index of column `c`'s value, or `None` if absent.
pub fn flatten(nodes: &[Node], trie: &Trie, slots: &mut [Option<u32>]) -> Result<(), Reject> {
    slots.fill(None);
    match nodes.first() {
        Some(Node::Object { .. }) => {
            walk_object(nodes, 0, trie, TRIE_ROOT, slots, &mut Vec::new())?;
            Ok(())
        }
        Some(other) => Err(Reject::new(
            Stage::Parse,
            Rule::NotAnObject,
            format!("the record is a JSON {}, not an object", type_name(other)),
        )),
        None => Err(Reject::new(Stage::Parse, Rule::MalformedJson, "empty document")),
    }
}

fn walk_object<'a>(
    nodes: &[Node<'a>],
    at: usize,
    trie: &Trie,
    tnode: u32,
    slots: &mut [Option<u32>],
    path: &mut Vec<&'a str>,
) -> Result<usize, Reject> {
    let Node::Object { len, .. } = nodes[at] else {
        unreachable!("walk_object is called on object nodes only")
    };
    let mut j = at + 1;
    let mut cursor = 0;
    for _ in 0..len {
        let Node::String(key) = nodes[j] else {
            unreachable!("object keys are strings on the tape")
        };
        let v = j + 1;
        if let Some(child) = trie.child_from(tnode, key, &mut cursor) {
            if let Some(col) = trie.column(child) {
                slots[col as usize] = Some(v as u32);
            } else if let Node::Object { .. } = nodes[v] {
                path.push(key);
                walk_object(nodes, v, trie, child, slots, path)?;
                path.pop();
            } else if !matches!(nodes[v], Node::Static(simd_json::StaticNode::Null)) {
                path.push(key);
                let field = path.join(".");
                return Err(Reject::field(
                    Stage::Schema,
                    Rule::Type,
                    &field,
                    format!(
                        "expected an object (the schema has columns under `{field}`), got {}",
                        type_name(&nodes[v])
                    ),
                ));
            }
        }
        j = v + span(nodes, v);
    }
    Ok(j)
}

/// The tape index of the value at a dotted path, if present (used for routing).
pub fn lookup(nodes: &[Node], path: &[String]) -> Option<usize> {
    let mut at = 0;
    for seg in path {
        let Node::Object { len, .. } = *nodes.get(at)? else {
            return None;
        };
        let mut j = at + 1;
        let mut found = None;
        for _ in 0..len {
            if let Node::String(k) = nodes[j] {
                if k == seg {
                    found = Some(j + 1);
                }
            }
            j = j + 1 + span(nodes, j + 1);
        }
        at = found?;
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::schema::{Schema, SchemaFile};

    fn schema(cols: &[&str]) -> Schema {
        let columns: Vec<String> = cols
            .iter()
            .map(|c| format!(r#"{{"name":"{c}","type":"json"}}"#))
            .collect();
        let f = SchemaFile::from_json(&format!(r#"{{"columns":[{}]}}"#, columns.join(","))).unwrap();
        Schema::compile(&f).unwrap()
    }

    fn run(s: &Schema, json: &str) -> Result<Vec<Option<String>>, Reject> {
        let mut buf = json.as_bytes().to_vec();
        let tape = simd_json::to_tape(&mut buf).unwrap();
        let mut slots = vec![None; s.columns.len()];
        flatten(&tape.0, &s.trie, &mut slots)?;
        Ok(slots
            .iter()
            .map(|o| {
                o.map(|i| {
                    let mut out = String::new();
                    crate::extract::value::write_json(&tape.0, i as usize, &mut out);
                    out
                })
            })
            .collect())
    }

    #[test]
    fn finds_nested_columns_and_skips_the_rest() {
        let s = schema(&["id", "user.id", "user.geo.country", "tags", "missing.x"]);
        let got = run(
            &s,
            r#"{"skip":{"deep":[1,{"a":2}]},"id":"e1","user":{"name":"n","id":7,"geo":{"country":"DE"}},"tags":["a",{"b":1}],"a.b":1}"#,
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                Some("\"e1\"".into()),
                Some("7".into()),
                Some("\"DE\"".into()),
                Some(r#"["a",{"b":1}]"#.into()),
                None
            ]
        );
    }

    #[test]
    fn last_duplicate_key_wins_and_null_parent_is_missing() {
        let s = schema(&["a", "u.x"]);
        assert_eq!(
            run(&s, r#"{"a":1,"a":2,"u":null}"#).unwrap(),
            vec![Some("2".into()), None]
        );
    }

    #[test]
    fn scalar_where_object_expected_is_a_type_error() {
        let s = schema(&["user.geo.country"]);
        let e = run(&s, r#"{"user":{"geo":"DE"}}"#).unwrap_err();
        assert_eq!((e.stage, e.rule), (Stage::Schema, Rule::Type));
        assert_eq!(e.field.as_deref(), Some("user.geo"));
    }

    #[test]
    fn top_level_must_be_an_object() {
        let s = schema(&["a"]);
        let e = run(&s, "[1,2]").unwrap_err();
        assert_eq!((e.stage, e.rule), (Stage::Parse, Rule::NotAnObject));
        assert_eq!(e.message, "the record is a JSON array, not an object");
    }

    #[test]
    fn lookup_by_path() {
        let mut buf = br#"{"x":[1],"meta":{"kind":"click"},"kind":"no"}"#.to_vec();
        let tape = simd_json::to_tape(&mut buf).unwrap();
        let i = lookup(&tape.0, &["meta".into(), "kind".into()]).unwrap();
        assert_eq!(tape.0[i], Node::String("click"));
        assert_eq!(lookup(&tape.0, &["meta".into(), "nope".into()]), None);
        assert_eq!(lookup(&tape.0, &["x".into(), "y".into()]), None);
    }
}
