//! `[[sources]]`: each source's kind (generator, file, Kinesis, HTTP, in-process), its
//! encryption, its routing to tables, and its batch size.
//!
//! Owns: those keys, their `DEFAULT_*` constants and their validation (the Kinesis and HTTP
//! sections have files of their own).

use super::http::HttpConfig;
use super::kinesis::KinesisConfig;
use super::validator::{bytes_human, plain, Validator};
use super::MIB;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::PathBuf;

/// Records the embedded default generates when `--records` is not given.
pub const DEFAULT_GENERATOR_RECORDS: u64 = 1_000_000;
/// Share of bad records in the embedded default (every kind, in turn).
pub const DEFAULT_GENERATOR_BAD_RATIO: f64 = 0.01;
/// Partitions of the embedded default generator: enough that every core of a small machine
/// owns several, so placement is visible and no core idles.
pub const DEFAULT_GENERATOR_PARTITIONS: u32 = 8;
/// Seed of the embedded default generator; the same seed gives the same records.
pub const DEFAULT_GENERATOR_SEED: u64 = 42;
/// Event times of generated records fall within this many seconds before the start time, so a
/// run touches a few hourly partitions.
pub const DEFAULT_GENERATOR_EVENT_TIME_SPREAD_S: u64 = 2 * 3600;
/// Key id of the built-in demo key used by the embedded default (see `extract::keyring`).
pub const DEFAULT_GENERATOR_KEY_ID: &str = "demo";

/// Records handed from a source to its core at once. Large enough to amortise the per-batch
/// costs (audit row, raw framing, scheduling), small enough that one batch is ~1 ms of work.
pub const DEFAULT_BATCH_RECORDS: u32 = 1_000;
/// NDJSON files larger than this are read as several splits, so one big file uses every core.
pub const DEFAULT_FILE_SPLIT_BYTES: u64 = 64 * MIB;

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Encryption {
    /// Every payload is a sluicegate envelope (AES-256-GCM).
    #[default]
    Envelope,
    /// Payloads are plain JSON.
    None,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Unique name; becomes `source=<name>` in every zone.
    pub name: String,
    #[serde(default)]
    pub encryption: Encryption,
    /// Every record goes to this table (exclusive with `route`).
    pub table: Option<String>,
    /// Route each record to a table by one of its fields.
    pub route: Option<RouteConfig>,
    #[serde(default = "default_batch_records")]
    pub batch_records: u32,
    pub generator: Option<GeneratorConfig>,
    pub file: Option<FileConfig>,
    pub kinesis: Option<KinesisConfig>,
    pub http: Option<HttpConfig>,
    pub in_process: Option<InProcessConfig>,
    pub push: Option<PushConfig>,
}

/// Bytes of pushed records waiting for the cores, by default: a few ring segments' worth, so a
/// producer far ahead of the cores waits instead of filling memory.
pub const DEFAULT_PUSH_QUEUE_BYTES_MAX: u64 = 64 * MIB;

/// `[sources.push]`: the program embedding the engine pushes records through a
/// [`crate::PushHandle`] (`Engine::push_handle`); a push returns once its records are durable
/// in the lake (their checkpoint is written), so it needs `state.dir`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PushConfig {
    /// Partitions the pushed records are spread over, one batch to one partition (its order
    /// kept); 0: one per core.
    #[serde(default)]
    pub partitions: u32,
    /// Bytes of pushed records waiting for the cores, over all partitions; past it a push
    /// waits (backpressure).
    #[serde(default = "default_push_queue_bytes_max")]
    pub queue_bytes_max: u64,
}

impl Default for PushConfig {
    fn default() -> PushConfig {
        PushConfig {
            partitions: 0,
            queue_bytes_max: DEFAULT_PUSH_QUEUE_BYTES_MAX,
        }
    }
}

fn default_push_queue_bytes_max() -> u64 {
    DEFAULT_PUSH_QUEUE_BYTES_MAX
}

/// `[sources.in_process]`: the records come from a [`crate::source::Source`] that the program
/// embedding the engine supplies (`EngineBuilder::in_process_source`), e.g. `loadgen`'s
/// scheduled events. The `sluicegate` binary has none to supply and refuses such a source.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InProcessConfig {}

/// What a source reads, borrowed from its [`SourceConfig`].
#[derive(Debug, Clone, Copy)]
pub enum SourceKind<'a> {
    Generator(&'a GeneratorConfig),
    File(&'a FileConfig),
    Kinesis(&'a KinesisConfig),
    Http(&'a HttpConfig),
    InProcess(&'a InProcessConfig),
    Push(&'a PushConfig),
}

impl SourceConfig {
    /// The one kind this source has; `Err(n)` when `n != 1` kinds are set.
    pub fn kind(&self) -> Result<SourceKind<'_>, usize> {
        let kinds: Vec<SourceKind> = [
            self.generator.as_ref().map(SourceKind::Generator),
            self.file.as_ref().map(SourceKind::File),
            self.kinesis.as_ref().map(SourceKind::Kinesis),
            self.http.as_ref().map(SourceKind::Http),
            self.in_process.as_ref().map(SourceKind::InProcess),
            self.push.as_ref().map(SourceKind::Push),
        ]
        .into_iter()
        .flatten()
        .collect();
        match kinds[..] {
            [k] => Ok(k),
            _ => Err(kinds.len()),
        }
    }

    /// Whether the source resumes from checkpoints and cannot run without `state.dir`.
    pub fn needs_state(&self) -> bool {
        matches!(
            self.kind(),
            Ok(SourceKind::Kinesis(_) | SourceKind::Http(_) | SourceKind::Push(_))
        )
    }
}

fn default_batch_records() -> u32 {
    DEFAULT_BATCH_RECORDS
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Dotted path of a string field, e.g. `event_type` or `meta.kind`.
    pub field: String,
    /// Field value → table name.
    pub tables: std::collections::BTreeMap<String, String>,
    /// What to do with a record whose value is missing or not in `tables`.
    #[serde(default)]
    pub unmatched: Unmatched,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Unmatched {
    /// Quarantine with rule `unmatched_route`.
    #[default]
    Quarantine,
    /// Count as dropped (the audit says so) and move on.
    Drop,
    /// Send to this table.
    Table(String),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneratorConfig {
    pub partitions: u32,
    /// Total records over all partitions (0 = unbounded; then `duration_ms` must be set).
    pub records: u64,
    /// Stop after this long (0 = no time bound).
    pub duration_ms: u64,
    /// Total records per second over all partitions (0 = as fast as possible).
    pub rate_per_s: u64,
    /// Share of bad records, each kind in turn.
    pub bad_ratio: f64,
    pub seed: u64,
    /// Key id used to encrypt (must be in the keyring).
    pub key_id: String,
    /// Event times are at most this many seconds before `start_time`.
    pub event_time_spread_s: u64,
    /// RFC 3339 base of event times; default: the moment the run starts. Set it to make two
    /// runs produce identical records.
    pub start_time: Option<String>,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            partitions: DEFAULT_GENERATOR_PARTITIONS,
            records: DEFAULT_GENERATOR_RECORDS,
            duration_ms: 0,
            rate_per_s: 0,
            bad_ratio: DEFAULT_GENERATOR_BAD_RATIO,
            seed: DEFAULT_GENERATOR_SEED,
            key_id: DEFAULT_GENERATOR_KEY_ID.into(),
            event_time_spread_s: DEFAULT_GENERATOR_EVENT_TIME_SPREAD_S,
            start_time: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// Detect per file: LZ4 frame (a RAW segment), `SGF1` framed stream, else NDJSON.
    #[default]
    Auto,
    /// One record per line.
    Ndjson,
    /// `SGF1` length-prefixed frames (see `source::framing`), optionally inside an LZ4 frame.
    Framed,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Files, or directories walked recursively (names starting with `.` or `_` are skipped).
    pub paths: Vec<PathBuf>,
    #[serde(default)]
    pub framing: Framing,
    #[serde(default = "default_split_bytes")]
    pub split_bytes: u64,
}

fn default_split_bytes() -> u64 {
    DEFAULT_FILE_SPLIT_BYTES
}

impl SourceConfig {
    /// Whether source `s` may send records to table `table`.
    pub fn feeds(&self, table: &str) -> bool {
        self.table.as_deref() == Some(table)
            || self.route.as_ref().is_some_and(|r| {
                r.tables.values().any(|t| t == table) || r.unmatched == Unmatched::Table(table.to_string())
            })
    }
}

pub(super) fn validate(s: &SourceConfig, p: &str, tables: &HashSet<&str>, v: &mut Validator) {
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
        Ok(SourceKind::Push(push)) => {
            v.range_u64(&format!("{p}.push.partitions"), push.partitions.into(), 0, 4096, plain);
            v.range_u64(
                &format!("{p}.push.queue_bytes_max"),
                push.queue_bytes_max,
                MIB,
                1 << 40,
                bytes_human,
            );
        }
        Err(0) => v.error(
            p,
            "set exactly one of [generator], [file], [kinesis], [http], [in_process] or [push]",
        ),
        Err(_) => v.error(
            p,
            "set exactly one of [generator], [file], [kinesis], [http], [in_process] or [push], not several",
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
