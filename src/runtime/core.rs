//! One core's life: its partition tasks, its encoder and ticker, its hand-off to the edge.
//!
//! Tasks on a core (all cooperative, on one pinned thread, sharing state through `Rc<RefCell>`
//! that is never borrowed across an `.await`):
//! - one **partition task** per owned partition: fetch → `Pipeline::process_batch` →
//!   dispatch outputs; it yields between batches, and waits when downstream is full
//!   (backpressure: the sealed queue and the edge are bounded);
//! - one **encoder task**: sealed ETL buffers → Parquet, in chunks with yields between them,
//!   so a large file never stalls the partitions for long;
//! - one **ticker**: every [`TICK_INTERVAL`], seals what is due by age and flushes audit rows.
//!
//! Drain (end of input, Ctrl-C/SIGTERM via the stop flag, or a failure elsewhere): partition
//! tasks stop fetching; everything open is sealed and written; once every file is durable the
//! audit rows are flushed, then the checkpoints; the core returns its counters and histograms.

use super::clock::Clock;
use super::edge::{Done, Job, IN_FLIGHT_JOBS_MAX};
use crate::buffer::spill::SpillDir;
use crate::buffer::Sealed;
use crate::load::parquet::{ParquetEncoder, ENCODE_CHUNK_ROWS};
use crate::pipeline::{Checkpoints, InFlightFile, Output, Pipeline, Plan};
use crate::source::{Fetch, FetchBatch, PartitionInfo, Source};
use crate::telemetry::{Counters, Progress, StageHistograms, StageId};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use glommio::channels::local_channel::{self, LocalSender};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often age-based sealing and audit flushing are checked.
pub const TICK_INTERVAL: Duration = Duration::from_millis(100);
/// Partitions found after the start (Kinesis child shards) waiting for their core; past it the
/// engine offers the rest again at its next listing.
pub const DISCOVERED_QUEUE_MAX: usize = 1024;
/// Sealed ETL buffers waiting for the encoder. A sealed buffer is only the locations of its
/// records, which stay in the ring (under its budget, or spilled), so a long queue costs no
/// record memory: while the store is slow or down, cores keep taking input into the ring and the
/// spill instead of stopping at the encoder. This bound only caps the queue's own bookkeeping.
pub const SEALED_QUEUE_MAX: usize = 1024;
/// How long a core sleeps while it waits for the edge (queue full, or draining).
pub const EDGE_POLL_INTERVAL: Duration = Duration::from_millis(1);

/// A partition assigned to this core, with where to resume it.
#[derive(Debug, Clone)]
pub struct Assigned {
    pub source: u16,
    pub info: PartitionInfo,
    pub resume: Option<crate::source::Resume>,
    /// Positions past `resume` already delivered by files of a crashed run: the replay skips them.
    pub delivered: crate::delivery::Skip,
}

/// What every core shares (read-only or atomic).
pub struct Shared {
    pub plan: Arc<Plan>,
    pub sources: Vec<Arc<dyn Source>>,
    pub clock: Arc<dyn Clock>,
    /// Set to drain: Ctrl-C, SIGTERM, or a failure on any core.
    pub stop: Arc<AtomicBool>,
    pub progress: Arc<Vec<Progress>>,
    /// Whether the admin endpoint reads full snapshots (else only the progress atomics move).
    pub snapshots: bool,
}

/// What a core reports when it is done.
#[derive(Debug, Default)]
pub struct CoreReport {
    pub counters: Counters,
    pub hist: StageHistograms,
    /// Errors: source partitions that failed, and store failures (fatal for the run).
    pub errors: Vec<String>,
    pub fatal: bool,
}

enum InFlight {
    File(Box<InFlightFile>),
    /// The `(slot, next_position)`s the checkpoint write acknowledges.
    Checkpoint(Vec<(usize, u64)>),
    Retire,
}

/// This core's side of the edge: submissions and acknowledgements.
struct Outbox {
    core: usize,
    jobs: Sender<Job>,
    replies: Receiver<Done>,
    in_flight: HashMap<u64, InFlight>,
    next_token: u64,
}

/// State every task of the core holds.
#[derive(Clone)]
struct Ctx {
    shared: Arc<Shared>,
    pipe: Rc<RefCell<Pipeline>>,
    outbox: Rc<RefCell<Outbox>>,
    errors: Rc<RefCell<Vec<String>>>,
    fatal: Rc<Cell<bool>>,
    /// This core's spill directory (none: over budget, buffers are sealed early instead).
    spill: Option<Rc<SpillDir>>,
}

impl Ctx {
    fn fail(&self, message: String, fatal: bool) {
        tracing::error!(core = self.pipe.borrow().core, error = %message, "core failed");
        self.errors.borrow_mut().push(message);
        if fatal {
            self.fatal.set(true);
            self.shared.stop.store(true, Ordering::Relaxed);
        }
    }

    /// Apply every acknowledgement that has arrived.
    /// Returns false once the edge is gone (its reply queue disconnected): no more
    /// acknowledgements will ever come.
    fn poll_acks(&self) -> bool {
        loop {
            let done = match self.outbox.borrow().replies.try_recv() {
                Ok(d) => d,
                Err(crossbeam_channel::TryRecvError::Empty) => return true,
                Err(crossbeam_channel::TryRecvError::Disconnected) => return false,
            };
            let item = self.outbox.borrow_mut().in_flight.remove(&done.token);
            self.pipe.borrow_mut().counters.store_retries += u64::from(done.retries);
            match (done.result, item) {
                (Ok(()), Some(InFlight::File(f))) => {
                    let mut pipe = self.pipe.borrow_mut();
                    pipe.hist.record(StageId::Write, done.write_ns);
                    if let Some(bytes) = done.bytes {
                        pipe.recycle(f.meta.zone, bytes);
                    }
                    pipe.on_durable(*f);
                }
                (Ok(()), Some(InFlight::Checkpoint(slots))) => self.pipe.borrow_mut().checkpointed(&slots),
                (Ok(()), Some(InFlight::Retire)) => {}
                (Err(e), _) => self.fail(format!("store write failed, stopping the run: {e}"), true),
                (Ok(()), None) => panic!("acknowledgement for unknown token {}", done.token),
            }
        }
    }

    /// Account time a task spent waiting for downstream (the encoder or the store).
    fn waited_since(&self, t0: u64) {
        let ns = self.shared.clock.monotonic_ns() - t0;
        self.pipe.borrow_mut().counters.backpressure_ns += ns;
    }

    async fn submit(&self, job: impl FnOnce(usize, u64) -> Job, item: InFlight) {
        let t0 = self.shared.clock.monotonic_ns();
        let mut waited = false;
        while self.outbox.borrow().in_flight.len() >= IN_FLIGHT_JOBS_MAX {
            self.poll_acks();
            waited = true;
            glommio::timer::sleep(EDGE_POLL_INTERVAL).await;
        }
        let (mut job, token) = {
            let mut ob = self.outbox.borrow_mut();
            let token = ob.next_token;
            ob.next_token += 1;
            ob.in_flight.insert(token, item);
            (job(ob.core, token), token)
        };
        loop {
            let sent = self.outbox.borrow().jobs.try_send(job);
            match sent {
                Ok(()) => {
                    if waited {
                        self.waited_since(t0);
                    }
                    return;
                }
                Err(TrySendError::Full(j)) => {
                    job = j;
                    waited = true;
                    self.poll_acks();
                    glommio::timer::sleep(EDGE_POLL_INTERVAL).await;
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.outbox.borrow_mut().in_flight.remove(&token);
                    self.fail("the I/O edge has stopped".into(), true);
                    return;
                }
            }
        }
    }

    async fn submit_file(&self, file: crate::load::ReadyFile) {
        let (in_flight, bytes, intent) = self.pipe.borrow().in_flight(file);
        let key = in_flight.meta.key.clone();
        self.submit(
            move |core, token| Job::Put {
                core,
                token,
                key,
                bytes,
                intent: intent.map(Box::new),
            },
            InFlight::File(Box::new(in_flight)),
        )
        .await;
    }

    /// A checkpoint lands after every job submitted before it — above all the audit files
    /// describing the data it covers: the edge runs jobs concurrently, so wait for them here.
    async fn submit_checkpoint(&self, c: Checkpoints) {
        let t0 = self.shared.clock.monotonic_ns();
        let before = self.outbox.borrow().next_token;
        let mut waited = false;
        loop {
            let edge_alive = self.poll_acks();
            if !self.outbox.borrow().in_flight.keys().any(|&t| t < before) {
                break;
            }
            if !edge_alive {
                return; // nothing earlier will ever be confirmed: `settle` reports it
            }
            waited = true;
            glommio::timer::sleep(EDGE_POLL_INTERVAL).await;
        }
        if waited {
            self.waited_since(t0);
        }
        let Checkpoints { checkpoints, slots } = c;
        self.submit(
            move |core, token| Job::Checkpoint {
                core,
                token,
                checkpoints,
            },
            InFlight::Checkpoint(slots),
        )
        .await;
    }

    /// Send outputs on their way. `sealed` is the encoder's queue; without it (after the
    /// encoder has finished) there must be no ETL output left.
    async fn dispatch(&self, outputs: &mut Vec<Output>, sealed: Option<&LocalSender<(Sealed, String)>>) {
        for o in outputs.drain(..) {
            match o {
                Output::Etl { sealed: s, key } => {
                    let tx = sealed.expect("ETL output after the encoder finished");
                    let t0 = self.shared.clock.monotonic_ns();
                    let full = tx.is_full();
                    let sent = tx.send((s, key)).await;
                    if full {
                        self.waited_since(t0);
                    }
                    if sent.is_err() {
                        self.fail("the encoder task has stopped".into(), true);
                    }
                }
                Output::File(f) => self.submit_file(f).await,
                Output::Checkpoint(c) => self.submit_checkpoint(c).await,
                Output::Retire(ids) => {
                    self.submit(move |core, token| Job::Retire { core, token, ids }, InFlight::Retire)
                        .await
                }
            }
        }
    }

    /// Backpressure: while the core's buffers are at their memory budget, fetch nothing. Spill
    /// the oldest closed segment while the spill has room; else seal the buffers holding the
    /// oldest records and wait for the encoder to free them.
    async fn admit(&self, out: &mut Vec<Output>, sealed: &LocalSender<(Sealed, String)>) {
        if !self.pipe.borrow().over_budget() {
            return;
        }
        let t0 = self.shared.clock.monotonic_ns();
        while self.pipe.borrow().over_budget() && !self.shared.stop.load(Ordering::Relaxed) {
            if self.spill_one().await {
                continue;
            }
            let sealed_some = self.pipe.borrow_mut().relieve(out);
            self.dispatch(out, Some(sealed)).await;
            self.poll_acks();
            if !sealed_some {
                glommio::timer::sleep(EDGE_POLL_INTERVAL).await;
            }
        }
        self.waited_since(t0);
    }

    /// Spill the oldest closed segment that still has unencoded records, if the spill has room.
    /// Returns whether one was spilled.
    async fn spill_one(&self) -> bool {
        let Some(spill) = &self.spill else { return false };
        let (header, mut records) = {
            let pipe = self.pipe.borrow();
            let Some((seg, bytes)) = pipe.buffers().ring().spill_candidate() else {
                return false;
            };
            if !spill.has_room(bytes.len()) {
                return false;
            }
            // The copy into the DMA buffer happens in `write`; this one keeps the ring free
            // to change while the write is in flight (the encoder may consume the segment).
            (pipe.spill_header(seg, bytes.len()), bytes.to_vec())
        };
        crate::buffer::row::fill_crcs(&mut records);
        let seg = header.segment;
        match spill.write(&header, &records).await {
            Ok(()) => {
                let mut pipe = self.pipe.borrow_mut();
                let fx = pipe.buffers_mut().ring_mut().spilled(seg);
                pipe.apply(fx);
                pipe.counters.spill_writes += 1;
                pipe.counters.spill_bytes = spill.bytes();
                pipe.counters.spill_bytes_peak = pipe.counters.spill_bytes_peak.max(spill.bytes());
                true
            }
            Err(e) => {
                self.fail(format!("spilling segment {seg} failed, stopping the run: {e}"), true);
                false
            }
        }
    }

    /// Read back the window of a spilled segment that holds `run` (locations in one segment,
    /// in order), if the ring needs it.
    async fn read_back(&self, run: &[crate::buffer::ring::Loc]) -> Result<(), String> {
        let seg = run[0].seg;
        if !self.pipe.borrow().buffers().ring().needs_readback(seg) {
            return Ok(());
        }
        let last = run[run.len() - 1];
        let (from, to) = (run[0].off as usize, (last.off + last.len) as usize);
        let spill = self
            .spill
            .as_ref()
            .expect("a spilled segment implies a spill directory");
        let (start, rr) = spill.read(seg, from, to).await.map_err(|e| e.to_string())?;
        let mut pipe = self.pipe.borrow_mut();
        pipe.buffers_mut().ring_mut().set_readback(seg, start, Box::new(rr));
        pipe.counters.spill_reads += 1;
        Ok(())
    }

    /// Delete the spill files whose records are all durable in the lake.
    async fn delete_spilled(&self) {
        let Some(spill) = &self.spill else { return };
        let segs = self.pipe.borrow_mut().take_spill_deletes();
        for seg in segs {
            match spill.remove(seg).await {
                Ok(()) => {
                    let mut pipe = self.pipe.borrow_mut();
                    pipe.spill_deleted(seg);
                    pipe.counters.spill_bytes = spill.bytes();
                }
                Err(e) => self.fail(format!("deleting spill file of segment {seg}: {e}"), false),
            }
        }
    }

    /// Wait until the edge has acknowledged everything this core submitted.
    async fn settle(&self) {
        loop {
            let edge_alive = self.poll_acks();
            let pending = self.outbox.borrow().in_flight.len();
            if pending == 0 {
                return;
            }
            if !edge_alive {
                self.fail(format!("the I/O edge stopped with {pending} writes unconfirmed"), true);
                return;
            }
            glommio::timer::sleep(EDGE_POLL_INTERVAL).await;
        }
    }

    fn publish(&self) {
        let pipe = self.pipe.borrow();
        self.shared.progress[pipe.core].publish(&pipe.counters);
    }

    /// Counters and histograms for the admin endpoint, if it runs (on the tick, not per batch).
    fn publish_snapshot(&self) {
        let mut pipe = self.pipe.borrow_mut();
        pipe.counters.memory_bytes = pipe.buffers().memory_bytes();
        let p = &self.shared.progress[pipe.core];
        if self.shared.snapshots {
            p.publish_snapshot(&pipe.counters, &pipe.hist);
        } else {
            p.publish(&pipe.counters);
        }
    }
}

/// A reader whose task has ended, kept until the drain's checkpoints are confirmed (see `run`).
type Finished = (usize, Box<dyn crate::source::PartitionReader>);

async fn partition_task(
    ctx: Ctx,
    slot: usize,
    assigned: Assigned,
    sealed: Rc<LocalSender<(Sealed, String)>>,
) -> Option<Finished> {
    let shared = ctx.shared.clone();
    let source = &shared.sources[assigned.source as usize];
    let batch_records = shared.plan.sources[assigned.source as usize].batch_records;
    let mut reader = match source.open(&assigned.info, assigned.resume.as_ref()) {
        Ok(r) => r,
        Err(e) => {
            ctx.pipe.borrow_mut().counters.source_errors += 1;
            ctx.fail(e.to_string(), false);
            return None;
        }
    };
    let mut batch = FetchBatch::default();
    let mut out = Vec::new();
    // Set once the stop is seen by a reader that must hand over what it accepted first.
    let mut finishing = false;
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            if finishing && ctx.pipe.borrow().over_budget() {
                break; // what the reader still holds stays durable in its source for the next run
            }
            if !finishing && (!reader.finish() || ctx.fatal.get()) {
                break;
            }
            finishing = true;
        }
        ctx.admit(&mut out, &sealed).await;
        let t0 = shared.clock.monotonic_ns();
        let fetched = reader.fetch(&mut batch, batch_records, &*shared.clock);
        {
            let mut pipe = ctx.pipe.borrow_mut();
            let stats = reader.take_stats();
            pipe.counters.source_throttles += stats.throttles;
            pipe.counters.requests_accepted += stats.requests_accepted;
            pipe.counters.requests_refused += stats.requests_refused;
            if let Some(lag) = reader.lag_ms() {
                pipe.note_lag(slot, lag);
            }
            if let Some(p) = pipe.take_checkpointed(slot) {
                reader.checkpointed(p);
            }
        }
        let kind = match fetched {
            Ok(k) => k,
            Err(e) => {
                ctx.pipe.borrow_mut().counters.source_errors += 1;
                ctx.fail(e.to_string(), false);
                break;
            }
        };
        if let Fetch::Idle(wait) = kind {
            ctx.poll_acks();
            glommio::timer::sleep(wait).await;
            continue;
        }
        {
            let mut pipe = ctx.pipe.borrow_mut();
            if !batch.records.is_empty() {
                pipe.hist.record(StageId::Fetch, shared.clock.monotonic_ns() - t0);
            }
            pipe.process_batch(slot, &batch, super::current_cpu(), &mut out);
        }
        ctx.publish();
        ctx.dispatch(&mut out, Some(&*sealed)).await;
        ctx.poll_acks();
        if kind == Fetch::End {
            break;
        }
        glommio::executor().yield_if_needed().await;
    }
    reader.wants_checkpoints().then_some((slot, reader))
}

async fn encoder_task(ctx: Ctx, rx: local_channel::LocalReceiver<(Sealed, String)>) {
    let clock = ctx.shared.clock.clone();
    while let Some((sealed, key)) = rx.recv().await {
        let table = &ctx.shared.plan.tables[sealed.key.table as usize];
        // Busy time only: the time other tasks run while this one yields is not encoding.
        let mut busy_ns = 0;
        let rows = sealed.records();
        let mut cols = ctx
            .pipe
            .borrow()
            .buffers()
            .columns(sealed.key.table, ENCODE_CHUNK_ROWS.min(rows));
        let mut consumed = 0;
        let encoded = (async {
            let mut enc: Option<ParquetEncoder> = None;
            let mut off = 0;
            while off < rows {
                let t = clock.monotonic_ns();
                let n = ENCODE_CHUNK_ROWS.min(rows - off);
                let next = ENCODE_CHUNK_ROWS.min(rows - off - n);
                for run in sealed.locs[off..off + n].chunk_by(|a, b| a.seg == b.seg) {
                    let seg = run[0].seg;
                    if let Err(e) = ctx.read_back(run).await {
                        return Err(crate::load::parquet::EncodeError(format!(
                            "reading spilled segment {seg}: {e}"
                        )));
                    }
                    // The run's records are in Arrow now: give their ring space back at once.
                    let mut pipe = ctx.pipe.borrow_mut();
                    pipe.buffers()
                        .append_rows(run, &mut cols)
                        .map_err(|e| crate::load::parquet::EncodeError(format!("spilled segment {seg}: {e}")))?;
                    pipe.consume(run);
                    pipe.buffers_mut().ring_mut().evict_readback(seg);
                    consumed += run.len();
                }
                let chunk = cols.finish(next);
                let enc = match &mut enc {
                    Some(e) => e,
                    None => {
                        let props = crate::load::parquet::props_for_batch(&table.writer_props, &chunk);
                        enc.insert(ParquetEncoder::try_new(table.arrow_schema.clone(), props)?)
                    }
                };
                enc.write(&chunk)?;
                off += n;
                busy_ns += clock.monotonic_ns() - t;
                glommio::executor().yield_if_needed().await;
            }
            let t = clock.monotonic_ns();
            let bytes = enc.expect("a sealed buffer holds at least one record").finish();
            busy_ns += clock.monotonic_ns() - t;
            bytes
        })
        .await;
        ctx.pipe.borrow_mut().consume(&sealed.locs[consumed..]);
        match encoded {
            Ok(bytes) => {
                let file = {
                    let mut pipe = ctx.pipe.borrow_mut();
                    pipe.hist.record(StageId::Encode, busy_ns);
                    pipe.etl_file(sealed, key, bytes)
                };
                ctx.submit_file(file).await;
            }
            Err(e) => ctx.fail(format!("{key}: {e}"), true),
        }
    }
}

/// Run one core until its partitions are done or the stop flag is set, then drain.
pub async fn run(
    core: usize,
    partitions: Vec<Assigned>,
    shared: Arc<Shared>,
    jobs: Sender<Job>,
    replies: Receiver<Done>,
    discovered: Receiver<Assigned>,
) -> CoreReport {
    let pipe = Pipeline::new(shared.plan.clone(), core, shared.clock.clone());
    let plan = &shared.plan;
    let spill = match &plan.spill_dir {
        Some(root) => match SpillDir::new(root, core, &plan.run_id, plan.spill_bytes_max) {
            Ok(s) => Some(Rc::new(s)),
            Err(e) => {
                return CoreReport {
                    errors: vec![format!("spill directory {}: {e}", root.display())],
                    fatal: true,
                    ..CoreReport::default()
                }
            }
        },
        None => None,
    };
    let ctx = Ctx {
        shared: shared.clone(),
        pipe: Rc::new(RefCell::new(pipe)),
        outbox: Rc::new(RefCell::new(Outbox {
            core,
            jobs,
            replies,
            in_flight: HashMap::new(),
            next_token: 0,
        })),
        errors: Rc::new(RefCell::new(Vec::new())),
        fatal: Rc::new(Cell::new(false)),
        spill,
    };
    let (sealed_tx, sealed_rx) = local_channel::new_bounded(SEALED_QUEUE_MAX);
    let sealed_tx = Rc::new(sealed_tx);
    let encoder = glommio::spawn_local(encoder_task(ctx.clone(), sealed_rx));

    let start = {
        let (ctx, tx) = (ctx.clone(), sealed_tx.clone());
        move |a: Assigned| {
            let slot = ctx
                .pipe
                .borrow_mut()
                .add_partition(a.source, &a.info.id, a.delivered.clone());
            glommio::spawn_local(partition_task(ctx.clone(), slot, a, tx.clone()))
        }
    };
    let tasks: Rc<RefCell<Vec<_>>> = Rc::new(RefCell::new(partitions.into_iter().map(&start).collect()));
    // With a source that finds partitions while running, the core lives until the stop, its
    // partitions or not: a new one may be placed here any time.
    let discovering = shared.sources.iter().any(|s| s.discovery_interval().is_some());

    let ticking = Rc::new(Cell::new(true));
    let ticker = {
        let (ctx, ticking, tx, tasks) = (ctx.clone(), ticking.clone(), sealed_tx.clone(), tasks.clone());
        glommio::spawn_local(async move {
            let mut out = Vec::new();
            while ticking.get() {
                glommio::timer::sleep(TICK_INTERVAL).await;
                // New partitions start only before the stop (a task started after it would
                // stop at once, unawaited).
                while !ctx.shared.stop.load(Ordering::Relaxed) {
                    let Ok(a) = discovered.try_recv() else { break };
                    tasks.borrow_mut().push(start(a));
                }
                ctx.pipe.borrow_mut().tick(&mut out);
                ctx.dispatch(&mut out, Some(&*tx)).await;
                ctx.poll_acks();
                ctx.delete_spilled().await;
                ctx.publish_snapshot();
            }
        })
    };

    let mut finished = Vec::new();
    loop {
        let next = tasks.borrow_mut().pop();
        match next {
            Some(t) => finished.extend(t.await),
            None if discovering && !shared.stop.load(Ordering::Relaxed) => glommio::timer::sleep(TICK_INTERVAL).await,
            None => break,
        }
    }
    ticking.set(false);
    ticker.await;

    // Drain: seal and write everything, then audit, then checkpoints.
    let mut out = Vec::new();
    ctx.pipe.borrow_mut().seal_all(&mut out);
    ctx.dispatch(&mut out, Some(&*sealed_tx)).await;
    drop(sealed_tx); // the last sender: the encoder ends once its queue is empty
    encoder.await;
    ctx.settle().await;
    ctx.pipe.borrow_mut().flush_audit(&mut out);
    ctx.dispatch(&mut out, None).await;
    ctx.settle().await;
    // The drain's checkpoints are confirmed: readers keeping their own copy may let it go.
    for (slot, mut reader) in finished {
        if let Some(p) = ctx.pipe.borrow_mut().take_checkpointed(slot) {
            reader.checkpointed(p);
        }
    }
    ctx.delete_spilled().await;
    // Everything is durable and checkpointed: every intent of this run can go.
    ctx.pipe.borrow_mut().retire_drained(&mut out);
    ctx.dispatch(&mut out, None).await;
    ctx.settle().await;
    ctx.publish_snapshot();

    let mut pipe = ctx.pipe.borrow_mut();
    if !ctx.fatal.get() {
        assert_eq!(pipe.open_batches(), 0, "core {core} drained with batches still held");
        assert_eq!(pipe.live_intents(), 0, "core {core} drained with intents not retired");
    }
    CoreReport {
        counters: pipe.counters.clone(),
        hist: std::mem::take(&mut pipe.hist),
        errors: ctx.errors.take(),
        fatal: ctx.fatal.get(),
    }
}
