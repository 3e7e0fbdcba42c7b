//! The pipeline of one core, wired in one place: raw backup → extract → transform → buffer,
//! with quarantine beside every stage, and the bookkeeping that follows a file to durability
//! (audit rows, position tracking).
//!
//! ```text
//! FetchBatch ─► RawSegments ─► per record: record::process ──► BufferSet ──► Sealed ─► (encode)
//!                                 │ decrypt, parse, route,           │
//!                                 │ flatten, schema, transform,      └─ QuarantineFiles ◄─ any Reject
//!                                 │ partition
//! ReadyFile ─► (store) ─► on_durable: audit file row, tracker release ─► checkpoint
//! ```
//!
//! Everything here is synchronous and single-threaded: `runtime::core` drives it from the
//! core's async tasks, and tests drive it directly. The [`Plan`] is shared read-only by all
//! cores; everything mutable is per core.
//!
//! Invariants:
//! - every record of a batch ends in exactly one place: a buffer (ETL), a quarantine file, or
//!   the dropped counter; the batch's fetch audit row says how many went where;
//! - an output holds (tracker) every batch it has records of until its file is durable.

mod buffering;
mod durability;
pub mod record;
mod retiring;
pub mod tracker;

use crate::audit::{AuditLog, FetchRow, FileRow};
use crate::buffer::{BufferSet, SealPolicy, Sealed};
use crate::clock::Clock;
use crate::config::Encryption;
use crate::extract::keyring::Keyring;
use crate::extract::schema::Schema;
use crate::extract::timestamp::{hour_bucket, rfc3339};
use crate::extract::Reject;
use crate::lineage::{Due, Origin, Skip};
use crate::load::layout::{file_name, Layout};
use crate::load::quarantine::{encode_payload, QuarantineFiles, QuarantineLine};
use crate::load::raw::RawSegments;
use crate::load::{FileMeta, ReadyFile, Zone};
use crate::source::{FetchBatch, RecordSpan};
use crate::store::checkpoint::Checkpoint;
use crate::telemetry::{Counters, StageHistograms, StageId};
use crate::transform::route::Router;
use crate::transform::Transforms;
use arrow_schema::SchemaRef;
use parquet::file::properties::WriterProperties;
use std::sync::Arc;
use tracker::Tracker;

/// A table, compiled.
#[derive(Clone)]
pub struct TablePlan {
    pub name: String,
    pub schema: Schema,
    pub schema_version: u32,
    /// Input column that decides `dt`/`hr` (a timestamp), if any.
    pub event_time: Option<usize>,
    pub transforms: Transforms,
    pub arrow_schema: SchemaRef,
    pub writer_props: WriterProperties,
}

/// A source, compiled.
#[derive(Clone)]
pub struct SourcePlan {
    pub name: String,
    pub encryption: Encryption,
    pub router: Router,
    pub batch_records: usize,
}

/// Everything the cores need to know, read-only. Each core works on its own copy
/// ([`Plan::clone`] at start): nothing on the per-record path is shared between cores — a
/// shared `regex::Regex`, for one, hands its match caches out of a mutex-guarded pool to every
/// thread but the first that used it.
#[derive(Clone)]
pub struct Plan {
    pub run_id: String,
    pub layout: Layout,
    pub keyring: Arc<Keyring>,
    pub sources: Vec<SourcePlan>,
    pub tables: Vec<TablePlan>,
    pub event_time_late_max_us: i64,
    pub event_time_future_max_us: i64,
    pub seal: SealPolicy,
    pub raw_enabled: bool,
    pub raw_segment_bytes_max: u64,
    pub raw_memory_bytes_max: u64,
    pub raw_interval_ns: u64,
    pub quarantine_zstd_level: i32,
    pub quarantine_file_bytes_max: u64,
    pub quarantine_interval_ns: u64,
    pub audit_interval_ns: u64,
    pub audit_props: WriterProperties,
    pub latency_sample_every: u32,
    pub checkpoints_enabled: bool,
    /// Where ring segments spill (`None`: no spill; over budget, buffers are sealed early).
    pub spill_dir: Option<std::path::PathBuf>,
    pub spill_bytes_max: u64,
    /// What a core's outbox holds before it parks files or stops fetching.
    pub outbox: OutboxLimits,
}

/// What a core's outbox holds (`buffer.outbox_*`; defaults `config::DEFAULT_OUTBOX_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    /// Bytes of waiting files kept in memory; past it, files are parked on disk.
    pub memory_bytes_max: u64,
    /// Memory of unacknowledged files' bookkeeping; past it, submitting waits.
    pub bookkeeping_bytes_max: u64,
    /// Submissions unacknowledged (waiting, parked or at the edge); past it, submitting waits.
    pub entries_max: usize,
}

impl Default for OutboxLimits {
    fn default() -> OutboxLimits {
        use crate::config::{
            DEFAULT_OUTBOX_BOOKKEEPING_BYTES_MAX, DEFAULT_OUTBOX_ENTRIES_MAX, DEFAULT_OUTBOX_MEMORY_BYTES_MAX,
        };
        OutboxLimits {
            memory_bytes_max: DEFAULT_OUTBOX_MEMORY_BYTES_MAX,
            bookkeeping_bytes_max: DEFAULT_OUTBOX_BOOKKEEPING_BYTES_MAX,
            entries_max: DEFAULT_OUTBOX_ENTRIES_MAX as usize,
        }
    }
}

/// A batch being processed: its source, its tracker id, and when it arrived (wall and
/// monotonic time).
#[derive(Debug, Clone, Copy)]
struct BatchAt {
    source: u16,
    batch_id: u64,
    ingest_us: i64,
    now_ns: u64,
}

/// A partition owned by this core.
#[derive(Debug, Clone)]
pub struct OwnedPartition {
    pub source: u16,
    pub id: String,
    /// Ordinal of the partition's next record in this process (see `lineage::Provenance`).
    next_ordinal: u64,
    /// Positions already delivered by files of an earlier run (the delivery contract): the
    /// replay skips them.
    skip: Skip,
    /// The partition's last reported lag behind its newest record (Kinesis), in ms.
    lag_ms: u64,
    /// A checkpoint the store confirmed that the partition's reader has not been told of.
    checkpointed: Option<u64>,
}

/// Something the core must still do with an output.
pub enum Output {
    /// A sealed ETL buffer to encode, with its object key.
    Etl { sealed: Sealed, key: String },
    /// A file ready for the store.
    File(ReadyFile),
    /// Positions that became durable; write them once everything before is in the store.
    Checkpoint(Checkpoints),
    /// Upload intents no longer needed (see `delivery`): remove them.
    Retire(Vec<String>),
}

/// A checkpoint write: what to store, and the `(slot, next_position)`s it acknowledges.
#[derive(Debug)]
pub struct Checkpoints {
    pub checkpoints: Vec<Checkpoint>,
    pub slots: Vec<(usize, u64)>,
}

/// A file on its way to the store: what `on_durable` needs once the store confirms it.
#[derive(Debug)]
pub struct InFlightFile {
    pub meta: FileMeta,
    /// Its audit row, but for `written_at_us` (filled in when durable).
    pub row: FileRow,
    /// Whether an intent is recorded for it (ETL and quarantine files, with checkpoints on);
    /// the intent itself is built when the file goes to the edge ([`Pipeline::intent_for`]),
    /// so a file waiting in the outbox holds its runs once, not twice.
    pub intent: bool,
}

impl InFlightFile {
    /// Memory its bookkeeping holds, itself included (the outbox counts it while it waits).
    pub fn memory_bytes(&self) -> u64 {
        self.meta.memory_bytes()
            + (std::mem::size_of::<InFlightFile>() - std::mem::size_of::<FileMeta>()) as u64
            + self.row.text_bytes()
    }
}

/// Reusable per-record buffers (see `record`).
pub struct Work {
    /// The record being processed: copied payload, decrypted in place, then parsed in place.
    pub buf: Vec<u8>,
    pub json: simd_json::Buffers,
    /// Empty between records; its allocation is reused.
    pub tape: simd_json::tape::Tape<'static>,
    pub rows: Rows,
}

/// Per-record row state: where each column's value is on the tape, the typed inputs, the
/// outputs after transforms, and the scratch text they may point into.
pub struct Rows {
    pub slots: Vec<Option<u32>>,
    pub inputs: Vec<crate::extract::value::Val>,
    pub outputs: Vec<crate::extract::value::Val>,
    pub scratch: String,
}

impl Work {
    fn new(plan: &Plan) -> Work {
        let columns = plan.tables.iter().map(|t| t.schema.columns.len()).max().unwrap_or(0);
        let outputs = plan
            .tables
            .iter()
            .map(|t| t.transforms.outputs.len())
            .max()
            .unwrap_or(0);
        Work {
            buf: Vec::with_capacity(4096),
            json: simd_json::Buffers::new(4096),
            tape: simd_json::tape::Tape(Vec::new()),
            rows: Rows {
                slots: vec![None; columns],
                inputs: Vec::with_capacity(columns),
                outputs: Vec::with_capacity(outputs),
                scratch: String::with_capacity(1024),
            },
        }
    }
}

pub struct Pipeline {
    pub plan: Arc<Plan>,
    pub core: usize,
    clock: Arc<dyn Clock>,
    partitions: Vec<OwnedPartition>,
    work: Work,
    buffers: BufferSet,
    /// Spill files to delete (their segments are finished).
    spill_deletes: Vec<u64>,
    raw: RawSegments,
    quarantine: QuarantineFiles,
    audit: AuditLog,
    tracker: Tracker,
    retiring: retiring::Retiring,
    pub counters: Counters,
    pub hist: StageHistograms,
    sample_countdown: u32,
    file_seq: u64,
}

impl Pipeline {
    pub fn new(plan: Arc<Plan>, core: usize, clock: Arc<dyn Clock>) -> Pipeline {
        let tables = plan
            .tables
            .iter()
            .map(|t| {
                (
                    t.arrow_schema.clone(),
                    t.transforms.outputs.iter().map(|o| o.ty).collect(),
                )
            })
            .collect();
        Pipeline {
            work: Work::new(&plan),
            buffers: BufferSet::new(plan.seal, tables),
            spill_deletes: Vec::new(),
            raw: RawSegments::new(
                plan.raw_segment_bytes_max,
                plan.raw_memory_bytes_max,
                plan.raw_interval_ns,
            ),
            quarantine: QuarantineFiles::new(
                plan.quarantine_zstd_level,
                plan.quarantine_file_bytes_max,
                plan.quarantine_interval_ns,
            ),
            audit: AuditLog::default(),
            tracker: Tracker::default(),
            retiring: retiring::Retiring::default(),
            counters: Counters::default(),
            hist: StageHistograms::default(),
            sample_countdown: 0,
            file_seq: 0,
            partitions: Vec::new(),
            plan,
            core,
            clock,
        }
    }

    /// Take ownership of a partition; returns its slot.
    /// `delivered`: the partition's positions already in the lake from files of an earlier
    /// run (see `delivery`); its replay skips them.
    pub fn add_partition(&mut self, source: u16, id: &str, delivered: Skip) -> usize {
        let slot = self.tracker.add_partition();
        debug_assert_eq!(slot, self.partitions.len());
        self.partitions.push(OwnedPartition {
            source,
            id: id.to_string(),
            next_ordinal: 0,
            skip: delivered,
            lag_ms: 0,
            checkpointed: None,
        });
        slot
    }

    /// The newest confirmed checkpoint of partition `slot`, once (see `PartitionReader::checkpointed`).
    pub fn take_checkpointed(&mut self, slot: usize) -> Option<u64> {
        self.partitions[slot].checkpointed.take()
    }

    /// Note partition `slot`'s reported lag; the core's counter is its most-behind partition.
    pub fn note_lag(&mut self, slot: usize, lag_ms: u64) {
        self.partitions[slot].lag_ms = lag_ms;
        self.counters.source_lag_ms = self.partitions.iter().map(|p| p.lag_ms).max().unwrap_or(0);
    }

    /// Fetch batches not yet durable in every output that holds their records.
    pub fn open_batches(&self) -> usize {
        self.tracker.open_batches()
    }

    fn next_file(&mut self) -> String {
        self.file_seq += 1;
        file_name(&self.plan.run_id, self.core, self.file_seq)
    }

    /// Process one fetched batch of partition `slot`; `cpu` is the CPU this runs on (recorded
    /// in the batch's audit row). Outputs that became ready are appended to `out`.
    pub fn process_batch(&mut self, slot: usize, batch: &FetchBatch, cpu: u32, out: &mut Vec<Output>) {
        if batch.records.is_empty() {
            self.note_cursor(slot, batch);
            return;
        }
        let at = BatchAt {
            source: self.partitions[slot].source,
            batch_id: self.tracker.open(
                slot,
                crate::lineage::Resume {
                    position: batch.next_position,
                    cursor: batch.cursor.clone(),
                },
            ),
            ingest_us: self.clock.now_us(),
            now_ns: self.clock.monotonic_ns(),
        };
        let before = self.counters.clone();
        if self.plan.raw_enabled {
            self.back_up(slot, batch, at, out);
        }
        for r in &batch.records {
            self.process_record(slot, batch, r, at, out);
        }
        self.account_batch(slot, batch, cpu, &before, at);
        self.tracker.release(at.batch_id);
    }

    /// A batch without records whose cursor moved (a Kinesis shard's end): the checkpoint
    /// takes it once every batch before it is durable.
    fn note_cursor(&mut self, slot: usize, batch: &FetchBatch) {
        if batch.cursor.is_some() {
            let id = self.tracker.open(
                slot,
                crate::lineage::Resume {
                    position: batch.next_position,
                    cursor: batch.cursor.clone(),
                },
            );
            self.tracker.release(id);
        }
    }

    /// The batch's payloads, as received, into the partition's RAW segment.
    fn back_up(&mut self, slot: usize, batch: &FetchBatch, at: BatchAt, out: &mut Vec<Output>) {
        self.tracker.hold(at.batch_id);
        if let Some(s) = self.raw.append(
            at.source,
            slot,
            batch,
            at.batch_id,
            hour_bucket(at.ingest_us),
            at.now_ns,
        ) {
            let f = self.raw_file(s);
            out.push(Output::File(f));
        }
        self.hist.record(StageId::Raw, self.clock.monotonic_ns() - at.now_ns);
    }

    /// One record of the batch: skipped (an earlier run delivered it), quarantined, dropped by
    /// a route, or buffered for its table (sealing what it fills).
    #[inline]
    fn process_record(&mut self, slot: usize, batch: &FetchBatch, r: &RecordSpan, at: BatchAt, out: &mut Vec<Output>) {
        self.counters.records_in += 1;
        self.counters.bytes_in += r.len as u64;
        let p = &mut self.partitions[slot];
        let origin = Origin {
            batch_id: at.batch_id,
            slot,
            position: r.position,
            ordinal: p.next_ordinal,
        };
        p.next_ordinal += 1;
        if p.skip.contains(r.position) {
            self.counters.records_skipped += 1;
            return;
        }
        let payload = batch.payload(r);
        if let Some(reject) = &r.reject {
            self.quarantine(origin, payload, None, reject, at.ingest_us, out);
            return;
        }
        let sampled = self.sample();
        let ctx = record::Arrival {
            source: at.source,
            slot,
            partition_id: &self.partitions[slot].id,
            position: r.position,
            ordinal: origin.ordinal,
            batch_id: at.batch_id,
            ingest_us: at.ingest_us,
            now_ns: at.now_ns,
        };
        let timer = sampled.then(|| record::Timer::start(&*self.clock));
        match record::process(
            &self.plan,
            &mut self.work,
            &mut self.buffers,
            &ctx,
            timer,
            &mut self.hist,
            payload,
        ) {
            Ok(record::Outcome::Buffered(appended)) => {
                self.counters.records_etl += 1;
                if appended.new_batch {
                    self.tracker.hold(at.batch_id);
                }
                for sealed in appended.sealed {
                    let out_item = self.etl_output(sealed);
                    out.push(out_item);
                }
            }
            Ok(record::Outcome::Dropped) => self.counters.records_dropped += 1,
            Err((table, reject)) => self.quarantine(origin, payload, table, &reject, at.ingest_us, out),
        }
    }

    /// The batch's counts into the core's counters and its audit fetch row.
    fn account_batch(&mut self, slot: usize, batch: &FetchBatch, cpu: u32, before: &Counters, at: BatchAt) {
        self.counters.batches += 1;
        let mem = self.memory_bytes();
        self.counters.memory_bytes = mem;
        self.counters.memory_bytes_peak = self.counters.memory_bytes_peak.max(mem);
        let row = FetchRow {
            run_id: self.plan.run_id.clone(),
            core: self.core as u32,
            cpu,
            source: self.plan.sources[at.source as usize].name.clone(),
            partition: self.partitions[slot].id.clone(),
            position_first: batch.records[0].position as i64,
            position_last: batch.records[batch.records.len() - 1].position as i64,
            position_next: batch.next_position as i64,
            records_in: (self.counters.records_in - before.records_in) as i64,
            records_etl: (self.counters.records_etl - before.records_etl) as i64,
            records_quarantined: (self.counters.records_quarantined - before.records_quarantined) as i64,
            records_dropped: (self.counters.records_dropped - before.records_dropped) as i64,
            records_skipped: (self.counters.records_skipped - before.records_skipped) as i64,
            bytes_in: (self.counters.bytes_in - before.bytes_in) as i64,
            fetched_at_us: at.ingest_us,
            process_us: ((self.clock.monotonic_ns() - at.now_ns) / 1000) as i64,
        };
        self.audit.add_fetch(row, at.now_ns);
    }

    /// One in `latency_sample_every` records is timed through every stage.
    fn sample(&mut self) -> bool {
        if self.sample_countdown == 0 {
            self.sample_countdown = self.plan.latency_sample_every - 1;
            true
        } else {
            self.sample_countdown -= 1;
            false
        }
    }

    fn quarantine(
        &mut self,
        origin: Origin,
        payload: &[u8],
        table: Option<usize>,
        reject: &Reject,
        ingest_us: i64,
        out: &mut Vec<Output>,
    ) {
        self.counters.records_quarantined += 1;
        self.counters.rejected_by_rule[reject.rule.index()] += 1;
        let p = &self.partitions[origin.slot];
        let line = QuarantineLine {
            source: &self.plan.sources[p.source as usize].name,
            partition: &p.id,
            position: origin.position,
            core: self.core,
            ingest_time: rfc3339(ingest_us),
            stage: reject.stage.as_str(),
            rule: reject.rule.as_str(),
            field: reject.field.as_deref(),
            table: table.map(|t| self.plan.tables[t].name.as_str()),
            message: &reject.message,
            payload_base64: encode_payload(payload),
        };
        let now_ns = self.clock.monotonic_ns();
        let (new_batch, sealed) = self
            .quarantine
            .append(p.source, hour_bucket(ingest_us), &line, origin, now_ns);
        if new_batch {
            self.tracker.hold(origin.batch_id);
        }
        if let Some(s) = sealed {
            let f = self.quarantine_file(s);
            out.push(Output::File(f));
        }
    }

    fn etl_output(&mut self, sealed: Sealed) -> Output {
        let name = self.next_file();
        let key = self.plan.layout.etl(
            &self.plan.sources[sealed.key.source as usize].name,
            &self.plan.tables[sealed.key.table as usize].name,
            sealed.key.hour,
            &name,
        );
        Output::Etl { sealed, key }
    }

    /// The ready file of an encoded ETL buffer.
    pub fn etl_file(&self, sealed: Sealed, key: String, bytes: Vec<u8>) -> ReadyFile {
        let table = &self.plan.tables[sealed.key.table as usize];
        ReadyFile {
            meta: FileMeta {
                zone: Zone::Etl,
                key,
                records: sealed.records() as u64,
                source: sealed.key.source,
                table: sealed.key.table,
                schema_version: table.schema_version,
                event_time_min_us: Some(sealed.event_time_min_us),
                event_time_max_us: Some(sealed.event_time_max_us),
                provenance: sealed.provenance,
                ring: crate::buffer::runs(&sealed.locs),
            },
            bytes,
        }
    }

    fn raw_file(&mut self, s: crate::load::raw::SealedRaw) -> ReadyFile {
        let key = self.plan.layout.raw(
            &self.plan.sources[s.source as usize].name,
            s.hour,
            &self.partitions[s.slot].id,
            s.first,
            s.last,
            &self.plan.run_id,
        );
        ReadyFile {
            meta: FileMeta::untabled(Zone::Raw, key, s.records, s.source, s.provenance),
            bytes: s.bytes,
        }
    }

    fn quarantine_file(&mut self, s: crate::load::quarantine::SealedQuarantine) -> ReadyFile {
        let name = self.next_file();
        let key = self
            .plan
            .layout
            .quarantine(&self.plan.sources[s.source as usize].name, s.hour, &name);
        ReadyFile {
            meta: FileMeta::untabled(Zone::Quarantine, key, s.records, s.source, s.provenance),
            bytes: s.bytes,
        }
    }

    /// Seal whatever is due by age, and flush the audit rows if they are due.
    pub fn tick(&mut self, out: &mut Vec<Output>) {
        let now = self.clock.monotonic_ns();
        self.seal(Due::Aged(now), out);
        if self.audit.is_due(now, self.plan.audit_interval_ns) {
            self.flush_audit(out);
        }
    }

    /// Seal everything (drain). Audit is flushed separately, once every file is durable.
    pub fn seal_all(&mut self, out: &mut Vec<Output>) {
        self.seal(Due::All, out);
    }

    fn seal(&mut self, due: Due, out: &mut Vec<Output>) {
        for s in self.buffers.take(due) {
            let o = self.etl_output(s);
            out.push(o);
        }
        for s in self.raw.take(due) {
            let f = self.raw_file(s);
            out.push(Output::File(f));
        }
        for s in self.quarantine.take(due) {
            let f = self.quarantine_file(s);
            out.push(Output::File(f));
        }
    }
}

#[cfg(test)]
mod tests;
