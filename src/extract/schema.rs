//! Table schemas: the JSON schema file, its compiled form, and per-value type and constraint
//! checks.
//!
//! Schema file (also what `_schemas/<table>/v<N>.json` holds):
//! ```json
//! { "columns": [
//!   { "name": "event_id", "type": "string", "required": true, "pattern": "[0-9a-f-]{36}" },
//!   { "name": "user.id", "type": "int64", "required": true, "min": 1 },
//!   { "name": "geo.country", "type": "string", "enum": ["DE", "FR", "US"] },
//!   { "name": "metrics.latency_ms", "type": "float64", "min": 0, "max": 60000, "default": 0 },
//!   { "name": "ts", "type": "timestamp", "required": true, "formats": ["rfc3339", "epoch_ms"] },
//!   { "name": "tags", "type": "json" } ] }
//! ```
//! - Types: `string`, `int64`, `float64`, `boolean`, `timestamp` (stored as microseconds, UTC),
//!   `json` (any value, stored as its JSON text).
//! - Names are dotted paths into nested objects (`user.id` is `{"user":{"id":…}}`).
//! - Arrays are never exploded into columns (index-named columns make a schema unbounded):
//!   an array is stored whole as JSON text in a `json` column; elsewhere it is a type error.
//! - A missing or `null` value takes `default` if given, else fails `required`, else is null.
//! - Constraints: `min`/`max` (numbers, inclusive), `enum` (strings), `pattern` (a regex that
//!   must match the whole value), `max_length` (strings, in characters).
//! - Coercions: an integer is accepted by a `float64` column, and a float with no fraction by
//!   an `int64` column. Nothing else is coerced; the `cast` transform converts explicitly.

use super::shown::{Shown, VALUE};
use super::timestamp::TsFormat;
use super::value::{scratch_push, type_name, write_json, StrRef, Val};
use super::{Reject, Rule, Stage};
use serde::{Deserialize, Serialize};
use simd_json::{Node, StaticNode};

/// A schema with more columns than this is almost certainly flattening something unbounded.
pub const SCHEMA_COLUMNS_MAX: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    String,
    Int64,
    Float64,
    Boolean,
    Timestamp,
    Json,
}

impl ColumnType {
    pub fn parse(s: &str) -> Option<ColumnType> {
        Some(match s {
            "string" => ColumnType::String,
            "int64" => ColumnType::Int64,
            "float64" => ColumnType::Float64,
            "boolean" => ColumnType::Boolean,
            "timestamp" => ColumnType::Timestamp,
            "json" => ColumnType::Json,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Int64 => "int64",
            ColumnType::Float64 => "float64",
            ColumnType::Boolean => "boolean",
            ColumnType::Timestamp => "timestamp",
            ColumnType::Json => "json",
        }
    }

    /// Whether values are strings in the output (`json` is stored as text).
    pub fn is_text(self) -> bool {
        matches!(self, ColumnType::String | ColumnType::Json)
    }
}

/// One column as written in a schema file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnFile {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    pub enum_values: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formats: Option<Vec<String>>,
}

impl ColumnFile {
    pub fn new(name: &str, ty: ColumnType) -> ColumnFile {
        ColumnFile {
            name: name.into(),
            ty,
            required: false,
            default: None,
            min: None,
            max: None,
            enum_values: None,
            pattern: None,
            max_length: None,
            formats: None,
        }
    }
}

/// A schema file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaFile {
    pub columns: Vec<ColumnFile>,
}

impl SchemaFile {
    pub fn from_json(text: &str) -> Result<SchemaFile, String> {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| format!("{}: {}", e.path(), e.inner()))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a schema always serialises") + "\n"
    }
}

/// A compiled column.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
    pub required: bool,
    default: Option<DefaultVal>,
    min: Option<f64>,
    max: Option<f64>,
    /// Sorted, for binary search.
    enum_values: Vec<String>,
    pattern: Option<(String, regex::Regex)>,
    max_length: Option<u32>,
    formats: Vec<TsFormat>,
}

#[derive(Debug, Clone)]
enum DefaultVal {
    Bool(bool),
    I64(i64),
    F64(f64),
    Ts(i64),
    Text(String),
}

/// Path segments → column, for flattening without building dotted names per record.
#[derive(Debug, Default, Clone)]
pub struct Trie {
    nodes: Vec<TrieNode>,
}

#[derive(Debug, Default, Clone)]
struct TrieNode {
    children: Vec<(Box<str>, u32)>,
    column: Option<u32>,
}

pub const TRIE_ROOT: u32 = 0;

/// Equality of short byte strings without a call to `memcmp`: keys and enum values are mostly
/// under 16 bytes, and on the per-record path a library call per comparison was 14% of the
/// flatten-and-check time.
#[inline]
pub fn short_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], i: usize| u64::from_ne_bytes(s[i..i + 8].try_into().expect("8 bytes"));
    match n {
        0..8 => a.iter().zip(b).all(|(x, y)| x == y),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

impl Trie {
    fn new() -> Trie {
        Trie {
            nodes: vec![TrieNode::default()],
        }
    }

    /// The child of `node` for object key `key`. Objects have few keys, so a linear scan of
    /// short strings beats hashing.
    #[inline]
    fn child(&self, node: u32, key: &str) -> Option<u32> {
        self.nodes[node as usize]
            .children
            .iter()
            .find(|(k, _)| short_eq(k.as_bytes(), key.as_bytes()))
            .map(|(_, c)| *c)
    }

    /// Like [`Trie::child`], trying `children[*cursor]` first and moving the cursor past
    /// the match. Producers write keys in a fixed order, and schemas list columns in that
    /// order, so one comparison per key is the common case.
    #[inline]
    pub fn child_from(&self, node: u32, key: &str, cursor: &mut usize) -> Option<u32> {
        let children = &self.nodes[node as usize].children;
        if let Some((k, c)) = children.get(*cursor) {
            if short_eq(k.as_bytes(), key.as_bytes()) {
                *cursor += 1;
                return Some(*c);
            }
        }
        let i = children
            .iter()
            .position(|(k, _)| short_eq(k.as_bytes(), key.as_bytes()))?;
        *cursor = i + 1;
        Some(children[i].1)
    }

    #[inline]
    pub fn column(&self, node: u32) -> Option<u32> {
        self.nodes[node as usize].column
    }

    fn insert(&mut self, path: &str, column: u32) -> Result<(), String> {
        let mut node = TRIE_ROOT;
        let segments: Vec<&str> = path.split('.').collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(format!("column name {path:?} has an empty path segment"));
        }
        for seg in segments {
            if self.nodes[node as usize].column.is_some() {
                return Err(format!("column {path:?} is nested under another column"));
            }
            node = match self.child(node, seg) {
                Some(c) => c,
                None => {
                    let id = self.nodes.len() as u32;
                    self.nodes.push(TrieNode::default());
                    self.nodes[node as usize].children.push((seg.into(), id));
                    id
                }
            };
        }
        let n = &mut self.nodes[node as usize];
        if n.column.is_some() {
            return Err(format!("column {path:?} appears twice"));
        }
        if !n.children.is_empty() {
            return Err(format!("column {path:?} has other columns nested under it"));
        }
        n.column = Some(column);
        Ok(())
    }
}

/// A compiled schema: columns in file order and the trie that finds them.
#[derive(Debug, Clone)]
pub struct Schema {
    pub columns: Vec<Column>,
    pub trie: Trie,
    /// The source file, as registered under `_schemas/`.
    pub file: SchemaFile,
}

impl Schema {
    pub fn compile(file: &SchemaFile) -> Result<Schema, String> {
        if file.columns.is_empty() {
            return Err("columns: a schema needs at least one column".into());
        }
        if file.columns.len() > SCHEMA_COLUMNS_MAX {
            return Err(format!(
                "columns: at most {SCHEMA_COLUMNS_MAX} columns, got {}",
                file.columns.len()
            ));
        }
        let mut trie = Trie::new();
        let mut columns = Vec::with_capacity(file.columns.len());
        for (i, c) in file.columns.iter().enumerate() {
            let at = |m: String| format!("columns[{i}] ({}): {m}", c.name);
            trie.insert(&c.name, i as u32).map_err(at)?;
            columns.push(compile_column(c).map_err(at)?);
        }
        Ok(Schema {
            columns,
            trie,
            file: file.clone(),
        })
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

fn compile_column(c: &ColumnFile) -> Result<Column, String> {
    let numeric = matches!(c.ty, ColumnType::Int64 | ColumnType::Float64);
    if (c.min.is_some() || c.max.is_some()) && !numeric {
        return Err(format!(
            "min/max apply to int64 and float64 columns, not {}",
            c.ty.name()
        ));
    }
    if let (Some(lo), Some(hi)) = (c.min, c.max) {
        if lo > hi {
            return Err(format!("min {lo} is greater than max {hi}"));
        }
    }
    let stringy = c.ty == ColumnType::String;
    if !stringy && (c.enum_values.is_some() || c.pattern.is_some() || c.max_length.is_some()) {
        return Err(format!(
            "enum/pattern/max_length apply to string columns, not {}",
            c.ty.name()
        ));
    }
    let formats = match (&c.formats, c.ty) {
        (Some(_), t) if t != ColumnType::Timestamp => {
            return Err("formats apply to timestamp columns only".into());
        }
        (Some(list), _) => {
            if list.is_empty() {
                return Err("formats must list at least one format".into());
            }
            list.iter()
                .map(|f| {
                    TsFormat::parse(f).ok_or_else(|| {
                        format!("unknown timestamp format {f:?}: use rfc3339, epoch_s, epoch_ms, epoch_us, epoch_ns or a strftime pattern")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        (None, _) => vec![TsFormat::Rfc3339],
    };
    let pattern = match &c.pattern {
        Some(p) => {
            let anchored = format!("^(?:{p})$");
            let re = regex::Regex::new(&anchored).map_err(|e| format!("pattern {p:?} is not a valid regex: {e}"))?;
            Some((p.clone(), re))
        }
        None => None,
    };
    let mut enum_values = c.enum_values.clone().unwrap_or_default();
    enum_values.sort();
    let mut col = Column {
        name: c.name.clone(),
        ty: c.ty,
        required: c.required,
        default: None,
        min: c.min,
        max: c.max,
        enum_values,
        pattern,
        max_length: c.max_length,
        formats,
    };
    if let Some(d) = &c.default {
        col.default = Some(col.compile_default(d)?);
    }
    Ok(col)
}

impl Column {
    fn compile_default(&self, d: &serde_json::Value) -> Result<DefaultVal, String> {
        use serde_json::Value as J;
        let bad = || format!("default {d} is not a valid {} value", self.ty.name());
        let v = match (self.ty, d) {
            (ColumnType::String, J::String(s)) => DefaultVal::Text(s.clone()),
            (ColumnType::Json, v) => DefaultVal::Text(v.to_string()),
            (ColumnType::Int64, J::Number(n)) => DefaultVal::I64(n.as_i64().ok_or_else(bad)?),
            (ColumnType::Float64, J::Number(n)) => DefaultVal::F64(n.as_f64().ok_or_else(bad)?),
            (ColumnType::Boolean, J::Bool(b)) => DefaultVal::Bool(*b),
            (ColumnType::Timestamp, J::String(s)) => {
                DefaultVal::Ts(self.formats.iter().find_map(|f| f.parse_str(s)).ok_or_else(bad)?)
            }
            (ColumnType::Timestamp, J::Number(n)) => DefaultVal::Ts(
                self.formats
                    .iter()
                    .find_map(|f| n.as_i64().and_then(|i| f.from_i64(i)))
                    .ok_or_else(bad)?,
            ),
            _ => return Err(bad()),
        };
        Ok(v)
    }

    /// The typed value of this column for one record. `node` is the index of the value's tape
    /// node, if the record has the field.
    pub fn convert(&self, nodes: &[Node], node: Option<usize>, scratch: &mut String) -> Result<Val, Reject> {
        let i = match node {
            Some(i) if !matches!(nodes[i], Node::Static(StaticNode::Null)) => i,
            _ => return self.missing(scratch),
        };
        let v = match (self.ty, nodes[i]) {
            (ColumnType::String, Node::String(s)) => {
                self.check_string(s)?;
                Val::Str(StrRef::Tape(i as u32))
            }
            (ColumnType::Int64, Node::Static(StaticNode::I64(v))) => Val::I64(v),
            (ColumnType::Int64, Node::Static(StaticNode::U64(v))) if v <= i64::MAX as u64 => Val::I64(v as i64),
            (ColumnType::Int64, Node::Static(StaticNode::F64(v))) if v.fract() == 0.0 && v.abs() < 9.2e18 => {
                Val::I64(v as i64)
            }
            (ColumnType::Float64, Node::Static(StaticNode::F64(v))) => Val::F64(v),
            (ColumnType::Float64, Node::Static(StaticNode::I64(v))) => Val::F64(v as f64),
            (ColumnType::Float64, Node::Static(StaticNode::U64(v))) => Val::F64(v as f64),
            (ColumnType::Boolean, Node::Static(StaticNode::Bool(b))) => Val::Bool(b),
            (ColumnType::Timestamp, Node::String(s)) => Val::Ts(
                self.formats
                    .iter()
                    .find_map(|f| f.parse_str(s))
                    .ok_or_else(|| self.ts_error(nodes, i))?,
            ),
            (
                ColumnType::Timestamp,
                Node::Static(n @ (StaticNode::I64(_) | StaticNode::U64(_) | StaticNode::F64(_))),
            ) => {
                let us = self.formats.iter().find_map(|f| match n {
                    StaticNode::I64(v) => f.from_i64(v),
                    StaticNode::U64(v) => i64::try_from(v).ok().and_then(|v| f.from_i64(v)),
                    StaticNode::F64(v) => f.from_f64(v),
                    _ => None,
                });
                Val::Ts(us.ok_or_else(|| self.ts_error(nodes, i))?)
            }
            (ColumnType::Json, _) => Val::Str(scratch_push(scratch, |s| {
                write_json(nodes, i, s);
            })),
            (ty, node) => {
                return Err(Reject::field_value(
                    Stage::Schema,
                    Rule::Type,
                    &self.name,
                    Shown::node(nodes, i),
                    format!("expected {}, got {} {VALUE}", ty.name(), type_name(&node)),
                ))
            }
        };
        match v {
            Val::I64(x) => self.check_range(x as f64, || Shown::number(x.to_string()))?,
            Val::F64(x) => self.check_range(x, || Shown::number(x.to_string()))?,
            _ => {}
        }
        Ok(v)
    }

    fn missing(&self, scratch: &mut String) -> Result<Val, Reject> {
        Ok(match &self.default {
            Some(DefaultVal::Bool(b)) => Val::Bool(*b),
            Some(DefaultVal::I64(v)) => Val::I64(*v),
            Some(DefaultVal::F64(v)) => Val::F64(*v),
            Some(DefaultVal::Ts(v)) => Val::Ts(*v),
            Some(DefaultVal::Text(t)) => Val::Str(scratch_push(scratch, |s| s.push_str(t))),
            None if self.required => {
                return Err(Reject::field(
                    Stage::Schema,
                    Rule::Required,
                    &self.name,
                    "required field is missing or null, and the schema gives no default",
                ))
            }
            None => Val::Null,
        })
    }

    fn ts_error(&self, nodes: &[Node], i: usize) -> Reject {
        let names: Vec<&str> = self.formats.iter().map(TsFormat::name).collect();
        Reject::field_value(
            Stage::Schema,
            Rule::TimestampFormat,
            &self.name,
            Shown::node(nodes, i),
            format!("{VALUE} matches none of the formats [{}]", names.join(", ")),
        )
    }

    fn check_range(&self, x: f64, show: impl Fn() -> Shown) -> Result<(), Reject> {
        if let Some(min) = self.min {
            if x < min {
                return Err(Reject::field_value(
                    Stage::Schema,
                    Rule::Min,
                    &self.name,
                    show(),
                    format!("must be at least {min}, got {VALUE}"),
                ));
            }
        }
        if let Some(max) = self.max {
            if x > max {
                return Err(Reject::field_value(
                    Stage::Schema,
                    Rule::Max,
                    &self.name,
                    show(),
                    format!("must be at most {max}, got {VALUE}"),
                ));
            }
        }
        Ok(())
    }

    /// Whether `s` is one of the enum values: a scan for short lists, binary search for long.
    fn in_enum(&self, s: &str) -> bool {
        const SCAN_MAX: usize = 16;
        if self.enum_values.len() <= SCAN_MAX {
            self.enum_values.iter().any(|e| short_eq(e.as_bytes(), s.as_bytes()))
        } else {
            self.enum_values.binary_search_by(|e| e.as_str().cmp(s)).is_ok()
        }
    }

    fn check_string(&self, s: &str) -> Result<(), Reject> {
        if let Some(max) = self.max_length {
            // Byte length bounds character length from above: count only when it could exceed.
            if s.len() > max as usize {
                let n = s.chars().count();
                if n > max as usize {
                    return Err(Reject::field(
                        Stage::Schema,
                        Rule::MaxLength,
                        &self.name,
                        format!("is {n} characters, longer than max_length {max}"),
                    ));
                }
            }
        }
        if !self.enum_values.is_empty() && !self.in_enum(s) {
            const SHOWN: usize = 8;
            let mut list: Vec<&str> = self.enum_values.iter().take(SHOWN).map(String::as_str).collect();
            if self.enum_values.len() > SHOWN {
                list.push("…");
            }
            return Err(Reject::field_value(
                Stage::Schema,
                Rule::Enum,
                &self.name,
                Shown::string(s),
                format!("{VALUE} is not one of [{}]", list.join(", ")),
            ));
        }
        if let Some((p, re)) = &self.pattern {
            if !re.is_match(s) {
                return Err(Reject::field_value(
                    Stage::Schema,
                    Rule::Pattern,
                    &self.name,
                    Shown::string(s),
                    format!("{VALUE} does not match pattern {p:?}"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::shown::Reveal;

    fn schema(json: &str) -> Schema {
        Schema::compile(&SchemaFile::from_json(json).unwrap()).unwrap()
    }

    /// Convert `value`; a reject comes revealed as for a plaintext source.
    fn convert(col: &Column, value: &str) -> Result<Val, Reject> {
        convert_as(col, value, Reveal::Truncated)
    }

    fn convert_as(col: &Column, value: &str, how: Reveal) -> Result<Val, Reject> {
        let mut buf = value.as_bytes().to_vec();
        let tape = simd_json::to_tape(&mut buf).unwrap();
        let mut scratch = String::new();
        col.convert(&tape.0, Some(0), &mut scratch).map_err(|e| e.reveal(how))
    }

    #[test]
    fn every_rule_with_its_message() {
        let s = schema(
            r#"{"columns":[
            {"name":"n","type":"int64","min":0,"max":10},
            {"name":"c","type":"string","enum":["DE","FR"]},
            {"name":"p","type":"string","pattern":"[a-z]+"},
            {"name":"l","type":"string","max_length":3},
            {"name":"t","type":"timestamp","formats":["rfc3339","epoch_ms"]},
            {"name":"r","type":"boolean","required":true},
            {"name":"f","type":"float64","default":1.5}]}"#,
        );
        let c = |n: &str| &s.columns[s.index(n).unwrap()];
        let e = convert(c("n"), "-1").unwrap_err();
        assert_eq!((e.rule, e.message.as_str()), (Rule::Min, "must be at least 0, got -1"));
        assert_eq!(convert(c("n"), "11").unwrap_err().rule, Rule::Max);
        let e = convert(c("n"), "\"7\"").unwrap_err();
        assert_eq!(
            (e.rule, e.message.as_str()),
            (Rule::Type, "expected int64, got string \"7\"")
        );
        assert_eq!(convert(c("n"), "7.0").unwrap(), Val::I64(7));
        assert_eq!(convert(c("n"), "7.5").unwrap_err().rule, Rule::Type);
        let e = convert(c("c"), "\"XX\"").unwrap_err();
        assert_eq!(
            (e.rule, e.message.as_str()),
            (Rule::Enum, "\"XX\" is not one of [DE, FR]")
        );
        assert!(convert(c("c"), "\"FR\"").is_ok());
        // The pattern must match the whole value.
        assert_eq!(convert(c("p"), "\"abc1\"").unwrap_err().rule, Rule::Pattern);
        assert!(convert(c("p"), "\"abc\"").is_ok());
        let e = convert(c("l"), "\"ääää\"").unwrap_err();
        assert_eq!(
            (e.rule, e.message.as_str()),
            (Rule::MaxLength, "is 4 characters, longer than max_length 3")
        );
        assert!(convert(c("l"), "\"äää\"").is_ok());
        assert_eq!(
            convert(c("t"), "\"2025-11-26T10:00:00Z\"").unwrap(),
            convert(c("t"), "1764151200000").unwrap()
        );
        let e = convert(c("t"), "\"yesterday\"").unwrap_err();
        assert_eq!(e.rule, Rule::TimestampFormat);
        assert_eq!(
            e.message,
            "\"yesterday\" matches none of the formats [rfc3339, epoch_ms]"
        );
        assert_eq!(e.field.as_deref(), Some("t"));
        let mut scratch = String::new();
        let e = c("r").convert(&[], None, &mut scratch).unwrap_err();
        assert_eq!(e.rule, Rule::Required);
        assert_eq!(c("f").convert(&[], None, &mut scratch).unwrap(), Val::F64(1.5));
        assert_eq!(convert(c("f"), "null").unwrap(), Val::F64(1.5));
        assert_eq!(convert(c("f"), "3").unwrap(), Val::F64(3.0));
    }

    #[test]
    fn an_encrypted_sources_messages_never_show_the_value() {
        let s = schema(
            r#"{"columns":[
            {"name":"ssn","type":"string","pattern":"[0-9]{3}-[0-9]{2}-[0-9]{4}"},
            {"name":"card","type":"int64","max":9999},
            {"name":"kind","type":"string","enum":["a","b"]},
            {"name":"t","type":"timestamp","formats":["rfc3339"]},
            {"name":"n","type":"int64"}]}"#,
        );
        let c = |n: &str| &s.columns[s.index(n).unwrap()];
        let cases = [
            (
                "ssn",
                "\"123-45-678X\"",
                "\"123-45-678X\" does not match pattern",
                "a string of 11 characters does not match pattern",
            ),
            (
                "card",
                "4111111111111111",
                "must be at most 9999, got 4111111111111111",
                "must be at most 9999, got a number",
            ),
            (
                "kind",
                "\"123-45-6789\"",
                "\"123-45-6789\" is not one of [a, b]",
                "a string of 11 characters is not one of [a, b]",
            ),
            (
                "t",
                "\"123-45-6789\"",
                "\"123-45-6789\" matches none of the formats",
                "a string of 11 characters matches none of the formats",
            ),
            (
                "n",
                "{\"ssn\":\"123-45-6789\"}",
                "expected int64, got object {\"ssn\":\"123-45-6789\"}",
                "expected int64, got object an object of 1 member",
            ),
        ];
        for (col, value, plain, withheld) in cases {
            let shown = convert_as(c(col), value, Reveal::Truncated).unwrap_err();
            assert!(shown.message.starts_with(plain), "{}", shown.message);
            let hidden = convert_as(c(col), value, Reveal::Withheld).unwrap_err();
            assert!(hidden.message.starts_with(withheld), "{}", hidden.message);
            for secret in ["123-45-678", "4111111111111111"] {
                assert!(!hidden.message.contains(secret), "{}", hidden.message);
                assert!(!hidden.to_string().contains(secret), "{hidden}");
            }
        }
        // Unrevealed, a reject displays the value withheld; a plaintext source's value is cut.
        let mut buf = b"\"4111111111111111\"".to_vec();
        let tape = simd_json::to_tape(&mut buf).unwrap();
        let e = c("n").convert(&tape.0, Some(0), &mut String::new()).unwrap_err();
        assert!(!e.to_string().contains("4111"), "{e}");
        let long = format!("\"{}\"", "9".repeat(100));
        let e = convert_as(c("kind"), &long, Reveal::Truncated).unwrap_err();
        assert!(
            e.message.starts_with(&format!("\"{}…", "9".repeat(31))),
            "{}",
            e.message
        );
    }

    #[test]
    fn short_eq_matches_slice_equality() {
        let words: Vec<Vec<u8>> = (0..40usize)
            .flat_map(|n| {
                let base: Vec<u8> = (0..n as u8).map(|i| b'a' + i % 26).collect();
                let mut first = base.clone();
                let mut last = base.clone();
                if n > 0 {
                    first[0] = b'#';
                    last[n - 1] = b'#';
                }
                [base, first, last]
            })
            .collect();
        for a in &words {
            for b in &words {
                assert_eq!(short_eq(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn json_columns_keep_the_text() {
        let s = schema(r#"{"columns":[{"name":"tags","type":"json"}]}"#);
        let mut buf = br#"["a", "b"]"#.to_vec();
        let tape = simd_json::to_tape(&mut buf).unwrap();
        let mut scratch = String::new();
        let v = s.columns[0].convert(&tape.0, Some(0), &mut scratch).unwrap();
        assert_eq!(v, Val::Str(StrRef::Scratch { start: 0, len: 9 }));
        assert_eq!(scratch, r#"["a","b"]"#);
    }

    #[test]
    fn compile_errors_name_the_column_and_the_rule() {
        let bad = |json: &str| Schema::compile(&SchemaFile::from_json(json).unwrap()).unwrap_err();
        assert_eq!(
            bad(r#"{"columns":[{"name":"a","type":"string","min":1}]}"#),
            "columns[0] (a): min/max apply to int64 and float64 columns, not string"
        );
        assert!(
            bad(r#"{"columns":[{"name":"a","type":"int64"},{"name":"a.b","type":"int64"}]}"#)
                .contains("nested under another column")
        );
        assert!(
            bad(r#"{"columns":[{"name":"a.b","type":"int64"},{"name":"a","type":"int64"}]}"#)
                .contains("nested under it")
        );
        assert!(bad(r#"{"columns":[{"name":"a","type":"string","pattern":"("}]}"#).contains("not a valid regex"));
        assert!(bad(r#"{"columns":[{"name":"a","type":"int64","default":"x"}]}"#).contains("default \"x\""));
        assert!(
            bad(r#"{"columns":[{"name":"a","type":"timestamp","formats":["week"]}]}"#)
                .contains("unknown timestamp format")
        );
        let e = SchemaFile::from_json(r#"{"columns":[{"name":"a","type":"int32"}]}"#).unwrap_err();
        assert!(e.starts_with("columns[0].type: unknown variant `int32`"), "{e}");
        let e = SchemaFile::from_json(r#"{"columns":[{"name":"a","type":"int64","mn":1}]}"#).unwrap_err();
        assert!(e.contains("unknown field `mn`"), "{e}");
    }
}
