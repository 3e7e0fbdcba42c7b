//! Schema inference: derive a schema from sample records (`schema = "infer"`).
//!
//! Rules, chosen so an inferred schema rejects as little as possible:
//! - every leaf of every sampled object becomes a column named by its dotted path, in order of
//!   first appearance; arrays become `json` columns (arrays are never exploded);
//! - integers → `int64`; any float among them → `float64`; booleans → `boolean`;
//! - strings → `timestamp` if every sampled value parses as RFC 3339, else `string`;
//! - a path seen with incompatible types (or as both object and leaf) → `json`;
//! - nothing is `required` and no constraint is inferred: a sample cannot prove either.
//!
//! The result is stored as version 1 under `_schemas/<table>/` and reused on the next start,
//! so later records are always judged by the same schema.

use super::schema::{ColumnFile, ColumnType, SchemaFile, SCHEMA_COLUMNS_MAX};
use super::timestamp::parse_rfc3339;
use simd_json::{Node, StaticNode};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Seen {
    Int,
    Float,
    Bool,
    Timestamp,
    Str,
    Json,
    Object,
}

/// Accumulates observations over sample records.
#[derive(Debug, Default)]
pub struct Inferrer {
    order: Vec<String>,
    seen: HashMap<String, Seen>,
    pub records: usize,
}

impl Inferrer {
    /// Observe one parsed record (non-objects are ignored).
    pub fn observe(&mut self, nodes: &[Node]) {
        if let Some(Node::Object { .. }) = nodes.first() {
            self.records += 1;
            let mut path = String::new();
            self.walk(nodes, 0, &mut path);
        }
    }

    fn walk(&mut self, nodes: &[Node], at: usize, path: &mut String) -> usize {
        let Node::Object { len, .. } = nodes[at] else {
            unreachable!()
        };
        let mut j = at + 1;
        for _ in 0..len {
            let Node::String(key) = nodes[j] else { unreachable!() };
            let v = j + 1;
            let base = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
            let kind = match nodes[v] {
                Node::Object { len: 0, .. } => None,
                Node::Object { .. } => {
                    self.note(path, Seen::Object);
                    j = self.walk(nodes, v, path);
                    path.truncate(base);
                    continue;
                }
                Node::Array { .. } => Some(Seen::Json),
                Node::String(s) if parse_rfc3339(s).is_some() => Some(Seen::Timestamp),
                Node::String(_) => Some(Seen::Str),
                Node::Static(StaticNode::Bool(_)) => Some(Seen::Bool),
                Node::Static(StaticNode::F64(_)) => Some(Seen::Float),
                Node::Static(StaticNode::Null) => None,
                Node::Static(_) => Some(Seen::Int),
            };
            if let Some(k) = kind {
                self.note(path, k);
            }
            path.truncate(base);
            j = v + super::value::span(nodes, v);
        }
        j
    }

    fn note(&mut self, path: &str, kind: Seen) {
        match self.seen.get_mut(path) {
            Some(prev) => *prev = merge(*prev, kind),
            None => {
                self.order.push(path.to_string());
                self.seen.insert(path.to_string(), kind);
            }
        }
    }

    /// The inferred schema. Paths that were both objects and leaves collapse to one `json`
    /// column at the shallowest such path.
    pub fn finish(&self) -> Result<SchemaFile, String> {
        let mut columns = Vec::new();
        for path in &self.order {
            let kind = self.seen[path];
            // Skip anything under a path that became a json leaf.
            let shadowed = path
                .match_indices('.')
                .any(|(i, _)| matches!(self.seen.get(&path[..i]), Some(Seen::Json)));
            if shadowed || kind == Seen::Object {
                continue;
            }
            let ty = match kind {
                Seen::Int => ColumnType::Int64,
                Seen::Float => ColumnType::Float64,
                Seen::Bool => ColumnType::Boolean,
                Seen::Timestamp => ColumnType::Timestamp,
                Seen::Str => ColumnType::String,
                Seen::Json | Seen::Object => ColumnType::Json,
            };
            columns.push(ColumnFile::new(path, ty));
        }
        if columns.is_empty() {
            return Err(format!(
                "no columns could be inferred from {} sample records (are they JSON objects?)",
                self.records
            ));
        }
        if columns.len() > SCHEMA_COLUMNS_MAX {
            return Err(format!(
                "inferred {} columns, more than {SCHEMA_COLUMNS_MAX}",
                columns.len()
            ));
        }
        Ok(SchemaFile { columns })
    }
}

fn merge(a: Seen, b: Seen) -> Seen {
    use Seen::*;
    match (a, b) {
        (x, y) if x == y => x,
        (Int, Float) | (Float, Int) => Float,
        (Timestamp, Str) | (Str, Timestamp) => Str,
        _ => Json,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infer(records: &[&str]) -> Vec<(String, ColumnType)> {
        let mut inf = Inferrer::default();
        for r in records {
            let mut b = r.as_bytes().to_vec();
            let t = simd_json::to_tape(&mut b).unwrap();
            inf.observe(&t.0);
        }
        inf.finish()
            .unwrap()
            .columns
            .into_iter()
            .map(|c| (c.name, c.ty))
            .collect()
    }

    #[test]
    fn infers_types_with_merging() {
        let got = infer(&[
            r#"{"id":1,"ts":"2026-11-26T10:00:00Z","u":{"name":"a","score":1},"tags":["x"],"ok":true,"mixed":1}"#,
            r#"{"id":2,"ts":"2026-11-26T11:00:00Z","u":{"name":"b","score":2.5},"tags":[],"ok":false,"mixed":"s","late":"x"}"#,
        ]);
        use ColumnType::*;
        assert_eq!(
            got,
            vec![
                ("id".into(), Int64),
                ("ts".into(), Timestamp),
                ("u.name".into(), String),
                ("u.score".into(), Float64),
                ("tags".into(), Json),
                ("ok".into(), Boolean),
                ("mixed".into(), Json),
                ("late".into(), String),
            ]
        );
    }

    #[test]
    fn object_and_leaf_at_one_path_collapse_to_json() {
        let got = infer(&[r#"{"a":{"b":1}}"#, r#"{"a":5}"#]);
        assert_eq!(got, vec![("a".into(), ColumnType::Json)]);
    }

    #[test]
    fn non_objects_infer_nothing() {
        let mut inf = Inferrer::default();
        let mut b = b"[1]".to_vec();
        inf.observe(&simd_json::to_tape(&mut b).unwrap().0);
        assert!(inf.finish().unwrap_err().contains("no columns"));
    }
}
