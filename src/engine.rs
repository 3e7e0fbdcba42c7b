//! The engine: from a validated [`Config`] to running cores, and back to a [`RunReport`].
//!
//! `Engine::builder(config)` takes the production defaults (system clock, local-directory
//! store, checkpoints under `state.dir`) and lets an embedder or a test inject its own clock,
//! object store and stop flag. `run` then:
//! 1. checks what the kernel must allow (io_uring, locked memory) and resolves the cores;
//! 2. loads the keyring, builds the sources, compiles every table (schemas registered under
//!    `_schemas/`, inferred from sample records where asked), and the routes;
//! 3. places every source partition on its core (`runtime::placement`), with its checkpoint;
//! 4. starts the I/O edge and one pinned executor per core, and waits for them, printing
//!    progress if asked;
//! 5. merges the cores' counters and histograms into the report.

use crate::audit::FileRow;
use crate::config::{Config, TableConfig};
use crate::delivery::{IntentStore, LocalIntents};
use crate::extract::keyring::Keyring;
use crate::extract::schema::{ColumnType, Schema, SchemaFile};
use crate::load::layout::{run_id, Layout};
use crate::pipeline::{Plan, SourcePlan, TablePlan};
use crate::runtime::clock::{Clock, SystemClock};
use crate::runtime::core::{Assigned, CoreReport, Shared};
use crate::runtime::edge::{Edge, StateStores};
use crate::source::generator::{event::BUILTIN_SCHEMA_JSON, GeneratorSource, BUILTIN_PREFIX, BUILTIN_SCHEMA_NAME};
use crate::source::{file::FileSource, kinesis::KinesisSource, Source};
use crate::store::s3::S3Store;
use crate::store::{CheckpointStore, LocalCheckpoints, LocalDirStore, ObjectStore};
use crate::telemetry::report::RunReport;
use crate::telemetry::{Counters, Progress, StageHistograms};
use crate::transform::route::Router;
use crate::transform::Transforms;
use arrow_schema::{DataType, Field, TimeUnit};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Records read per source at most while sampling for schema inference.
pub const INFER_READ_RECORDS_MAX: usize = 100_000;
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
}

impl EngineBuilder {
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
        })
    }
}

pub struct Engine {
    config: Config,
    clock: Arc<dyn Clock>,
    store: Arc<dyn ObjectStore>,
    stop: Arc<AtomicBool>,
    progress: bool,
}

/// Load the keyring the config names.
pub fn load_keyring(config: &Config) -> Result<Keyring, EngineError> {
    let mut k = Keyring::default();
    let e = |e: crate::extract::keyring::KeyringError| EngineError(e.to_string());
    if config.keys.demo {
        k.insert_demo().map_err(e)?;
    }
    if let Some(f) = &config.keys.file {
        k.load_file(f).map_err(e)?;
    }
    if let Some(v) = &config.keys.env {
        k.load_env(v).map_err(e)?;
    }
    Ok(k)
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

/// Build the configured sources; `checkpoints` lets a Kinesis child shard see whether its
/// parents are finished.
pub fn build_sources(
    config: &Config,
    keyring: &Arc<Keyring>,
    now_us: i64,
    checkpoints: Option<Arc<dyn CheckpointStore>>,
) -> Result<Vec<Arc<dyn Source>>, EngineError> {
    config
        .sources
        .iter()
        .map(|s| -> Result<Arc<dyn Source>, EngineError> {
            let e = |e: crate::source::SourceError| EngineError(e.to_string());
            Ok(match (&s.generator, &s.file, &s.kinesis) {
                (Some(g), _, _) => {
                    Arc::new(GeneratorSource::try_new(&s.name, g, s.encryption, keyring.clone(), now_us).map_err(e)?)
                }
                (_, Some(f), _) => Arc::new(FileSource::try_new(&s.name, f).map_err(e)?),
                (_, _, Some(k)) => Arc::new(KinesisSource::try_new(&s.name, k, checkpoints.clone(), None).map_err(e)?),
                _ => unreachable!("validated: exactly one source kind"),
            })
        })
        .collect()
}

/// The schema file a table names (`None` for `"infer"`).
pub fn schema_file(t: &TableConfig) -> Result<Option<SchemaFile>, EngineError> {
    let text = if t.schema == "infer" {
        return Ok(None);
    } else if t.schema == BUILTIN_SCHEMA_NAME {
        BUILTIN_SCHEMA_JSON.to_string()
    } else if t.schema.starts_with(BUILTIN_PREFIX) {
        return Err(EngineError(format!(
            "table {}: unknown built-in schema {:?} (available: {BUILTIN_SCHEMA_NAME})",
            t.name, t.schema
        )));
    } else {
        std::fs::read_to_string(&t.schema)
            .map_err(|e| EngineError(format!("table {}: cannot read schema {}: {e}", t.name, t.schema)))?
    };
    SchemaFile::from_json(&text)
        .map(Some)
        .map_err(|e| EngineError(format!("table {}: schema {}: {e}", t.name, t.schema)))
}

/// Routers, one per source, by table index.
pub fn build_routers(config: &Config) -> Vec<Router> {
    let index = |name: &str| {
        config
            .tables
            .iter()
            .position(|t| t.name == name)
            .expect("validated: routes name existing tables")
    };
    config
        .sources
        .iter()
        .map(|s| match (&s.table, &s.route) {
            (Some(t), _) => Router::Fixed(index(t)),
            (_, Some(r)) => Router::by_field(r, index),
            _ => unreachable!("validated: table or route"),
        })
        .collect()
}

/// Compile one table from its schema file and version.
pub fn compile_table(
    config: &Config,
    t: &TableConfig,
    file: &SchemaFile,
    version: u32,
    keyring: &Keyring,
) -> Result<TablePlan, EngineError> {
    let err = |m: String| EngineError(format!("table {}: {m}", t.name));
    let schema = Schema::compile(file).map_err(|e| err(format!("schema: {e}")))?;
    let event_time = match &t.event_time {
        None => None,
        Some(name) => {
            let i = schema.index(name).ok_or_else(|| {
                err(format!(
                    "event_time names column {name:?}, which the schema does not have"
                ))
            })?;
            if schema.columns[i].ty != ColumnType::Timestamp {
                return Err(err(format!(
                    "event_time column {name:?} is {}, must be timestamp",
                    schema.columns[i].ty.name()
                )));
            }
            Some(i)
        }
    };
    let transforms = Transforms::compile(&schema, &t.transforms, keyring).map_err(err)?;
    let fields: Vec<Field> = transforms
        .outputs
        .iter()
        .map(|o| {
            let dt = match o.ty {
                ColumnType::String | ColumnType::Json => DataType::Utf8,
                ColumnType::Int64 => DataType::Int64,
                ColumnType::Float64 => DataType::Float64,
                ColumnType::Boolean => DataType::Boolean,
                ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            };
            Field::new(&o.name, dt, true)
        })
        .collect();
    Ok(TablePlan {
        name: t.name.clone(),
        writer_props: crate::load::parquet::writer_properties(&config.parquet, &t.name, version),
        arrow_schema: Arc::new(arrow_schema::Schema::new(fields)),
        schema,
        schema_version: version,
        event_time,
        transforms,
    })
}

/// Assemble the plan the cores share from compiled tables and routes.
pub fn build_plan(
    cfg: &Config,
    run_id: String,
    keyring: Arc<Keyring>,
    routers: Vec<Router>,
    tables: Vec<TablePlan>,
    checkpoints_enabled: bool,
) -> Plan {
    let ms = |v: u64| v * 1_000_000;
    Plan {
        run_id,
        layout: Layout::new(&cfg.lake.prefix),
        keyring,
        sources: cfg
            .sources
            .iter()
            .zip(routers)
            .map(|(s, router)| SourcePlan {
                name: s.name.clone(),
                encryption: s.encryption,
                router,
                batch_records: s.batch_records as usize,
            })
            .collect(),
        tables,
        event_time_late_max_us: cfg.partitioning.event_time_late_max_s as i64 * 1_000_000,
        event_time_future_max_us: cfg.partitioning.event_time_future_max_s as i64 * 1_000_000,
        seal: crate::buffer::SealPolicy {
            bytes_max: cfg.buffer.flush_bytes_max,
            records_max: cfg.buffer.flush_records_max,
            interval_ns: ms(cfg.buffer.flush_interval_ms),
            memory_bytes_max: cfg.buffer.memory_bytes_max,
            open_partitions_max: cfg.buffer.open_partitions_max as usize,
        },
        raw_enabled: cfg.raw.enabled,
        raw_segment_bytes_max: cfg.raw.segment_bytes_max,
        raw_memory_bytes_max: cfg.raw.memory_bytes_max,
        raw_interval_ns: ms(cfg.raw.segment_interval_ms),
        quarantine_zstd_level: cfg.quarantine.zstd_level,
        quarantine_file_bytes_max: cfg.quarantine.file_bytes_max,
        quarantine_interval_ns: ms(cfg.quarantine.interval_ms),
        audit_interval_ns: ms(cfg.audit.interval_ms),
        audit_props: crate::load::parquet::writer_properties(&cfg.parquet, "_audit", 1),
        latency_sample_every: cfg.telemetry.latency_sample_every,
        checkpoints_enabled,
        spill_dir: cfg
            .buffer
            .spill_dir
            .clone()
            .or_else(|| cfg.state.dir.as_ref().map(|d| d.join("spill"))),
        spill_bytes_max: cfg.buffer.spill_bytes_max,
    }
}

/// A plan for tests and benchmarks: every table from its schema file (version 1), nothing
/// registered in a store.
pub fn plan_for_test(cfg: &Config) -> Result<Plan, EngineError> {
    let keyring = Arc::new(load_keyring(cfg)?);
    let tables = cfg
        .tables
        .iter()
        .map(|t| {
            let f = schema_file(t)?.ok_or_else(|| EngineError(format!("table {}: infer needs a run", t.name)))?;
            compile_table(cfg, t, &f, 1, &keyring)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(build_plan(cfg, "RUN".into(), keyring, build_routers(cfg), tables, true))
}

/// Infer the schemas of `tables` (indices) from the first records their sources route to them.
fn infer_schemas(
    config: &Config,
    sources: &[Arc<dyn Source>],
    routers: &[Router],
    keyring: &Keyring,
    clock: &dyn Clock,
    tables: &[usize],
) -> Result<Vec<(usize, SchemaFile)>, EngineError> {
    use crate::extract::infer::Inferrer;
    let mut inferrers: Vec<(usize, Inferrer)> = tables.iter().map(|&t| (t, Inferrer::default())).collect();
    let wanted = |t: usize| config.tables[t].infer_records as usize;
    let mut json = simd_json::Buffers::new(4096);
    for (si, source) in sources.iter().enumerate() {
        let encrypted = config.sources[si].encryption == crate::config::Encryption::Envelope;
        let parts = source.partitions().map_err(|e| EngineError(e.to_string()))?;
        let mut read = 0;
        for p in parts {
            let mut reader = source.open(&p, None).map_err(|e| EngineError(e.to_string()))?;
            let mut batch = crate::source::FetchBatch::default();
            loop {
                if inferrers.iter().all(|(t, i)| i.records >= wanted(*t)) || read >= INFER_READ_RECORDS_MAX {
                    break;
                }
                let kind = reader
                    .fetch(&mut batch, 1000, clock)
                    .map_err(|e| EngineError(e.to_string()))?;
                for r in &batch.records {
                    read += 1;
                    let mut buf = batch.payload(r).to_vec();
                    let range = if encrypted {
                        match crate::extract::envelope::open_in_place(keyring, &mut buf) {
                            Ok(range) => range,
                            Err(_) => continue,
                        }
                    } else {
                        0..buf.len()
                    };
                    let Ok(tape) = simd_json::to_tape_with_buffers(&mut buf[range], &mut json) else {
                        continue;
                    };
                    if let Ok(Some(t)) = routers[si].route(&tape.0) {
                        if let Some((_, inf)) = inferrers.iter_mut().find(|(ti, i)| *ti == t && i.records < wanted(t)) {
                            inf.observe(&tape.0);
                        }
                    }
                }
                match kind {
                    crate::source::Fetch::End => break,
                    crate::source::Fetch::Idle(d) => std::thread::sleep(d),
                    crate::source::Fetch::Records => {}
                }
            }
        }
    }
    inferrers
        .into_iter()
        .map(|(t, inf)| {
            inf.finish()
                .map(|f| (t, f))
                .map_err(|e| EngineError(format!("table {}: cannot infer a schema: {e}", config.tables[t].name)))
        })
        .collect()
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
        let checkpoints: Option<Arc<dyn CheckpointStore>> = cfg
            .state
            .dir
            .as_ref()
            .map(|d| Arc::new(LocalCheckpoints::new(d)) as Arc<dyn CheckpointStore>);
        let sources = build_sources(cfg, &keyring, now_us, checkpoints.clone())?;
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
            eprintln!("level=warn msg={t:?}");
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
        let progress: Arc<Vec<Progress>> = Arc::new((0..cpus.len()).map(|_| Progress::default()).collect());
        let shared = Arc::new(Shared {
            plan: plan.clone(),
            sources: sources.clone(),
            clock: self.clock.clone(),
            stop: self.stop.clone(),
            progress: progress.clone(),
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

        let mut progress_line = self
            .progress
            .then(|| crate::telemetry::report::ProgressLine::new(started));
        let discovering: Vec<(usize, Duration)> = sources
            .iter()
            .enumerate()
            .filter_map(|(si, s)| s.discovery_interval().map(|d| (si, d)))
            .collect();
        let mut next_discovery: Vec<Instant> = discovering.iter().map(|(_, d)| Instant::now() + *d).collect();
        while !handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(PROGRESS_POLL);
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
                                Err(e) => eprintln!(
                                    "level=warn source={} partition={id} msg=\"cannot place a new partition\" error={:?}",
                                    s.name(),
                                    e.0
                                ),
                            }
                        }
                    }
                    Err(e) => eprintln!(
                        "level=warn source={} msg=\"listing partitions failed, retrying\" error={:?}",
                        s.name(),
                        e.to_string()
                    ),
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
                eprintln!("level=warn msg=\"retiring upload intents of an earlier run\" error={e:?}");
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
        })
    }
}
