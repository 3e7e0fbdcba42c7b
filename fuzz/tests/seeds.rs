//! Every fuzz harness over its committed seed corpus (`corpus/<target>/`) and then over seeded
//! mutations of those seeds for a bounded time: the test command's proof that the harnesses
//! build and run, and a small fuzzer of its own on the stable toolchain (libFuzzer, with
//! coverage, is `cargo +nightly fuzz run <target>`: see docs/security.md).
//!
//! `SLUICEGATE_WRITE_SEEDS=1 cargo test -p sluicegate-fuzz` writes the hand-made seeds below
//! into the corpus directories (libFuzzer's minimized corpora are committed beside them).

use sluicegate_fuzz::TARGETS;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Time each target gets for mutations after its seeds.
const MUTATION_TIME: Duration = Duration::from_millis(1500);
/// Mutated inputs per target at most (the time above usually ends it first).
const MUTATIONS_MAX: u64 = 200_000;

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target)
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus(target))
        .unwrap_or_else(|e| panic!("corpus/{target}: {e}"))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

/// xorshift64*: the mutations are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One of libFuzzer's simpler mutations: flip a bit, set a byte, insert or erase a run,
/// copy a run, or splice in another seed's tail.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    match rng.below(6) {
        0 if !input.is_empty() => {
            let i = rng.below(input.len());
            input[i] ^= 1 << rng.below(8);
        }
        1 if !input.is_empty() => {
            let i = rng.below(input.len());
            input[i] = [0, 0xff, b'"', b'{', b'\n', 0x7f][rng.below(6)];
        }
        2 => {
            let at = rng.below(input.len() + 1);
            let n = 1 + rng.below(16);
            let byte = rng.next() as u8;
            input.splice(at..at, std::iter::repeat_n(byte, n));
        }
        3 if !input.is_empty() => {
            let at = rng.below(input.len());
            let n = 1 + rng.below((input.len() - at).min(32));
            input.drain(at..at + n);
        }
        4 if input.len() > 1 => {
            let from = rng.below(input.len());
            let n = 1 + rng.below((input.len() - from).min(64));
            let run = input[from..from + n].to_vec();
            let at = rng.below(input.len());
            input.splice(at..at, run);
        }
        _ => {
            let at = rng.below(input.len() + 1);
            input.truncate(at);
            input.extend_from_slice(&other[rng.below(other.len() + 1)..]);
        }
    }
}

#[test]
fn every_target_runs_its_seeds_and_mutations_of_them() {
    if std::env::var_os("SLUICEGATE_WRITE_SEEDS").is_some() {
        write_seeds();
    }
    for (name, harness) in TARGETS {
        let seeds = seeds(name);
        assert!(!seeds.is_empty(), "corpus/{name} has no seeds");
        for s in &seeds {
            harness(s);
        }
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);
        let started = Instant::now();
        let mut runs = 0u64;
        while started.elapsed() < MUTATION_TIME && runs < MUTATIONS_MAX {
            let mut input = seeds[rng.below(seeds.len())].clone();
            let other = &seeds[rng.below(seeds.len())];
            for _ in 0..1 + rng.below(4) {
                mutate(&mut rng, &mut input, other);
            }
            harness(&input);
            runs += 1;
        }
        eprintln!("{name}: {} seeds, {runs} mutations", seeds.len());
    }
}

/// The hand-made seeds: one or a few well-formed inputs per target (and the edges libFuzzer
/// would take long to find), written by the library's own encoders.
fn write_seeds() {
    use sluicegate::source::framing::{write_frame, MAGIC};
    let write = |target: &str, name: &str, bytes: &[u8]| {
        std::fs::create_dir_all(corpus(target)).unwrap();
        std::fs::write(corpus(target).join(name), bytes).unwrap();
    };
    let events: Vec<Vec<u8>> = {
        let mut cfg = sluicegate::config::Config::embedded_default(10, Path::new("/unused"));
        cfg.sources[0].encryption = sluicegate::config::Encryption::None;
        let g = cfg.sources[0].generator.as_mut().unwrap();
        g.bad_ratio = 0.5;
        g.start_time = Some("2026-11-26T10:00:00Z".into());
        let src = sluicegate::source::generator::GeneratorSource::try_new(
            "generator",
            cfg.sources[0].generator.as_ref().unwrap(),
            sluicegate::config::Encryption::None,
            std::sync::Arc::new(sluicegate::extract::keyring::Keyring::default()),
            0,
        )
        .unwrap();
        (0..6).map(|seq| src.record(0, seq).1).collect()
    };
    for (i, e) in events.iter().enumerate() {
        write("json_record", &format!("event-{i}"), e);
    }
    // Envelopes of an event under the demo key, whole and cut.
    let mut keys = sluicegate::extract::keyring::Keyring::default();
    keys.insert_demo().unwrap();
    let id = keys.ids()[0].clone();
    let mut env = Vec::new();
    sluicegate::extract::envelope::seal(
        &id,
        keys.get(id.as_bytes()).unwrap().aead(),
        [3; 12],
        &events[0],
        &mut env,
    );
    write("envelope", "sealed", &env);
    write("envelope", "cut", &env[..env.len() / 2]);
    // SGF1 streams, and the NDJSON bodies the receiver also walks.
    let mut sgf = MAGIC.to_vec();
    for e in &events[..3] {
        write_frame(&mut sgf, e).unwrap();
    }
    write("sgf1", "frames", &sgf);
    write("sgf1", "ndjson", &events[..3].join(&b"\n"[..]));
    // A RAW segment: the SGF1 stream in an LZ4 frame, as the RAW zone writes it.
    let mut lz = sluicegate::load::lz4frame::Lz4FrameWriter::with_capacity(1 << 16);
    lz.write(&sgf);
    write("raw_lz4", "segment", &lz.finish());
    // An inbox segment of two frames, and one with a torn tail.
    let mut seg = b"SGINBOX1".to_vec();
    for e in &events[..2] {
        seg.extend_from_slice(&(e.len() as u32).to_le_bytes());
        seg.extend_from_slice(&crc32c::crc32c(e).to_le_bytes());
        seg.extend_from_slice(e);
    }
    write("inbox", "two-frames", &seg);
    write("inbox", "torn", &[seg.as_slice(), &[9, 0, 0, 0, 1, 2]].concat());
    // Spill frames: a length word, its CRC32C, and an archive-sized body.
    let body = vec![0u8; 48];
    let mut spill = (body.len() as u32).to_le_bytes().to_vec();
    spill.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    spill.extend_from_slice(&body);
    write("spill", "frame", &spill);
    // A KPL aggregate of three events.
    let refs: Vec<&[u8]> = events[..3].iter().map(Vec::as_slice).collect();
    write(
        "kpl",
        "aggregate",
        &sluicegate::source::kinesis::kpl::aggregate("pk", &refs),
    );
    // GetRecords bodies: records with base64 data (one an aggregate), child shards, a closed
    // shard.
    let b64 = |b: &[u8]| base64_simd::STANDARD.encode_to_string(b);
    let body = format!(
        r#"{{"Records":[{{"SequenceNumber":"49590338271490256608559692538361571095921575989136588898","ApproximateArrivalTimestamp":1764500000.125,"Data":"{}","PartitionKey":"p\"k\u00e9","EncryptionType":"KMS"}},{{"SequenceNumber":"2","Data":"{}","PartitionKey":"pk"}}],"NextShardIterator":"AAAA+/=","MillisBehindLatest":0,"ChildShards":[{{"ShardId":"shardId-000000000002","ParentShards":["shardId-000000000000"],"HashKeyRange":{{"StartingHashKey":"0","EndingHashKey":"340282366920938463463374607431768211455"}}}}]}}"#,
        b64(&events[0]),
        b64(&sluicegate::source::kinesis::kpl::aggregate("pk", &refs)),
    );
    write("get_records", "records", body.as_bytes());
    write(
        "get_records",
        "closed",
        br#"{"Records":[],"NextShardIterator":null,"MillisBehindLatest":12}"#,
    );
    // MD5 lanes: messages around the padding edges (length bytes 55, 56, 63, 64, 119).
    let mut md = Vec::new();
    for n in [0u8, 55, 56, 63, 64, 119, 200] {
        md.push(n);
        md.extend((0..n).map(|i| i.wrapping_mul(31)));
    }
    write("md5_lanes", "edges", &md);
    // Base64: a long payload (whole 64-character blocks and a tail), and padding.
    write("base64_lanes", "payload", b64(&events[0]).as_bytes());
    write("base64_lanes", "padded", b"YWJjZA==");
    // HTTP bodies: identity, gzip and zstd of NDJSON (the first byte picks the encoding).
    let ndjson = events[..3].join(&b"\n"[..]);
    write("http_body", "identity", &[&[0u8][..], &ndjson].concat());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &ndjson).unwrap();
    write("http_body", "gzip", &[&[1u8][..], &gz.finish().unwrap()].concat());
    write(
        "http_body",
        "zstd",
        &[&[2u8][..], &zstd::encode_all(ndjson.as_slice(), 1).unwrap()].concat(),
    );
}
