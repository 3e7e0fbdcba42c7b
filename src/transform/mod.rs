//! Transform: built-in steps from config, compiled once per table into an output plan.
//!
//! Owns: [`Transforms`] (input schema → output columns) and the per-record application of value
//! operations (cast, hash, mask) and ingest metadata; [`route`] picks a record's table.
//!
//! Steps run in the order written and refer to columns by their *current* name (after earlier
//! renames). Rename and drop cost nothing per record: they only change the output plan. Hash
//! (HMAC-SHA256 with a keyring key, lowercase hex) and mask (all but the last N characters
//! become `*`) apply to string columns and produce strings; cast converts as the table in
//! [`cast_allowed`] says, rejecting values that do not convert.
//!
//! Invariants: output names are unique; every output column's type is what the encoder gets.

pub mod route;

use crate::config::TransformConfig;
use crate::extract::keyring::Keyring;
use crate::extract::schema::{ColumnType, Schema};
use crate::extract::shown::{Shown, VALUE};
use crate::extract::timestamp::{format_rfc3339, parse_rfc3339};
use crate::extract::value::{scratch_push, RecordRefs, Val};
use crate::extract::{Reject, Rule, Stage};
use ring::hmac;
use std::fmt::Write;

/// Names of the ingest metadata columns, in output order.
pub const META_COLUMNS: [(&str, ColumnType); 4] = [
    ("_ingest_time", ColumnType::Timestamp),
    ("_source", ColumnType::String),
    ("_partition", ColumnType::String),
    ("_position", ColumnType::Int64),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meta {
    IngestTime,
    Source,
    Partition,
    Position,
}

#[derive(Clone)]
pub enum ValueOp {
    Cast(ColumnType),
    Hash(hmac::Key),
    Mask { keep_last: u32 },
}

impl std::fmt::Debug for ValueOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValueOp::Cast(t) => write!(f, "Cast({})", t.name()),
            ValueOp::Hash(_) => write!(f, "Hash"),
            ValueOp::Mask { keep_last } => write!(f, "Mask({keep_last})"),
        }
    }
}

#[derive(Debug, Clone)]
pub enum OutSource {
    Input { col: usize, ops: Vec<ValueOp> },
    Meta(Meta),
}

#[derive(Debug, Clone)]
pub struct OutputColumn {
    pub name: String,
    pub ty: ColumnType,
    pub source: OutSource,
}

/// Per-record context for metadata columns.
pub struct MetaValues<'a> {
    pub ingest_time_us: i64,
    pub source: &'a str,
    pub partition: &'a str,
    pub position: u64,
}

/// Whether `cast` may convert `from` to `to`.
pub fn cast_allowed(from: ColumnType, to: ColumnType) -> bool {
    use ColumnType::*;
    from == to
        || to == String
        || matches!(
            (from, to),
            (String, Int64 | Float64 | Boolean | Timestamp)
                | (Int64, Float64)
                | (Float64, Int64)
                | (Boolean, Int64)
                | (Timestamp, Int64)
        )
}

/// Output columns of a table after its transforms.
#[derive(Debug, Clone)]
pub struct Transforms {
    pub outputs: Vec<OutputColumn>,
}

impl Transforms {
    /// Compile `steps` over `schema`. Errors name the step index and what is wrong.
    pub fn compile(schema: &Schema, steps: &[TransformConfig], keyring: &Keyring) -> Result<Transforms, String> {
        let mut outputs: Vec<OutputColumn> = schema
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| OutputColumn {
                name: c.name.clone(),
                ty: c.ty,
                source: OutSource::Input {
                    col: i,
                    ops: Vec::new(),
                },
            })
            .collect();
        for (i, step) in steps.iter().enumerate() {
            let at = |m: String| format!("transforms[{i}]: {m}");
            let find = |outputs: &[OutputColumn], field: &str| {
                outputs
                    .iter()
                    .position(|o| o.name == field)
                    .ok_or_else(|| at(format!("no column named {field:?} at this step")))
            };
            let taken = |outputs: &[OutputColumn], name: &str| -> Result<(), String> {
                if outputs.iter().any(|o| o.name == name) {
                    Err(at(format!("a column named {name:?} already exists")))
                } else {
                    Ok(())
                }
            };
            match step {
                TransformConfig::Rename { field, to } => {
                    let k = find(&outputs, field)?;
                    taken(&outputs, to)?;
                    outputs[k].name = to.clone();
                }
                TransformConfig::Drop { field } => {
                    let k = find(&outputs, field)?;
                    outputs.remove(k);
                }
                TransformConfig::Cast { field, to } => {
                    let k = find(&outputs, field)?;
                    let to = ColumnType::parse(to).ok_or_else(|| at(format!("unknown type {to:?}")))?;
                    let from = outputs[k].ty;
                    if !cast_allowed(from, to) {
                        return Err(at(format!(
                            "cannot cast {field:?} from {} to {}",
                            from.name(),
                            to.name()
                        )));
                    }
                    push_op(&mut outputs[k], ValueOp::Cast(to), to).map_err(at)?;
                }
                TransformConfig::Hash { field, key_id } => {
                    let k = find(&outputs, field)?;
                    require_text(&outputs[k], "hash").map_err(at)?;
                    let key = keyring
                        .get(key_id.as_bytes())
                        .ok_or_else(|| at(format!("key id {key_id:?} is not in the keyring")))?;
                    push_op(&mut outputs[k], ValueOp::Hash(key.hmac().clone()), ColumnType::String).map_err(at)?;
                }
                TransformConfig::Mask { field, keep_last } => {
                    let k = find(&outputs, field)?;
                    require_text(&outputs[k], "mask").map_err(at)?;
                    push_op(
                        &mut outputs[k],
                        ValueOp::Mask { keep_last: *keep_last },
                        ColumnType::String,
                    )
                    .map_err(at)?;
                }
                TransformConfig::IngestMetadata => {
                    let metas = [Meta::IngestTime, Meta::Source, Meta::Partition, Meta::Position];
                    for ((name, ty), meta) in META_COLUMNS.iter().zip(metas) {
                        taken(&outputs, name)?;
                        outputs.push(OutputColumn {
                            name: name.to_string(),
                            ty: *ty,
                            source: OutSource::Meta(meta),
                        });
                    }
                }
            }
        }
        if outputs.is_empty() {
            return Err("the transforms drop every column".into());
        }
        Ok(Transforms { outputs })
    }

    /// Compute the output row of one record from its input values.
    pub fn apply(
        &self,
        inputs: &[Val],
        nodes: &[simd_json::Node],
        scratch: &mut String,
        meta: &MetaValues,
        out: &mut Vec<Val>,
    ) -> Result<(), Reject> {
        out.clear();
        for o in &self.outputs {
            let v = match &o.source {
                OutSource::Input { col, ops } => {
                    let mut v = inputs[*col];
                    for op in ops {
                        v = apply_op(op, v, &o.name, nodes, scratch)?;
                    }
                    v
                }
                OutSource::Meta(Meta::IngestTime) => Val::Ts(meta.ingest_time_us),
                OutSource::Meta(Meta::Source) => Val::Str(scratch_push(scratch, |s| s.push_str(meta.source))),
                OutSource::Meta(Meta::Partition) => Val::Str(scratch_push(scratch, |s| s.push_str(meta.partition))),
                OutSource::Meta(Meta::Position) => Val::I64(meta.position as i64),
            };
            out.push(v);
        }
        Ok(())
    }
}

fn require_text(o: &OutputColumn, what: &str) -> Result<(), String> {
    if o.ty.is_text() {
        Ok(())
    } else {
        Err(format!(
            "{what} applies to string columns; {:?} is {} (cast it to string first)",
            o.name,
            o.ty.name()
        ))
    }
}

fn push_op(o: &mut OutputColumn, op: ValueOp, ty: ColumnType) -> Result<(), String> {
    match &mut o.source {
        OutSource::Input { ops, .. } => {
            ops.push(op);
            o.ty = ty;
            Ok(())
        }
        OutSource::Meta(_) => Err(format!(
            "{:?} is an ingest metadata column and cannot be changed",
            o.name
        )),
    }
}

fn apply_op(op: &ValueOp, v: Val, field: &str, nodes: &[simd_json::Node], scratch: &mut String) -> Result<Val, Reject> {
    if v == Val::Null {
        return Ok(Val::Null);
    }
    match op {
        ValueOp::Cast(to) => cast(v, *to, field, nodes, scratch),
        ValueOp::Hash(key) => {
            let Val::Str(r) = v else {
                unreachable!("hash is compiled for text columns only")
            };
            let tag = hmac::sign(key, RecordRefs { nodes, scratch }.str(r).as_bytes());
            Ok(Val::Str(scratch_push(scratch, |s| {
                for b in tag.as_ref() {
                    let _ = write!(s, "{b:02x}");
                }
            })))
        }
        ValueOp::Mask { keep_last } => {
            let Val::Str(r) = v else {
                unreachable!("mask is compiled for text columns only")
            };
            // Copy the kept tail out first: the source may itself live in `scratch`.
            let text = RecordRefs { nodes, scratch }.str(r);
            let n = text.chars().count();
            let keep = (*keep_last as usize).min(n);
            let tail_start = text.char_indices().nth(n - keep).map_or(text.len(), |(i, _)| i);
            let mut tail = [0u8; 64 * 4];
            let tail_len = text.len() - tail_start;
            tail[..tail_len].copy_from_slice(&text.as_bytes()[tail_start..]);
            Ok(Val::Str(scratch_push(scratch, |s| {
                s.extend(std::iter::repeat_n('*', n - keep));
                s.push_str(std::str::from_utf8(&tail[..tail_len]).expect("a char-aligned tail of a str"));
            })))
        }
    }
}

fn cast(v: Val, to: ColumnType, field: &str, nodes: &[simd_json::Node], scratch: &mut String) -> Result<Val, Reject> {
    let fail = |shown: Shown| {
        Reject::field_value(
            Stage::Transform,
            Rule::Cast,
            field,
            shown,
            format!("cannot cast {VALUE} to {}", to.name()),
        )
    };
    Ok(match (v, to) {
        (Val::Str(r), ColumnType::String) => Val::Str(r),
        (Val::Str(r), _) => {
            let s = RecordRefs { nodes, scratch }.str(r);
            let quoted = || Shown::string(s);
            match to {
                ColumnType::Int64 => Val::I64(s.trim().parse().map_err(|_| fail(quoted()))?),
                ColumnType::Float64 => Val::F64(s.trim().parse().map_err(|_| fail(quoted()))?),
                ColumnType::Boolean => match s.trim() {
                    "true" => Val::Bool(true),
                    "false" => Val::Bool(false),
                    _ => return Err(fail(quoted())),
                },
                ColumnType::Timestamp => Val::Ts(parse_rfc3339(s.trim()).ok_or_else(|| fail(quoted()))?),
                ColumnType::String | ColumnType::Json => unreachable!(),
            }
        }
        (Val::I64(x), ColumnType::String) => Val::Str(scratch_push(scratch, |s| {
            let _ = write!(s, "{x}");
        })),
        (Val::F64(x), ColumnType::String) => Val::Str(scratch_push(scratch, |s| {
            let _ = write!(s, "{x}");
        })),
        (Val::Bool(b), ColumnType::String) => {
            Val::Str(scratch_push(scratch, |s| s.push_str(if b { "true" } else { "false" })))
        }
        (Val::Ts(t), ColumnType::String) => Val::Str(scratch_push(scratch, |s| format_rfc3339(t, s))),
        (Val::I64(x), ColumnType::Int64) => Val::I64(x),
        (Val::I64(x), ColumnType::Float64) => Val::F64(x as f64),
        (Val::F64(x), ColumnType::Float64) => Val::F64(x),
        (Val::F64(x), ColumnType::Int64) => {
            if x.fract() != 0.0 || x.abs() >= 9.2e18 {
                return Err(fail(Shown::number(x.to_string())));
            }
            Val::I64(x as i64)
        }
        (Val::Bool(b), ColumnType::Int64) => Val::I64(b as i64),
        (Val::Bool(b), ColumnType::Boolean) => Val::Bool(b),
        (Val::Ts(t), ColumnType::Int64) => Val::I64(t),
        (Val::Ts(t), ColumnType::Timestamp) => Val::Ts(t),
        (v, to) => unreachable!("cast {v:?} to {} was not allowed at compile time", to.name()),
    })
}

/// A plan's string view of a value, for tests and messages.
pub fn show(v: Val, refs: RecordRefs) -> String {
    match v {
        Val::Null => "null".into(),
        Val::Bool(b) => b.to_string(),
        Val::I64(x) => x.to_string(),
        Val::F64(x) => x.to_string(),
        Val::Ts(t) => crate::extract::timestamp::rfc3339(t),
        Val::Str(r) => refs.str(r).to_string(),
    }
}

#[cfg(test)]
mod tests;
