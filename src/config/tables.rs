//! `[[tables]]` and `[partitioning]`: each table's schema and transforms, and the bounds on
//! event time that place a record in its hour.
//!
//! Owns: those keys, their `DEFAULT_*` constants and their validation.

use super::validator::{plain, Validator};
use serde::{Deserialize, Serialize};

/// Records older than this (event time before ingest time) are quarantined: a partition this
/// old is closed in most lakes, and accepting them would rewrite history silently.
pub const DEFAULT_EVENT_TIME_LATE_MAX_S: u64 = 7 * 24 * 3600;
/// Records further in the future than this are quarantined: clock skew beyond an hour is a
/// producer bug, not an event.
pub const DEFAULT_EVENT_TIME_FUTURE_MAX_S: u64 = 3600;

/// Records sampled to infer a schema when a table says `schema = "infer"`.
pub const DEFAULT_INFER_RECORDS: u32 = 1_000;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    pub name: String,
    /// Path of a schema JSON file, or `"infer"`.
    pub schema: String,
    /// Timestamp column that decides `dt`/`hr`; without it, ingest time does.
    pub event_time: Option<String>,
    #[serde(default = "default_infer_records")]
    pub infer_records: u32,
    #[serde(default)]
    pub transforms: Vec<TransformConfig>,
}

fn default_infer_records() -> u32 {
    DEFAULT_INFER_RECORDS
}

/// Built-in transforms, applied in order after schema validation.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum TransformConfig {
    Rename {
        field: String,
        to: String,
    },
    Drop {
        field: String,
    },
    Cast {
        field: String,
        to: String,
    },
    /// HMAC-SHA256 with a keyring key, as 64 lowercase hex characters.
    Hash {
        field: String,
        key_id: String,
    },
    /// Replace all but the last `keep_last` characters with `*`.
    Mask {
        field: String,
        #[serde(default)]
        keep_last: u32,
    },
    /// Add `_ingest_time`, `_source`, `_partition`, `_position`.
    IngestMetadata,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PartitioningConfig {
    pub event_time_late_max_s: u64,
    pub event_time_future_max_s: u64,
}

impl Default for PartitioningConfig {
    fn default() -> Self {
        PartitioningConfig {
            event_time_late_max_s: DEFAULT_EVENT_TIME_LATE_MAX_S,
            event_time_future_max_s: DEFAULT_EVENT_TIME_FUTURE_MAX_S,
        }
    }
}

pub(super) fn validate_partitioning(p: &PartitioningConfig, v: &mut Validator) {
    let day = 24 * 3600;
    v.range_u64(
        "partitioning.event_time_late_max_s",
        p.event_time_late_max_s,
        0,
        3650 * day,
        plain,
    );
    v.range_u64(
        "partitioning.event_time_future_max_s",
        p.event_time_future_max_s,
        0,
        365 * day,
        plain,
    );
}

/// One table's own keys (its name and the cross-references are checked with the others).
pub(super) fn validate(t: &TableConfig, p: &str, v: &mut Validator) {
    v.range_u64(
        &format!("{p}.infer_records"),
        t.infer_records.into(),
        1,
        1_000_000,
        plain,
    );
    for (j, tr) in t.transforms.iter().enumerate() {
        transform(tr, &format!("{p}.transforms[{j}]"), v);
    }
}

fn transform(t: &TransformConfig, p: &str, v: &mut Validator) {
    match t {
        TransformConfig::Rename { field, to } => {
            if field.is_empty() || to.is_empty() {
                v.error(p, "rename needs a non-empty `field` and `to`");
            }
        }
        TransformConfig::Cast { to, .. } => {
            if crate::extract::schema::ColumnType::parse(to).is_none() {
                v.error(
                    format!("{p}.to"),
                    format!("must be one of string, int64, float64, boolean, timestamp, json; got {to:?}"),
                );
            }
        }
        TransformConfig::Mask { keep_last, .. } => {
            v.range_u64(&format!("{p}.keep_last"), (*keep_last).into(), 0, 64, plain);
        }
        TransformConfig::Drop { .. } | TransformConfig::Hash { .. } | TransformConfig::IngestMetadata => {}
    }
}
