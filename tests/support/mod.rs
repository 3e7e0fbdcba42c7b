//! Shared helpers for the integration tests: reading a lake back with the `parquet` crate,
//! regenerating what the generator sent, and running the real binary.
#![allow(dead_code)]

pub mod moto;
pub mod s3;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sluicegate::config::Config;
use sluicegate::extract::keyring::Keyring;
use sluicegate::source::generator::event::Expected;
use sluicegate::source::generator::GeneratorSource;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Every payload in the lake's RAW zone, in file order, read back through the `file` source
/// (the replay path RAW exists for).
pub fn for_each_raw_payload(lake: &Path, mut f: impl FnMut(&[u8])) {
    use sluicegate::config::{FileConfig, Framing};
    use sluicegate::source::{Fetch, FetchBatch, Source};
    let replay = sluicegate::source::file::FileSource::try_new(
        "replay",
        &FileConfig {
            paths: vec![lake.join("raw")],
            framing: Framing::Auto,
            split_bytes: 1 << 30,
        },
    )
    .unwrap();
    for p in replay.partitions().unwrap() {
        let mut r = replay.open(&p, None).unwrap();
        let mut batch = FetchBatch::default();
        loop {
            let kind = r.fetch(&mut batch, 1000, &sluicegate::clock::SystemClock).unwrap();
            for x in &batch.records {
                f(batch.payload(x));
            }
            if kind == Fetch::End {
                break;
            }
        }
    }
}

/// Every file under `dir` (recursively) whose name ends with `suffix`, skipping hidden files.
pub fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if p.is_dir() {
                stack.push(p);
            } else if !name.starts_with('.') && name.ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Hidden files left anywhere under `dir` (temporary files that never became objects).
pub fn hidden_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with('.') {
                out.push(p.clone());
            }
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

pub fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let f = std::fs::File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .build()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// A column of a batch by name.
pub fn col<'a>(b: &'a RecordBatch, name: &str) -> &'a dyn Array {
    b.column(b.schema().index_of(name).unwrap_or_else(|_| panic!("no column {name}")))
        .as_ref()
}

pub fn str_at(b: &RecordBatch, name: &str, i: usize) -> Option<String> {
    let c = col(b, name).as_string::<i32>();
    c.is_valid(i).then(|| c.value(i).to_string())
}

pub fn i64_at(b: &RecordBatch, name: &str, i: usize) -> Option<i64> {
    let a = col(b, name);
    if !a.is_valid(i) {
        return None;
    }
    Some(match a.data_type() {
        arrow_schema::DataType::Timestamp(..) => a
            .as_primitive::<arrow_array::types::TimestampMicrosecondType>()
            .value(i),
        arrow_schema::DataType::UInt32 => a.as_primitive::<arrow_array::types::UInt32Type>().value(i) as i64,
        _ => a.as_primitive::<Int64Type>().value(i),
    })
}

pub fn f64_at(b: &RecordBatch, name: &str, i: usize) -> Option<f64> {
    let a = col(b, name).as_primitive::<arrow_array::types::Float64Type>();
    a.is_valid(i).then(|| a.value(i))
}

/// Sum of an integer column over all audit files of a kind.
pub fn audit_sum(lake: &Path, kind: &str, column: &str) -> i64 {
    files(&lake.join(format!("audit/kind={kind}")), ".parquet")
        .iter()
        .flat_map(|f| read_parquet(f))
        .map(|b| (0..b.num_rows()).filter_map(|i| i64_at(&b, column, i)).sum::<i64>())
        .sum()
}

/// Every quarantine line of the lake.
pub fn quarantine_lines(lake: &Path) -> Vec<serde_json::Value> {
    files(&lake.join("quarantine"), ".ndjson.zst")
        .iter()
        .flat_map(|f| {
            let text = String::from_utf8(zstd::decode_all(std::fs::File::open(f).unwrap()).unwrap()).unwrap();
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Number of ETL rows in the lake.
pub fn etl_rows(lake: &Path) -> usize {
    files(&lake.join("etl"), ".parquet")
        .iter()
        .flat_map(|f| read_parquet(f))
        .map(|b| b.num_rows())
        .sum()
}

/// What the generator of `cfg`'s first source sent: (partition, seq) → (payload, plaintext, expected).
pub type Sent = HashMap<(u64, u64), (Vec<u8>, Vec<u8>, Expected)>;

pub fn regenerate(cfg: &Config, range: impl Fn(u64) -> std::ops::Range<u64>) -> Sent {
    let mut k = Keyring::default();
    k.insert_demo().unwrap();
    let s = &cfg.sources[0];
    let g = GeneratorSource::try_new(&s.name, s.generator.as_ref().unwrap(), s.encryption, Arc::new(k), 0).unwrap();
    let mut out = HashMap::new();
    for p in 0..s.generator.as_ref().unwrap().partitions as u64 {
        for seq in range(p) {
            out.insert((p, seq), g.record(p, seq));
        }
    }
    out
}

pub fn generator_source(cfg: &Config) -> GeneratorSource {
    let mut k = Keyring::default();
    k.insert_demo().unwrap();
    let s = &cfg.sources[0];
    GeneratorSource::try_new(&s.name, s.generator.as_ref().unwrap(), s.encryption, Arc::new(k), 0).unwrap()
}

/// The `sluicegate` binary built with the tests.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sluicegate")
}

/// Wait (polling) for `cond`, up to `timeout`; panics with `what` if it never holds.
pub fn wait_for(what: &str, timeout: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The config of the kill tests: `lake` as the lake section(s), one generator source
/// (partitions, records, rate, bad ratio), 200 ms RAW/quarantine/audit intervals, and `buffer`
/// as the `[buffer]` section.
pub fn write_kill_test_config(path: &Path, lake: &str, state: &Path, gen: (u64, u64, u32, f64), buffer: &str) {
    let (partitions, records, rate, bad) = gen;
    std::fs::write(
        path,
        format!(
            r#"
{lake}
[state]
dir = "{}"
[keys]
demo = true
[[sources]]
name = "generator"
table = "events"
[sources.generator]
partitions = {partitions}
records = {records}
rate_per_s = {rate}
bad_ratio = {bad}
start_time = "2026-11-26T10:00:00Z"
[[tables]]
name = "events"
schema = "builtin:events"
event_time = "ts"
transforms = [{{ op = "ingest_metadata" }}]
[partitioning]
event_time_late_max_s = 315360000
[buffer]
{buffer}
[raw]
segment_interval_ms = 200
segment_bytes_max = 4194304
memory_bytes_max = 16777216
[quarantine]
interval_ms = 200
[audit]
interval_ms = 200
"#,
            state.display()
        ),
    )
    .unwrap();
}

/// (partition, position) of every record in the ETL zone or quarantine, and the row count.
pub fn landed(lake: &Path) -> (std::collections::HashSet<(u64, u64)>, usize) {
    let mut landed = std::collections::HashSet::new();
    let mut total = 0;
    for f in files(&lake.join("etl"), ".parquet") {
        for b in read_parquet(&f) {
            for i in 0..b.num_rows() {
                let p: u64 = str_at(&b, "_partition", i).unwrap().parse().unwrap();
                landed.insert((p, i64_at(&b, "_position", i).unwrap() as u64));
                total += 1;
            }
        }
    }
    for l in quarantine_lines(lake) {
        let p: u64 = l["partition"].as_str().unwrap().parse().unwrap();
        landed.insert((p, l["position"].as_u64().unwrap()));
        total += 1;
    }
    (landed, total)
}

pub fn assert_none_lost(landed: &std::collections::HashSet<(u64, u64)>, partitions: u64, records: u64) {
    for p in 0..partitions {
        for seq in 0..records / partitions {
            assert!(landed.contains(&(p, seq)), "record ({p}, {seq}) was lost");
        }
    }
}

/// Peak resident set of a finished child, from wait4(2), in bytes.
pub fn wait_peak_rss(child: &mut std::process::Child) -> (i32, u64) {
    let mut status = 0;
    // SAFETY: rusage is plain data, zero is a valid value for every field.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child's pid with valid pointers to a status and a rusage.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    (libc::WEXITSTATUS(status), usage.ru_maxrss as u64 * 1024)
}
