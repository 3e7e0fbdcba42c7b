//! Building what a run needs from a validated [`Config`]: the keyring, the sources, the routes,
//! the compiled tables (schemas from files, the built-in one, or inferred from sample records)
//! and the plan every core shares. Pure construction: nothing here starts a thread or a core
//! (the Kinesis source's client runtime aside), so tests and `validate` use it too.

use super::EngineError;
use crate::clock::Clock;
use crate::config::{Config, SourceKind, TableConfig};
use crate::extract::keyring::Keyring;
use crate::extract::schema::{ColumnType, Schema, SchemaFile};
use crate::load::layout::Layout;
use crate::pipeline::{Plan, SourcePlan, TablePlan};
use crate::source::generator::{event::BUILTIN_SCHEMA_JSON, GeneratorSource, BUILTIN_PREFIX, BUILTIN_SCHEMA_NAME};
use crate::source::{file::FileSource, http::HttpSource, kinesis::KinesisSource, Source};
use crate::store::CheckpointStore;
use crate::transform::route::Router;
use crate::transform::Transforms;
use arrow_schema::{DataType, Field, TimeUnit};
use std::collections::HashMap;
use std::sync::Arc;

/// Records read per source at most while sampling for schema inference.
pub const INFER_READ_RECORDS_MAX: usize = 100_000;
/// How long inference waits on a partition that has nothing to read (a quiet Kinesis shard)
/// before it samples the next one: a quiet stream must not hang the start.
pub const INFER_IDLE_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// Load the keyring the config names.
/// What a run or `validate` warns of in the keys' configuration.
pub fn keyring_warnings(config: &Config) -> Vec<String> {
    let mut w = Vec::new();
    if config.keys.demo && (config.keys.file.is_some() || config.keys.env.is_some()) {
        w.push(
            "keys.demo: the public demo key is loaded beside real keys: anyone can make envelopes \
             that decrypt under it, and its records land as if genuine. Remove `demo = true`."
                .to_string(),
        );
    }
    w
}

pub fn load_keyring(config: &Config) -> Result<Keyring, EngineError> {
    for w in keyring_warnings(config) {
        tracing::warn!(warning = %w, "keyring");
    }
    let mut k = Keyring::default();
    let e = |e: crate::extract::keyring::KeyringError| EngineError::Config(e.to_string());
    if config.keys.demo {
        k.insert_demo().map_err(e)?;
    }
    if let Some(f) = &config.keys.file {
        k.load_file(f, config.keys.file_mode_check).map_err(e)?;
    }
    if let Some(v) = &config.keys.env {
        k.load_env(v).map_err(e)?;
    }
    Ok(k)
}

/// Build the configured sources; `checkpoints` lets a Kinesis child shard see whether its
/// parents are finished; `supplied` holds the in-process sources by name.
pub fn build_sources(
    config: &Config,
    keyring: &Arc<Keyring>,
    clock: &Arc<dyn Clock>,
    checkpoints: Option<Arc<dyn CheckpointStore>>,
    cores: usize,
    supplied: &HashMap<String, Arc<dyn Source>>,
) -> Result<Vec<Arc<dyn Source>>, EngineError> {
    let now_us = clock.now_us();
    config
        .sources
        .iter()
        .map(|s| -> Result<Arc<dyn Source>, EngineError> {
            let e = |e: crate::source::SourceError| EngineError::Source(e.to_string());
            Ok(match s.kind().expect("validated: exactly one source kind") {
                SourceKind::Generator(g) => {
                    Arc::new(GeneratorSource::try_new(&s.name, g, s.encryption, keyring.clone(), now_us).map_err(e)?)
                }
                SourceKind::File(f) => Arc::new(FileSource::try_new(&s.name, f).map_err(e)?),
                SourceKind::Kinesis(k) => Arc::new(
                    KinesisSource::try_new(&s.name, k, checkpoints.clone(), None)
                        .map_err(e)?
                        .with_clock(clock.clone()),
                ),
                SourceKind::Http(h) => {
                    let state = config.state.dir.as_deref().expect("validated: http needs state.dir");
                    Arc::new(HttpSource::try_new(&s.name, h, state, cores).map_err(e)?)
                }
                SourceKind::Push(_) => supplied.get(&s.name).cloned().ok_or_else(|| {
                    EngineError::Config(format!(
                        "source {:?} is a push source: only an engine built by EngineBuilder has its handle",
                        s.name
                    ))
                })?,
                SourceKind::InProcess(_) => supplied.get(&s.name).cloned().ok_or_else(|| {
                    EngineError::Config(format!(
                        "source {:?} is in_process: only a program that embeds the engine can supply its records \
                         (EngineBuilder::in_process_source); the sluicegate binary has none",
                        s.name
                    ))
                })?,
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
        return Err(EngineError::Config(format!(
            "table {}: unknown built-in schema {:?} (available: {BUILTIN_SCHEMA_NAME})",
            t.name, t.schema
        )));
    } else {
        std::fs::read_to_string(&t.schema)
            .map_err(|e| EngineError::Config(format!("table {}: cannot read schema {}: {e}", t.name, t.schema)))?
    };
    SchemaFile::from_json(&text)
        .map(Some)
        .map_err(|e| EngineError::Config(format!("table {}: schema {}: {e}", t.name, t.schema)))
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
    let err = |m: String| EngineError::Config(format!("table {}: {m}", t.name));
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
        outbox: crate::pipeline::OutboxLimits {
            memory_bytes_max: cfg.buffer.outbox_memory_bytes_max,
            bookkeeping_bytes_max: cfg.buffer.outbox_bookkeeping_bytes_max,
            entries_max: cfg.buffer.outbox_entries_max as usize,
        },
    }
}

/// Every table compiled with its schema: a schema file is registered under `_schemas/` (after
/// it compiles: a schema that cannot run is never stored); `"infer"` reuses the latest stored
/// version, or infers one from sample records and registers it.
pub fn compile_tables(
    cfg: &Config,
    sources: &[Arc<dyn Source>],
    routers: &[Router],
    keyring: &Arc<Keyring>,
    clock: &dyn Clock,
    store: &dyn crate::store::ObjectStore,
    layout: &Layout,
) -> Result<Vec<TablePlan>, EngineError> {
    let mut files: Vec<Option<(u32, SchemaFile)>> = Vec::new();
    let mut to_infer = Vec::new();
    for (i, t) in cfg.tables.iter().enumerate() {
        match schema_file(t)? {
            Some(f) => {
                compile_table(cfg, t, &f, 0, keyring)?;
                let v = crate::load::schemas::register(store, layout, &t.name, &f)
                    .map_err(|e| EngineError::Store(format!("table {}: registering schema: {e}", t.name)))?;
                files.push(Some((v, f)));
            }
            None => {
                let stored = crate::load::schemas::latest(store, layout, &t.name).map_err(EngineError::Store)?;
                if stored.is_none() {
                    to_infer.push(i);
                }
                files.push(stored);
            }
        }
    }
    if !to_infer.is_empty() {
        for (t, f) in infer_schemas(cfg, sources, routers, keyring, clock, &to_infer)? {
            compile_table(cfg, &cfg.tables[t], &f, 0, keyring)?;
            let name = &cfg.tables[t].name;
            let v = crate::load::schemas::register(store, layout, name, &f).map_err(EngineError::Store)?;
            files[t] = Some((v, f));
        }
    }
    cfg.tables
        .iter()
        .zip(&files)
        .map(|(t, f)| {
            let (v, f) = f.as_ref().expect("every table has a schema by now");
            compile_table(cfg, t, f, *v, keyring)
        })
        .collect()
}

/// A plan for tests and benchmarks: every table from its schema file (version 1), nothing
/// registered in a store.
pub fn plan_for_test(cfg: &Config) -> Result<Plan, EngineError> {
    let keyring = Arc::new(load_keyring(cfg)?);
    let tables = cfg
        .tables
        .iter()
        .map(|t| {
            let f =
                schema_file(t)?.ok_or_else(|| EngineError::Config(format!("table {}: infer needs a run", t.name)))?;
            compile_table(cfg, t, &f, 1, &keyring)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(build_plan(cfg, "RUN".into(), keyring, build_routers(cfg), tables, true))
}

/// Infer the schemas of `tables` (indices) from the first records their sources route to them.
pub(super) fn infer_schemas(
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
        if matches!(
            config.sources[si].kind(),
            Ok(SourceKind::Http(_) | SourceKind::InProcess(_))
        ) {
            continue; // nothing to read before the run (validated: it feeds no "infer" table)
        }
        let encrypted = config.sources[si].encryption == crate::config::Encryption::Envelope;
        let parts = source.partitions().map_err(|e| EngineError::Source(e.to_string()))?;
        let mut read = 0;
        for p in parts {
            let mut reader = source.open(&p, None).map_err(|e| EngineError::Source(e.to_string()))?;
            let mut batch = crate::source::FetchBatch::default();
            let mut idle = std::time::Duration::ZERO;
            loop {
                if inferrers.iter().all(|(t, i)| i.records >= wanted(*t)) || read >= INFER_READ_RECORDS_MAX {
                    break;
                }
                let kind = reader
                    .fetch(&mut batch, 1000, clock)
                    .map_err(|e| EngineError::Source(e.to_string()))?;
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
                    crate::source::Fetch::Idle(_) if idle >= INFER_IDLE_WAIT_MAX => break,
                    crate::source::Fetch::Idle(d) => {
                        std::thread::sleep(d);
                        idle += d;
                    }
                    crate::source::Fetch::Records => {}
                }
            }
        }
    }
    inferrers
        .into_iter()
        .map(|(t, inf)| {
            inf.finish().map(|f| (t, f)).map_err(|e| {
                EngineError::Config(format!("table {}: cannot infer a schema: {e}", config.tables[t].name))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::kinesis::replay::{get_records, list_shards, Replay};

    #[test]
    fn inference_over_a_quiet_stream_gives_up_with_the_reason_instead_of_hanging() {
        let replay = Replay::start(|call, _| match call.op.as_str() {
            "ListShards" => (200, list_shards(2).into()),
            "GetShardIterator" => (200, r#"{"ShardIterator":"it"}"#.into()),
            _ => (200, get_records(&[], Some("it")).into()),
        });
        let text = format!(
            "[state]\ndir = \"/tmp/unused\"\n[[sources]]\nname = \"k\"\ntable = \"t\"\nencryption = \"none\"\n\
             [sources.kinesis]\nstream = \"s\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\nidle_ms = 10\n\
             [[tables]]\nname = \"t\"\nschema = \"infer\"\n",
            replay.endpoint()
        );
        let cfg = Config::from_toml(&text, std::path::Path::new("/")).unwrap();
        cfg.validate().unwrap();
        let source =
            KinesisSource::try_new("k", cfg.sources[0].kinesis.as_ref().unwrap(), None, Some(("a", "b"))).unwrap();
        let sources: Vec<Arc<dyn Source>> = vec![Arc::new(source)];
        let started = std::time::Instant::now();
        let e = infer_schemas(
            &cfg,
            &sources,
            &build_routers(&cfg),
            &Keyring::default(),
            &crate::clock::SystemClock,
            &[0],
        )
        .unwrap_err();
        assert!(matches!(e, EngineError::Config(_)), "{e:?}");
        assert!(
            e.to_string()
                .contains("table t: cannot infer a schema: no columns could be inferred from 0 sample records"),
            "{e}"
        );
        // Both shards were waited on, each for the bound, and no longer.
        let took = started.elapsed();
        assert!(took >= 2 * INFER_IDLE_WAIT_MAX, "gave up after {took:?}");
        assert!(took < 4 * INFER_IDLE_WAIT_MAX, "took {took:?}");
    }
}
