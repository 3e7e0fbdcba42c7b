//! The engine: from a validated [`Config`] to running cores, and back to a [`RunReport`].
//!
//! `Engine::builder(config)` takes the production defaults (system clock, local-directory
//! store, checkpoints under `state.dir`) and lets an embedder or a test inject its own clock,
//! object store and stop flag. [`Engine::run`] goes through its phases in order, each a
//! function of its own:
//! 1. **checks** — what the kernel must allow (io_uring, locked memory); the admin endpoint
//!    comes up, saying "starting" until the cores run;
//! 2. **build** — the keyring, the sources, every table compiled (schemas registered under
//!    `_schemas/`, inferred from sample records where asked), the routes, the plan (`build`);
//! 3. **recover** — what a dead run left: upload intents resolved, spill files recovered into
//!    the lake (`delivery`), before any source resumes;
//! 4. **place** — every source partition on its core (`runtime::placement`), with its
//!    checkpoint (`supervise::Placement`);
//! 5. **start** — the I/O edge and one pinned executor per core;
//! 6. **supervise** — progress, and for sources whose partitions come and go (Kinesis shards)
//!    a new listing every `discovery_interval`, new partitions handed to their cores;
//! 7. **report** — the cores' counters and histograms merged.

use crate::audit::FileRow;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::delivery::recover::Recovered;
use crate::delivery::Resolution;
use crate::load::layout::{run_id, Layout};
use crate::pipeline::Plan;
use crate::runtime::edge::StateStores;
use crate::source::push::{PushHandle, PushSource};
use crate::source::Source;
use crate::store::s3::S3Store;
use crate::store::{CheckpointStore, IntentStore, LocalCheckpoints, LocalDirStore, LocalIntents, ObjectStore};
use crate::telemetry::Progress;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod build;
pub mod report;
mod supervise;

pub use build::*;
pub use report::RunReport;

/// How often the main thread draws progress and nudges the cores (`runtime::nudge`).
pub const PROGRESS_POLL: Duration = crate::runtime::nudge::NUDGE_INTERVAL;
/// Preemption quantum of the executors: how long a task may run before `yield_if_needed`
/// yields. Short, so encoding a large file never stalls a core's other partitions for long.
pub const EXECUTOR_PREEMPT: Duration = Duration::from_millis(10);

/// Why a run could not start or finish. Each kind carries the message the run prints; match on
/// the kind to decide what to do (a configuration to fix, a machine to change, a store to
/// check).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The configuration is invalid, or names what does not work (a schema, a key, a table).
    #[error("{0}")]
    Config(String),
    /// The machine does not allow the run: io_uring, locked memory, cores, threads, signals.
    #[error("{0}")]
    Requirement(String),
    /// A source could not be built, checked, listed or sampled.
    #[error("{0}")]
    Source(String),
    /// The lake or the state directory failed (opening it, a schema, a checkpoint, a lock).
    #[error("{0}")]
    Store(String),
    /// Recovering what a crashed run left (upload intents, spill files) failed; nothing ran.
    #[error("{0}")]
    Recovery(String),
    /// A core could not start, or panicked.
    #[error("{0}")]
    Core(String),
}

pub struct EngineBuilder {
    config: Config,
    clock: Option<Arc<dyn Clock>>,
    store: Option<Arc<dyn ObjectStore>>,
    stop: Option<Arc<AtomicBool>>,
    progress: bool,
    supplied: HashMap<String, Arc<dyn Source>>,
}

impl EngineBuilder {
    /// The records of the `[sources.in_process]` source named `name` (its name in the config;
    /// the source's own `name()` must match).
    pub fn in_process_source(mut self, name: &str, source: Arc<dyn Source>) -> Self {
        self.supplied.insert(name.to_string(), source);
        self
    }

    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    pub fn store(mut self, store: Arc<dyn ObjectStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// A flag that, once set, drains the run (what Ctrl-C and SIGTERM set).
    pub fn stop_flag(mut self, stop: Arc<AtomicBool>) -> Self {
        self.stop = Some(stop);
        self
    }

    /// Draw a progress line on standard error while running.
    pub fn progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    pub fn build(self) -> Result<Engine, EngineError> {
        self.config
            .validate()
            .map_err(|e| EngineError::Config(format!("invalid configuration:\n{e}")))?;
        for (name, source) in &self.supplied {
            let declared = self
                .config
                .sources
                .iter()
                .any(|s| &s.name == name && s.in_process.is_some());
            if !declared || source.name() != name {
                return Err(EngineError::Config(format!(
                    "in-process source {name:?} (named {:?}) matches no [sources.in_process] of that name in the configuration",
                    source.name()
                )));
            }
        }
        let cpus = crate::runtime::resolve_cores(&self.config.runtime.cores).map_err(EngineError::Requirement)?;
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let mut supplied = self.supplied;
        let mut pushers = HashMap::new();
        for s in &self.config.sources {
            if let Some(p) = &s.push {
                let partitions = if p.partitions == 0 {
                    cpus.len()
                } else {
                    p.partitions as usize
                };
                let source = PushSource::new(&s.name, p, partitions, clock.now_us());
                pushers.insert(s.name.clone(), source.handle());
                supplied.insert(s.name.clone(), Arc::new(source) as Arc<dyn Source>);
            }
        }
        let store: Arc<dyn ObjectStore> = match (self.store, &self.config.lake.s3) {
            (Some(s), _) => s,
            (None, Some(s3)) => Arc::new(S3Store::new(s3).map_err(|e| EngineError::Store(e.to_string()))?),
            (None, None) => Arc::new(
                LocalDirStore::new(&self.config.lake.dir, self.config.lake.fsync)
                    .map_err(|e| EngineError::Store(e.to_string()))?,
            ),
        };
        Ok(Engine {
            progress: Arc::new((0..cpus.len()).map(|_| Progress::default()).collect()),
            config: self.config,
            clock,
            store,
            stop: self.stop.unwrap_or_default(),
            draw_progress: self.progress,
            supplied,
            pushers,
            cpus,
        })
    }
}

pub struct Engine {
    config: Config,
    clock: Arc<dyn Clock>,
    store: Arc<dyn ObjectStore>,
    stop: Arc<AtomicBool>,
    /// Draw a progress line while running.
    draw_progress: bool,
    supplied: HashMap<String, Arc<dyn Source>>,
    /// The handles of the `[sources.push]` sources, by name.
    pushers: HashMap<String, PushHandle>,
    /// The CPUs the cores run on, one core each.
    cpus: Vec<usize>,
    /// What each core publishes as it runs (read by `/metrics`, the progress line, [`Metrics`]).
    progress: Arc<Vec<Progress>>,
}

/// The run's counters while it runs, read from any thread (see [`Engine::metrics`]).
#[derive(Clone)]
pub struct Metrics(Arc<Vec<Progress>>);

/// Records so far, summed over the cores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub records_in: u64,
    pub records_etl: u64,
    pub records_quarantined: u64,
    pub records_dropped: u64,
}

impl Metrics {
    /// The counters now (each core publishes after every batch it processes).
    pub fn totals(&self) -> Totals {
        let (records_in, records_etl, records_quarantined, records_dropped) = Progress::totals(&self.0);
        Totals {
            records_in,
            records_etl,
            records_quarantined,
            records_dropped,
        }
    }

    /// What each core cannot do now (a failed partition, a full inbox disk): `/ready`'s reasons.
    pub fn problems(&self) -> Vec<String> {
        self.0.iter().flat_map(|p| p.problems()).collect()
    }
}

/// What the checks found and started: the cores, the admin endpoint, the progress the cores
/// publish.
struct Started {
    at: Instant,
    cpus: Vec<usize>,
    progress: Arc<Vec<Progress>>,
    ready: Arc<AtomicBool>,
    admin: Option<crate::admin::Admin>,
}

/// What the build phase made: everything a core needs, and the stores of the run's state.
struct Built {
    run_id: String,
    plan: Arc<Plan>,
    sources: Vec<Arc<dyn Source>>,
    checkpoints: Option<Arc<dyn CheckpointStore>>,
    state: Option<StateStores>,
    /// Held for the whole run: one process per state directory.
    _state_lock: Option<crate::store::checkpoint::StateLock>,
}

fn random_u16() -> u16 {
    let mut b = [0u8; 2];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u16::from_le_bytes(b)
}

impl Engine {
    pub fn builder(config: Config) -> EngineBuilder {
        EngineBuilder {
            config,
            clock: None,
            store: None,
            stop: None,
            progress: false,
            supplied: HashMap::new(),
        }
    }

    /// The handle of the `[sources.push]` source named `source`: push records from any thread,
    /// before or while the engine runs (see [`PushHandle`]).
    pub fn push_handle(&self, source: &str) -> Result<PushHandle, EngineError> {
        self.pushers
            .get(source)
            .cloned()
            .ok_or_else(|| EngineError::Config(format!("no [sources.push] source is named {source:?}")))
    }

    /// The flag that drains the run once set (the one given to the builder, or the engine's own).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// The run's counters, readable from any thread while it runs.
    pub fn metrics(&self) -> Metrics {
        Metrics(self.progress.clone())
    }

    /// Run until every partition ends or the stop flag is set, then drain (see the module
    /// comment for the phases).
    pub fn run(self) -> Result<RunReport, EngineError> {
        let started = self.checks()?;
        let built = self.build_run(started.cpus.len())?;
        let (resolution, recovered) = self.recover(&built)?;
        let placement = supervise::Placement {
            cores: started.cpus.len(),
            checkpoints: built.checkpoints.clone(),
            delivered: &resolution.delivered,
            now_us: self.clock.now_us(),
        };
        let (assigned, known) = placement.initial(&built.sources)?;
        let running = self.start(&started, &built, assigned)?;
        let known = self.supervise(&started, &built, &running, &placement, known);
        let reports = running.join()?;
        // Intents a crashed run left that this run's checkpoints have now passed. (Safe at
        // any end: this run's spill files hold none of their records, which were skipped.)
        if let Some(s) = &built.state {
            if let Err(e) = crate::delivery::retire_covered(&resolution.committed, &*s.intents, &*s.checkpoints) {
                tracing::warn!(error = %e, "retiring upload intents of an earlier run failed");
            }
        }
        drop(started.admin);
        Ok(self.report(started.at, started.cpus, &built, known, reports, recovered))
    }

    /// Phase 1: what the kernel must allow, and the admin endpoint (up before recovery, so
    /// `/ready` says "starting" while it runs).
    fn checks(&self) -> Result<Started, EngineError> {
        let at = Instant::now();
        let cfg = &self.config;
        let cpus = self.cpus.clone();
        crate::runtime::check_io_uring().map_err(EngineError::Requirement)?;
        crate::runtime::ensure_memlock(cpus.len(), cfg.runtime.io_memory_bytes).map_err(EngineError::Requirement)?;
        let progress = self.progress.clone();
        let ready = Arc::new(AtomicBool::new(false));
        let admin = match &cfg.admin {
            Some(a) => {
                let view = crate::admin::AdminView {
                    progress: progress.clone(),
                    ready: ready.clone(),
                    stop: self.stop.clone(),
                    started: at,
                    started_at: std::time::SystemTime::now(),
                    token: None,
                    store: self.store.clone(),
                };
                let admin = crate::admin::start(a, view).map_err(EngineError::Requirement)?;
                tracing::info!(addr = %admin.addr, "admin endpoint listening");
                Some(admin)
            }
            None => None,
        };
        Ok(Started {
            at,
            cpus,
            progress,
            ready,
            admin,
        })
    }

    /// Phase 2: the keyring, the sources (checked), the tables and the plan, and the state
    /// directory's lock and stores.
    fn build_run(&self, cores: usize) -> Result<Built, EngineError> {
        let cfg = &self.config;
        let keyring = Arc::new(load_keyring(cfg)?);
        let now_us = self.clock.now_us();
        let run_id = run_id(now_us, random_u16());
        let state_lock = match &cfg.state.dir {
            Some(d) => Some(crate::store::checkpoint::StateLock::acquire(d).map_err(EngineError::Store)?),
            None => None,
        };
        let checkpoints: Option<Arc<dyn CheckpointStore>> = cfg
            .state
            .dir
            .as_ref()
            .map(|d| Arc::new(LocalCheckpoints::new(d)) as Arc<dyn CheckpointStore>);
        let sources = build_sources(cfg, &keyring, &self.clock, checkpoints.clone(), cores, &self.supplied)?;
        for s in &sources {
            s.preflight().map_err(|e| EngineError::Source(e.to_string()))?;
        }
        let routers = build_routers(cfg);
        let layout = Layout::new(&cfg.lake.prefix);
        let tables = compile_tables(cfg, &sources, &routers, &keyring, &*self.clock, &*self.store, &layout)?;
        let plan = Arc::new(build_plan(
            cfg,
            run_id.clone(),
            keyring,
            routers,
            tables,
            checkpoints.is_some(),
        ));
        let state = cfg
            .state
            .dir
            .as_ref()
            .zip(checkpoints.clone())
            .map(|(d, c)| StateStores {
                checkpoints: c,
                intents: Arc::new(LocalIntents::new(d)) as Arc<dyn IntentStore>,
            });
        Ok(Built {
            run_id,
            plan,
            sources,
            checkpoints,
            state,
            _state_lock: state_lock,
        })
    }

    /// Phase 3, the delivery contract (see `delivery`): resolve the upload intents a dead run
    /// left, then its spill files (into the lake, or left to replay) before any source resumes
    /// from its checkpoint, passing over what the committed intents delivered.
    fn recover(&self, built: &Built) -> Result<(Resolution, Recovered), EngineError> {
        let resolution = match &built.state {
            Some(s) => crate::delivery::resolve(&*s.intents, &*self.store)
                .map_err(|e| EngineError::Recovery(format!("resolving upload intents: {e}")))?,
            None => Default::default(),
        };
        let recovered = match &built.plan.spill_dir {
            Some(root) => crate::delivery::recover::recover(
                root,
                &built.plan,
                &*self.store,
                built.checkpoints.as_deref(),
                &resolution.delivered,
            )
            .map_err(|e| EngineError::Recovery(format!("recovering spill files: {e}")))?,
            None => Default::default(),
        };
        for t in &recovered.torn {
            tracing::warn!(spill = %t, "cut a torn spill tail");
        }
        let mut rows = resolution.file_rows(self.clock.now_us());
        rows.extend(recovered.rows.iter().cloned().map(|r| FileRow {
            written_at_us: self.clock.now_us(),
            ..r
        }));
        self.write_recovery_audit(&built.plan, &rows)?;
        if let Some(s) = &built.state {
            crate::delivery::retire_covered(&resolution.committed, &*s.intents, &*s.checkpoints)
                .map_err(|e| EngineError::Recovery(format!("retiring upload intents: {e}")))?;
        }
        Ok((resolution, recovered))
    }

    /// The audit rows of the files recovery found committed or wrote, as one audit file. Its
    /// name derives from the rows' keys, so a crash during recovery rewrites the same object.
    fn write_recovery_audit(&self, plan: &Plan, rows: &[FileRow]) -> Result<(), EngineError> {
        if rows.is_empty() {
            return Ok(());
        }
        let (mut a, mut b) = (0u32, u32::MAX);
        for r in rows {
            a = crc32c::crc32c_append(a, r.key.as_bytes());
            b = crc32c::crc32c_append(b, r.key.as_bytes());
        }
        let name = format!("recovery-{a:08x}{b:08x}-{}", rows.len());
        let batch = crate::audit::file_batch(rows);
        let bytes = crate::load::parquet::encode(&batch, plan.audit_props.clone())
            .map_err(|e| EngineError::Recovery(format!("encoding the recovery audit file: {}", e.0)))?;
        let key = plan.layout.audit("file", self.clock.now_us(), &name);
        self.store
            .put(&key, &bytes)
            .map_err(|e| EngineError::Recovery(format!("writing the recovery audit file: {e}")))
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}
