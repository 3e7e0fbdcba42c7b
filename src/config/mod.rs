//! Typed configuration: one TOML file, every key known, every default named.
//!
//! Owns: the config structs (`*Config`), their `DEFAULT_*` constants, parsing and validation.
//!
//! Invariants:
//! - Unknown keys are rejected (`deny_unknown_fields` on every table), so a typo never silently
//!   falls back to a default.
//! - Every error names the key path, the rule and the value, e.g.
//!   `buffer.flush_bytes_max: must be at least 1 MiB, got 12`. Parse errors take their path from
//!   `serde_path_to_error`; semantic errors are built by [`Validator`] with the same shape.
//! - A [`Config`] that left [`Config::validate`] is internally consistent: sources name tables
//!   that exist, table names are unique, bounds hold. Later stages may `expect` on that.
//!
//! Bounds: every numeric key has a minimum and maximum checked here; the constants below say
//! why each one is what it is.

mod admin;
mod http;
mod kinesis;
mod validate;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use admin::*;
pub use http::*;
pub use kinesis::*;
pub use validate::Validator;

/// Bytes in a mebibyte, for readable bounds.
pub const MIB: u64 = 1 << 20;

/// Where the embedded default writes when neither `--lake` nor `lake.dir` is given.
pub const DEFAULT_LAKE_DIR: &str = "./lake";
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

/// Seal a partition buffer when its in-memory size reaches this: 64 MiB of columns encodes to
/// a Parquet file of a few MiB, the smallest size that S3 readers scan efficiently.
pub const DEFAULT_FLUSH_BYTES_MAX: u64 = 64 * MIB;
/// Seal a partition buffer when it holds this many records.
pub const DEFAULT_FLUSH_RECORDS_MAX: u64 = 1_000_000;
/// Seal a partition buffer when its first record is this old: the upper bound on how stale the
/// lake is while a partition is quiet (Firehose's buffer interval plays the same role).
pub const DEFAULT_FLUSH_INTERVAL_MS: u64 = 60_000;
/// Per-core budget of the record ring (archived records and their index). Room for a few
/// buffers at `flush_bytes_max` while the encoder works on others; above it a core stops
/// fetching and seals the buffers holding its oldest records.
pub const DEFAULT_MEMORY_BYTES_MAX: u64 = 256 * MIB;
/// Per-core budget of spill files; with memory and spill both full, a core stops fetching.
pub const DEFAULT_SPILL_BYTES_MAX: u64 = 4096 * MIB;
/// Open partition buffers per core; opening one more seals the least recently written.
pub const DEFAULT_OPEN_PARTITIONS_MAX: u64 = 1024;
/// Bytes of files waiting for the store a core keeps in memory; past it they are parked on
/// disk (under the spill budget).
pub const DEFAULT_OUTBOX_MEMORY_BYTES_MAX: u64 = 16 * MIB;
/// Memory of the bookkeeping of files the store has not acknowledged (audit rows, position
/// runs) a core keeps; past it the core stops fetching.
pub const DEFAULT_OUTBOX_BOOKKEEPING_BYTES_MAX: u64 = 16 * MIB;
/// Submissions to the store a core may have unacknowledged; past it the core stops fetching.
pub const DEFAULT_OUTBOX_ENTRIES_MAX: u64 = 4096;

/// Records older than this (event time before ingest time) are quarantined: a partition this
/// old is closed in most lakes, and accepting them would rewrite history silently.
pub const DEFAULT_EVENT_TIME_LATE_MAX_S: u64 = 7 * 24 * 3600;
/// Records further in the future than this are quarantined: clock skew beyond an hour is a
/// producer bug, not an event.
pub const DEFAULT_EVENT_TIME_FUTURE_MAX_S: u64 = 3600;

/// zstd level of the Parquet pages: level 1 is ~3x faster to write than 3 for a few percent size.
pub const DEFAULT_PARQUET_ZSTD_LEVEL: i32 = 1;
/// Rows per Parquet row group: readers parallelise by row group, and 256 Ki rows of ~600 bytes
/// keep the writer's working set near 150 MiB in the worst case.
pub const DEFAULT_PARQUET_ROW_GROUP_ROWS_MAX: u64 = 256 * 1024;
/// Parquet data page size limit (the parquet crate's own default, stated explicitly).
pub const DEFAULT_PARQUET_DATA_PAGE_BYTES_MAX: u64 = MIB;
/// Dictionary-encode columns (high-repetition strings like country and event type shrink ~10x).
pub const DEFAULT_PARQUET_DICTIONARY: bool = true;

/// Roll a RAW segment at this many compressed bytes. Segments are per source partition, so
/// this times the partitions of a core is what RAW holds in memory: 16 MiB keeps 64 shards
/// per core at 1 GiB, and is still large enough for cheap object-store PUTs.
pub const DEFAULT_RAW_SEGMENT_BYTES_MAX: u64 = 16 * MIB;
/// Roll a RAW segment at this age, so backfill material reaches the lake promptly.
pub const DEFAULT_RAW_SEGMENT_INTERVAL_MS: u64 = 60_000;
/// Per core: bytes of open RAW segments. Past it, the segment just written to is sealed early,
/// so RAW memory does not grow with the number of source partitions a core owns.
pub const DEFAULT_RAW_MEMORY_BYTES_MAX: u64 = 64 * MIB;

/// zstd level of quarantine files (rare, small, kept long: favour ratio).
pub const DEFAULT_QUARANTINE_ZSTD_LEVEL: i32 = 3;
/// Roll a quarantine file at this many uncompressed bytes.
pub const DEFAULT_QUARANTINE_FILE_BYTES_MAX: u64 = 16 * MIB;
/// Roll a quarantine file at this age.
pub const DEFAULT_QUARANTINE_INTERVAL_MS: u64 = 60_000;

/// Flush the audit rows of a core at this age (and always on drain).
pub const DEFAULT_AUDIT_INTERVAL_MS: u64 = 30_000;

/// Memory glommio registers with io_uring per executor. Small on purpose: a non-root user needs
/// RLIMIT_MEMLOCK of about 3x this per core, and the default limit is 8 MiB.
pub const DEFAULT_IO_MEMORY_BYTES: u64 = MIB;

/// Time one record in this many through every stage (HDR histograms). Timing every record
/// would cost ~5 clock reads per record; 1 in 16 keeps tails well sampled at ~0.3% cost.
pub const DEFAULT_LATENCY_SAMPLE_EVERY: u32 = 16;

/// Records sampled to infer a schema when a table says `schema = "infer"`.
pub const DEFAULT_INFER_RECORDS: u32 = 1_000;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub runtime: RuntimeConfig,
    #[serde(default)]
    pub lake: LakeConfig,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub keys: KeysConfig,
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub tables: Vec<TableConfig>,
    #[serde(default)]
    pub partitioning: PartitioningConfig,
    #[serde(default)]
    pub buffer: BufferConfig,
    #[serde(default)]
    pub parquet: ParquetConfig,
    #[serde(default)]
    pub raw: RawConfig,
    #[serde(default)]
    pub quarantine: QuarantineConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// The admin endpoint; absent: off.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
}

/// `cores = "all"` or `cores = [0, 1]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum CoresConfig {
    Named(String),
    List(Vec<usize>),
}

impl Default for CoresConfig {
    fn default() -> Self {
        CoresConfig::Named("all".into())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Which CPUs run a data-plane executor: `"all"` (every CPU this process may run on) or a list.
    pub cores: CoresConfig,
    pub io_memory_bytes: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cores: CoresConfig::default(),
            io_memory_bytes: DEFAULT_IO_MEMORY_BYTES,
        }
    }
}

/// The object store the zones are written to: a local directory (the embedded default), or
/// S3 (any S3-compatible endpoint) when `[lake.s3]` is present.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// The local directory (ignored with `[lake.s3]`).
    pub dir: PathBuf,
    /// Key prefix inside the store, without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// Local directory: fsync every file and its directory before reporting it durable.
    pub fsync: bool,
    /// Files written at once, over all cores (the I/O edge's workers).
    pub uploads_max: u32,
    /// How long a file keeps being retried on retryable errors (throttling, 5xx, timeouts,
    /// connection refused) before the run fails; meanwhile the buffers spill and the sources
    /// slow down.
    pub retry_for_ms: u64,
    pub s3: Option<S3Config>,
}

/// Files written at once over all cores.
pub const DEFAULT_UPLOADS_MAX: u32 = 8;
/// Retry a failing file for up to one hour (Firehose retries for up to 24 h; a store down for an
/// hour is an incident someone should see as a failed run, with nothing lost).
pub const DEFAULT_RETRY_FOR_MS: u64 = 3_600_000;

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            dir: PathBuf::from(DEFAULT_LAKE_DIR),
            prefix: String::new(),
            fsync: true,
            uploads_max: DEFAULT_UPLOADS_MAX,
            retry_for_ms: DEFAULT_RETRY_FOR_MS,
            s3: None,
        }
    }
}

/// S3 or an S3-compatible store. Credentials come from the standard AWS provider chain
/// (environment, shared profile, web identity, ECS/EC2 instance role).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    pub bucket: String,
    /// Region; empty: from the provider chain (`AWS_REGION`, profile), else `us-east-1`.
    pub region: String,
    /// Endpoint override, e.g. `http://127.0.0.1:8014` for a local S3-compatible server.
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most local servers need.
    pub path_style: bool,
    /// Server-side encryption: `none`, `s3` (SSE-S3, AES256) or `kms` (SSE-KMS).
    pub sse: Sse,
    /// KMS key id or ARN for `sse = "kms"` (empty: the bucket's AWS-managed key).
    pub kms_key_id: String,
    /// Files at least this big go up as multipart uploads; smaller ones as one PUT.
    pub multipart_threshold_bytes: u64,
    /// Size of each part but the last (S3 allows 5 MiB to 5 GiB).
    pub part_bytes: u64,
    /// Parts of one file uploaded at once.
    pub parts_in_flight_max: u32,
    /// Attempts per request inside the SDK (standard retry mode: exponential backoff with
    /// jitter on throttling, 5xx and timeouts); the edge retries the whole file after that.
    pub attempts_max: u32,
    /// Per attempt: connect plus response within this time, else it is a retryable timeout.
    pub attempt_timeout_ms: u64,
    /// Whether uploads carry the SHA-256 of their body in their SigV4 signature.
    pub payload_signing: PayloadSigning,
}

/// SigV4 payload signing of uploads (PutObject, UploadPart). The body's SHA-256 costs a pass
/// over every byte on both ends (a third of all CPU of the embedded default against a local
/// S3-compatible server without SHA instructions); every upload also carries a CRC32C that S3
/// checks, so integrity holds either way, and over TLS so does authenticity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadSigning {
    /// Sign over plain HTTP only, not over HTTPS: what the AWS CLI and boto3 do.
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sse {
    None,
    S3,
    Kms,
}

pub const DEFAULT_S3_MULTIPART_THRESHOLD_BYTES: u64 = 16 * MIB;
pub const DEFAULT_S3_PART_BYTES: u64 = 8 * MIB;
pub const DEFAULT_S3_PARTS_IN_FLIGHT_MAX: u32 = 4;
pub const DEFAULT_S3_ATTEMPTS_MAX: u32 = 3;
pub const DEFAULT_S3_ATTEMPT_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_S3_PAYLOAD_SIGNING: PayloadSigning = PayloadSigning::Auto;
/// S3's smallest part (all but the last).
pub const S3_PART_BYTES_MIN: u64 = 5 * MIB;

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            bucket: String::new(),
            region: String::new(),
            endpoint: None,
            path_style: false,
            sse: Sse::None,
            kms_key_id: String::new(),
            multipart_threshold_bytes: DEFAULT_S3_MULTIPART_THRESHOLD_BYTES,
            part_bytes: DEFAULT_S3_PART_BYTES,
            parts_in_flight_max: DEFAULT_S3_PARTS_IN_FLIGHT_MAX,
            attempts_max: DEFAULT_S3_ATTEMPTS_MAX,
            attempt_timeout_ms: DEFAULT_S3_ATTEMPT_TIMEOUT_MS,
            payload_signing: DEFAULT_S3_PAYLOAD_SIGNING,
        }
    }
}

/// Local state: source checkpoints. Without `dir`, no checkpoint is read or written and every
/// source starts from its beginning (the embedded default, which generates fresh data each run).
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    pub dir: Option<PathBuf>,
}

/// Where the keyring comes from: a file, an environment variable, or (if neither) the built-in
/// demo key only. Both may be given; ids must not collide.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    pub file: Option<PathBuf>,
    pub env: Option<String>,
    /// Also load the built-in, publicly known `demo` key. Only for trying sluicegate out.
    #[serde(default)]
    pub demo: bool,
    /// Refuse a keyring `file` that group or others may read or write (as ssh does with
    /// private keys). On by default.
    #[serde(default = "yes")]
    pub file_mode_check: bool,
}

fn yes() -> bool {
    true
}

impl Default for KeysConfig {
    fn default() -> KeysConfig {
        KeysConfig {
            file: None,
            env: None,
            demo: false,
            file_mode_check: true,
        }
    }
}

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
        matches!(self.kind(), Ok(SourceKind::Kinesis(_) | SourceKind::Http(_)))
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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BufferConfig {
    pub flush_bytes_max: u64,
    pub flush_records_max: u64,
    pub flush_interval_ms: u64,
    pub memory_bytes_max: u64,
    pub open_partitions_max: u64,
    /// Where ring segments spill; default `<state.dir>/spill`. No spill without either.
    pub spill_dir: Option<PathBuf>,
    pub spill_bytes_max: u64,
    pub outbox_memory_bytes_max: u64,
    pub outbox_bookkeeping_bytes_max: u64,
    pub outbox_entries_max: u64,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            flush_bytes_max: DEFAULT_FLUSH_BYTES_MAX,
            flush_records_max: DEFAULT_FLUSH_RECORDS_MAX,
            flush_interval_ms: DEFAULT_FLUSH_INTERVAL_MS,
            memory_bytes_max: DEFAULT_MEMORY_BYTES_MAX,
            open_partitions_max: DEFAULT_OPEN_PARTITIONS_MAX,
            spill_dir: None,
            spill_bytes_max: DEFAULT_SPILL_BYTES_MAX,
            outbox_memory_bytes_max: DEFAULT_OUTBOX_MEMORY_BYTES_MAX,
            outbox_bookkeeping_bytes_max: DEFAULT_OUTBOX_BOOKKEEPING_BYTES_MAX,
            outbox_entries_max: DEFAULT_OUTBOX_ENTRIES_MAX,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Statistics {
    None,
    Chunk,
    /// Column-chunk and page statistics (min/max per page: page skipping in readers).
    #[default]
    Page,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParquetConfig {
    pub zstd_level: i32,
    pub row_group_rows_max: u64,
    pub data_page_bytes_max: u64,
    pub dictionary: bool,
    pub statistics: Statistics,
}

impl Default for ParquetConfig {
    fn default() -> Self {
        ParquetConfig {
            zstd_level: DEFAULT_PARQUET_ZSTD_LEVEL,
            row_group_rows_max: DEFAULT_PARQUET_ROW_GROUP_ROWS_MAX,
            data_page_bytes_max: DEFAULT_PARQUET_DATA_PAGE_BYTES_MAX,
            dictionary: DEFAULT_PARQUET_DICTIONARY,
            statistics: Statistics::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub enabled: bool,
    pub segment_bytes_max: u64,
    pub segment_interval_ms: u64,
    pub memory_bytes_max: u64,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            enabled: true,
            segment_bytes_max: DEFAULT_RAW_SEGMENT_BYTES_MAX,
            segment_interval_ms: DEFAULT_RAW_SEGMENT_INTERVAL_MS,
            memory_bytes_max: DEFAULT_RAW_MEMORY_BYTES_MAX,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuarantineConfig {
    pub zstd_level: i32,
    pub file_bytes_max: u64,
    pub interval_ms: u64,
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        QuarantineConfig {
            zstd_level: DEFAULT_QUARANTINE_ZSTD_LEVEL,
            file_bytes_max: DEFAULT_QUARANTINE_FILE_BYTES_MAX,
            interval_ms: DEFAULT_QUARANTINE_INTERVAL_MS,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    pub interval_ms: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            interval_ms: DEFAULT_AUDIT_INTERVAL_MS,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub latency_sample_every: u32,
    /// Print a progress line while running, when standard error is a terminal.
    pub progress: bool,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            latency_sample_every: DEFAULT_LATENCY_SAMPLE_EVERY,
            progress: true,
        }
    }
}

/// A configuration error: `path: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// Dotted key path, e.g. `buffer.flush_bytes_max` or `sources[0].file.paths`.
    pub path: String,
    pub message: String,
}

/// Every error found, so a user fixes a file in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Parse TOML text; errors carry the key path. Relative paths in the file are resolved
    /// against `base_dir` (the config file's directory).
    pub fn from_toml(text: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
        let de = toml::Deserializer::parse(text).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                path: "<file>".into(),
                message: format!("not valid TOML: {}", e.message()),
            }])
        })?;
        let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let message = e.into_inner().message().to_string();
            ConfigErrors(vec![ConfigError { path, message }])
        })?;
        config.resolve_paths(base_dir);
        Ok(config)
    }

    /// Read and parse a config file, then validate it.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                path: path.display().to_string(),
                message: format!("cannot read config file: {e}"),
            }])
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let config = Config::from_toml(&text, base)?;
        config.validate()?;
        Ok(config)
    }

    /// The embedded default: a generator of `records` records (1% bad) into a local lake.
    pub fn embedded_default(records: u64, lake_dir: &Path) -> Config {
        let mut config = Config {
            lake: LakeConfig {
                dir: lake_dir.to_path_buf(),
                ..LakeConfig::default()
            },
            keys: KeysConfig {
                demo: true,
                ..KeysConfig::default()
            },
            ..Config::default()
        };
        config.sources.push(SourceConfig {
            name: "generator".into(),
            encryption: Encryption::Envelope,
            table: Some("events".into()),
            route: None,
            batch_records: DEFAULT_BATCH_RECORDS,
            generator: Some(GeneratorConfig {
                records,
                ..GeneratorConfig::default()
            }),
            file: None,
            kinesis: None,
            http: None,
            in_process: None,
        });
        config.tables.push(TableConfig {
            name: "events".into(),
            schema: crate::source::generator::BUILTIN_SCHEMA_NAME.into(),
            event_time: Some("ts".into()),
            infer_records: DEFAULT_INFER_RECORDS,
            transforms: vec![TransformConfig::IngestMetadata],
        });
        config
    }

    fn resolve_paths(&mut self, base: &Path) {
        let join = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        join(&mut self.lake.dir);
        if let Some(d) = self.state.dir.as_mut() {
            join(d);
        }
        if let Some(d) = self.buffer.spill_dir.as_mut() {
            join(d);
        }
        if let Some(f) = self.keys.file.as_mut() {
            join(f);
        }
        for s in &mut self.sources {
            if let Some(file) = s.file.as_mut() {
                file.paths.iter_mut().for_each(join);
            }
        }
        for t in &mut self.tables {
            if t.schema != "infer" && !t.schema.starts_with(crate::source::generator::BUILTIN_PREFIX) {
                let p = Path::new(&t.schema);
                if p.is_relative() {
                    t.schema = base.join(p).display().to_string();
                }
            }
        }
    }

    /// Check every semantic rule; all violations are reported together.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut v = Validator::default();
        validate::config(self, &mut v);
        v.finish()
    }
}

#[cfg(test)]
mod tests;
