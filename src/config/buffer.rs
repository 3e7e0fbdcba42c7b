//! `[buffer]`: the per-core ring, its seal policy, its spill and the outbox.
//!
//! Owns: those keys, their `DEFAULT_*` constants and their validation.

use super::validator::{bytes_human, plain, Validator};
use super::MIB;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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

pub(super) fn validate(b: &BufferConfig, v: &mut Validator) {
    // A buffer below 1 MiB makes Parquet files too small to scan efficiently; above 4 GiB one
    // buffer could hold a core's whole memory.
    v.range_u64(
        "buffer.flush_bytes_max",
        b.flush_bytes_max,
        MIB,
        4096 * MIB,
        bytes_human,
    );
    v.range_u64("buffer.flush_records_max", b.flush_records_max, 1, 100_000_000, plain);
    // Below 16 MiB a core could not hold one ring segment per table while encoding another.
    v.range_u64(
        "buffer.memory_bytes_max",
        b.memory_bytes_max,
        16 * MIB,
        1 << 40,
        bytes_human,
    );
    v.range_u64(
        "buffer.spill_bytes_max",
        b.spill_bytes_max,
        16 * MIB,
        1 << 50,
        bytes_human,
    );
    // Below 1 MiB every file the store is slow to take would be parked on disk.
    v.range_u64(
        "buffer.outbox_memory_bytes_max",
        b.outbox_memory_bytes_max,
        MIB,
        1 << 40,
        bytes_human,
    );
    v.range_u64(
        "buffer.outbox_bookkeeping_bytes_max",
        b.outbox_bookkeeping_bytes_max,
        MIB,
        1 << 40,
        bytes_human,
    );
    // Below 64 a core could not keep its files, RAW segments and checkpoints moving while one
    // upload is retried.
    v.range_u64("buffer.outbox_entries_max", b.outbox_entries_max, 64, 10_000_000, plain);
    v.range_u64(
        "buffer.open_partitions_max",
        b.open_partitions_max,
        1,
        10_000_000,
        plain,
    );
    v.range_u64(
        "buffer.flush_interval_ms",
        b.flush_interval_ms,
        100,
        24 * 3600 * 1000,
        plain,
    );
}
