//! The S3 lake against a real S3-compatible server (`s3s-fs`, see `support/s3.rs`): the store
//! itself, exactly-once under repeated SIGKILLs, and a 60-second outage of the server.

mod support;

use sluicegate::config::{PayloadSigning, S3Config, Sse};
use sluicegate::source::generator::event::{BadKind, Expected};
use sluicegate::store::s3::S3Store;
use sluicegate::store::ObjectStore;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::s3::{S3Server, ACCESS_KEY, BUCKET, SECRET_KEY};
use support::*;

fn store_for(server: &S3Server, cfg: impl FnOnce(&mut S3Config)) -> S3Store {
    let mut c = S3Config {
        bucket: BUCKET.into(),
        region: "us-east-1".into(),
        endpoint: Some(server.endpoint()),
        path_style: true,
        ..S3Config::default()
    };
    cfg(&mut c);
    S3Store::with_credentials(&c, Some((ACCESS_KEY, SECRET_KEY))).unwrap()
}

#[test]
fn the_s3_store_puts_single_and_multipart_objects_and_classifies_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = S3Server::start(&dir.path().join("s3"));
    let store = store_for(&server, |c| {
        c.multipart_threshold_bytes = 6 << 20;
        c.part_bytes = 5 << 20;
        c.parts_in_flight_max = 2;
        c.sse = Sse::None;
    });
    assert!(store.describe().starts_with("s3://lake at http://127.0.0.1:"));

    store.put("etl/a/small.parquet", b"small object").unwrap();
    // 13 MiB: three parts (5 + 5 + 3 MiB), two at a time.
    let big: Vec<u8> = (0..13u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    store
        .put_shared("etl/b/big.parquet", &bytes::Bytes::from(big.clone()))
        .unwrap();

    assert_eq!(store.get("etl/a/small.parquet").unwrap().unwrap(), b"small object");
    assert!(
        store.get("etl/b/big.parquet").unwrap().unwrap() == big,
        "multipart object differs"
    );
    assert!(store.exists("etl/b/big.parquet").unwrap());
    assert!(!store.exists("etl/b/missing.parquet").unwrap());
    assert_eq!(store.get("etl/missing").unwrap(), None);
    assert_eq!(
        store.list("etl/").unwrap(),
        vec!["etl/a/small.parquet".to_string(), "etl/b/big.parquet".to_string()]
    );
    // SSE-S3: the request carries `x-amz-server-side-encryption: AES256`, single and multipart.
    let sse = store_for(&server, |c| {
        c.sse = Sse::S3;
        c.multipart_threshold_bytes = 5 << 20;
        c.part_bytes = 5 << 20;
    });
    sse.put("etl/c/sse.parquet", b"encrypted at rest").unwrap();
    sse.put_shared("etl/c/sse-big.parquet", &bytes::Bytes::from(big.clone()))
        .unwrap();
    assert!(store.get("etl/c/sse-big.parquet").unwrap().unwrap() == big);
    assert_eq!(store.list("etl/c/").unwrap().len(), 2);

    // Unsigned payloads (`UNSIGNED-PAYLOAD`, the default over HTTPS): the server takes single
    // and multipart uploads with their CRC32C, and the objects read back whole.
    let unsigned = store_for(&server, |c| {
        c.payload_signing = PayloadSigning::Never;
        c.multipart_threshold_bytes = 5 << 20;
        c.part_bytes = 5 << 20;
    });
    assert!(
        !unsigned.signs_payload() && store.signs_payload(),
        "auto signs over plain HTTP"
    );
    unsigned.put("etl/d/unsigned.parquet", b"not hashed").unwrap();
    unsigned
        .put_shared("etl/d/unsigned-big.parquet", &bytes::Bytes::from(big.clone()))
        .unwrap();
    assert_eq!(store.get("etl/d/unsigned.parquet").unwrap().unwrap(), b"not hashed");
    assert!(store.get("etl/d/unsigned-big.parquet").unwrap().unwrap() == big);

    // Nothing left open: aborting partial uploads of a complete key leaves the object alone.
    store.abort_partial("etl/b/big.parquet").unwrap();
    assert!(store.exists("etl/b/big.parquet").unwrap());

    // A wrong secret is refused by the server's SigV4 check: not worth retrying.
    let mut c = S3Config {
        bucket: BUCKET.into(),
        region: "us-east-1".into(),
        endpoint: Some(server.endpoint()),
        path_style: true,
        attempts_max: 1,
        ..S3Config::default()
    };
    let bad = S3Store::with_credentials(&c, Some((ACCESS_KEY, "wrong"))).unwrap();
    let e = bad.put("etl/x", b"x").unwrap_err();
    assert!(!e.retryable, "{e}");
    assert!(e.to_string().contains("HTTP 403"), "{e}");
    // The same without payload signing: the rest of the request is still signed.
    let bad = S3Store::with_credentials(
        &S3Config {
            payload_signing: PayloadSigning::Never,
            ..c.clone()
        },
        Some((ACCESS_KEY, "wrong")),
    )
    .unwrap();
    let e = bad.put("etl/x", b"x").unwrap_err();
    assert!(e.to_string().contains("HTTP 403"), "{e}");

    // A server that is down: connection refused is retryable (the edge rides it out).
    server.stop();
    c.attempt_timeout_ms = 2000;
    let down = S3Store::with_credentials(&c, Some((ACCESS_KEY, SECRET_KEY))).unwrap();
    let e = down.put("etl/y", b"y").unwrap_err();
    assert!(e.retryable, "{e}");
}

/// Every (partition, position) in the ETL zone with its event id, and every quarantine line's.
struct Lake {
    etl: Vec<((u64, u64), String)>,
    quarantine: Vec<(u64, u64)>,
}

fn read_lake(lake: &Path) -> Lake {
    let mut etl = Vec::new();
    for f in files(&lake.join("etl"), ".parquet") {
        for b in read_parquet(&f) {
            for i in 0..b.num_rows() {
                let p: u64 = str_at(&b, "_partition", i).unwrap().parse().unwrap();
                let pos = i64_at(&b, "_position", i).unwrap() as u64;
                etl.push(((p, pos), str_at(&b, "event_id", i).unwrap()));
            }
        }
    }
    let quarantine = quarantine_lines(lake)
        .iter()
        .map(|l| {
            (
                l["partition"].as_str().unwrap().parse().unwrap(),
                l["position"].as_u64().unwrap(),
            )
        })
        .collect();
    Lake { etl, quarantine }
}

/// Check the lake holds every record of the generator exactly once: good ones in ETL (by event
/// id too), bad ones in quarantine; and that the audit ledger's file rows account for every
/// object of both zones and every record in them.
fn assert_exactly_once(lake: &Path, config: &Path, partitions: u64, records: u64) {
    let cfg = sluicegate::config::Config::load(config).unwrap();
    let gen = generator_source(&cfg);
    let l = read_lake(lake);
    let mut seen = HashSet::new();
    for (pos, _) in &l.etl {
        assert!(seen.insert(*pos), "{pos:?} is in the ETL zone twice");
    }
    let ids: HashSet<&str> = l.etl.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids.len(), l.etl.len(), "an event id appears twice in the ETL zone");
    for pos in &l.quarantine {
        assert!(seen.insert(*pos), "{pos:?} is in quarantine twice, or in both zones");
    }
    // The kill tests accept event times up to 10 years late (not 2 days early), so an
    // out-of-bounds timestamp may be in either zone; every other record has one right place.
    let quarantined: HashSet<(u64, u64)> = l.quarantine.iter().copied().collect();
    for p in 0..partitions {
        for seq in 0..records / partitions {
            assert!(seen.contains(&(p, seq)), "record ({p}, {seq}) was lost");
            let bad = match gen.record(p, seq).2 {
                Expected::Good => false,
                Expected::Rejected {
                    kind: BadKind::OutOfBoundsTimestamp,
                    ..
                } => continue,
                Expected::Rejected { .. } => true,
            };
            assert_eq!(quarantined.contains(&(p, seq)), bad, "record ({p}, {seq}): bad {bad}");
        }
    }
    assert_eq!(seen.len() as u64, records);

    // The audit ledger: one file row per object (a crash can repeat a row; the key is its
    // identity), and the rows' record counts add up to what the zones hold.
    let mut rows: HashMap<String, (String, i64)> = HashMap::new();
    for f in files(&lake.join("audit/kind=file"), ".parquet") {
        for b in read_parquet(&f) {
            for i in 0..b.num_rows() {
                let key = str_at(&b, "key", i).unwrap();
                let row = (str_at(&b, "zone", i).unwrap(), i64_at(&b, "records", i).unwrap());
                if let Some(prev) = rows.insert(key.clone(), row.clone()) {
                    assert_eq!(prev, row, "{key}: two audit rows disagree");
                }
            }
        }
    }
    for (zone, suffix, held) in [
        ("etl", ".parquet", l.etl.len()),
        ("quarantine", ".ndjson.zst", l.quarantine.len()),
    ] {
        let objects: HashSet<String> = files(&lake.join(zone), suffix)
            .iter()
            .map(|f| f.strip_prefix(lake).unwrap().to_string_lossy().to_string())
            .collect();
        let audited: HashSet<String> = rows.iter().filter(|r| r.1 .0 == zone).map(|r| r.0.clone()).collect();
        assert_eq!(objects, audited, "{zone}: objects and audit file rows differ");
        let sum: i64 = rows.values().filter(|r| r.0 == zone).map(|r| r.1).sum();
        assert_eq!(
            sum as usize, held,
            "{zone}: audit rows count {sum} records, the zone holds {held}"
        );
    }
}

fn sluicegate(config: &Path) -> Command {
    let mut c = Command::new(bin());
    c.args(["run", "--config", config.to_str().unwrap()]);
    S3Server::env(&mut c);
    c
}

#[test]
fn twenty_sigkills_at_seeded_random_moments_leave_every_record_in_s3_exactly_once() {
    const KILLS: u32 = 20;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let server = S3Server::start(&dir.path().join("s3"));
    let (state, config) = (dir.path().join("state"), dir.path().join("c.toml"));
    let (partitions, records) = (8u64, 1_000_000u64);
    // 50,000 records/s: the run needs ~20 s, the 20 kills take at most ~20 s of it, so every
    // kill lands mid-run. Small files (1 MiB buffers, 200 ms audit and checkpoints) and a
    // 5 MiB multipart threshold keep uploads, intents and checkpoints in flight at every moment.
    write_kill_test_config(
        &config,
        &server.lake_toml("multipart_threshold_bytes = 5242880\npart_bytes = 5242880"),
        &state,
        (partitions, records, 50_000, 0.01),
        "flush_bytes_max = 4194304\nflush_interval_ms = 300",
    );
    let mut rng = sluicegate::rng::Rng::new(20261126);
    let mut kills = 0;
    for _ in 0..KILLS {
        let mut child = sluicegate(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300 + rng.below(1200)));
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run finished before kill {}",
            kills + 1
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    assert_eq!(kills, KILLS);
    let out = sluicegate(&config).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("already delivered"), "{stdout}");

    assert_exactly_once(&server.bucket_dir(), &config, partitions, records);
    assert!(
        files(&state.join("intents"), ".json").is_empty(),
        "intents left after a clean run"
    );
}

/// Resident memory of a running process.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kb << 10
}

/// Hashes of every payload in the RAW zone.
fn raw_payload_hashes(lake: &Path) -> HashSet<u64> {
    let mut out = HashSet::new();
    for_each_raw_payload(lake, |p| {
        out.insert(payload_hash(p));
    });
    out
}

fn payload_hash(p: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    p.hash(&mut h);
    h.finish()
}

#[test]
fn a_60_second_s3_outage_is_ridden_out_in_bounded_memory_with_nothing_lost_or_duplicated() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut server = S3Server::start(&dir.path().join("s3"));
    let (state, config) = (dir.path().join("state"), dir.path().join("c.toml"));
    let (partitions, records) = (4u64, 400_000u64);
    // 4,000 records/s for ~100 s, RAW on; a 16 MiB ring per core. The outage's ~240,000
    // records (~180 MiB of RAW, ~25 MiB of Parquet) cannot wait in memory: the files the store
    // cannot take are parked on disk (the outbox), the sources never pause.
    write_kill_test_config(
        &config,
        &server.lake_toml(""),
        &state,
        (partitions, records, 4_000, 0.01),
        "memory_bytes_max = 16777216\nflush_bytes_max = 4194304\nflush_interval_ms = 1000",
    );
    let mut child = sluicegate(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the first ETL object", Duration::from_secs(60), || {
        !files(&server.bucket_dir().join("etl"), ".parquet").is_empty()
    });
    server.stop();
    let stopped = std::time::Instant::now();
    // Resident memory through the outage, sampled each second.
    let mut rss = Vec::new();
    while stopped.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_secs(1));
        rss.push(rss_bytes(child.id()));
    }
    let parked_during = files(&state.join("spill"), ".part").len();
    server.restart();
    eprintln!(
        "S3 was down for {:.1} s; RSS each second (MiB): {:?}",
        stopped.elapsed().as_secs_f64(),
        rss.iter().map(|&b| b >> 20).collect::<Vec<_>>()
    );
    let (code, peak_rss) = wait_peak_rss(&mut child);
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(code, 0, "{stdout}");
    assert!(parked_during > 0, "no file was parked on disk during the outage");
    // Both layers of retry worked through the outage, and the report counts each.
    let store = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("store "))
        .unwrap_or_else(|| panic!("no store line: {stdout}"));
    let n: Vec<u64> = store
        .split_whitespace()
        .filter_map(|w| w.replace(',', "").parse().ok())
        .collect();
    assert!(n.len() == 2 && n[0] > 0 && n[1] > 0, "{store}");
    // The cores' own accounting held its budget: ring, index, tracked batches and unflushed
    // audit rows within `memory_bytes_max` per core (plus at most one batch).
    let peak_accounted = stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("buffers     peak "))
        .and_then(|l| l.split(" in memory").next())
        .unwrap_or_else(|| panic!("no buffers line: {stdout}"))
        .to_string();
    let mib = |b: u64| b >> 20;
    let (n, unit) = peak_accounted.split_once(' ').unwrap();
    let n: f64 = n.parse().unwrap();
    let accounted = match unit {
        "KiB" => n / 1024.0,
        "MiB" => n,
        other => panic!("peak {n} {other}"),
    };
    assert!(
        accounted <= 2.0 * 17.0,
        "accounted peak {accounted} MiB over 2 × 16 MiB"
    );
    // And the process: per core a 16 MiB budget, 16 MiB of open RAW segments, the outbox's
    // 16 MiB of waiting bytes and 16 MiB of bookkeeping, and 8 files at the edge (RAW segments
    // of up to 4 MiB here), plus the process itself (~100 MiB: binary, runtimes, glommio's I/O
    // memory) — 2 × 96 + 100 MiB. (Before the outbox, audit rows and the waiting files'
    // bookkeeping grew ~0.5–0.9 MB/s for as long as the store was down.)
    assert!(
        peak_rss < (2 * 96 + 100) << 20,
        "peak RSS {} MiB; during the outage {:?}",
        mib(peak_rss),
        rss.iter().map(|&b| mib(b)).collect::<Vec<_>>()
    );
    assert_exactly_once(&server.bucket_dir(), &config, partitions, records);
    // RAW holds every payload (at least once: RAW is not deduplicated across restarts).
    let cfg = sluicegate::config::Config::load(&config).unwrap();
    let gen = generator_source(&cfg);
    let raw = raw_payload_hashes(&server.bucket_dir());
    for p in 0..partitions {
        for seq in 0..records / partitions {
            assert!(
                raw.contains(&payload_hash(&gen.record(p, seq).0)),
                "record ({p}, {seq}) is not in the RAW zone"
            );
        }
    }
}
