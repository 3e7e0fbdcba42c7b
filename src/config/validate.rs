//! Semantic validation of a parsed [`Config`]: bounds, cross-references, exclusive options.
//!
//! Every rule reports `path: rule, got value`; all violations are collected, not just the first.

use super::*;
use std::collections::HashSet;

/// Collects errors with their key paths.
#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<ConfigError>,
}

/// Human form of a byte count for messages: `1 MiB`, `64 MiB`, or plain bytes.
pub fn bytes_human(n: u64) -> String {
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else {
        n.to_string()
    }
}

impl Validator {
    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// `value` must lie in `[min, max]`; `show` renders bounds and value in the key's unit.
    pub fn range_u64(&mut self, path: &str, value: u64, min: u64, max: u64, show: fn(u64) -> String) {
        if value < min {
            self.error(path, format!("must be at least {}, got {}", show(min), value));
        } else if value > max {
            self.error(path, format!("must be at most {}, got {}", show(max), value));
        }
    }

    pub fn finish(self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(self.errors))
        }
    }
}

fn plain(n: u64) -> String {
    n.to_string()
}

/// A name used in keys and paths: `[A-Za-z0-9_-]`, 1..=64 characters.
fn check_name(v: &mut Validator, path: &str, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        v.error(
            path,
            format!("must be 1 to 64 characters of [A-Za-z0-9_-] (it becomes part of object keys), got {name:?}"),
        );
    }
}

pub(super) fn config(c: &Config, v: &mut Validator) {
    runtime(&c.runtime, v);
    if let Some(a) = &c.admin {
        super::admin::validate(a, v);
    }
    if c.lake.dir.as_os_str().is_empty() {
        v.error("lake.dir", "must not be empty");
    }
    if c.lake.prefix.starts_with('/') || c.lake.prefix.ends_with('/') {
        v.error(
            "lake.prefix",
            format!("must not start or end with '/', got {:?}", c.lake.prefix),
        );
    } else if !c.lake.prefix.is_empty() && c.lake.prefix.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        // The stores refuse such keys when they write: say so before the run.
        v.error(
            "lake.prefix",
            format!("must not hold an empty, '.' or '..' segment, got {:?}", c.lake.prefix),
        );
    }
    if !(1..=256).contains(&c.lake.uploads_max) {
        v.error(
            "lake.uploads_max",
            format!("must be 1 to 256, got {}", c.lake.uploads_max),
        );
    }
    if c.lake.retry_for_ms < 1000 {
        v.error(
            "lake.retry_for_ms",
            format!("must be at least 1000, got {}", c.lake.retry_for_ms),
        );
    }
    if let Some(s3) = &c.lake.s3 {
        lake_s3(s3, v);
    }
    if c.keys.file.is_none() && c.keys.env.is_none() && !c.keys.demo {
        let encrypted = c.sources.iter().any(|s| s.encryption == Encryption::Envelope);
        if encrypted {
            v.error(
                "keys",
                "a source uses envelope encryption but no keyring is configured: set keys.file or keys.env",
            );
        }
    }

    if c.sources.is_empty() {
        v.error("sources", "at least one source is required");
    }
    if c.tables.is_empty() {
        v.error("tables", "at least one table is required");
    }
    let tables: HashSet<&str> = c.tables.iter().map(|t| t.name.as_str()).collect();
    let mut seen = HashSet::new();
    for (i, s) in c.sources.iter().enumerate() {
        let p = format!("sources[{i}]");
        check_name(v, &format!("{p}.name"), &s.name);
        if !seen.insert(s.name.as_str()) {
            v.error(
                format!("{p}.name"),
                format!("must be unique, {:?} appears twice", s.name),
            );
        }
        source(s, &p, &tables, v);
        if s.needs_state() && c.state.dir.is_none() {
            // Without checkpoints a stream would be read again from its start on every run, and
            // the HTTP receiver has nowhere to keep its inbox.
            let kind = if s.kinesis.is_some() { "kinesis" } else { "http" };
            v.error(
                format!("{p}.{kind}"),
                "needs state.dir: a stream source resumes from checkpoints",
            );
        }
    }
    let mut seen = HashSet::new();
    for (i, t) in c.tables.iter().enumerate() {
        let p = format!("tables[{i}]");
        check_name(v, &format!("{p}.name"), &t.name);
        if !seen.insert(t.name.as_str()) {
            v.error(
                format!("{p}.name"),
                format!("must be unique, {:?} appears twice", t.name),
            );
        }
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
        if t.schema == "infer" {
            let pushed = c
                .sources
                .iter()
                .find(|s| (s.http.is_some() || s.in_process.is_some()) && feeds(s, &t.name));
            if let Some(s) = pushed {
                let kind = if s.http.is_some() { "HTTP" } else { "in-process" };
                v.error(
                    format!("{p}.schema"),
                    format!(
                        "\"infer\" reads records before the run starts, and the {kind} source {:?} has none then: give a schema file",
                        s.name
                    ),
                );
            }
        }
    }

    let day = 24 * 3600;
    v.range_u64(
        "partitioning.event_time_late_max_s",
        c.partitioning.event_time_late_max_s,
        0,
        3650 * day,
        plain,
    );
    v.range_u64(
        "partitioning.event_time_future_max_s",
        c.partitioning.event_time_future_max_s,
        0,
        365 * day,
        plain,
    );

    // A buffer below 1 MiB makes Parquet files too small to scan efficiently; above 4 GiB one
    // buffer could hold a core's whole memory.
    v.range_u64(
        "buffer.flush_bytes_max",
        c.buffer.flush_bytes_max,
        MIB,
        4096 * MIB,
        bytes_human,
    );
    v.range_u64(
        "buffer.flush_records_max",
        c.buffer.flush_records_max,
        1,
        100_000_000,
        plain,
    );
    // Below 16 MiB a core could not hold one ring segment per table while encoding another.
    v.range_u64(
        "buffer.memory_bytes_max",
        c.buffer.memory_bytes_max,
        16 * MIB,
        1 << 40,
        bytes_human,
    );
    v.range_u64(
        "buffer.spill_bytes_max",
        c.buffer.spill_bytes_max,
        16 * MIB,
        1 << 50,
        bytes_human,
    );
    // Below 1 MiB every file the store is slow to take would be parked on disk.
    v.range_u64(
        "buffer.outbox_memory_bytes_max",
        c.buffer.outbox_memory_bytes_max,
        MIB,
        1 << 40,
        bytes_human,
    );
    v.range_u64(
        "buffer.outbox_bookkeeping_bytes_max",
        c.buffer.outbox_bookkeeping_bytes_max,
        MIB,
        1 << 40,
        bytes_human,
    );
    // Below 64 a core could not keep its files, RAW segments and checkpoints moving while one
    // upload is retried.
    v.range_u64(
        "buffer.outbox_entries_max",
        c.buffer.outbox_entries_max,
        64,
        10_000_000,
        plain,
    );
    v.range_u64(
        "buffer.open_partitions_max",
        c.buffer.open_partitions_max,
        1,
        10_000_000,
        plain,
    );
    v.range_u64(
        "buffer.flush_interval_ms",
        c.buffer.flush_interval_ms,
        100,
        24 * 3600 * 1000,
        plain,
    );

    if !(1..=22).contains(&c.parquet.zstd_level) {
        v.error(
            "parquet.zstd_level",
            format!("must be between 1 and 22, got {}", c.parquet.zstd_level),
        );
    }
    v.range_u64(
        "parquet.row_group_rows_max",
        c.parquet.row_group_rows_max,
        1024,
        64 * 1024 * 1024,
        plain,
    );
    v.range_u64(
        "parquet.data_page_bytes_max",
        c.parquet.data_page_bytes_max,
        4096,
        256 * MIB,
        bytes_human,
    );

    v.range_u64(
        "raw.segment_bytes_max",
        c.raw.segment_bytes_max,
        MIB,
        4096 * MIB,
        bytes_human,
    );
    v.range_u64(
        "raw.memory_bytes_max",
        c.raw.memory_bytes_max,
        MIB,
        1 << 40,
        bytes_human,
    );
    v.range_u64(
        "raw.segment_interval_ms",
        c.raw.segment_interval_ms,
        100,
        24 * 3600 * 1000,
        plain,
    );
    if !(1..=22).contains(&c.quarantine.zstd_level) {
        v.error(
            "quarantine.zstd_level",
            format!("must be between 1 and 22, got {}", c.quarantine.zstd_level),
        );
    }
    v.range_u64(
        "quarantine.file_bytes_max",
        c.quarantine.file_bytes_max,
        64 * 1024,
        4096 * MIB,
        bytes_human,
    );
    v.range_u64(
        "quarantine.interval_ms",
        c.quarantine.interval_ms,
        100,
        24 * 3600 * 1000,
        plain,
    );
    v.range_u64("audit.interval_ms", c.audit.interval_ms, 100, 24 * 3600 * 1000, plain);
    v.range_u64(
        "telemetry.latency_sample_every",
        c.telemetry.latency_sample_every.into(),
        1,
        1 << 20,
        plain,
    );
}

fn runtime(r: &RuntimeConfig, v: &mut Validator) {
    match &r.cores {
        CoresConfig::Named(s) if s == "all" => {}
        CoresConfig::Named(s) => v.error(
            "runtime.cores",
            format!("must be \"all\" or a list of CPU numbers, got {s:?}"),
        ),
        CoresConfig::List(l) => {
            if l.is_empty() {
                v.error("runtime.cores", "must list at least one CPU");
            }
            let unique: HashSet<_> = l.iter().collect();
            if unique.len() != l.len() {
                v.error("runtime.cores", format!("must not repeat a CPU, got {l:?}"));
            }
        }
    }
    // glommio needs some registered memory; beyond 1 GiB it is pinned RAM taken from the buffers.
    v.range_u64(
        "runtime.io_memory_bytes",
        r.io_memory_bytes,
        64 * 1024,
        1024 * MIB,
        bytes_human,
    );
}

fn source(s: &SourceConfig, p: &str, tables: &HashSet<&str>, v: &mut Validator) {
    match (&s.table, &s.route) {
        (Some(_), Some(_)) => v.error(p, "set either `table` or `route`, not both"),
        (None, None) => v.error(p, "set `table` (every record to one table) or `route` (by a field)"),
        (Some(t), None) => {
            if !tables.contains(t.as_str()) {
                v.error(format!("{p}.table"), format!("names no table in [[tables]], got {t:?}"));
            }
        }
        (None, Some(r)) => {
            if r.field.is_empty() {
                v.error(format!("{p}.route.field"), "must not be empty");
            }
            if r.tables.is_empty() {
                v.error(format!("{p}.route.tables"), "must map at least one value to a table");
            }
            for (value, t) in &r.tables {
                if !tables.contains(t.as_str()) {
                    v.error(
                        format!("{p}.route.tables.{value}"),
                        format!("names no table in [[tables]], got {t:?}"),
                    );
                }
            }
            if let Unmatched::Table(t) = &r.unmatched {
                if !tables.contains(t.as_str()) {
                    v.error(
                        format!("{p}.route.unmatched"),
                        format!("names no table in [[tables]], got {t:?}"),
                    );
                }
            }
        }
    }
    v.range_u64(&format!("{p}.batch_records"), s.batch_records.into(), 1, 100_000, plain);
    match s.kind() {
        Ok(SourceKind::Generator(g)) => generator(g, &format!("{p}.generator"), v),
        Ok(SourceKind::File(f)) => file(f, &format!("{p}.file"), v),
        Ok(SourceKind::Kinesis(k)) => super::kinesis::validate(k, &format!("{p}.kinesis"), v),
        Ok(SourceKind::Http(h)) => super::http::validate(h, &format!("{p}.http"), v),
        Ok(SourceKind::InProcess(_)) => {}
        Err(0) => v.error(
            p,
            "set exactly one of [generator], [file], [kinesis], [http] or [in_process]",
        ),
        Err(_) => v.error(
            p,
            "set exactly one of [generator], [file], [kinesis], [http] or [in_process], not several",
        ),
    }
}

fn generator(g: &GeneratorConfig, p: &str, v: &mut Validator) {
    v.range_u64(&format!("{p}.partitions"), g.partitions.into(), 1, 65_536, plain);
    if g.records == 0 && g.duration_ms == 0 {
        v.error(
            p,
            "set `records` or `duration_ms` (or both): an unbounded generator never stops",
        );
    }
    if !(0.0..=1.0).contains(&g.bad_ratio) {
        v.error(
            format!("{p}.bad_ratio"),
            format!("must be between 0 and 1, got {}", g.bad_ratio),
        );
    }
    v.range_u64(
        &format!("{p}.event_time_spread_s"),
        g.event_time_spread_s,
        0,
        365 * 24 * 3600,
        plain,
    );
    if let Some(t) = &g.start_time {
        if chrono::DateTime::parse_from_rfc3339(t).is_err() {
            v.error(
                format!("{p}.start_time"),
                format!("must be an RFC 3339 time, got {t:?}"),
            );
        }
    }
}

fn file(f: &FileConfig, p: &str, v: &mut Validator) {
    if f.paths.is_empty() {
        v.error(format!("{p}.paths"), "must list at least one file or directory");
    }
    v.range_u64(&format!("{p}.split_bytes"), f.split_bytes, MIB, 1 << 40, bytes_human);
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

fn lake_s3(s: &crate::config::S3Config, v: &mut Validator) {
    use crate::config::{Sse, S3_PART_BYTES_MIN};
    let bucket_ok = (3..=63).contains(&s.bucket.len())
        && s.bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !bucket_ok {
        v.error(
            "lake.s3.bucket",
            format!(
                "must be an S3 bucket name (3 to 63 characters of [a-z0-9.-]), got {:?}",
                s.bucket
            ),
        );
    }
    if let Some(e) = &s.endpoint {
        if !(e.starts_with("http://") || e.starts_with("https://")) {
            v.error(
                "lake.s3.endpoint",
                format!("must start with http:// or https://, got {e:?}"),
            );
        }
    }
    if s.part_bytes < S3_PART_BYTES_MIN || s.part_bytes > 5 * 1024 * MIB {
        v.error(
            "lake.s3.part_bytes",
            format!("must be 5 MiB to 5 GiB (S3's part size limits), got {}", s.part_bytes),
        );
    }
    if s.multipart_threshold_bytes < s.part_bytes {
        v.error(
            "lake.s3.multipart_threshold_bytes",
            format!(
                "must be at least lake.s3.part_bytes ({}), got {}",
                s.part_bytes, s.multipart_threshold_bytes
            ),
        );
    }
    if !(1..=64).contains(&s.parts_in_flight_max) {
        v.error(
            "lake.s3.parts_in_flight_max",
            format!("must be 1 to 64, got {}", s.parts_in_flight_max),
        );
    }
    if !(1..=10).contains(&s.attempts_max) {
        v.error(
            "lake.s3.attempts_max",
            format!("must be 1 to 10, got {}", s.attempts_max),
        );
    }
    if s.attempt_timeout_ms < 100 {
        v.error(
            "lake.s3.attempt_timeout_ms",
            format!("must be at least 100, got {}", s.attempt_timeout_ms),
        );
    }
    if s.sse != Sse::Kms && !s.kms_key_id.is_empty() {
        v.error("lake.s3.kms_key_id", "is only used with sse = \"kms\"");
    }
}

/// Whether source `s` may send records to table `table`.
fn feeds(s: &SourceConfig, table: &str) -> bool {
    s.table.as_deref() == Some(table)
        || s.route.as_ref().is_some_and(|r| {
            r.tables.values().any(|t| t == table) || r.unmatched == Unmatched::Table(table.to_string())
        })
}
