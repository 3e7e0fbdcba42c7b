//! One core's life: its partition tasks, its encoder and ticker, its hand-off to the edge.
//!
//! Tasks on a core (all cooperative, on one pinned thread, sharing state through `Rc<RefCell>`
//! that is never borrowed across an `.await`):
//! - one **partition task** per owned partition: fetch → `Pipeline::process_batch` →
//!   dispatch outputs; it yields between batches, and waits when downstream is full
//!   (backpressure: the memory budget, the sealed queue, a full outbox and spill);
//! - one **encoder task** (`super::encoder`): sealed ETL buffers → Parquet, in chunks with
//!   yields between them, so a large file never stalls the partitions for long;
//! - one **ticker**: every [`TICK_INTERVAL`], seals what is due by age and flushes audit rows;
//! - one **pump**: hands the outbox's files, checkpoints and retirements to the I/O edge as it
//!   takes them (reading parked files back in their turn), and applies its acknowledgements
//!   (`super::outbox`).
//!
//! Drain (end of input, Ctrl-C/SIGTERM via the stop flag, or a failure elsewhere): partition
//! tasks stop fetching; everything open is sealed and written; once every file is durable the
//! audit rows are flushed, then the checkpoints; the core returns its counters and histograms.

use super::clock::Clock;
use super::edge::{Done, Job};
use super::outbox::{Body, InFlight, Next, Outbox, Sent};
use crate::buffer::spill::SpillDir;
use crate::buffer::Sealed;
use crate::pipeline::{Checkpoints, Output, Pipeline, Plan};
use crate::source::{Fetch, FetchBatch, PartitionInfo, Source};
use crate::telemetry::{Counters, Progress, StageHistograms, StageId};
use crossbeam_channel::{Receiver, Sender};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use std::cell::{Cell, RefCell};
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

/// State every task of the core holds.
#[derive(Clone)]
pub(super) struct Ctx {
    pub(super) shared: Arc<Shared>,
    pub(super) pipe: Rc<RefCell<Pipeline>>,
    outbox: Rc<RefCell<Outbox>>,
    errors: Rc<RefCell<Vec<String>>>,
    /// Partitions that cannot take input now (slot → why), published with `errors` as the
    /// core's problems whenever either changes.
    unable: Rc<RefCell<std::collections::BTreeMap<usize, String>>>,
    fatal: Rc<Cell<bool>>,
    /// This core's spill directory (none: over budget, buffers are sealed early instead).
    spill: Option<Rc<SpillDir>>,
    /// Wakes the outbox pump when something is submitted.
    wake: Rc<LocalSender<()>>,
}

impl Ctx {
    pub(super) fn fail(&self, message: String, fatal: bool) {
        tracing::error!(core = self.pipe.borrow().core, error = %message, "core failed");
        self.errors.borrow_mut().push(message);
        self.publish_problems();
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
            let acked = self.outbox.borrow_mut().ack();
            let (done, item) = match acked {
                Ok(Some(a)) => a,
                Ok(None) => return true,
                Err(()) => return false,
            };
            self.pipe.borrow_mut().counters.store_retries += u64::from(done.retries);
            match (done.result, item) {
                (Ok(()), InFlight::File(f)) => {
                    let mut pipe = self.pipe.borrow_mut();
                    pipe.hist.record(StageId::Write, done.write_ns);
                    if let Some(bytes) = done.bytes {
                        pipe.recycle(f.meta.zone, bytes);
                    }
                    pipe.on_durable(*f);
                }
                (Ok(()), InFlight::Checkpoint(slots)) => self.pipe.borrow_mut().checkpointed(&slots),
                (Ok(()), InFlight::Retire) => {}
                (Err(e), _) => self.fail(format!("store write failed, stopping the run: {e}"), true),
            }
        }
    }

    /// Account time a task spent waiting for downstream (the encoder or the store).
    fn waited_since(&self, t0: u64) {
        let ns = self.shared.clock.monotonic_ns() - t0;
        self.pipe.borrow_mut().counters.backpressure_ns += ns;
    }

    fn wake_pump(&self) {
        let _ = self.wake.try_send(()); // full: a wake-up is already pending
    }

    /// Hand a file to the outbox: its bytes wait in memory while the outbox has room, else on
    /// disk while the spill has room; else (backpressure) this task waits for the store.
    pub(super) async fn submit_file(&self, file: crate::load::ReadyFile) {
        let (in_flight, mut bytes) = self.pipe.borrow().in_flight(file);
        let key = in_flight.meta.key.clone();
        // A file that will wait keeps only its bytes: a buffer sized for a full segment (RAW,
        // sealed early by age) goes back to its writer rather than sit mostly empty, and resident.
        if bytes.capacity() - bytes.len() > bytes.len() / 4 && self.outbox.borrow().would_wait() {
            let exact = bytes.clone();
            self.pipe
                .borrow_mut()
                .recycle(in_flight.meta.zone, std::mem::replace(&mut bytes, exact));
        }
        let t0 = self.shared.clock.monotonic_ns();
        let mut waited = false;
        let meta = in_flight.memory_bytes();
        let body = loop {
            let (fits, may_park) = {
                let ob = self.outbox.borrow();
                (ob.fits_in_memory(bytes.len(), meta), ob.may_park(meta))
            };
            if fits {
                break Body::Memory(bytes);
            }
            if let Some(spill) = self
                .spill
                .as_ref()
                .filter(|s| may_park && s.has_room_to_park(bytes.len()))
            {
                match spill.park(&bytes).await {
                    Ok(id) => {
                        let mut pipe = self.pipe.borrow_mut();
                        pipe.counters.files_parked += 1;
                        pipe.counters.set_spill_bytes(spill.bytes());
                        break Body::Parked { id, len: bytes.len() };
                    }
                    Err(e) => {
                        self.fail(format!("parking {key} on disk failed, stopping the run: {e}"), true);
                        return;
                    }
                }
            }
            if !self.poll_acks() {
                self.fail("the I/O edge has stopped".into(), true);
                return;
            }
            waited = true;
            glommio::timer::sleep(EDGE_POLL_INTERVAL).await;
        };
        if waited {
            self.waited_since(t0);
        }
        self.outbox.borrow_mut().put(key, body, in_flight);
        self.wake_pump();
    }

    /// Hand the outbox what it can send to the edge now, reading parked files back in their
    /// turn. Returns whether anything moved.
    async fn pump(&self) -> bool {
        let mut moved = false;
        loop {
            let next = self.outbox.borrow_mut().next_step();
            match next {
                Next::Send(mut job) => {
                    if let Job::Put { token, intent, .. } = &mut job {
                        if intent.is_none() {
                            let ob = self.outbox.borrow();
                            let f = ob.file(*token).expect("a put's bookkeeping waits for its ack");
                            *intent = self.pipe.borrow().intent_for(f).map(Box::new);
                        }
                    }
                    let sent = self.outbox.borrow_mut().send(job);
                    match sent {
                        Sent::Yes => moved = true,
                        Sent::Full => return moved,
                        Sent::Gone => {
                            self.fail("the I/O edge has stopped".into(), true);
                            return moved;
                        }
                    }
                }
                Next::Unpark { token, id, len } => {
                    let spill = self.spill.as_ref().expect("a parked file implies a spill directory");
                    match spill.unpark(id, len).await {
                        Ok(bytes) => {
                            self.outbox.borrow_mut().unparked(token, bytes);
                            self.pipe.borrow_mut().counters.set_spill_bytes(spill.bytes());
                            moved = true;
                        }
                        Err(e) => {
                            self.fail(
                                format!("reading back a parked file failed, stopping the run: {e}"),
                                true,
                            );
                            return moved;
                        }
                    }
                }
                Next::Wait => return moved,
            }
        }
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
                Output::Checkpoint(Checkpoints { checkpoints, slots }) => {
                    self.outbox.borrow_mut().checkpoint(checkpoints, slots);
                    self.wake_pump();
                }
                Output::Retire(ids) => {
                    self.outbox.borrow_mut().retire(ids);
                    self.wake_pump();
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
                pipe.counters.set_spill_bytes(spill.bytes());
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
    pub(super) async fn read_back(&self, run: &[crate::buffer::ring::Loc]) -> Result<(), String> {
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
                    pipe.counters.set_spill_bytes(spill.bytes());
                }
                Err(e) => self.fail(format!("deleting spill file of segment {seg}: {e}"), false),
            }
        }
    }

    /// Wait until the edge has acknowledged everything this core submitted.
    async fn settle(&self) {
        loop {
            let edge_alive = self.poll_acks();
            let pending = self.outbox.borrow().unacked();
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

    /// Note whether the partition in `slot` can take input (`why` when not); publishes the
    /// core's problems when that changed.
    fn note_unable(&self, slot: usize, why: Option<String>) {
        let changed = {
            let mut unable = self.unable.borrow_mut();
            match why {
                None => unable.remove(&slot).is_some(),
                Some(w) if unable.get(&slot) == Some(&w) => false,
                Some(w) => {
                    tracing::warn!(core = self.pipe.borrow().core, problem = %w, "a partition cannot take input");
                    unable.insert(slot, w);
                    true
                }
            }
        };
        if changed {
            self.publish_problems();
        }
    }

    fn publish_problems(&self) {
        let problems = self
            .errors
            .borrow()
            .iter()
            .chain(self.unable.borrow().values())
            .cloned()
            .collect();
        self.shared.progress[self.pipe.borrow().core].set_problems(problems);
    }

    fn publish(&self) {
        let pipe = self.pipe.borrow();
        self.shared.progress[pipe.core].publish(&pipe.counters);
    }

    /// Counters and histograms for the admin endpoint, if it runs (on the tick, not per batch).
    fn publish_snapshot(&self) {
        let mut pipe = self.pipe.borrow_mut();
        pipe.counters.memory_bytes = pipe.memory_bytes();
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
        let unable = reader.unable();
        if unable.is_some() || ctx.unable.borrow().contains_key(&slot) {
            ctx.note_unable(slot, unable);
        }
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

/// The outbox's pump: hands submissions to the edge as it takes them, and applies its
/// acknowledgements. Polls while anything is unacknowledged; otherwise sleeps until woken.
async fn pump_task(ctx: Ctx, wake: LocalReceiver<()>, pumping: Rc<Cell<bool>>) {
    loop {
        let alive = ctx.poll_acks();
        let moved = ctx.pump().await;
        if !alive {
            return; // nothing more will be acknowledged: whoever waits reports it
        }
        if moved {
            glommio::executor().yield_if_needed().await;
        } else if ctx.outbox.borrow().busy() {
            glommio::timer::sleep(EDGE_POLL_INTERVAL).await;
        } else if !pumping.get() || wake.recv().await.is_none() {
            return;
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
    // The core's own copy of the plan, made on its thread (see `Plan`).
    let pipe = Pipeline::new(Arc::new(Plan::clone(&shared.plan)), core, shared.clock.clone());
    let (wake_tx, wake_rx) = local_channel::new_bounded(1);
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
        outbox: Rc::new(RefCell::new(Outbox::new(core, plan.outbox, jobs, replies))),
        errors: Rc::new(RefCell::new(Vec::new())),
        unable: Rc::new(RefCell::new(std::collections::BTreeMap::new())),
        fatal: Rc::new(Cell::new(false)),
        spill,
        wake: Rc::new(wake_tx),
    };
    let pumping = Rc::new(Cell::new(true));
    let pump = glommio::spawn_local(pump_task(ctx.clone(), wake_rx, pumping.clone()));
    let (sealed_tx, sealed_rx) = local_channel::new_bounded(SEALED_QUEUE_MAX);
    let sealed_tx = Rc::new(sealed_tx);
    let encoder = glommio::spawn_local(super::encoder::encoder_task(ctx.clone(), sealed_rx));

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
    pumping.set(false);
    ctx.wake_pump();
    pump.await;
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
