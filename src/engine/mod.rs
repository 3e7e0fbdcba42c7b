//! The engine: from a validated [`Config`] to running cores, and back to a [`RunReport`].
//!
//! `Engine::builder(config)` takes the production defaults (system clock, local-directory
//! store, checkpoints under `state.dir`) and lets an embedder or a test inject its own clock,
//! object store and stop flag. `run` then:
//! 1. checks what the kernel must allow (io_uring, locked memory) and resolves the cores;
//! 2. loads the keyring, builds the sources, compiles every table (schemas registered under
//!    `_schemas/`, inferred from sample records where asked), and the routes (`build`);
//! 3. places every source partition on its core (`runtime::placement`), with its checkpoint;
//! 4. starts the I/O edge and one pinned executor per core, and waits for them, printing
//!    progress if asked and, for sources whose partitions come and go (Kinesis shards),
//!    listing them again every `discovery_interval` and handing new ones to their cores;
//! 5. merges the cores' counters and histograms into the report.

use crate::audit::FileRow;
use crate::config::Config;
use crate::delivery::{IntentStore, LocalIntents};
use crate::extract::schema::SchemaFile;
use crate::load::layout::{run_id, Layout};
use crate::pipeline::Plan;
use crate::runtime::clock::{Clock, SystemClock};
use crate::runtime::core::{Assigned, CoreReport, Shared};
use crate::runtime::edge::{Edge, StateStores};
use crate::source::Source;
use crate::store::s3::S3Store;
use crate::store::{CheckpointStore, LocalCheckpoints, LocalDirStore, ObjectStore};
use crate::telemetry::report::RunReport;
use crate::telemetry::{Counters, Progress, StageHistograms};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod build;
pub use build::*;

/// How often the main thread draws progress and nudges the cores (`runtime::nudge`).
pub const PROGRESS_POLL: Duration = crate::runtime::nudge::NUDGE_INTERVAL;
/// Preemption quantum of the executors: how long a task may run before `yield_if_needed`
/// yields. Short, so encoding a large file never stalls a core's other partitions for long.
pub const EXECUTOR_PREEMPT: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EngineError(pub String);

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
            .map_err(|e| EngineError(format!("invalid configuration:\n{e}")))?;
        for (name, source) in &self.supplied {
            let declared = self
                .config
                .sources
                .iter()
                .any(|s| &s.name == name && s.in_process.is_some());
            if !declared || source.name() != name {
                return Err(EngineError(format!(
                    "in-process source {name:?} (named {:?}) matches no [sources.in_process] of that name in the configuration",
                    source.name()
                )));
            }
        }
        let store: Arc<dyn ObjectStore> = match (self.store, &self.config.lake.s3) {
            (Some(s), _) => s,
            (None, Some(s3)) => Arc::new(S3Store::new(s3).map_err(|e| EngineError(e.to_string()))?),
            (None, None) => Arc::new(
                LocalDirStore::new(&self.config.lake.dir, self.config.lake.fsync)
                    .map_err(|e| EngineError(e.to_string()))?,
            ),
        };
        Ok(Engine {
            config: self.config,
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            store,
            stop: self.stop.unwrap_or_default(),
            progress: self.progress,
            supplied: self.supplied,
        })
    }
}

pub struct Engine {
    config: Config,
    clock: Arc<dyn Clock>,
    store: Arc<dyn ObjectStore>,
    stop: Arc<AtomicBool>,
    progress: bool,
    supplied: HashMap<String, Arc<dyn Source>>,
}

/// Where partitions go: each to one core, with its checkpoint (or the anchor its source fixes
/// now) and the positions an earlier run's files already delivered.
struct Placement<'a> {
    cores: usize,
    checkpoints: Option<Arc<dyn CheckpointStore>>,
    delivered: &'a crate::delivery::Delivered,
    now_us: i64,
}

impl Placement<'_> {
    fn assign(
        &self,
        si: usize,
        s: &dyn Source,
        p: crate::source::PartitionInfo,
    ) -> Result<(usize, Assigned), EngineError> {
        let resume = match &self.checkpoints {
            Some(c) => match c.load(s.name(), &p.id).map_err(EngineError)? {
                Some(r) => Some(r),
                // A start that would move on a restart is fixed, durably, first.
                None => match s.anchor(&p, self.now_us) {
                    Some(a) => {
                        c.save(&[crate::store::checkpoint::Checkpoint {
                            source: s.name().into(),
                            partition: p.id.clone(),
                            next_position: a.position,
                            cursor: a.cursor.clone(),
                        }])
                        .map_err(EngineError)?;
                        Some(a)
                    }
                    None => None,
                },
            },
            None => None,
        };
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
}

fn random_u16() -> u16 {
    let mut b = [0u8; 2];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u16::from_le_bytes(b)
}

impl Engine {
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
            .map_err(|e| EngineError(format!("encoding the recovery audit file: {}", e.0)))?;
        let key = plan.layout.audit("file", self.clock.now_us(), &name);
        self.store
            .put(&key, &bytes)
            .map_err(|e| EngineError(format!("writing the recovery audit file: {e}")))
    }

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

    pub fn run(self) -> Result<RunReport, EngineError> {
        let started = Instant::now();
        let cfg = &self.config;
        let cpus = crate::runtime::resolve_cores(&cfg.runtime.cores).map_err(EngineError)?;
        crate::runtime::check_io_uring().map_err(EngineError)?;
        crate::runtime::ensure_memlock(cpus.len(), cfg.runtime.io_memory_bytes).map_err(EngineError)?;

        let keyring = Arc::new(load_keyring(cfg)?);
        let now_us = self.clock.now_us();
        let run_id = run_id(now_us, random_u16());
        let layout = Layout::new(&cfg.lake.prefix);
        let progress: Arc<Vec<Progress>> = Arc::new((0..cpus.len()).map(|_| Progress::default()).collect());
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Up before recovery, so /ready says "starting" while it runs.
        let admin = match &cfg.admin {
            Some(a) => {
                let view = crate::admin::AdminView {
                    progress: progress.clone(),
                    ready: ready.clone(),
                    stop: self.stop.clone(),
                    started,
                    started_at: std::time::SystemTime::now(),
                    token_digest: None,
                    store: self.store.clone(),
                };
                let admin = crate::admin::start(a, view).map_err(EngineError)?;
                tracing::info!(addr = %admin.addr, "admin endpoint listening");
                Some(admin)
            }
            None => None,
        };
        let _state_lock = match &cfg.state.dir {
            Some(d) => Some(crate::store::checkpoint::StateLock::acquire(d).map_err(EngineError)?),
            None => None,
        };
        let checkpoints: Option<Arc<dyn CheckpointStore>> = cfg
            .state
            .dir
            .as_ref()
            .map(|d| Arc::new(LocalCheckpoints::new(d)) as Arc<dyn CheckpointStore>);
        let sources = build_sources(cfg, &keyring, now_us, checkpoints.clone(), cpus.len(), &self.supplied)?;
        for s in &sources {
            s.preflight().map_err(|e| EngineError(e.to_string()))?;
        }
        let routers = build_routers(cfg);

        // Schemas: files are registered; "infer" reuses a stored version or infers one.
        let mut files: Vec<Option<(u32, SchemaFile)>> = Vec::new();
        let mut to_infer = Vec::new();
        for (i, t) in cfg.tables.iter().enumerate() {
            match schema_file(t)? {
                Some(f) => {
                    // Compile before registering: a schema that cannot run is never stored.
                    compile_table(cfg, t, &f, 0, &keyring)?;
                    let v = crate::load::schemas::register(&*self.store, &layout, &t.name, &f)
                        .map_err(|e| EngineError(format!("table {}: registering schema: {e}", t.name)))?;
                    files.push(Some((v, f)));
                }
                None => {
                    let stored = crate::load::schemas::latest(&*self.store, &layout, &t.name).map_err(EngineError)?;
                    if stored.is_none() {
                        to_infer.push(i);
                    }
                    files.push(stored);
                }
            }
        }
        if !to_infer.is_empty() {
            for (t, f) in infer_schemas(cfg, &sources, &routers, &keyring, &*self.clock, &to_infer)? {
                compile_table(cfg, &cfg.tables[t], &f, 0, &keyring)?;
                let name = &cfg.tables[t].name;
                let v = crate::load::schemas::register(&*self.store, &layout, name, &f).map_err(EngineError)?;
                files[t] = Some((v, f));
            }
        }
        let tables = cfg
            .tables
            .iter()
            .zip(&files)
            .map(|(t, f)| {
                let (v, f) = f.as_ref().expect("every table has a schema by now");
                compile_table(cfg, t, f, *v, &keyring)
            })
            .collect::<Result<Vec<_>, _>>()?;

        let plan = Arc::new(build_plan(
            cfg,
            run_id.clone(),
            keyring.clone(),
            routers,
            tables,
            checkpoints.is_some(),
        ));

        // The delivery contract (see `delivery`): resolve the upload intents a dead run left,
        // then its spill files (into the lake, or left to replay) before any source resumes
        // from its checkpoint, passing over what the committed intents delivered.
        let state = cfg
            .state
            .dir
            .as_ref()
            .zip(checkpoints.clone())
            .map(|(d, c)| StateStores {
                checkpoints: c,
                intents: Arc::new(LocalIntents::new(d)) as Arc<dyn IntentStore>,
            });
        let resolution = match &state {
            Some(s) => crate::delivery::resolve(&*s.intents, &*self.store)
                .map_err(|e| EngineError(format!("resolving upload intents: {e}")))?,
            None => Default::default(),
        };
        let recovered = match &plan.spill_dir {
            Some(root) => crate::buffer::recover::recover(
                root,
                &plan,
                &*self.store,
                checkpoints.as_deref(),
                &resolution.delivered,
            )
            .map_err(|e| EngineError(format!("recovering spill files: {e}")))?,
            None => Default::default(),
        };
        for t in &recovered.torn {
            tracing::warn!(spill = %t, "cut a torn spill tail");
        }
        let mut recovery_rows = resolution.file_rows(self.clock.now_us());
        recovery_rows.extend(recovered.rows.iter().cloned().map(|r| FileRow {
            written_at_us: self.clock.now_us(),
            ..r
        }));
        self.write_recovery_audit(&plan, &recovery_rows)?;
        if let Some(s) = &state {
            crate::delivery::retire_covered(&resolution.committed, &*s.intents, &*s.checkpoints)
                .map_err(|e| EngineError(format!("retiring upload intents: {e}")))?;
        }

        // Placement: each partition to exactly one core, with its checkpoint.
        let placement = Placement {
            cores: cpus.len(),
            checkpoints: checkpoints.clone(),
            delivered: &resolution.delivered,
            now_us,
        };
        let mut assigned: Vec<Vec<Assigned>> = vec![Vec::new(); cpus.len()];
        let mut known = std::collections::HashSet::new();
        for (si, s) in sources.iter().enumerate() {
            for p in s.partitions().map_err(|e| EngineError(e.to_string()))? {
                known.insert((si, p.id.clone()));
                let (core, a) = placement.assign(si, &**s, p)?;
                assigned[core].push(a);
            }
        }
        let (discovered_tx, discovered_rx): (Vec<_>, Vec<_>) = (0..cpus.len())
            .map(|_| crossbeam_channel::bounded::<Assigned>(crate::runtime::core::DISCOVERED_QUEUE_MAX))
            .unzip();

        let state_for_retire = state.clone();
        let edge = Edge::start(
            self.store.clone(),
            state,
            cpus.len(),
            cfg.lake.uploads_max as usize,
            Duration::from_millis(cfg.lake.retry_for_ms),
        );
        let shared = Arc::new(Shared {
            plan: plan.clone(),
            sources: sources.clone(),
            clock: self.clock.clone(),
            stop: self.stop.clone(),
            progress: progress.clone(),
            snapshots: admin.is_some(),
        });
        crate::runtime::nudge::install()
            .map_err(|e| EngineError(format!("cannot install the core nudge signal handler: {e}")))?;
        let mut handles = Vec::new();
        for (core, (&cpu, parts)) in cpus.iter().zip(assigned).enumerate() {
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
                .map_err(|e| EngineError(format!("cannot spawn the thread of core {core}: {e}")))?;
            handles.push(h);
        }

        ready.store(true, Ordering::Relaxed);
        tracing::info!(
            run_id = %run_id,
            lake = %self.store.describe(),
            cores = ?cpus,
            partitions = known.len(),
            "running"
        );
        let mut progress_line = self
            .progress
            .then(|| crate::telemetry::report::ProgressLine::new(started));
        let discovering: Vec<(usize, Duration)> = sources
            .iter()
            .enumerate()
            .filter_map(|(si, s)| s.discovery_interval().map(|d| (si, d)))
            .collect();
        let mut next_discovery: Vec<Instant> = discovering.iter().map(|(_, d)| Instant::now() + *d).collect();
        let mut drain_logged = false;
        while !handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(PROGRESS_POLL);
            if !drain_logged && self.stop.load(Ordering::SeqCst) {
                drain_logged = true;
                tracing::info!(run_id = %run_id, "stop requested: draining");
            }
            // Partitions that appeared since the start (Kinesis child shards): to their cores.
            for ((si, every), next) in discovering.iter().zip(&mut next_discovery) {
                if Instant::now() < *next || self.stop.load(Ordering::SeqCst) {
                    continue;
                }
                *next = Instant::now() + *every;
                let s = &sources[*si];
                match s.partitions() {
                    Ok(parts) => {
                        for p in parts {
                            if known.contains(&(*si, p.id.clone())) {
                                continue;
                            }
                            let id = p.id.clone();
                            match placement.assign(*si, &**s, p) {
                                Ok((core, a)) => {
                                    if discovered_tx[core].try_send(a).is_ok() {
                                        known.insert((*si, id));
                                    }
                                }
                                Err(e) => tracing::warn!(
                                    source = s.name(),
                                    partition = %id,
                                    error = %e.0,
                                    "cannot place a new partition"
                                ),
                            }
                        }
                    }
                    Err(e) => tracing::warn!(source = s.name(), error = %e, "listing partitions failed, retrying"),
                }
            }
            for h in handles.iter().filter(|h| !h.is_finished()) {
                crate::runtime::nudge::nudge(h);
            }
            if let Some(p) = progress_line.as_mut() {
                p.draw(Progress::totals(&progress), false);
            }
        }
        if let Some(p) = progress_line.as_mut() {
            p.draw(Progress::totals(&progress), true);
        }
        let mut reports = Vec::new();
        let mut start_errors = Vec::new();
        for (core, h) in handles.into_iter().enumerate() {
            match h.join() {
                Ok(Ok(r)) => reports.push(r),
                Ok(Err(e)) => start_errors.push(e),
                Err(_) => start_errors.push(format!("core {core} panicked; its buffered records were not written")),
            }
        }
        drop(shared);
        edge.join();
        if !start_errors.is_empty() {
            return Err(EngineError(start_errors.join("\n")));
        }
        // Intents a crashed run left that this run's checkpoints have now passed. (Safe at
        // any end: this run's spill files hold none of their records, which were skipped.)
        if let Some(s) = &state_for_retire {
            if let Err(e) = crate::delivery::retire_covered(&resolution.committed, &*s.intents, &*s.checkpoints) {
                tracing::warn!(error = %e, "retiring upload intents of an earlier run failed");
            }
        }

        let mut counters = Counters::default();
        let mut hist = StageHistograms::default();
        let mut errors = Vec::new();
        let mut fatal = false;
        for r in reports {
            let CoreReport {
                counters: c,
                hist: h,
                errors: e,
                fatal: f,
            } = r;
            counters.add(&c);
            hist.merge(&h);
            errors.extend(e);
            fatal |= f;
        }
        tracing::info!(
            run_id = %run_id,
            records_in = counters.records_in,
            records_etl = counters.records_etl,
            records_quarantined = counters.records_quarantined,
            elapsed_s = started.elapsed().as_secs_f64(),
            fatal,
            "run finished"
        );
        Ok(RunReport {
            run_id,
            lake: self.store.describe(),
            cores: cpus,
            partitions: known.len(),
            elapsed: started.elapsed(),
            counters,
            hist,
            errors,
            fatal,
            interrupted: self.stop.load(Ordering::SeqCst),
            latency_sample_every: cfg.telemetry.latency_sample_every,
            recovered,
            store_sdk_retries: self.store.sdk_retries(),
        })
    }
}
