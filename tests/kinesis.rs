//! The Kinesis source against a real Kinesis endpoint (moto's server on 127.0.0.1): records
//! produced with boto3, plain and KPL-aggregated (aws-kinesis-agg), read by the real binary
//! through SIGKILLs at seeded moments and a shard split while it runs; at the end every record is
//! in the ETL zone or quarantine exactly once, each shard's records are in the lake in the
//! shard's order, and the split shard's children were read only after it.

mod support;

use arrow_array::cast::AsArray;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::moto::Moto;
use support::{bin, files, i64_at, quarantine_lines, read_parquet, str_at, wait_for};

/// One user record as the producer put it (a line of `kinesis_put.py put`).
#[derive(serde::Deserialize)]
struct Put {
    shard: String,
    event_id: Option<String>,
}

fn sluicegate(config: &Path) -> Command {
    let mut c = Command::new(bin());
    c.args(["run", "--config", config.to_str().unwrap()]);
    Moto::env(&mut c);
    c
}

fn write_config(path: &Path, dir: &Path, endpoint: &str) {
    std::fs::write(
        path,
        format!(
            r#"
[lake]
dir = "{lake}"
[state]
dir = "{state}"
[[sources]]
name = "stream"
table = "events"
encryption = "none"
batch_records = 200
[sources.kinesis]
stream = "events"
region = "us-east-1"
endpoint = "{endpoint}"
idle_ms = 100
records_per_call_max = 500
discovery_interval_ms = 300
[[tables]]
name = "events"
schema = "builtin:events"
event_time = "ts"
transforms = [{{ op = "ingest_metadata" }}]
[partitioning]
event_time_late_max_s = 315360000
[buffer]
flush_interval_ms = 300
[raw]
segment_interval_ms = 200
[quarantine]
interval_ms = 200
[audit]
interval_ms = 200
"#,
            lake = dir.join("lake").display(),
            state = dir.join("state").display(),
        ),
    )
    .unwrap();
}

/// A record's place: (shard, position).
type At = (String, u64);

/// An ETL row: event id, ingest time (µs), times written.
type Row = (String, i64, u32);

/// At → row of every ETL row, and At → times written of every quarantined record.
fn lake_rows(lake: &Path) -> (HashMap<At, Row>, HashMap<At, u32>) {
    let mut etl: HashMap<At, Row> = HashMap::new();
    for f in files(&lake.join("etl"), ".parquet") {
        for b in read_parquet(&f) {
            for i in 0..b.num_rows() {
                let key = (
                    str_at(&b, "_partition", i).unwrap(),
                    i64_at(&b, "_position", i).unwrap() as u64,
                );
                let ingest = support::col(&b, "_ingest_time")
                    .as_primitive::<arrow_array::types::TimestampMicrosecondType>()
                    .value(i);
                let e = etl
                    .entry(key)
                    .or_insert((str_at(&b, "event_id", i).unwrap(), ingest, 0));
                e.2 += 1;
            }
        }
    }
    let mut quarantined: HashMap<At, u32> = HashMap::new();
    for l in quarantine_lines(lake) {
        let key = (
            l["partition"].as_str().unwrap().to_string(),
            l["position"].as_u64().unwrap(),
        );
        *quarantined.entry(key).or_default() += 1;
    }
    (etl, quarantined)
}

#[test]
fn kinesis_records_land_exactly_once_and_in_shard_order_through_sigkills() {
    const KILLS: u32 = 8;
    let moto = Moto::start();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (config, events) = (dir.path().join("k.toml"), dir.path().join("events.ndjson"));
    let records = 12_000usize;
    let eighth = records / 8;
    let out = Command::new(bin())
        .args(["generate", "--ndjson", "--records", &records.to_string(), "--seed", "5"])
        .args(["--bad-ratio", "0.01", "--start-time", "2026-11-26T10:00:00Z"])
        .args(["--output", events.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    moto.put_py(&["create", "--stream", "events", "--shards", "3"]);
    write_config(&config, dir.path(), &moto.endpoint());

    // Records go in at five moments (every third batch of 100 as one KPL aggregate), counted in
    // eighths: 2 before the first start; 2 while the appliance is being killed; 1 into shard 0
    // and its neighbours while nothing runs, then shard 0 is split and 1 goes into its children
    // (so at the last start a parent with unread records and its children with records are
    // both listed); 2 after shard 1 is split while the last run runs.
    let put = |first: usize, count: usize| {
        moto.put_py(&[
            "put",
            "--stream",
            "events",
            "--input",
            events.to_str().unwrap(),
            "--first",
            &first.to_string(),
            "--count",
            &count.to_string(),
            "--aggregate-every",
            "3",
        ])
    };
    let mut produced = put(0, 2 * eighth);
    let mut rng = sluicegate::rng::Rng::new(20261126);
    for k in 0..KILLS {
        let mut child = sluicegate(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if k == KILLS / 2 {
            produced.push_str(&put(2 * eighth, 2 * eighth));
        }
        std::thread::sleep(Duration::from_millis(400 + rng.below(1200)));
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run stopped before kill {}",
            k + 1
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }

    produced.push_str(&put(4 * eighth, eighth));
    moto.put_py(&["split", "--stream", "events", "--shard", "shardId-000000000000"]);
    produced.push_str(&put(5 * eighth, eighth));

    // The last run: shard 1 is split while it runs (its children are found by the run's own
    // shard discovery), the last records go in, and once every record is in the lake, Ctrl-C
    // (a stream never ends).
    let lake = dir.path().join("lake");
    let child = sluicegate(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the last run to read", Duration::from_secs(60), || {
        let (etl, q) = lake_rows(&lake);
        etl.len() + q.len() >= 6 * eighth
    });
    moto.put_py(&["split", "--stream", "events", "--shard", "shardId-000000000001"]);
    produced.push_str(&put(6 * eighth, 2 * eighth));
    wait_for("every record in the lake", Duration::from_secs(120), || {
        let (etl, q) = lake_rows(&lake);
        etl.len() + q.len() >= records
    });
    // SAFETY: kill(2) on our own child's pid with a valid signal number.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));

    let (etl, quarantined) = lake_rows(&lake);
    let dups: Vec<_> = etl.iter().filter(|(_, v)| v.2 > 1).map(|(k, _)| k).collect();
    assert!(dups.is_empty(), "ETL rows written twice: {dups:?}");
    assert!(
        quarantined.values().all(|&n| n == 1),
        "a quarantined record written twice"
    );
    assert!(
        etl.keys().all(|k| !quarantined.contains_key(k)),
        "a record both in ETL and quarantine"
    );

    // Per shard: positions are 0..n with none missing, and the ETL rows in position order are
    // the shard's records in the order the stream keeps them.
    let puts: Vec<Put> = produced.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(puts.len(), records);
    let mut by_shard: BTreeMap<&str, Vec<&Put>> = BTreeMap::new();
    for p in &puts {
        by_shard.entry(&p.shard).or_default().push(p);
    }
    // 0 → 3, 4 before the last run; 1 → 5, 6 during it.
    assert_eq!(
        by_shard.keys().copied().collect::<Vec<_>>(),
        (0..7).map(|i| format!("shardId-{i:012}")).collect::<Vec<_>>(),
        "every shard, the splits' children too, got records"
    );
    let etl_ids: HashSet<&str> = etl.values().map(|v| v.0.as_str()).collect();
    for (shard, shard_puts) in &by_shard {
        let n = shard_puts.len() as u64;
        for pos in 0..n {
            let key = (shard.to_string(), pos);
            assert!(
                etl.contains_key(&key) || quarantined.contains_key(&key),
                "{shard} position {pos} of {n} is neither in ETL nor in quarantine"
            );
        }
        let landed: Vec<&str> = (0..n)
            .filter_map(|pos| etl.get(&(shard.to_string(), pos)).map(|v| v.0.as_str()))
            .collect();
        // A shard's good records in the shard's order (the producer lists them by shard,
        // sequence number and sub-sequence number).
        let expected: Vec<&str> = shard_puts
            .iter()
            .filter_map(|p| p.event_id.as_deref())
            .filter(|id| etl_ids.contains(id))
            .collect();
        if let Some(i) = (0..landed.len().max(expected.len())).find(|&i| landed.get(i) != expected.get(i)) {
            panic!(
                "{shard}: ETL rows out of the shard's order at row {i} of {}/{}: {:?} where {:?} was expected",
                landed.len(),
                expected.len(),
                landed.get(i),
                expected.get(i)
            );
        }
    }
    assert_eq!(etl.len() + quarantined.len(), records, "every record, once");
    // The children were read only after every record of their parent was in the lake.
    let ingest = |shard: &str| -> Vec<i64> { etl.iter().filter(|(k, _)| k.0 == shard).map(|(_, v)| v.1).collect() };
    let parent_last = *ingest("shardId-000000000000").iter().max().unwrap();
    for child in ["shardId-000000000003", "shardId-000000000004"] {
        let first = *ingest(child).iter().min().unwrap();
        assert!(
            first > parent_last,
            "{child} read at {first} µs, before its parent's last record at {parent_last}"
        );
    }
    assert!(
        quarantined.len() >= records / 200,
        "the bad records are in quarantine ({} of them)",
        quarantined.len()
    );
}
