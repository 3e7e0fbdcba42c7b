//! Routing: which table a record belongs to — fixed per source, or by a string field.
//!
//! Routing happens right after parsing, before the schema, because the table decides which
//! schema applies. A record whose route field is missing, not a string, or not mapped goes
//! where `unmatched` says: quarantine (rule `unmatched_route`), dropped (counted), or a table.

use crate::config::{RouteConfig, Unmatched};
use crate::extract::flatten::lookup;
use crate::extract::shown::{Shown, VALUE};
use crate::extract::{Reject, Rule, Stage};
use simd_json::Node;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Table(usize),
    Drop,
    Quarantine,
}

#[derive(Debug, Clone)]
pub enum Router {
    Fixed(usize),
    ByField {
        field: String,
        path: Vec<String>,
        map: HashMap<String, usize>,
        unmatched: Target,
    },
}

impl Router {
    /// `table_index` resolves a table name (validated by the config) to its index.
    pub fn by_field(cfg: &RouteConfig, table_index: impl Fn(&str) -> usize) -> Router {
        Router::ByField {
            field: cfg.field.clone(),
            path: cfg.field.split('.').map(str::to_string).collect(),
            map: cfg.tables.iter().map(|(v, t)| (v.clone(), table_index(t))).collect(),
            unmatched: match &cfg.unmatched {
                Unmatched::Quarantine => Target::Quarantine,
                Unmatched::Drop => Target::Drop,
                Unmatched::Table(t) => Target::Table(table_index(t)),
            },
        }
    }

    /// The table of this record (`Ok(None)`: drop it).
    pub fn route(&self, nodes: &[Node]) -> Result<Option<usize>, Reject> {
        let (field, path, map, unmatched) = match self {
            Router::Fixed(t) => return Ok(Some(*t)),
            Router::ByField {
                field,
                path,
                map,
                unmatched,
            } => (field, path, map, *unmatched),
        };
        let found = lookup(nodes, path);
        if let Some(Node::String(v)) = found.map(|i| nodes[i]) {
            if let Some(t) = map.get(v) {
                return Ok(Some(*t));
            }
        }
        match unmatched {
            Target::Table(t) => Ok(Some(t)),
            Target::Drop => Ok(None),
            Target::Quarantine => Err(match found {
                None => Reject::field(Stage::Route, Rule::UnmatchedRoute, field, "route field is missing"),
                Some(i) => Reject::field_value(
                    Stage::Route,
                    Rule::UnmatchedRoute,
                    field,
                    Shown::node(nodes, i),
                    format!("route field is {VALUE}, which maps to no table"),
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::shown::Reveal;

    fn router(unmatched: Unmatched) -> Router {
        let cfg = RouteConfig {
            field: "meta.kind".into(),
            tables: [
                ("click".to_string(), "clicks".to_string()),
                ("view".into(), "views".into()),
            ]
            .into_iter()
            .collect(),
            unmatched,
        };
        Router::by_field(&cfg, |t| if t == "clicks" { 0 } else { 1 })
    }

    fn route(r: &Router, json: &str) -> Result<Option<usize>, Reject> {
        let mut b = json.as_bytes().to_vec();
        let t = simd_json::to_tape(&mut b).unwrap();
        r.route(&t.0)
    }

    #[test]
    fn routes_by_nested_field_with_every_unmatched_policy() {
        let q = router(Unmatched::Quarantine);
        assert_eq!(route(&q, r#"{"meta":{"kind":"view"}}"#).unwrap(), Some(1));
        let e = route(&q, r#"{"meta":{"kind":"buy"}}"#).unwrap_err();
        assert_eq!(e.rule, Rule::UnmatchedRoute);
        let shown = e.clone().reveal(Reveal::Truncated);
        assert_eq!(shown.message, "route field is \"buy\", which maps to no table");
        let hidden = e.reveal(Reveal::Withheld);
        assert_eq!(
            hidden.message,
            "route field is a string of 3 characters, which maps to no table"
        );
        let e = route(&q, r#"{"meta":{}}"#).unwrap_err();
        assert_eq!(e.message, "route field is missing");
        assert_eq!(route(&router(Unmatched::Drop), r#"{"x":1}"#).unwrap(), None);
        assert_eq!(
            route(&router(Unmatched::Table("clicks".into())), r#"{"meta":{"kind":7}}"#).unwrap(),
            Some(0)
        );
        assert_eq!(route(&Router::Fixed(3), "{}").unwrap(), Some(3));
    }
}
