//! CPU cost of the Kinesis fetch path, over recorded responses: 256 shards, each fetch task
//! calling GetRecords over HTTP (the real SDK client: signing, HTTP/1.1; the body decoded by
//! `source::kinesis::decode`) against an in-process server (`source::kinesis::replay`) that
//! answers with one recorded response, the response handed to the shard's reader, KPL
//! aggregates checked and split, user records copied into fetch batches.
//!
//! What is charged: the process's CPU time (every thread: the SDK's runtime, the readers) less
//! the replay server's own (its connection threads account for themselves), since in production
//! the server is Kinesis. The client's side of the loopback socket stays in the figure.
//!
//! The recorded response: 550 Kinesis records of which 50 are KPL aggregates of 10, so 1,000
//! user records of ~700 bytes (JSON events), 1 in 2 of them inside an aggregate.
//!
//!   cargo bench --bench kinesis
//!
//! Criterion's "time" is CPU time per 200,000 user records; its throughput is user records per
//! CPU-second. At the end, `kinesis/whole_run` prints the same ratio over the whole run, warm-up
//! included, with and without the server's CPU. The issue's bound: at 100,000 records/s the path
//! costs at most 10% of a core, i.e. at least 1,000,000 records per CPU-second.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use md5::{Digest, Md5};
use sluicegate::clock::SystemClock;
use sluicegate::config::KinesisConfig;
use sluicegate::source::kinesis::kpl::aggregate;
use sluicegate::source::kinesis::replay::{get_records, list_shards, Replay};
use sluicegate::source::kinesis::KinesisSource;
use sluicegate::source::kinesis::{base64_lanes, md5_lanes};
use sluicegate::source::{Fetch, FetchBatch, PartitionReader, Source};
use sluicegate::telemetry::cpu;
use std::time::Duration;

/// The allocator of the `sluicegate` binary, so the SDK's allocations cost what they cost there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SHARDS: usize = 256;
const RECORDS_PER_ITER: u64 = 200_000;

/// A GetRecords response body: 500 plain records and 50 aggregates of 10.
fn recorded_response() -> String {
    let event = |i: usize| {
        format!(
            r#"{{"event_id":"{i:08}-0e4a-4394-89bc-585a244823f2","event_type":"click","ts":"2026-11-26T10:00:00.000000Z","session_id":"s-ccf635ee9e9e2fa4","user":{{"id":{i},"name":"edsger","email":"edsger.4929@example.com","tier":"pro"}},"geo":{{"country":"BR","region":"Sao Paulo","city":"Sao Paulo","lat":-23.5335,"lon":-46.6597}},"device":{{"os":"android","os_version":"15","model":"Pixel 8","app_version":"5.1.68","ip":"10.153.158.18"}},"metrics":{{"latency_ms":555.135,"bytes":1483958,"items":15}},"tags":["paid","email"],"payload":{{"page":"/cart","referrer":"https://t.co/x","ab_bucket":"B","text":"lorem ipsum dolor sit amet"}}}}"#
        )
        .into_bytes()
    };
    let mut records = Vec::new();
    let mut n = 0;
    for k in 0..550 {
        let data = if k % 11 == 10 {
            let users: Vec<Vec<u8>> = (0..10).map(|j| event(n + j)).collect();
            n += 10;
            aggregate("pk", &users.iter().map(|u| u.as_slice()).collect::<Vec<_>>())
        } else {
            n += 1;
            event(n)
        };
        records.push((
            format!("4959033827149025660855969253836157109592157598913658{k:04}"),
            data,
        ));
    }
    assert_eq!(n, 1000);
    get_records(&records, Some("it"))
}

/// Fetch from every reader until each says it has nothing ready; records taken.
fn drain(readers: &mut [Box<dyn PartitionReader>], batch: &mut FetchBatch) -> u64 {
    let mut n = 0;
    for r in readers.iter_mut() {
        while let Fetch::Records = r.fetch(batch, 1000, &SystemClock).unwrap() {
            n += batch.records.len() as u64;
        }
    }
    n
}

fn fetch_path(c: &mut Criterion) {
    let records: &'static str = Box::leak(recorded_response().into_boxed_str());
    let shards: &'static str = Box::leak(list_shards(SHARDS).into_boxed_str());
    let replay = Replay::start(move |call, _| match call.op.as_str() {
        "ListShards" => (200, shards.into()),
        "GetShardIterator" => (200, r#"{"ShardIterator":"it"}"#.into()),
        "GetRecords" => (200, records.into()),
        other => panic!("unexpected call {other}"),
    });

    let cfg: KinesisConfig = toml::from_str(&format!(
        "stream = \"bench\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\nprefetch_max = 1",
        replay.endpoint()
    ))
    .unwrap();
    let source = KinesisSource::try_new("bench", &cfg, None, Some(("a", "b"))).unwrap();
    let parts = source.partitions().unwrap();
    assert_eq!(parts.len(), SHARDS);
    let mut readers: Vec<Box<dyn PartitionReader>> = parts.iter().map(|p| source.open(p, None).unwrap()).collect();
    let mut batch = FetchBatch::default();

    // The fetch path's CPU: the process's less the replay server's.
    let client_cpu = || cpu::process().saturating_sub(replay.server_cpu());
    let (cpu_start, server_start, handed_out) = (cpu::process(), replay.server_cpu(), std::cell::Cell::new(0u64));
    let mut g = c.benchmark_group("kinesis");
    g.sample_size(10);
    g.throughput(Throughput::Elements(RECORDS_PER_ITER));
    g.bench_function(format!("fetch_path_{SHARDS}_shards_cpu"), |b| {
        b.iter_custom(|iters| {
            // Steady state: a window starts and ends right after a drain, so the responses in
            // flight when it starts (fetched partly before it, handed out in it) balance those
            // in flight when it ends (fetched partly in it, handed out in the next). (Emptying
            // the channels before each window, as this bench first did, kept only the second
            // kind: a window paid for up to one response per shard that it never counted, and
            // the faster the fetch path, the fuller the channels and the larger that error.)
            let t0 = client_cpu();
            let mut n = 0;
            while n < iters * RECORDS_PER_ITER {
                let got = drain(&mut readers, &mut batch);
                if got == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
                n += got;
            }
            handed_out.set(handed_out.get() + n);
            // CPU for exactly `iters` × RECORDS_PER_ITER records (the last drain overshoots).
            (client_cpu() - t0).mul_f64((iters * RECORDS_PER_ITER) as f64 / n as f64)
        })
    });
    g.finish();
    // A cross-check over the whole run, warm-up included: every record the readers handed out
    // against all the CPU spent since the source was opened, the server's and without it.
    let (all, server) = (cpu::process() - cpu_start, replay.server_cpu() - server_start);
    let n = handed_out.get() as f64;
    println!(
        "kinesis/whole_run: {} user records; process {:.3} CPU-s ({:.0} records per CPU-second), \
         of which the replay server {:.3}; fetch path {:.0} records per CPU-second",
        handed_out.get(),
        all.as_secs_f64(),
        n / all.as_secs_f64(),
        server.as_secs_f64(),
        n / (all - server).as_secs_f64()
    );
}

/// The KPL digests of one recorded response's 50 aggregates: all at once (`md5_lanes`, what the
/// fetch path runs) against one at a time (the `md-5` crate, what it ran before), same run.
fn kpl_digests(c: &mut Criterion) {
    let users: Vec<Vec<u8>> = (0..10)
        .map(|i| format!("{{\"event\":{i},\"pad\":\"{}\"}}", "x".repeat(680)).into_bytes())
        .collect();
    let user_refs: Vec<&[u8]> = users.iter().map(Vec::as_slice).collect();
    let aggregates: Vec<Vec<u8>> = (0..50).map(|_| aggregate("pk", &user_refs)).collect();
    // The protobuf bodies, as `kpl` hands them over: past the magic, before the digest.
    let bodies: Vec<&[u8]> = aggregates.iter().map(|a| &a[4..a.len() - 16]).collect();
    let bytes: usize = bodies.iter().map(|b| b.len()).sum();
    let mut g = c.benchmark_group("kpl_digests");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("one_at_a_time", |b| {
        b.iter(|| {
            bodies
                .iter()
                .map(|m| <[u8; 16]>::from(Md5::digest(m)))
                .collect::<Vec<_>>()
        })
    });
    g.bench_function("lanes", |b| b.iter(|| md5_lanes::digests(&bodies)));
    g.finish();
}

/// Base64 decoding of one recorded response's 1,000 ~700-byte payloads (as base64) into one
/// buffer: `base64_lanes` (what the fetch path runs) against `base64-simd` alone, same run.
fn payload_base64(c: &mut Criterion) {
    let payloads: Vec<String> = (0..1000)
        .map(|i| {
            let event = format!("{{\"event\":{i},\"pad\":\"{}\"}}", "x".repeat(680 + i % 7));
            base64_simd::STANDARD.encode_to_string(event)
        })
        .collect();
    let bytes: usize = payloads.iter().map(String::len).sum();
    let mut out = Vec::with_capacity(bytes);
    let mut g = c.benchmark_group("payload_base64");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("base64_simd", |b| {
        b.iter(|| {
            out.clear();
            for p in &payloads {
                base64_simd::STANDARD.decode_append(p, &mut out).unwrap();
            }
        })
    });
    g.bench_function("lanes", |b| {
        b.iter(|| {
            out.clear();
            for p in &payloads {
                base64_lanes::decode_append(p.as_bytes(), &mut out).unwrap();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, kpl_digests, payload_base64, fetch_path);
criterion_main!(benches);
