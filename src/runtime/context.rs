//! A core's shared state: what every task of the core holds ([`CoreCtx`]), and what every core
//! shares ([`Shared`]).
//!
//! Owns: the core's failures and problems (published to `/ready` and the run screen) and the
//! publishing of its counters. Its other behaviour lives beside the state it drives: the
//! outbox pump (`super::pump`), spilling (`super::spilling`), and the task wiring
//! (`super::core`).
//!
//! Invariant: every `RefCell` here is borrowed only between awaits, never across one (all
//! tasks of a core run on one thread, cooperatively).

use super::edge::{Ack, Job};
use super::outbox::Outbox;
use crate::buffer::spill::SpillDir;
use crate::clock::Clock;
use crate::pipeline::{Pipeline, Plan};
use crate::source::Source;
use crate::telemetry::Progress;
use crossbeam_channel::{Receiver, Sender};
use glommio::channels::local_channel::LocalSender;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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

/// State every task of the core holds.
#[derive(Clone)]
pub struct CoreCtx {
    pub(super) shared: Arc<Shared>,
    pub(super) pipe: Rc<RefCell<Pipeline>>,
    pub(super) outbox: Rc<RefCell<Outbox>>,
    pub(super) errors: Rc<RefCell<Vec<String>>>,
    /// Partitions that cannot take input now (slot → why), published with `errors` as the
    /// core's problems whenever either changes.
    pub(super) unable: Rc<RefCell<std::collections::BTreeMap<usize, String>>>,
    pub(super) fatal: Rc<Cell<bool>>,
    /// This core's spill directory (none: over budget, buffers are sealed early instead).
    pub(super) spill: Option<Rc<SpillDir>>,
    /// Wakes the outbox pump when something is submitted.
    pub(super) wake: Rc<LocalSender<()>>,
}

impl CoreCtx {
    /// The core's state: its own copy of the plan (made on its thread, see `Plan`), its spill
    /// directory, its outbox to the edge. Err: the spill directory cannot be used.
    pub(super) fn new(
        core: usize,
        shared: Arc<Shared>,
        jobs: Sender<Job>,
        replies: Receiver<Ack>,
        wake: LocalSender<()>,
    ) -> Result<CoreCtx, String> {
        let plan = &shared.plan;
        let pipe = Pipeline::new(Arc::new(Plan::clone(plan)), core, shared.clock.clone());
        let spill = match &plan.spill_dir {
            Some(root) => Some(Rc::new(
                SpillDir::new(root, core, &plan.run_id, plan.spill_bytes_max)
                    .map_err(|e| format!("spill directory {}: {e}", root.display()))?,
            )),
            None => None,
        };
        Ok(CoreCtx {
            pipe: Rc::new(RefCell::new(pipe)),
            outbox: Rc::new(RefCell::new(Outbox::new(core, plan.outbox, jobs, replies))),
            errors: Rc::new(RefCell::new(Vec::new())),
            unable: Rc::new(RefCell::new(std::collections::BTreeMap::new())),
            fatal: Rc::new(Cell::new(false)),
            spill,
            wake: Rc::new(wake),
            shared,
        })
    }

    pub(super) fn fail(&self, message: String, fatal: bool) {
        tracing::error!(core = self.pipe.borrow().core, error = %message, "core failed");
        self.errors.borrow_mut().push(message);
        self.publish_problems();
        if fatal {
            self.fatal.set(true);
            self.shared.stop.store(true, Ordering::Relaxed);
        }
    }

    /// Account time a task spent waiting for downstream (the encoder or the store).
    pub(super) fn waited_since(&self, t0: u64) {
        let ns = self.shared.clock.monotonic_ns() - t0;
        self.pipe.borrow_mut().counters.backpressure_ns += ns;
    }

    pub(super) fn wake_pump(&self) {
        let _ = self.wake.try_send(()); // full: a wake-up is already pending
    }

    /// Note whether the partition in `slot` can take input (`why` when not); publishes the
    /// core's problems when that changed.
    pub(super) fn note_unable(&self, slot: usize, why: Option<String>) {
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

    pub(super) fn publish_problems(&self) {
        let problems = self
            .errors
            .borrow()
            .iter()
            .chain(self.unable.borrow().values())
            .cloned()
            .collect();
        self.shared.progress[self.pipe.borrow().core].set_problems(problems);
    }

    pub(super) fn publish(&self) {
        let pipe = self.pipe.borrow();
        self.shared.progress[pipe.core].publish(&pipe.counters);
    }

    /// Counters and histograms for the admin endpoint, if it runs (on the tick, not per batch).
    pub(super) fn publish_snapshot(&self) {
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
