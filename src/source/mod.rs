//! Sources: where records come from, in batches, with positions.
//!
//! A [`Source`] lists its partitions (generator streams, file splits, Kinesis shards, the HTTP
//! receiver's per-core inboxes) and opens a [`PartitionReader`] for one of them on the core that owns it.
//! The reader's contract is a simple loop (Quickwit's `emit_batches`): each `fetch` appends up
//! to `max_records` payloads, exactly as received, to a [`FetchBatch`] and says whether more
//! may come. Positions are per partition, strictly increasing, and `next_position` is where a
//! restart resumes; the core checkpoints a position only once everything before it is durable.
//! A source whose own cursor is not a `u64` (a Kinesis sequence number) also sets the batch's
//! `cursor`: the checkpoint stores it beside the position ([`Resume`]), and `open` gets both
//! back, so positions stay the same across restarts while the source resumes by its own cursor.
//!
//! Invariants:
//! - A reader is owned by one core for its whole life (readers need not be `Send`).
//! - A batch never holds a payload longer than [`RECORD_BYTES_MAX`]: a longer one is cut to that
//!   size and carries a `framing` [`Reject`], so it reaches quarantine instead of memory.
//! - A batch stops growing at [`BATCH_BYTES_MAX`] (or `max_records`, whichever comes first).
//! - `fetch` never blocks for long: a reader with nothing to give returns [`Fetch::Idle`].

pub mod file;
pub mod framing;
pub mod generator;
pub mod http;
pub mod kinesis;
pub mod push;

use crate::clock::Clock;
use crate::extract::{Reject, RECORD_BYTES_MAX};
use crate::lineage::Resume;
use std::time::Duration;

/// Payload bytes after which a reader ends its batch: a batch of large records stays a few
/// milliseconds of work, and record offsets within it always fit a `u32`.
pub const BATCH_BYTES_MAX: usize = 16 << 20;

/// One partition of a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Stable id: the generator's stream number, a file path (`#offset` for a split).
    pub id: String,
    /// Dense number within the source (0, 1, 2, …), the input of core placement.
    pub ordinal: u64,
}

/// One payload of a batch: `data[start..start + len]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordSpan {
    pub start: u32,
    pub len: u32,
    /// The record's position (generator sequence number, byte offset in a file).
    pub position: u64,
    /// Set when the source already knows the record is bad (oversized, corrupt framing).
    pub reject: Option<Box<Reject>>,
}

/// A batch of payloads as received, back to back in one buffer (reused across fetches).
#[derive(Debug, Default)]
pub struct FetchBatch {
    pub data: Vec<u8>,
    pub records: Vec<RecordSpan>,
    /// Position to resume from once every record of this batch is durable.
    pub next_position: u64,
    /// The source's own cursor at the same point, if positions alone cannot say where to resume.
    pub cursor: Option<String>,
}

impl FetchBatch {
    pub fn clear(&mut self) {
        self.data.clear();
        self.records.clear();
    }

    /// Append one payload (cut to [`RECORD_BYTES_MAX`] with a `framing` reject if longer).
    pub fn push(&mut self, payload: &[u8], position: u64, reject: Option<Reject>) {
        let keep = payload.len().min(RECORD_BYTES_MAX);
        let start = self.data.len();
        self.data.extend_from_slice(&payload[..keep]);
        self.records.push(RecordSpan {
            start: start as u32,
            len: keep as u32,
            position,
            reject: reject.map(Box::new),
        });
    }

    /// Whether the batch has reached [`BATCH_BYTES_MAX`].
    pub fn is_full(&self) -> bool {
        self.data.len() >= BATCH_BYTES_MAX
    }

    pub fn payload(&self, r: &RecordSpan) -> &[u8] {
        &self.data[r.start as usize..(r.start + r.len) as usize]
    }
}

/// What a fetch produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// The batch holds at least one record.
    Records,
    /// Nothing now; ask again after about this long.
    Idle(Duration),
    /// The partition is finished (the batch may still hold a last set of records).
    End,
}

#[derive(Debug, thiserror::Error)]
#[error("source {source_name}, partition {partition}: {message}")]
pub struct SourceError {
    pub source_name: String,
    pub partition: String,
    pub message: String,
}

pub trait Source: Send + Sync {
    fn name(&self) -> &str;
    fn partitions(&self) -> Result<Vec<PartitionInfo>, SourceError>;
    /// Where a partition without a checkpoint starts, when that must be fixed before it is
    /// first read (a start like "the latest record" would move on a restart): the engine
    /// checkpoints it before any core opens the partition. `None`: the start is fixed already.
    fn anchor(&self, _partition: &PartitionInfo, _now_us: i64) -> Option<Resume> {
        None
    }
    /// How often the engine lists the partitions again to find new ones (Kinesis child
    /// shards); `None`: the partitions are fixed at the start.
    fn discovery_interval(&self) -> Option<Duration> {
        None
    }
    /// Checks that only a real run makes (the HTTP receiver's address is free), before any
    /// core starts; `validate` builds sources without them.
    fn preflight(&self) -> Result<(), SourceError> {
        Ok(())
    }
    /// Open a reader at `resume` (from a checkpoint) or at the beginning.
    fn open(&self, partition: &PartitionInfo, resume: Option<&Resume>)
        -> Result<Box<dyn PartitionReader>, SourceError>;
}

pub trait PartitionReader {
    /// Clear `batch`, then fill it with up to `max_records` payloads.
    fn fetch(&mut self, batch: &mut FetchBatch, max_records: usize, clock: &dyn Clock) -> Result<Fetch, SourceError>;
    /// How far behind the newest record of its partition the reader is (Kinesis
    /// MillisBehindLatest), if the source says.
    fn lag_ms(&self) -> Option<u64> {
        None
    }
    /// Why the partition cannot take new input now, if it cannot (an HTTP inbox whose disk
    /// is full): the core reports it as a problem, and `/ready` is false until it clears.
    /// Called after every fetch: must not allocate when all is well.
    fn unable(&self) -> Option<String> {
        None
    }
    /// What happened at the source's edge since the last call of this method.
    fn take_stats(&mut self) -> ReaderStats {
        ReaderStats::default()
    }
    /// The run is stopping: take no new input. Returns whether the reader still holds input it
    /// accepted (the HTTP receiver's acknowledged requests): then the core keeps fetching until
    /// [`Fetch::End`] before it drains. Others stop where they are (their source keeps the rest).
    fn finish(&mut self) -> bool {
        false
    }
    /// Every record before `position` is durable and checkpointed: a source that keeps its own
    /// copy (the HTTP inbox) may let it go.
    fn checkpointed(&mut self, _position: u64) {}
    /// Whether [`PartitionReader::checkpointed`] matters to this reader: only such readers are
    /// kept after their partition ends, to hear of the drain's last checkpoint (a run over a
    /// million files must not keep a million readers).
    fn wants_checkpoints(&self) -> bool {
        false
    }
}

/// Counts a reader reports at its edge (summed into the core's counters).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReaderStats {
    /// Calls the source throttled (Kinesis ProvisionedThroughputExceeded and kin), retried.
    pub throttles: u64,
    /// Requests a push source answered 200, and answered with an error (4xx/5xx).
    pub requests_accepted: u64,
    pub requests_refused: u64,
}
