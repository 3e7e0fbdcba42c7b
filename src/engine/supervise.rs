//! The engine's running phases: placing partitions on cores, starting the cores and the I/O
//! edge, supervising them (progress, partitions found while running), and merging what they
//! report.
//!
//! Bounds: partitions found while running wait for their core in a queue of
//! `runtime::core::DISCOVERED_QUEUE_MAX`; past it they are offered again at the next listing.

use super::{Built, Engine, EngineError, RunReport, Started, EXECUTOR_PREEMPT, PROGRESS_POLL};
use crate::delivery::recover::Recovered;
use crate::lineage::Delivered;
use crate::runtime::context::Shared;
use crate::runtime::core::{Assigned, CoreReport};
use crate::runtime::edge::Edge;
use crate::source::{PartitionInfo, Source};
use crate::store::CheckpointStore;
use crate::telemetry::{Counters, Progress, StageHistograms};
use crossbeam_channel::Sender;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The run's events keep the target `sluicegate::engine` that log filters and docs/logs.md name.
const LOG_TARGET: &str = "sluicegate::engine";

/// Partitions known to the run: (source index, partition id).
pub(super) type Known = HashSet<(usize, String)>;

/// Where partitions go: each to one core, with its checkpoint (or the anchor its source fixes
/// now) and the positions an earlier run's files already delivered.
pub(super) struct Placement<'a> {
    pub cores: usize,
    pub checkpoints: Option<Arc<dyn CheckpointStore>>,
    pub delivered: &'a Delivered,
    pub now_us: i64,
}

impl Placement<'_> {
    fn resume(&self, s: &dyn Source, p: &PartitionInfo) -> Result<Option<crate::lineage::Resume>, EngineError> {
        let Some(c) = &self.checkpoints else { return Ok(None) };
        if let Some(r) = c.load(s.name(), &p.id).map_err(EngineError::Store)? {
            return Ok(Some(r));
        }
        // A start that would move on a restart is fixed, durably, first.
        let Some(a) = s.anchor(p, self.now_us) else {
            return Ok(None);
        };
        c.save(&[crate::store::checkpoint::Checkpoint {
            source: s.name().into(),
            partition: p.id.clone(),
            next_position: a.position,
            cursor: a.cursor.clone(),
        }])
        .map_err(EngineError::Store)?;
        Ok(Some(a))
    }

    fn assign(&self, si: usize, s: &dyn Source, p: PartitionInfo) -> Result<(usize, Assigned), EngineError> {
        let resume = self.resume(s, &p)?;
        let core = crate::runtime::placement::core_for(s.name(), p.ordinal, self.cores);
        let delivered = self.delivered.skip(s.name(), &p.id);
        Ok((
            core,
            Assigned {
                source: si as u16,
                info: p,
                resume,
                delivered,
            },
        ))
    }

    /// Phase 4: every partition the sources list now, each to its core.
    pub(super) fn initial(&self, sources: &[Arc<dyn Source>]) -> Result<(Vec<Vec<Assigned>>, Known), EngineError> {
        let mut assigned: Vec<Vec<Assigned>> = vec![Vec::new(); self.cores];
        let mut known = Known::new();
        for (si, s) in sources.iter().enumerate() {
            for p in s.partitions().map_err(|e| EngineError::Source(e.to_string()))? {
                known.insert((si, p.id.clone()));
                let (core, a) = self.assign(si, &**s, p)?;
                assigned[core].push(a);
            }
        }
        Ok((assigned, known))
    }

    /// Partitions of source `si` that appeared since the last listing (Kinesis child shards),
    /// handed to their cores; a full queue leaves one for the next listing.
    fn discover(&self, si: usize, s: &dyn Source, known: &mut Known, to_cores: &[Sender<Assigned>]) {
        let parts = match s.partitions() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(source = s.name(), error = %e, "listing partitions failed, retrying");
                return;
            }
        };
        for p in parts {
            if known.contains(&(si, p.id.clone())) {
                continue;
            }
            let id = p.id.clone();
            match self.assign(si, s, p) {
                Ok((core, a)) => {
                    if to_cores[core].try_send(a).is_ok() {
                        known.insert((si, id));
                    }
                }
                Err(e) => {
                    tracing::warn!(source = s.name(), partition = %id, error = %e, "cannot place a new partition")
                }
            }
        }
    }
}

/// The cores and the edge, running.
pub(super) struct Running {
    handles: Vec<JoinHandle<Result<CoreReport, String>>>,
    edge: Edge,
    shared: Arc<Shared>,
    discovered: Vec<Sender<Assigned>>,
}

impl Running {
    /// Wait for every core, then the edge. A core that failed to start or panicked fails the
    /// run.
    pub(super) fn join(self) -> Result<Vec<CoreReport>, EngineError> {
        let mut reports = Vec::new();
        let mut errors = Vec::new();
        for (core, h) in self.handles.into_iter().enumerate() {
            match h.join() {
                Ok(Ok(r)) => reports.push(r),
                Ok(Err(e)) => errors.push(e),
                Err(_) => errors.push(format!("core {core} panicked; its buffered records were not written")),
            }
        }
        drop(self.discovered);
        drop(self.shared);
        self.edge.join();
        if errors.is_empty() {
            Ok(reports)
        } else {
            Err(EngineError::Core(errors.join("\n")))
        }
    }
}

impl Engine {
    /// Phase 5: the I/O edge and one pinned executor per core, each with its partitions.
    pub(super) fn start(
        &self,
        started: &Started,
        built: &Built,
        assigned: Vec<Vec<Assigned>>,
    ) -> Result<Running, EngineError> {
        let cfg = &self.config;
        let cores = started.cpus.len();
        let (discovered_tx, discovered_rx): (Vec<_>, Vec<_>) = (0..cores)
            .map(|_| crossbeam_channel::bounded::<Assigned>(crate::runtime::core::DISCOVERED_QUEUE_MAX))
            .unzip();
        let edge = Edge::start(
            self.store.clone(),
            built.state.clone(),
            cores,
            cfg.lake.uploads_max as usize,
            Duration::from_millis(cfg.lake.retry_for_ms),
            self.clock.clone(),
        );
        let shared = Arc::new(Shared {
            plan: built.plan.clone(),
            sources: built.sources.clone(),
            clock: self.clock.clone(),
            stop: self.stop.clone(),
            progress: started.progress.clone(),
            snapshots: started.admin.is_some(),
        });
        crate::runtime::nudge::install()
            .map_err(|e| EngineError::Requirement(format!("cannot install the core nudge signal handler: {e}")))?;
        let mut handles = Vec::new();
        for (core, (&cpu, parts)) in started.cpus.iter().zip(assigned).enumerate() {
            let shared = shared.clone();
            let (jobs, replies) = (edge.jobs.clone(), edge.replies[core].clone());
            let discovered = discovered_rx[core].clone();
            let builder = glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(cpu))
                .name(&format!("sluicegate-core{core}"))
                .io_memory(cfg.runtime.io_memory_bytes as usize)
                .preempt_timer(EXECUTOR_PREEMPT);
            let h = std::thread::Builder::new()
                .name(format!("sluicegate-core{core}"))
                .spawn(move || -> Result<CoreReport, String> {
                    let ex = builder
                        .make()
                        .map_err(|e| crate::runtime::executor_start_hint(&e.to_string()))?;
                    Ok(ex.run(crate::runtime::core::run(
                        core, parts, shared, jobs, replies, discovered,
                    )))
                })
                .map_err(|e| EngineError::Requirement(format!("cannot spawn the thread of core {core}: {e}")))?;
            handles.push(h);
        }
        started.ready.store(true, Ordering::Relaxed);
        Ok(Running {
            handles,
            edge,
            shared,
            discovered: discovered_tx,
        })
    }

    /// Phase 6: until every core is done — draw progress, nudge the cores, list the sources
    /// whose partitions come and go. Returns every partition the run placed.
    pub(super) fn supervise(
        &self,
        started: &Started,
        built: &Built,
        running: &Running,
        placement: &Placement,
        mut known: Known,
    ) -> Known {
        tracing::info!(
            target: LOG_TARGET,
            run_id = %built.run_id,
            lake = %self.store.describe(),
            cores = ?started.cpus,
            partitions = known.len(),
            "running"
        );
        let mut line = self.draw_progress.then(|| super::report::ProgressLine::new(started.at));
        let discovering: Vec<(usize, Duration)> = built
            .sources
            .iter()
            .enumerate()
            .filter_map(|(si, s)| s.discovery_interval().map(|d| (si, d)))
            .collect();
        let mut next: Vec<Instant> = discovering.iter().map(|(_, d)| Instant::now() + *d).collect();
        let mut drain_logged = false;
        while !running.handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(PROGRESS_POLL);
            if !drain_logged && self.stopping() {
                drain_logged = true;
                tracing::info!(target: LOG_TARGET, run_id = %built.run_id, "stop requested: draining");
            }
            for ((si, every), next) in discovering.iter().zip(&mut next) {
                if Instant::now() < *next || self.stopping() {
                    continue;
                }
                *next = Instant::now() + *every;
                placement.discover(*si, &*built.sources[*si], &mut known, &running.discovered);
            }
            for h in running.handles.iter().filter(|h| !h.is_finished()) {
                crate::runtime::nudge::nudge(h);
            }
            if let Some(p) = line.as_mut() {
                p.draw(Progress::totals(&started.progress), false);
            }
        }
        if let Some(p) = line.as_mut() {
            p.draw(Progress::totals(&started.progress), true);
        }
        known
    }

    /// Phase 7: the cores' counters and histograms, merged into the run's report.
    pub(super) fn report(
        &self,
        at: Instant,
        cpus: Vec<usize>,
        built: &Built,
        known: Known,
        reports: Vec<CoreReport>,
        recovered: Recovered,
    ) -> RunReport {
        let mut counters = Counters::default();
        let mut hist = StageHistograms::default();
        let mut errors = Vec::new();
        let mut fatal = false;
        for r in reports {
            counters.add(&r.counters);
            hist.merge(&r.hist);
            errors.extend(r.errors);
            fatal |= r.fatal;
        }
        tracing::info!(
            target: LOG_TARGET,
            run_id = %built.run_id,
            records_in = counters.records_in,
            records_etl = counters.records_etl,
            records_quarantined = counters.records_quarantined,
            elapsed_s = at.elapsed().as_secs_f64(),
            fatal,
            "run finished"
        );
        RunReport {
            run_id: built.run_id.clone(),
            lake: self.store.describe(),
            cores: cpus,
            partitions: known.len(),
            elapsed: at.elapsed(),
            counters,
            hist,
            errors,
            fatal,
            interrupted: self.stopping(),
            latency_sample_every: self.config.telemetry.latency_sample_every,
            recovered,
            store_sdk_retries: self.store.sdk_retries(),
        }
    }
}
