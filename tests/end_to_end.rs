//! End to end on the embedded default shape: generated input with every kind of bad record,
//! through the real engine (pinned glommio cores, the edge thread, a real directory), then the
//! lake read back with the `parquet` crate and every record accounted for.

mod support;

use base64::Engine as _;
use sluicegate::clock::FixedWallClock;
use sluicegate::config::{Config, Encryption, FileConfig, Framing};
use sluicegate::extract::timestamp::{dt_hr, hour_bucket, parse_rfc3339};
use sluicegate::source::generator::event::Expected;
use sluicegate::Engine;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use support::*;

const START: &str = "2026-11-26T10:30:00Z";
const RECORDS: u64 = 24_000;
const PARTITIONS: u32 = 5;

fn config(lake: &Path) -> Config {
    let mut c = Config::embedded_default(RECORDS, lake);
    let g = c.sources[0].generator.as_mut().unwrap();
    g.partitions = PARTITIONS;
    g.bad_ratio = 0.05;
    g.seed = 7;
    g.start_time = Some(START.into());
    c.sources[0].batch_records = 500;
    // Small files, so sealing by size, several files per partition and several audit flushes
    // all happen in a short run.
    c.buffer.flush_bytes_max = 1 << 20;
    c.raw.segment_bytes_max = 1 << 20;
    c.quarantine.file_bytes_max = 64 * 1024;
    c.audit.interval_ms = 200;
    c.lake.fsync = false;
    c
}

/// Run the engine in process on `cfg`, at the pinned wall time.
fn run(cfg: &Config) -> sluicegate::engine::report::RunReport {
    Engine::builder(cfg.clone())
        .clock(clock())
        .build()
        .unwrap()
        .run()
        .unwrap()
}

fn clock() -> Arc<FixedWallClock> {
    Arc::new(FixedWallClock::new(parse_rfc3339(START).unwrap() + 600_000_000))
}

#[test]
fn every_record_lands_exactly_once_in_its_zone_and_the_audit_accounts_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let cfg = config(&lake);
    let report = run(&cfg);
    assert!(report.success(), "{}", report.render());
    assert_eq!(report.counters.records_in, RECORDS);

    let gen = generator_source(&cfg);
    let sent = regenerate(&cfg, |p| 0..gen.partition_records(p));
    assert_eq!(sent.len() as u64, RECORDS);
    let good: HashSet<(u64, u64)> = sent
        .iter()
        .filter(|(_, v)| v.2 == Expected::Good)
        .map(|(k, _)| *k)
        .collect();
    let bad = sent.len() - good.len();
    assert!(bad > 800, "the mix has bad records of every kind: {bad}");

    // ETL: every good record once, with its values, in its event-time partition.
    let mut seen = HashSet::new();
    for f in files(&lake.join("etl"), ".parquet") {
        let rel = f.strip_prefix(&lake).unwrap().to_string_lossy().to_string();
        assert!(rel.starts_with("etl/source=generator/table=events/dt="), "{rel}");
        for b in read_parquet(&f) {
            for i in 0..b.num_rows() {
                let p: u64 = str_at(&b, "_partition", i).unwrap().parse().unwrap();
                let seq = i64_at(&b, "_position", i).unwrap() as u64;
                assert!(seen.insert((p, seq)), "({p}, {seq}) is in the ETL zone twice");
                let (_, plain, expected) = &sent[&(p, seq)];
                assert_eq!(*expected, Expected::Good, "bad record ({p}, {seq}) reached ETL");
                let v: serde_json::Value = serde_json::from_slice(plain).unwrap();
                let ts = parse_rfc3339(v["ts"].as_str().unwrap()).unwrap();
                assert_eq!(i64_at(&b, "ts", i), Some(ts));
                let (dt, hr) = dt_hr(hour_bucket(ts));
                assert!(
                    rel.contains(&format!("/dt={dt}/hr={hr}/")),
                    "{rel} holds an event of {dt} {hr}h"
                );
                assert_eq!(str_at(&b, "event_id", i).as_deref(), v["event_id"].as_str());
                assert_eq!(str_at(&b, "event_type", i).as_deref(), v["event_type"].as_str());
                assert_eq!(
                    i64_at(&b, "received_at", i),
                    Some(v["received_at"].as_i64().unwrap() * 1000)
                );
                assert_eq!(i64_at(&b, "user.id", i), v["user"]["id"].as_i64());
                assert_eq!(str_at(&b, "user.email", i).as_deref(), v["user"]["email"].as_str());
                assert_eq!(str_at(&b, "geo.country", i).as_deref(), v["geo"]["country"].as_str());
                assert_eq!(f64_at(&b, "geo.lat", i), v["geo"]["lat"].as_f64());
                assert_eq!(f64_at(&b, "metrics.latency_ms", i), v["metrics"]["latency_ms"].as_f64());
                // A missing optional field takes the schema default.
                let amount = v["metrics"]["amount_cents"].as_i64().unwrap_or(0);
                assert_eq!(i64_at(&b, "metrics.amount_cents", i), Some(amount));
                let tags: serde_json::Value = serde_json::from_str(&str_at(&b, "tags", i).unwrap()).unwrap();
                assert_eq!(tags, v["tags"]);
                assert_eq!(str_at(&b, "payload.text", i).as_deref(), v["payload"]["text"].as_str());
                assert_eq!(str_at(&b, "_source", i).as_deref(), Some("generator"));
            }
        }
    }
    assert_eq!(seen, good, "every good record is in the ETL zone");

    // QUARANTINE: every bad record once, with its stage, rule, field and original bytes.
    let mut rejected = HashSet::new();
    let mut rules = HashSet::new();
    for l in quarantine_lines(&lake) {
        let p: u64 = l["partition"].as_str().unwrap().parse().unwrap();
        let seq = l["position"].as_u64().unwrap();
        assert!(rejected.insert((p, seq)), "({p}, {seq}) quarantined twice");
        let (payload, _, expected) = &sent[&(p, seq)];
        let Expected::Rejected { stage, rule, field, .. } = expected else {
            panic!("good record ({p}, {seq}) quarantined: {l}")
        };
        assert_eq!(l["stage"].as_str(), Some(stage.as_str()), "{l}");
        assert_eq!(l["rule"].as_str(), Some(rule.as_str()), "{l}");
        assert_eq!(l["field"].as_str(), *field, "{l}");
        assert!(!l["message"].as_str().unwrap().is_empty());
        let original = base64::engine::general_purpose::STANDARD
            .decode(l["payload_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(&original, payload, "quarantine keeps the bytes as received");
        rules.insert(rule.as_str());
    }
    assert_eq!(rejected.len(), bad, "every bad record is in quarantine");
    assert!(rules.len() >= 10, "{rules:?}");

    // RAW: every payload exactly as received, readable by the file source.
    let mut raw_payloads = Vec::new();
    for_each_raw_payload(&lake, |p| raw_payloads.push(p.to_vec()));
    let mut want: Vec<&Vec<u8>> = sent.values().map(|v| &v.0).collect();
    let mut got: Vec<&Vec<u8>> = raw_payloads.iter().collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "the RAW zone holds every payload once");

    // AUDIT: totals equal the counts; every file is listed with its checksum; placement held.
    assert_eq!(audit_sum(&lake, "fetch", "records_in"), RECORDS as i64);
    assert_eq!(audit_sum(&lake, "fetch", "records_etl"), good.len() as i64);
    assert_eq!(audit_sum(&lake, "fetch", "records_quarantined"), bad as i64);
    assert_eq!(audit_sum(&lake, "fetch", "records_dropped"), 0);
    let mut listed: HashMap<String, (String, i64)> = HashMap::new();
    let mut per_zone: HashMap<String, i64> = HashMap::new();
    for f in files(&lake.join("audit/kind=file"), ".parquet") {
        for b in read_parquet(&f) {
            for i in 0..b.num_rows() {
                let zone = str_at(&b, "zone", i).unwrap();
                let records = i64_at(&b, "records", i).unwrap();
                *per_zone.entry(zone.clone()).or_default() += records;
                if zone == "etl" {
                    assert_eq!(i64_at(&b, "schema_version", i), Some(1));
                    assert!(i64_at(&b, "event_time_min", i) <= i64_at(&b, "event_time_max", i));
                }
                let positions: serde_json::Value = serde_json::from_str(&str_at(&b, "positions", i).unwrap()).unwrap();
                assert!(!positions.as_array().unwrap().is_empty());
                listed.insert(
                    str_at(&b, "key", i).unwrap(),
                    (str_at(&b, "crc32c", i).unwrap(), records),
                );
            }
        }
    }
    assert_eq!(per_zone["etl"], good.len() as i64);
    assert_eq!(per_zone["quarantine"], bad as i64);
    assert_eq!(per_zone["raw"], RECORDS as i64);
    let in_lake: Vec<_> = ["etl", "raw", "quarantine"]
        .iter()
        .flat_map(|z| files(&lake.join(z), ""))
        .collect();
    assert_eq!(in_lake.len(), listed.len(), "every data file has exactly one audit row");
    for f in &in_lake {
        let key = f.strip_prefix(&lake).unwrap().to_string_lossy().to_string();
        let (crc, _) = listed.get(&key).unwrap_or_else(|| panic!("{key} has no audit row"));
        assert_eq!(
            *crc,
            format!("{:08x}", crc32c::crc32c(&std::fs::read(f).unwrap())),
            "{key}"
        );
    }

    // Placement: each partition's batches were processed on its core, and that core's CPU.
    let cpus = sluicegate::runtime::resolve_cores(&cfg.runtime.cores).unwrap();
    let mut fetch_rows = 0;
    for f in files(&lake.join("audit/kind=fetch"), ".parquet") {
        for b in read_parquet(&f) {
            for i in 0..b.num_rows() {
                let p: u64 = str_at(&b, "partition", i).unwrap().parse().unwrap();
                let core = i64_at(&b, "core", i).unwrap() as usize;
                assert_eq!(
                    core,
                    sluicegate::runtime::placement::core_for("generator", p, cpus.len())
                );
                assert_eq!(i64_at(&b, "cpu", i).unwrap() as usize, cpus[core], "pinned to its CPU");
                fetch_rows += 1;
            }
        }
    }
    assert_eq!(fetch_rows as u64, report.counters.batches);

    // The schema is registered as version 1, and nothing half-written is left behind.
    let v1: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lake.join("_schemas/events/v1.json")).unwrap()).unwrap();
    let builtin: serde_json::Value =
        serde_json::from_str(sluicegate::source::generator::event::BUILTIN_SCHEMA_JSON).unwrap();
    assert_eq!(
        v1["columns"].as_array().unwrap().len(),
        builtin["columns"].as_array().unwrap().len()
    );
    assert!(hidden_files(&lake).is_empty(), "{:?}", hidden_files(&lake));
    assert_eq!(report.counters.records_etl, good.len() as u64);
    assert_eq!(report.counters.records_quarantined, bad as u64);
}

/// Plain NDJSON written from the generator (no encryption), `count` records from `first`.
fn write_ndjson(cfg: &Config, path: &Path, first: u64, count: u64, append: bool) {
    use std::io::Write;
    let g = generator_source(cfg);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(!append)
        .open(path)
        .unwrap();
    for seq in first..first + count {
        let (payload, _, _) = g.record(0, seq);
        f.write_all(&payload).unwrap();
        f.write_all(b"\n").unwrap();
    }
}

fn ndjson_config(dir: &Path) -> Config {
    let mut c = config(&dir.join("lake"));
    c.keys.demo = false;
    c.state.dir = Some(dir.join("state"));
    let g = c.sources[0].generator.as_mut().unwrap();
    g.partitions = 1;
    g.bad_ratio = 0.02;
    let mut source = c.sources[0].clone();
    source.generator = None;
    source.encryption = Encryption::None;
    source.name = "ndjson".into();
    source.file = Some(FileConfig {
        paths: vec![dir.join("in.ndjson")],
        framing: Framing::Ndjson,
        split_bytes: 1 << 20,
    });
    let mut gen_source = c.sources[0].clone();
    gen_source.encryption = Encryption::None;
    c.sources = vec![gen_source, source];
    c
}

#[test]
fn a_file_source_resumes_from_its_checkpoint_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let full = ndjson_config(dir.path());
    write_ndjson(&full, &dir.path().join("in.ndjson"), 0, 6000, false);
    // Run only the file source (the generator config above just describes the data).
    let mut cfg = full.clone();
    cfg.sources.remove(0);
    cfg.validate().unwrap();

    let first = run(&cfg);
    assert!(first.success(), "{}", first.render());
    assert_eq!(first.counters.records_in, 6000);
    assert!(first.partitions > 1, "a 4 MiB file is read as several 1 MiB splits");

    let second = run(&cfg);
    assert_eq!(second.counters.records_in, 0, "{}", second.render());

    write_ndjson(&full, &dir.path().join("in.ndjson"), 6000, 700, true);
    let third = run(&cfg);
    assert_eq!(third.counters.records_in, 700, "{}", third.render());

    // Across the three runs every record of the file is in ETL or quarantine exactly once.
    let lake = dir.path().join("lake");
    let mut seen = HashSet::new();
    for f in files(&lake.join("etl"), ".parquet") {
        for b in read_parquet(&f) {
            for i in 0..b.num_rows() {
                assert!(seen.insert(str_at(&b, "event_id", i).unwrap()), "duplicate");
            }
        }
    }
    let quarantined = quarantine_lines(&lake).len();
    assert_eq!(seen.len() + quarantined, 6700);
}

#[test]
fn an_inferred_schema_is_stored_as_version_1_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ndjson_config(dir.path());
    cfg.sources[0].generator.as_mut().unwrap().bad_ratio = 0.0;
    write_ndjson(&cfg, &dir.path().join("in.ndjson"), 0, 1500, false);
    cfg.sources.remove(0);
    cfg.state.dir = None;
    cfg.tables[0].schema = "infer".into();
    cfg.tables[0].infer_records = 200;
    cfg.validate().unwrap();
    let report = run(&cfg);
    assert!(report.success(), "{}", report.render());
    assert_eq!(report.counters.records_etl, 1500);
    let lake = dir.path().join("lake");
    let v1: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lake.join("_schemas/events/v1.json")).unwrap()).unwrap();
    let types: HashMap<&str, &str> = v1["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["type"].as_str().unwrap()))
        .collect();
    assert_eq!(types["ts"], "timestamp");
    assert_eq!(types["user.id"], "int64");
    assert_eq!(types["geo.lat"], "float64");
    assert_eq!(types["tags"], "json");
    assert_eq!(types["event_type"], "string");
    let again = run(&cfg);
    assert!(again.success());
    assert!(
        !lake.join("_schemas/events/v2.json").exists(),
        "the stored schema is reused"
    );
    let b = &read_parquet(&files(&lake.join("etl"), ".parquet")[0])[0];
    assert!(b.schema().index_of("metrics.latency_ms").is_ok());
}

#[test]
fn a_table_that_cannot_run_fails_at_start_and_registers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mut cfg = config(&lake);
    cfg.tables[0].event_time = Some("received".into());
    let e = Engine::builder(cfg).clock(clock()).build().unwrap().run().unwrap_err();
    assert_eq!(
        e.to_string(),
        "table events: event_time names column \"received\", which the schema does not have"
    );
    assert!(!lake.join("_schemas").exists(), "no schema version was stored");
}

/// A real directory store that blocks every ETL put while `stalled` is set: an object store
/// outage, as the cores see it (the edge thread waits on it).
struct StalledStore {
    inner: sluicegate::store::LocalDirStore,
    stalled: Arc<std::sync::atomic::AtomicBool>,
    blocked_puts: std::sync::atomic::AtomicU64,
}

impl sluicegate::store::ObjectStore for StalledStore {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), sluicegate::store::StoreError> {
        use std::sync::atomic::Ordering;
        if key.starts_with("etl/") {
            let mut counted = false;
            while self.stalled.load(Ordering::SeqCst) {
                if !counted {
                    self.blocked_puts.fetch_add(1, Ordering::SeqCst);
                    counted = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        self.inner.put(key, bytes)
    }
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, sluicegate::store::StoreError> {
        self.inner.get(key)
    }
    fn exists(&self, key: &str) -> Result<bool, sluicegate::store::StoreError> {
        self.inner.exists(key)
    }
    fn abort_partial(&self, key: &str) -> Result<(), sluicegate::store::StoreError> {
        self.inner.abort_partial(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, sluicegate::store::StoreError> {
        self.inner.list(prefix)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[test]
fn a_stalled_store_fills_the_spill_not_memory_and_everything_lands_when_it_recovers() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let lake = dir.path().join("lake");
    let mut cfg = config(&lake);
    // ~60 MB of archived rows (~600 bytes each) against 2 × 16 MiB of ring, and ~75 MB of RAW,
    // against 16 MiB of waiting files per core in the outbox: most of it goes to disk, as spilled
    // ring segments or as parked files.
    let records = 100_000;
    cfg.sources[0].generator.as_mut().unwrap().records = records;
    cfg.sources[0].generator.as_mut().unwrap().bad_ratio = 0.0;
    cfg.buffer.memory_bytes_max = 16 << 20;
    cfg.buffer.spill_dir = Some(dir.path().join("spill"));
    let stalled = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let store = Arc::new(StalledStore {
        inner: sluicegate::store::LocalDirStore::new(&lake, false).unwrap(),
        stalled: stalled.clone(),
        blocked_puts: Default::default(),
    });
    let engine = Engine::builder(cfg.clone())
        .clock(clock())
        .store(store.clone())
        .progress(false)
        .build()
        .unwrap();
    let run = std::thread::spawn(move || engine.run().unwrap());

    // While the store is down: files wait in the outbox, then on disk.
    let on_disk = || {
        sluicegate::buffer::spill::spill_files(&dir.path().join("spill")).len()
            + files(&dir.path().join("spill"), ".part").len()
    };
    wait_for(
        "the outage to reach the disk",
        std::time::Duration::from_secs(60),
        || on_disk() >= 8,
    );
    assert!(store.blocked_puts.load(Ordering::SeqCst) >= 1, "an ETL put is blocked");
    assert_eq!(etl_rows(&lake), 0, "nothing reached the lake during the outage");
    stalled.store(false, Ordering::SeqCst);
    let report = run.join().unwrap();

    let c = &report.counters;
    assert!(
        c.spill_writes + c.files_parked >= 8,
        "{} segments spilled, {} files parked",
        c.spill_writes,
        c.files_parked
    );
    // Memory stayed at the budget: each core admits at most one batch past it.
    let one_batch = 500 * 4096;
    let cores = report.cores.len() as u64;
    assert!(
        c.memory_bytes_peak <= cores * (cfg.buffer.memory_bytes_max + one_batch),
        "peak {} MiB over {} cores",
        c.memory_bytes_peak >> 20,
        cores
    );
    assert_eq!(c.records_etl, records);
    assert_eq!(
        etl_rows(&lake),
        records as usize,
        "every record landed once the store came back"
    );
    assert_eq!(
        on_disk(),
        0,
        "every spill file was deleted once its records were durable, every parked file once read back"
    );
}
