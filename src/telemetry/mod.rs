//! Telemetry: per-core counters, per-stage HDR latency histograms, live progress, the report.
//!
//! Counters are plain integers owned by their core (no atomics on the record path); once per
//! batch a core publishes its totals to [`Progress`] (relaxed atomics) for the progress line.
//! Histograms record nanoseconds; per-record stages are timed on one record in
//! `telemetry.latency_sample_every` (a sampled record is timed through every stage), per-file
//! stages (encode, write) on every file. At the end the cores' histograms are merged.
//!
//! Bounds: histograms cover 1 ns .. [`HIST_MAX_NS`] at 3 significant digits (~30 KiB each).

pub mod cpu;

use crate::extract::Rule;
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};

/// Longest latency a histogram records (longer values are clamped): one hour.
pub const HIST_MAX_NS: u64 = 3_600_000_000_000;

/// Stages with a latency histogram, in flow order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageId {
    /// One fetch call (per batch).
    Fetch,
    /// Appending a batch to its RAW segment (per batch).
    Raw,
    Decrypt,
    Parse,
    /// Route, flatten and schema checks.
    Schema,
    Transform,
    /// Appending the row to its partition buffer.
    Buffer,
    /// Parquet encoding of one ETL file.
    Encode,
    /// Store write of one file (edge thread, until durable).
    Write,
}

impl StageId {
    pub const ALL: [StageId; 9] = [
        StageId::Fetch,
        StageId::Raw,
        StageId::Decrypt,
        StageId::Parse,
        StageId::Schema,
        StageId::Transform,
        StageId::Buffer,
        StageId::Encode,
        StageId::Write,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StageId::Fetch => "fetch",
            StageId::Raw => "raw",
            StageId::Decrypt => "decrypt",
            StageId::Parse => "parse",
            StageId::Schema => "schema",
            StageId::Transform => "transform",
            StageId::Buffer => "buffer",
            StageId::Encode => "encode",
            StageId::Write => "write",
        }
    }

    /// What one sample measures.
    pub fn unit(self) -> &'static str {
        match self {
            StageId::Fetch | StageId::Raw => "batch",
            StageId::Encode | StageId::Write => "file",
            _ => "record",
        }
    }
}

#[derive(Debug, Clone)]
pub struct StageHistograms {
    hists: Vec<Histogram<u64>>,
}

impl Default for StageHistograms {
    fn default() -> Self {
        StageHistograms {
            hists: StageId::ALL
                .iter()
                .map(|_| Histogram::new_with_bounds(1, HIST_MAX_NS, 3).expect("valid histogram bounds"))
                .collect(),
        }
    }
}

impl StageHistograms {
    #[inline]
    pub fn record(&mut self, stage: StageId, ns: u64) {
        self.hists[stage as usize].saturating_record(ns.max(1));
    }

    pub fn get(&self, stage: StageId) -> &Histogram<u64> {
        &self.hists[stage as usize]
    }

    pub fn merge(&mut self, other: &StageHistograms) {
        for (a, b) in self.hists.iter_mut().zip(&other.hists) {
            a.add(b).expect("histograms share bounds");
        }
    }
}

/// Totals of one core (and, summed, of a run).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    pub records_in: u64,
    pub records_etl: u64,
    pub records_quarantined: u64,
    pub records_dropped: u64,
    /// Replayed records already delivered by a file of an earlier run (see `delivery`).
    pub records_skipped: u64,
    pub bytes_in: u64,
    pub batches: u64,
    /// Files and bytes written per zone: etl, raw, quarantine, audit.
    pub files: [u64; 4],
    pub file_bytes: [u64; 4],
    pub rejected_by_rule: [u64; Rule::ALL.len()],
    /// Source errors (a partition that stopped on an I/O error).
    pub source_errors: u64,
    /// Calls the source throttled (Kinesis ProvisionedThroughputExceeded and kin), retried.
    pub source_throttles: u64,
    /// How far the most-behind partition is from its newest record, by its last report
    /// (Kinesis MillisBehindLatest); over cores, the highest.
    pub source_lag_ms: u64,
    /// Requests a push source (the HTTP receiver) answered 200, and refused (4xx/5xx).
    pub requests_accepted: u64,
    pub requests_refused: u64,
    /// Time tasks waited for downstream (a full encoder queue, a full outbox and spill,
    /// the buffer memory budget).
    pub backpressure_ns: u64,
    /// Ring segments spilled to disk and read back.
    pub spill_writes: u64,
    pub spill_reads: u64,
    /// Finished files parked on disk while the store was slow or down (`runtime::outbox`).
    pub files_parked: u64,
    /// Highest bytes of buffered records in memory, and of spill files on disk (per core;
    /// summed over cores in a report).
    pub memory_bytes_peak: u64,
    pub spill_bytes_peak: u64,
    /// Bytes of buffered records in memory, and of spill and parked files on disk, now (per
    /// core; summed).
    pub memory_bytes: u64,
    pub spill_bytes: u64,
    /// Store writes retried by the I/O edge (throttling, 5xx, timeouts), per retry.
    pub store_retries: u64,
}

impl Counters {
    /// Bytes of spill and parked files on disk now, and the peak with it.
    pub fn set_spill_bytes(&mut self, bytes: u64) {
        self.spill_bytes = bytes;
        self.spill_bytes_peak = self.spill_bytes_peak.max(bytes);
    }

    pub fn add(&mut self, o: &Counters) {
        self.records_in += o.records_in;
        self.records_etl += o.records_etl;
        self.records_quarantined += o.records_quarantined;
        self.records_dropped += o.records_dropped;
        self.records_skipped += o.records_skipped;
        self.bytes_in += o.bytes_in;
        self.batches += o.batches;
        for i in 0..4 {
            self.files[i] += o.files[i];
            self.file_bytes[i] += o.file_bytes[i];
        }
        for (a, b) in self.rejected_by_rule.iter_mut().zip(o.rejected_by_rule) {
            *a += b;
        }
        self.source_errors += o.source_errors;
        self.source_throttles += o.source_throttles;
        self.requests_accepted += o.requests_accepted;
        self.requests_refused += o.requests_refused;
        self.source_lag_ms = self.source_lag_ms.max(o.source_lag_ms);
        self.backpressure_ns += o.backpressure_ns;
        self.spill_writes += o.spill_writes;
        self.spill_reads += o.spill_reads;
        self.files_parked += o.files_parked;
        self.memory_bytes_peak += o.memory_bytes_peak;
        self.spill_bytes_peak += o.spill_bytes_peak;
        self.memory_bytes += o.memory_bytes;
        self.spill_bytes += o.spill_bytes;
        self.store_retries += o.store_retries;
    }
}

/// Live totals per core, read by the progress line and the admin endpoint. The atomics move
/// with every batch; the full counters and the histograms are copied on the core's tick (every
/// 100 ms), under a lock only the core and the admin thread take, never per record.
#[derive(Debug, Default)]
pub struct Progress {
    pub records_in: AtomicU64,
    pub records_etl: AtomicU64,
    pub records_quarantined: AtomicU64,
    pub records_dropped: AtomicU64,
    snapshot: std::sync::Mutex<Snapshot>,
    /// Why the core cannot do all of its work now (a partition stopped by an error, an inbox
    /// that cannot be written): `/ready` is false while any core has one.
    problems: std::sync::Mutex<Vec<String>>,
}

/// A core's counters and histograms as of its last tick.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub counters: Counters,
    pub hist: StageHistograms,
}

impl Progress {
    pub fn publish(&self, c: &Counters) {
        self.records_in.store(c.records_in, Ordering::Relaxed);
        self.records_etl.store(c.records_etl, Ordering::Relaxed);
        self.records_quarantined.store(c.records_quarantined, Ordering::Relaxed);
        self.records_dropped.store(c.records_dropped, Ordering::Relaxed);
    }

    /// Replace the core's list of problems (the core calls it when the list changes).
    pub fn set_problems(&self, problems: Vec<String>) {
        *self.problems.lock().unwrap_or_else(|e| e.into_inner()) = problems;
    }

    pub fn problems(&self) -> Vec<String> {
        self.problems.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Copy the core's counters and histograms for readers on other threads.
    pub fn publish_snapshot(&self, c: &Counters, hist: &StageHistograms) {
        self.publish(c);
        let mut s = self.snapshot.lock().unwrap_or_else(|e| e.into_inner());
        s.counters.clone_from(c);
        s.hist.clone_from(hist);
    }

    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `(in, etl, quarantined, dropped)` summed over cores.
    pub fn totals(all: &[Progress]) -> (u64, u64, u64, u64) {
        all.iter().fold((0, 0, 0, 0), |t, p| {
            (
                t.0 + p.records_in.load(Ordering::Relaxed),
                t.1 + p.records_etl.load(Ordering::Relaxed),
                t.2 + p.records_quarantined.load(Ordering::Relaxed),
                t.3 + p.records_dropped.load(Ordering::Relaxed),
            )
        })
    }
}
