//! Per-stage throughput on one core, each against a baseline in the same run.
//!
//! - `decrypt`: envelope open in place (AES-256-GCM) — baseline: the copy into the working
//!   buffer alone;
//! - `parse`: simd-json tape (what the pipeline uses) — baselines: simd-json borrowed value and
//!   `serde_json::Value`;
//! - `flatten_schema`: trie flatten + type and constraint checks of every column;
//! - `parquet_encode`: a sealed buffer to a Parquet file — zstd(1) with dictionary (the
//!   default) against uncompressed and against zstd(1) without dictionary;
//! - `pipeline`: `Pipeline::process_batch`, every per-record stage with the RAW backup, no
//!   encoding — against the same with RAW off.
//!
//! Throughput is in records; the mean record size is printed so MB/s can be derived.
//! Run: `cargo bench --bench stages`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sluicegate::config::Config;
use sluicegate::extract::{envelope, flatten};
use sluicegate::pipeline::{Output, Pipeline};
use sluicegate::runtime::clock::FixedWallClock;
use sluicegate::source::generator::GeneratorSource;
use sluicegate::source::FetchBatch;
use std::hint::black_box;
use std::sync::Arc;

const RECORDS: usize = 20_000;
const START: &str = "2026-11-26T10:30:00Z";

fn config(raw: bool) -> Config {
    let mut c = Config::embedded_default(RECORDS as u64, std::path::Path::new("/unused"));
    let g = c.sources[0].generator.as_mut().unwrap();
    g.bad_ratio = 0.0;
    g.partitions = 1;
    g.start_time = Some(START.into());
    g.event_time_spread_s = 0;
    c.raw.enabled = raw;
    c
}

struct Data {
    plan: Arc<sluicegate::pipeline::Plan>,
    envelopes: Vec<Vec<u8>>,
    plains: Vec<Vec<u8>>,
}

fn data() -> Data {
    let c = config(true);
    let plan = Arc::new(sluicegate::engine::plan_for_test(&c).unwrap());
    let g = GeneratorSource::try_new(
        "generator",
        c.sources[0].generator.as_ref().unwrap(),
        c.sources[0].encryption,
        plan.keyring.clone(),
        0,
    )
    .unwrap();
    let (envelopes, plains) = (0..RECORDS as u64)
        .map(|s| g.record(0, s))
        .map(|(e, p, _)| (e, p))
        .unzip();
    Data {
        plan,
        envelopes,
        plains,
    }
}

fn mean_len(v: &[Vec<u8>]) -> f64 {
    v.iter().map(Vec::len).sum::<usize>() as f64 / v.len() as f64
}

fn bench_decrypt(c: &mut Criterion, d: &Data) {
    println!("decrypt: mean envelope {:.0} bytes", mean_len(&d.envelopes));
    let mut g = c.benchmark_group("decrypt");
    g.throughput(Throughput::Elements(RECORDS as u64));
    let mut buf = Vec::with_capacity(2048);
    g.bench_function("copy_only_baseline", |b| {
        b.iter(|| {
            for e in &d.envelopes {
                buf.clear();
                buf.extend_from_slice(e);
                black_box(&buf);
            }
        })
    });
    g.bench_function("aes256gcm_open_in_place", |b| {
        b.iter(|| {
            for e in &d.envelopes {
                buf.clear();
                buf.extend_from_slice(e);
                black_box(envelope::open_in_place(&d.plan.keyring, &mut buf).unwrap());
            }
        })
    });
    g.finish();
}

fn bench_parse(c: &mut Criterion, d: &Data) {
    println!("parse: mean document {:.0} bytes", mean_len(&d.plains));
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(RECORDS as u64));
    let mut buf = Vec::with_capacity(2048);
    let mut buffers = simd_json::Buffers::new(2048);
    let mut tape_store = simd_json::tape::Tape(Vec::new());
    g.bench_function("simd_json_tape_in_place", |b| {
        b.iter(|| {
            for p in &d.plains {
                buf.clear();
                buf.extend_from_slice(p);
                buf.extend_from_slice(&[0; simd_json::INPUT_PADDING]);
                let mut tape = std::mem::replace(&mut tape_store, simd_json::tape::Tape(Vec::new())).reset();
                simd_json::fill_tape_padded(&mut buf, p.len(), &mut buffers, &mut tape).unwrap();
                black_box(tape.0.len());
                tape_store = tape.reset();
            }
        })
    });
    g.bench_function("simd_json_borrowed_value", |b| {
        b.iter(|| {
            for p in &d.plains {
                buf.clear();
                buf.extend_from_slice(p);
                black_box(simd_json::to_borrowed_value(&mut buf).unwrap());
            }
        })
    });
    g.bench_function("serde_json_value_baseline", |b| {
        b.iter(|| {
            for p in &d.plains {
                black_box(serde_json::from_slice::<serde_json::Value>(p).unwrap());
            }
        })
    });
    g.finish();
}

fn bench_flatten_schema(c: &mut Criterion, d: &Data) {
    let table = &d.plan.tables[0];
    let mut bufs: Vec<Vec<u8>> = d.plains.clone();
    let tapes: Vec<_> = bufs.iter_mut().map(|b| simd_json::to_tape(b).unwrap()).collect();
    let mut g = c.benchmark_group("flatten_schema");
    g.throughput(Throughput::Elements(RECORDS as u64));
    let mut slots = vec![None; table.schema.columns.len()];
    let mut scratch = String::new();
    g.bench_function("trie_flatten_and_checks", |b| {
        b.iter(|| {
            for t in &tapes {
                flatten::flatten(&t.0, &table.schema.trie, &mut slots).unwrap();
                scratch.clear();
                for (col, slot) in table.schema.columns.iter().zip(&slots) {
                    black_box(col.convert(&t.0, slot.map(|i| i as usize), &mut scratch).unwrap());
                }
            }
        })
    });
    g.finish();
}

/// Run the records through a pipeline; returns the pipeline and its outputs.
fn run_pipeline(plan: Arc<sluicegate::pipeline::Plan>, d: &Data, batches: &[FetchBatch]) -> (Pipeline, Vec<Output>) {
    let clock = Arc::new(FixedWallClock::new(
        sluicegate::extract::timestamp::parse_rfc3339(START).unwrap(),
    ));
    let mut p = Pipeline::new(plan, 0, clock);
    p.add_partition(0, "0");
    let mut out = Vec::new();
    for b in batches {
        p.process_batch(0, b, 0, &mut out);
    }
    let _ = d;
    (p, out)
}

fn batches(d: &Data) -> Vec<FetchBatch> {
    d.envelopes
        .chunks(1000)
        .enumerate()
        .map(|(i, chunk)| {
            let mut b = FetchBatch::default();
            for (j, e) in chunk.iter().enumerate() {
                b.push(e, (i * 1000 + j) as u64, None);
            }
            b.next_position = ((i + 1) * 1000) as u64;
            b
        })
        .collect()
}

fn bench_pipeline(c: &mut Criterion, d: &Data) {
    let batches = batches(d);
    let no_raw = Arc::new(sluicegate::engine::plan_for_test(&config(false)).unwrap());
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(RECORDS as u64));
    g.sample_size(20);
    g.bench_function("process_batch_with_raw", |b| {
        b.iter(|| black_box(run_pipeline(d.plan.clone(), d, &batches).1.len()))
    });
    g.bench_function("process_batch_without_raw", |b| {
        b.iter(|| black_box(run_pipeline(no_raw.clone(), d, &batches).1.len()))
    });
    g.finish();
}

fn bench_encode(c: &mut Criterion, d: &Data) {
    let (mut p, mut out) = run_pipeline(d.plan.clone(), d, &batches(d));
    p.seal_all(&mut out);
    let sealed = out
        .into_iter()
        .find_map(|o| match o {
            Output::Etl { sealed, .. } => Some(sealed),
            _ => None,
        })
        .unwrap();
    let batch = p.sealed_batch(&sealed);
    let rows = batch.num_rows();
    println!("parquet_encode: {rows} rows, {} bytes of columns", sealed.bytes);
    let mut cfg = sluicegate::config::ParquetConfig::default();
    let variants = [
        ("zstd1_adaptive_dictionary_default", cfg.clone()),
        ("zstd1_no_dictionary", {
            cfg.dictionary = false;
            cfg.clone()
        }),
    ];
    let mut g = c.benchmark_group("parquet_encode");
    g.throughput(Throughput::Elements(rows as u64));
    g.sample_size(10);
    for (name, cfg) in variants {
        let base = sluicegate::load::parquet::writer_properties(&cfg, "events", 1);
        let props = sluicegate::load::parquet::props_for_batch(&base, &batch);
        let size = sluicegate::load::parquet::encode(&batch, props.clone()).unwrap().len();
        println!(
            "parquet_encode/{name}: {size} bytes, {:.1} bytes/record",
            size as f64 / rows as f64
        );
        g.bench_function(name, |b| {
            b.iter(|| {
                let props = sluicegate::load::parquet::props_for_batch(&base, &batch);
                black_box(sluicegate::load::parquet::encode(&batch, props).unwrap().len())
            })
        });
    }
    let uncompressed = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::UNCOMPRESSED)
        .set_dictionary_enabled(false)
        .set_statistics_enabled(parquet::file::properties::EnabledStatistics::None)
        .build();
    g.bench_function("uncompressed_plain_baseline", |b| {
        b.iter_batched(
            || uncompressed.clone(),
            |props| black_box(sluicegate::load::parquet::encode(&batch, props).unwrap().len()),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn all(c: &mut Criterion) {
    let d = data();
    bench_decrypt(c, &d);
    bench_parse(c, &d);
    bench_flatten_schema(c, &d);
    bench_pipeline(c, &d);
    bench_encode(c, &d);
}

criterion_group!(benches, all);
criterion_main!(benches);
