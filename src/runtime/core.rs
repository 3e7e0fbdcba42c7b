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
//!   (`super::pump`).
//!
//! This file is the wiring of those tasks, and the two steps every producer of outputs shares:
//! `dispatch` (outputs to the encoder or the outbox) and `admit` (backpressure before a fetch).
//! The state they share is `super::context::CoreCtx`; spilling is `super::spilling`.
//!
//! Drain (end of input, Ctrl-C/SIGTERM via the stop flag, or a failure elsewhere): partition
//! tasks stop fetching; everything open is sealed and written; once every file is durable the
//! audit rows are flushed, then the checkpoints; the core returns its counters and histograms.

use super::context::{CoreCtx, Shared};
use super::edge::{Ack, Job};
use super::pump::{pump_task, EDGE_POLL_INTERVAL};
use crate::buffer::Sealed;
use crate::pipeline::{Checkpoints, Output};
use crate::source::{Fetch, FetchBatch, PartitionInfo, PartitionReader};
use crate::telemetry::{Counters, StageHistograms, StageId};
use crossbeam_channel::{Receiver, Sender};
use glommio::channels::local_channel::{self, LocalSender};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
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

/// A partition assigned to this core, with where to resume it.
#[derive(Debug, Clone)]
pub struct Assigned {
    pub source: u16,
    pub info: PartitionInfo,
    pub resume: Option<crate::lineage::Resume>,
    /// Positions past `resume` already delivered by files of a crashed run: the replay skips them.
    pub delivered: crate::lineage::Skip,
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

impl CoreCtx {
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
}

/// A reader whose task has ended, kept until the drain's checkpoints are confirmed (see `run`).
type Finished = (usize, Box<dyn PartitionReader>);

async fn partition_task(
    ctx: CoreCtx,
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
        ctx.after_fetch(slot, &mut *reader);
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

/// Run one core until its partitions are done or the stop flag is set, then drain.
pub async fn run(
    core: usize,
    partitions: Vec<Assigned>,
    shared: Arc<Shared>,
    jobs: Sender<Job>,
    replies: Receiver<Ack>,
    discovered: Receiver<Assigned>,
) -> CoreReport {
    let (wake_tx, wake_rx) = local_channel::new_bounded(1);
    let ctx = match CoreCtx::new(core, shared.clone(), jobs, replies, wake_tx) {
        Ok(c) => c,
        Err(message) => {
            return CoreReport {
                errors: vec![message],
                fatal: true,
                ..CoreReport::default()
            }
        }
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
                ctx.tick(&mut out, &tx).await;
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
    let sealed_tx = Rc::into_inner(sealed_tx).expect("the partitions and the ticker are done");
    ctx.drain(sealed_tx, encoder, finished).await;
    pumping.set(false);
    ctx.wake_pump();
    pump.await;
    ctx.publish_snapshot();
    ctx.report()
}

impl CoreCtx {
    /// What a reader says after each fetch: whether it can take input, its edge's counts, its
    /// lag; and what it is told: the newest confirmed checkpoint of its partition.
    fn after_fetch(&self, slot: usize, reader: &mut dyn PartitionReader) {
        let unable = reader.unable();
        if unable.is_some() || self.unable.borrow().contains_key(&slot) {
            self.note_unable(slot, unable);
        }
        let mut pipe = self.pipe.borrow_mut();
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

    /// What the ticker does every [`TICK_INTERVAL`]: seal what is due by age, flush the audit
    /// when due, apply acknowledgements, delete spill files whose records are durable, publish.
    async fn tick(&self, out: &mut Vec<Output>, sealed: &LocalSender<(Sealed, String)>) {
        self.pipe.borrow_mut().tick(out);
        self.dispatch(out, Some(sealed)).await;
        self.poll_acks();
        self.delete_spilled().await;
        self.publish_snapshot();
    }

    /// The drain: seal and write everything, then the audit, then the checkpoints (telling the
    /// readers that keep their own copy), then retire every intent of this run.
    async fn drain(
        &self,
        sealed_tx: LocalSender<(Sealed, String)>,
        encoder: glommio::Task<()>,
        finished: Vec<Finished>,
    ) {
        let mut out = Vec::new();
        self.pipe.borrow_mut().seal_all(&mut out);
        self.dispatch(&mut out, Some(&sealed_tx)).await;
        drop(sealed_tx); // the last sender: the encoder ends once its queue is empty
        encoder.await;
        self.settle().await;
        self.pipe.borrow_mut().flush_audit(&mut out);
        self.dispatch(&mut out, None).await;
        self.settle().await;
        // The drain's checkpoints are confirmed: readers keeping their own copy may let it go.
        for (slot, mut reader) in finished {
            if let Some(p) = self.pipe.borrow_mut().take_checkpointed(slot) {
                reader.checkpointed(p);
            }
        }
        self.delete_spilled().await;
        // Everything is durable and checkpointed: every intent of this run can go.
        self.pipe.borrow_mut().retire_drained(&mut out);
        self.dispatch(&mut out, None).await;
        self.settle().await;
    }

    /// The core's counters, histograms and errors, once it has drained.
    fn report(&self) -> CoreReport {
        let mut pipe = self.pipe.borrow_mut();
        if !self.fatal.get() {
            assert_eq!(
                pipe.open_batches(),
                0,
                "core {} drained with batches still held",
                pipe.core
            );
            assert_eq!(
                pipe.live_intents(),
                0,
                "core {} drained with intents not retired",
                pipe.core
            );
        }
        CoreReport {
            counters: pipe.counters.clone(),
            hist: std::mem::take(&mut pipe.hist),
            errors: self.errors.take(),
            fatal: self.fatal.get(),
        }
    }
}
