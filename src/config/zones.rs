//! `[parquet]`, `[raw]`, `[quarantine]`, `[audit]`: how each zone of the lake is written.
//!
//! Owns: those keys, their `DEFAULT_*` constants and their validation.

use super::validator::{bytes_human, plain, Validator};
use super::MIB;
use serde::{Deserialize, Serialize};

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

pub(super) fn validate_parquet(p: &ParquetConfig, v: &mut Validator) {
    if !(1..=22).contains(&p.zstd_level) {
        v.error(
            "parquet.zstd_level",
            format!("must be between 1 and 22, got {}", p.zstd_level),
        );
    }
    v.range_u64(
        "parquet.row_group_rows_max",
        p.row_group_rows_max,
        1024,
        64 * 1024 * 1024,
        plain,
    );
    v.range_u64(
        "parquet.data_page_bytes_max",
        p.data_page_bytes_max,
        4096,
        256 * MIB,
        bytes_human,
    );
}

pub(super) fn validate_raw(r: &RawConfig, v: &mut Validator) {
    v.range_u64(
        "raw.segment_bytes_max",
        r.segment_bytes_max,
        MIB,
        4096 * MIB,
        bytes_human,
    );
    v.range_u64("raw.memory_bytes_max", r.memory_bytes_max, MIB, 1 << 40, bytes_human);
    v.range_u64(
        "raw.segment_interval_ms",
        r.segment_interval_ms,
        100,
        24 * 3600 * 1000,
        plain,
    );
}

pub(super) fn validate_quarantine(q: &QuarantineConfig, v: &mut Validator) {
    if !(1..=22).contains(&q.zstd_level) {
        v.error(
            "quarantine.zstd_level",
            format!("must be between 1 and 22, got {}", q.zstd_level),
        );
    }
    v.range_u64(
        "quarantine.file_bytes_max",
        q.file_bytes_max,
        64 * 1024,
        4096 * MIB,
        bytes_human,
    );
    v.range_u64("quarantine.interval_ms", q.interval_ms, 100, 24 * 3600 * 1000, plain);
}

pub(super) fn validate_audit(a: &AuditConfig, v: &mut Validator) {
    v.range_u64("audit.interval_ms", a.interval_ms, 100, 24 * 3600 * 1000, plain);
}
