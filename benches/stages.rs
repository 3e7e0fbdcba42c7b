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
//!   encoding — against the same with RAW off;
//! - `ring`: archiving processed rows into the record ring (`append`), and reading them back
//!   into Arrow columns the way the encoder does (`read_to_arrow`);
//! - `spill`: writing 1 MiB ring segments to spill files (DMA write + fdatasync + directory
//!   sync) and reading them back (DMA read), in MB/s, on the disk under `target/`.
//!
//! Throughput is in records; the mean record size is printed so MB/s can be derived.
//! Run: `cargo bench --bench stages`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sluicegate::buffer::ring::Ring;
use sluicegate::buffer::row::{ArchivedCell, ColumnsBuilder, RowSource};
use sluicegate::clock::FixedWallClock;
use sluicegate::config::Config;
use sluicegate::extract::value::{RecordRefs, StrRef, Val};
use sluicegate::extract::{envelope, flatten};
use sluicegate::pipeline::{Output, Pipeline};
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
    p.add_partition(0, "0", Default::default());
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

/// The pipeline after all records, and its first sealed ETL buffer.
fn first_sealed(d: &Data) -> (Pipeline, sluicegate::buffer::Sealed) {
    let (mut p, mut out) = run_pipeline(d.plan.clone(), d, &batches(d));
    p.seal_all(&mut out);
    let sealed = out
        .into_iter()
        .find_map(|o| match o {
            Output::Etl { sealed, .. } => Some(sealed),
            _ => None,
        })
        .unwrap();
    (p, sealed)
}

fn bench_encode(c: &mut Criterion, d: &Data) {
    let (p, sealed) = first_sealed(d);
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
    bench_ring(c, &d);
    bench_spill(c);
}

/// Rows of the first sealed buffer as plain values (owned text per row), to archive again.
fn rows(d: &Data) -> (Vec<(String, Vec<Val>)>, Vec<sluicegate::buffer::row::RowHead>) {
    let (p, sealed) = first_sealed(d);
    let ring = p.buffers().ring();
    let mut rows = Vec::new();
    let mut heads = Vec::new();
    for l in &sealed.locs {
        let row = ring.row(*l).unwrap();
        let mut scratch = String::new();
        let vals = row
            .cells
            .iter()
            .map(|c| match c {
                ArchivedCell::Null => Val::Null,
                ArchivedCell::Bool(b) => Val::Bool(*b),
                ArchivedCell::I64(x) => Val::I64(x.to_native()),
                ArchivedCell::F64(x) => Val::F64(x.to_native()),
                ArchivedCell::Ts(x) => Val::Ts(x.to_native()),
                ArchivedCell::Str(s) => {
                    let start = scratch.len() as u32;
                    scratch.push_str(s.as_ref());
                    Val::Str(StrRef::Scratch {
                        start,
                        len: s.len() as u32,
                    })
                }
            })
            .collect();
        rows.push((scratch, vals));
        heads.push(row.head());
    }
    (rows, heads)
}

fn bench_ring(c: &mut Criterion, d: &Data) {
    let (rows, heads) = rows(d);
    let table = &d.plan.tables[0];
    let types: Vec<_> = table.transforms.outputs.iter().map(|o| o.ty).collect();
    let fill = |ring: &mut Ring| -> Vec<sluicegate::buffer::ring::Loc> {
        rows.iter()
            .zip(&heads)
            .map(|((scratch, vals), head)| {
                let refs = RecordRefs { nodes: &[], scratch };
                ring.append(
                    *head,
                    RowSource {
                        values: vals,
                        refs: &refs,
                    },
                )
                .0
            })
            .collect()
    };
    let mut probe = Ring::new(1 << 30);
    let locs = fill(&mut probe);
    println!(
        "ring: {} rows, {:.0} archived bytes per row",
        rows.len(),
        locs.iter().map(|l| l.len as f64).sum::<f64>() / rows.len() as f64
    );
    let mut g = c.benchmark_group("ring");
    g.throughput(Throughput::Elements(rows.len() as u64));
    g.sample_size(20);
    g.bench_function("append", |b| {
        b.iter_batched(
            || Ring::new(1 << 30),
            |mut ring| black_box(fill(&mut ring).len()),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("read_to_arrow", |b| {
        b.iter(|| {
            let mut cols = ColumnsBuilder::new(table.arrow_schema.clone(), &types, 8192);
            let mut n = 0;
            for chunk in locs.chunks(8192) {
                for l in chunk {
                    cols.append(probe.row(*l).unwrap());
                }
                n += cols.finish(8192).num_rows();
            }
            black_box(n)
        })
    });
    g.finish();
}

fn bench_spill(c: &mut Criterion) {
    use sluicegate::buffer::spill::{SpillDir, SpillHeader};
    const SEGMENTS: u64 = 64;
    let segment: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR").to_string() + "/target").unwrap();
    let root = dir.path().to_path_buf();
    let header = |seg: u64| SpillHeader {
        run_id: "bench".into(),
        core: 0,
        segment: seg,
        used: segment.len() as u64,
        created_us: 0,
        slots: vec![("generator".into(), "0".into())],
        tables: vec!["events".into()],
    };
    let mut g = c.benchmark_group("spill");
    g.throughput(Throughput::Bytes(SEGMENTS * segment.len() as u64));
    g.sample_size(10);
    // Each sample runs in its own glommio executor (DMA files need one); only the I/O is timed.
    let round = std::cell::Cell::new(0u64);
    let in_executor = |iters: u64, read: bool| -> std::time::Duration {
        let (root, segment, header) = (root.clone(), &segment, &header);
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .make()
            .unwrap();
        let first = round.get();
        round.set(first + iters * SEGMENTS);
        ex.run(async move {
            let spill = SpillDir::new(&root, 0, "bench", u64::MAX).unwrap();
            let mut elapsed = std::time::Duration::ZERO;
            for i in 0..iters {
                let segs: Vec<u64> = (0..SEGMENTS).map(|s| first + i * SEGMENTS + s).collect();
                let t = std::time::Instant::now();
                for &s in &segs {
                    spill.write(&header(s), segment).await.unwrap();
                }
                if !read {
                    elapsed += t.elapsed();
                }
                let t = std::time::Instant::now();
                for &s in &segs {
                    black_box(spill.read(s, 0, segment.len()).await.unwrap().1.len());
                }
                if read {
                    elapsed += t.elapsed();
                }
                for &s in &segs {
                    spill.remove(s).await.unwrap();
                }
            }
            elapsed
        })
    };
    g.bench_function("write_1mib_segments_fdatasync", |b| {
        b.iter_custom(|iters| in_executor(iters, false))
    });
    g.bench_function("read_back_1mib_segments", |b| {
        b.iter_custom(|iters| in_executor(iters, true))
    });
    g.finish();
}

criterion_group!(benches, all);
criterion_main!(benches);
