//! The push source: a program that embeds the engine hands it records through a
//! [`PushHandle`], from any thread, and learns when they are durable in the lake.
//!
//! Owns: the queue of pushed batches per partition, the byte budget over all of them, and each
//! batch's [`Receipt`]. A batch goes whole to one partition (round robin), so its records keep
//! their order; a core's reader takes batches off its partition's queue, numbering records
//! with positions, and completes a batch's receipt when the checkpoint passes its last record
//! — that is, when every record of it is in the lake, in ETL or quarantine, with its audit row
//! (the delivery contract). A run that ends before then fails the receipt: the records may or
//! may not be in the lake, and the producer must push them again (the lake then holds them
//! twice; the audit says where).
//!
//! Positions: a partition's records are numbered from the greater of its checkpoint and the
//! wall clock in nanoseconds when the source was built, so records of a new run never take the
//! positions of records a crashed run delivered past its checkpoint (which the replay skips).
//! This holds while the wall clock does not step back across a restart, and while a partition
//! takes fewer than one record per nanosecond.
//!
//! Bounds: bytes queued ≤ `queue_bytes_max` (a push waits for room; a batch larger than the
//! budget is refused); the per-record path on a core takes no lock — a reader locks its
//! partition's queue once per batch it takes.

use super::{Fetch, FetchBatch, PartitionInfo, PartitionReader, Source, SourceError};
use crate::clock::Clock;
use crate::config::PushConfig;
use crate::lineage::Resume;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How long a reader with nothing queued asks its core to wait before it looks again: the
/// latency a push adds before its records are processed, against a core polling an empty queue.
pub const PUSH_IDLE_POLL: Duration = Duration::from_millis(2);

const PARTITION_PREFIX: &str = "push-";

/// Why a push was refused or did not become durable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The handle was closed or the run is stopping: nothing more is taken.
    #[error("the push source {0:?} is closed: the run is stopping or the handle was closed")]
    Closed(String),
    /// One batch is larger than the whole queue budget.
    #[error("a batch of {bytes} bytes is larger than sources.push.queue_bytes_max ({max})")]
    TooLarge { bytes: u64, max: u64 },
    /// The run ended before the batch was durable; push it again.
    #[error("the run ended before the batch was durable ({0}); push it again")]
    NotDurable(String),
}

/// The outcome of one pushed batch, filled by the core that processes it.
#[derive(Default)]
struct Outcome {
    result: Mutex<Option<Result<(), PushError>>>,
    done: Condvar,
}

impl Outcome {
    fn set(&self, r: Result<(), PushError>) {
        let mut slot = self.result.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(r);
            self.done.notify_all();
        }
    }
}

/// A pushed batch's promise: [`Receipt::wait`] returns once its records are durable.
pub struct Receipt(Arc<Outcome>);

impl Receipt {
    /// Wait until the batch is durable in the lake, or the run ended without it.
    pub fn wait(self) -> Result<(), PushError> {
        let mut slot = self.0.result.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(r) = slot.take() {
                return r;
            }
            slot = self.0.done.wait(slot).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Whether the outcome is known (then `wait` returns at once).
    pub fn is_done(&self) -> bool {
        self.0.result.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }
}

/// One pushed batch: its records back to back, where each ends, and its outcome.
struct Pushed {
    data: Vec<u8>,
    ends: Vec<u32>,
    outcome: Arc<Outcome>,
}

struct Shared {
    name: String,
    lanes: Vec<Mutex<VecDeque<Pushed>>>,
    /// Bytes queued, with the condition a waiting push sleeps on.
    queued: Mutex<u64>,
    room: Condvar,
    bytes_max: u64,
    closed: AtomicBool,
    next_lane: AtomicUsize,
    /// Where every partition's positions start (see the module comment).
    base_position: u64,
}

impl Shared {
    fn release(&self, bytes: u64) {
        let mut q = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        *q -= bytes;
        self.room.notify_all();
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _q = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        self.room.notify_all();
    }
}

/// A handle producers push through (cheap to clone; `Send` and `Sync`).
#[derive(Clone)]
pub struct PushHandle(Arc<Shared>);

impl PushHandle {
    /// Push a batch and wait until its records are durable in the lake (see [`Receipt`]).
    pub fn push<I, R>(&self, records: I) -> Result<(), PushError>
    where
        I: IntoIterator<Item = R>,
        R: AsRef<[u8]>,
    {
        self.submit(records)?.wait()
    }

    /// Queue a batch and return at once with its [`Receipt`] (waiting first while the queue is
    /// full): many batches in flight from one producer.
    pub fn submit<I, R>(&self, records: I) -> Result<Receipt, PushError>
    where
        I: IntoIterator<Item = R>,
        R: AsRef<[u8]>,
    {
        let s = &self.0;
        let mut data = Vec::new();
        let mut ends = Vec::new();
        for r in records {
            data.extend_from_slice(r.as_ref());
            ends.push(data.len() as u32);
        }
        let bytes = data.len() as u64;
        if bytes > s.bytes_max {
            return Err(PushError::TooLarge {
                bytes,
                max: s.bytes_max,
            });
        }
        let outcome = Arc::new(Outcome::default());
        if ends.is_empty() {
            outcome.set(Ok(()));
            return Ok(Receipt(outcome));
        }
        {
            let mut queued = s.queued.lock().unwrap_or_else(|e| e.into_inner());
            while *queued + bytes > s.bytes_max && !s.closed.load(Ordering::SeqCst) {
                queued = s.room.wait(queued).unwrap_or_else(|e| e.into_inner());
            }
            if s.closed.load(Ordering::SeqCst) {
                return Err(PushError::Closed(s.name.clone()));
            }
            *queued += bytes;
        }
        let lane = s.next_lane.fetch_add(1, Ordering::Relaxed) % s.lanes.len();
        s.lanes[lane]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(Pushed {
                data,
                ends,
                outcome: outcome.clone(),
            });
        Ok(Receipt(outcome))
    }

    /// Take no more batches: once what is queued is processed, the source's partitions end
    /// (and a run with no other source drains and returns).
    pub fn close(&self) {
        self.0.close();
    }
}

pub struct PushSource {
    shared: Arc<Shared>,
}

impl PushSource {
    /// `partitions` already resolved (one per core for 0); `now_us` fixes where positions start.
    pub fn new(name: &str, cfg: &PushConfig, partitions: usize, now_us: i64) -> PushSource {
        PushSource {
            shared: Arc::new(Shared {
                name: name.to_string(),
                lanes: (0..partitions.max(1)).map(|_| Mutex::new(VecDeque::new())).collect(),
                queued: Mutex::new(0),
                room: Condvar::new(),
                bytes_max: cfg.queue_bytes_max,
                closed: AtomicBool::new(false),
                next_lane: AtomicUsize::new(0),
                base_position: (now_us.max(0) as u64).saturating_mul(1000),
            }),
        }
    }

    pub fn handle(&self) -> PushHandle {
        PushHandle(self.shared.clone())
    }
}

impl Source for PushSource {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn partitions(&self) -> Result<Vec<PartitionInfo>, SourceError> {
        Ok((0..self.shared.lanes.len())
            .map(|i| PartitionInfo {
                id: format!("{PARTITION_PREFIX}{i}"),
                ordinal: i as u64,
            })
            .collect())
    }

    fn open(
        &self,
        partition: &PartitionInfo,
        resume: Option<&Resume>,
    ) -> Result<Box<dyn PartitionReader>, SourceError> {
        let lane = partition.ordinal as usize;
        if lane >= self.shared.lanes.len() {
            return Err(SourceError {
                source_name: self.shared.name.clone(),
                partition: partition.id.clone(),
                message: format!("no such partition: this source has {}", self.shared.lanes.len()),
            });
        }
        let start = resume.map_or(0, |r| r.position).max(self.shared.base_position);
        Ok(Box::new(PushReader {
            shared: self.shared.clone(),
            lane,
            next_position: start,
            current: None,
            pending: VecDeque::new(),
        }))
    }
}

/// A batch being read: the batch and the index of its next record.
struct Reading {
    pushed: Pushed,
    next: usize,
}

struct PushReader {
    shared: Arc<Shared>,
    lane: usize,
    next_position: u64,
    current: Option<Reading>,
    /// Batches fully handed to the core, by the position of their last record, waiting for
    /// the checkpoint to pass it.
    pending: VecDeque<(u64, Arc<Outcome>)>,
}

impl PushReader {
    fn take_next(&mut self) -> Option<Reading> {
        let pushed = self.shared.lanes[self.lane]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()?;
        Some(Reading { pushed, next: 0 })
    }

    fn queue_empty(&self) -> bool {
        self.shared.lanes[self.lane]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }
}

impl PartitionReader for PushReader {
    fn fetch(&mut self, batch: &mut FetchBatch, max_records: usize, _clock: &dyn Clock) -> Result<Fetch, SourceError> {
        batch.clear();
        while batch.records.len() < max_records {
            let mut r = match self.current.take() {
                Some(r) => r,
                None => match self.take_next() {
                    Some(r) => r,
                    None => break,
                },
            };
            let ends = &r.pushed.ends;
            while r.next < ends.len() && batch.records.len() < max_records {
                let start = if r.next == 0 { 0 } else { ends[r.next - 1] as usize };
                batch.push(&r.pushed.data[start..ends[r.next] as usize], self.next_position, None);
                self.next_position += 1;
                r.next += 1;
            }
            if r.next == ends.len() {
                self.shared.release(r.pushed.data.len() as u64);
                self.pending.push_back((self.next_position - 1, r.pushed.outcome));
            } else {
                self.current = Some(r);
            }
        }
        batch.next_position = self.next_position;
        if !batch.records.is_empty() {
            return Ok(Fetch::Records);
        }
        if self.shared.closed.load(Ordering::SeqCst) && self.current.is_none() && self.queue_empty() {
            return Ok(Fetch::End);
        }
        Ok(Fetch::Idle(PUSH_IDLE_POLL))
    }

    /// The run is stopping: no more pushes are taken; what is queued is still processed.
    fn finish(&mut self) -> bool {
        self.shared.close();
        self.current.is_some() || !self.queue_empty()
    }

    fn checkpointed(&mut self, position: u64) {
        while self.pending.front().is_some_and(|(last, _)| *last < position) {
            let (_, outcome) = self.pending.pop_front().expect("checked");
            outcome.set(Ok(()));
        }
    }

    fn wants_checkpoints(&self) -> bool {
        true
    }
}

impl Drop for PushReader {
    /// Whatever this partition took but never saw durable, and whatever is still queued for
    /// it, fails: the run is over for it.
    fn drop(&mut self) {
        let why = |what: &str| PushError::NotDurable(format!("partition {PARTITION_PREFIX}{} {what}", self.lane));
        for (_, outcome) in self.pending.drain(..) {
            outcome.set(Err(why("ended before its checkpoint passed the batch")));
        }
        let mut lost = 0u64;
        if let Some(r) = self.current.take() {
            lost += r.pushed.data.len() as u64;
            r.pushed.outcome.set(Err(why("ended in the middle of the batch")));
        }
        let queued: Vec<Pushed> = self.shared.lanes[self.lane]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for p in queued {
            lost += p.data.len() as u64;
            p.outcome.set(Err(why("ended before the batch was read")));
        }
        if lost > 0 {
            self.shared.release(lost);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;

    fn source(partitions: usize, bytes_max: u64) -> PushSource {
        let cfg = PushConfig {
            partitions: partitions as u32,
            queue_bytes_max: bytes_max,
        };
        PushSource::new("app", &cfg, partitions, 1_000)
    }

    fn open(s: &PushSource, i: u64, resume: Option<u64>) -> Box<dyn PartitionReader> {
        let p = PartitionInfo {
            id: format!("push-{i}"),
            ordinal: i,
        };
        s.open(&p, resume.map(|position| Resume { position, cursor: None }).as_ref())
            .unwrap()
    }

    fn payloads(b: &FetchBatch) -> Vec<(String, u64)> {
        b.records
            .iter()
            .map(|r| (String::from_utf8(b.payload(r).to_vec()).unwrap(), r.position))
            .collect()
    }

    #[test]
    fn a_batch_goes_whole_to_one_partition_and_completes_when_the_checkpoint_passes_it() {
        let s = source(2, 1 << 20);
        let h = s.handle();
        let a = h.submit(["a1", "a2", "a3"]).unwrap();
        let b = h.submit(["b1"]).unwrap();
        let (mut r0, mut r1) = (open(&s, 0, None), open(&s, 1, Some(5)));
        let mut batch = FetchBatch::default();
        // Split over two fetches of two records: positions from the base (1,000 µs in ns).
        assert_eq!(r0.fetch(&mut batch, 2, &SystemClock).unwrap(), Fetch::Records);
        assert_eq!(payloads(&batch), [("a1".into(), 1_000_000), ("a2".into(), 1_000_001)]);
        assert_eq!(r0.fetch(&mut batch, 2, &SystemClock).unwrap(), Fetch::Records);
        assert_eq!(payloads(&batch), [("a3".into(), 1_000_002)]);
        assert_eq!(batch.next_position, 1_000_003);
        assert_eq!(r1.fetch(&mut batch, 10, &SystemClock).unwrap(), Fetch::Records);
        assert_eq!(payloads(&batch), [("b1".into(), 1_000_000)]);
        assert_eq!(
            r0.fetch(&mut batch, 10, &SystemClock).unwrap(),
            Fetch::Idle(PUSH_IDLE_POLL)
        );
        r0.checkpointed(1_000_002);
        assert!(!a.is_done(), "the checkpoint has not passed a3");
        r0.checkpointed(1_000_003);
        assert_eq!(a.wait(), Ok(()));
        assert!(!b.is_done());
        r1.checkpointed(1_000_001);
        assert_eq!(b.wait(), Ok(()));
    }

    #[test]
    fn a_checkpoint_ahead_of_the_clock_moves_the_start_past_it() {
        let s = source(1, 1 << 20);
        s.handle().submit(["x"]).unwrap();
        let mut r = open(&s, 0, Some(5_000_000));
        let mut batch = FetchBatch::default();
        r.fetch(&mut batch, 10, &SystemClock).unwrap();
        assert_eq!(batch.records[0].position, 5_000_000);
    }

    #[test]
    fn a_full_queue_holds_the_producer_until_a_core_takes_a_batch() {
        let s = source(1, 10);
        let h = s.handle();
        h.submit(["0123456789"]).unwrap();
        assert_eq!(
            h.submit(["0123456789a"]).err(),
            Some(PushError::TooLarge { bytes: 11, max: 10 })
        );
        let waiting = std::thread::spawn({
            let h = h.clone();
            move || h.submit(["x"]).map(|_| ())
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiting.is_finished(), "the queue is full: the second push waits");
        let mut r = open(&s, 0, None);
        r.fetch(&mut FetchBatch::default(), 10, &SystemClock).unwrap();
        assert_eq!(waiting.join().unwrap(), Ok(()));
    }

    #[test]
    fn closing_ends_the_partition_after_its_queue_and_a_dropped_reader_fails_what_it_held() {
        let s = source(1, 1 << 20);
        let h = s.handle();
        let held = h.submit(["a"]).unwrap();
        let queued_behind = h.submit(["b"]).unwrap();
        let mut r = open(&s, 0, None);
        let mut batch = FetchBatch::default();
        assert_eq!(r.fetch(&mut batch, 1, &SystemClock).unwrap(), Fetch::Records);
        assert!(r.finish(), "one batch is still queued: the core keeps fetching");
        assert!(matches!(h.push(["c"]), Err(PushError::Closed(_))));
        assert_eq!(r.fetch(&mut batch, 1, &SystemClock).unwrap(), Fetch::Records);
        assert_eq!(r.fetch(&mut batch, 1, &SystemClock).unwrap(), Fetch::End);
        drop(r);
        assert!(matches!(held.wait(), Err(PushError::NotDurable(_))));
        assert!(matches!(queued_behind.wait(), Err(PushError::NotDurable(_))));
        assert_eq!(*s.shared.queued.lock().unwrap(), 0, "every byte released");
    }
}
