use super::*;
use crate::clock::ManualClock;
use crate::config::{Config, RouteConfig, SourceConfig, TransformConfig, Unmatched};
use crate::extract::timestamp::parse_rfc3339;
use crate::extract::Rule;
use crate::lineage::Delivered;
use crate::source::generator::event::Expected;
use crate::source::generator::GeneratorSource;
use crate::source::{PartitionReader, Source};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use std::collections::HashMap;

const START: &str = "2026-11-26T10:30:00Z";

fn config(records: u64, bad_ratio: f64) -> Config {
    let mut c = Config::embedded_default(records, std::path::Path::new("/unused"));
    let g = c.sources[0].generator.as_mut().unwrap();
    g.bad_ratio = bad_ratio;
    g.partitions = 2;
    g.start_time = Some(START.into());
    c
}

fn plan(c: &Config) -> Arc<Plan> {
    let mut plan = crate::engine::plan_for_test(c).unwrap();
    plan.latency_sample_every = 1;
    Arc::new(plan)
}

struct Harness {
    pipe: Pipeline,
    gen: GeneratorSource,
    readers: Vec<Box<dyn PartitionReader>>,
    clock: Arc<ManualClock>,
}

fn harness(c: &Config) -> Harness {
    harness_skipping(c, &Delivered::default())
}

/// A harness whose partitions pass over what `delivered` names (a restart after a crash).
fn harness_skipping(c: &Config, delivered: &Delivered) -> Harness {
    let plan = plan(c);
    let clock = Arc::new(ManualClock::new(parse_rfc3339(START).unwrap()));
    let gen = GeneratorSource::try_new(
        "generator",
        c.sources[0].generator.as_ref().unwrap(),
        c.sources[0].encryption,
        plan.keyring.clone(),
        0,
    )
    .unwrap();
    let mut pipe = Pipeline::new(plan, 0, clock.clone());
    let mut readers = Vec::new();
    for p in gen.partitions().unwrap() {
        pipe.add_partition(0, &p.id, delivered.skip("generator", &p.id));
        readers.push(gen.open(&p, None).unwrap());
    }
    Harness {
        pipe,
        gen,
        readers,
        clock,
    }
}

impl Harness {
    /// Fetch and process every record of every partition; returns the outputs.
    fn run_all(&mut self) -> Vec<Output> {
        let mut out = Vec::new();
        let mut batch = FetchBatch::default();
        for slot in 0..self.readers.len() {
            loop {
                let kind = self.readers[slot].fetch(&mut batch, 100, &*self.clock).unwrap();
                self.pipe.process_batch(slot, &batch, 0, &mut out);
                if kind == crate::source::Fetch::End {
                    break;
                }
            }
        }
        out
    }
}

/// A quarantine line as a reader sees it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[allow(dead_code)]
    source: String,
    partition: String,
    position: u64,
    #[allow(dead_code)]
    core: usize,
    #[allow(dead_code)]
    ingest_time: String,
    stage: String,
    rule: String,
    field: Option<String>,
    table: Option<String>,
    message: String,
    payload_base64: String,
}

fn quarantine_lines(out: &[Output]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Output::File(f) if f.meta.zone == Zone::Quarantine => Some(f),
            _ => None,
        })
        .flat_map(|f| {
            let text = String::from_utf8(zstd::decode_all(&f.bytes[..]).unwrap()).unwrap();
            text.lines().map(str::to_string).collect::<Vec<_>>()
        })
        .collect()
}

/// The message names no value of the (decrypted) record: no string of 3 characters or more,
/// no number of 3 digits or more, found anywhere in its text.
fn assert_no_value_of(plain: &[u8], message: &str) {
    fn walk(v: &serde_json::Value, message: &str) {
        match v {
            serde_json::Value::String(s) => {
                assert!(
                    s.chars().count() < 3 || !message.contains(s.as_str()),
                    "{s:?} in {message:?}"
                )
            }
            serde_json::Value::Number(n) => {
                let t = n.to_string();
                assert!(t.len() < 3 || !message.contains(&t), "{t} in {message:?}")
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, message)),
            serde_json::Value::Object(o) => o.values().for_each(|v| walk(v, message)),
            _ => {}
        }
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(plain) {
        walk(&v, message);
    }
}

#[test]
fn every_bad_record_kind_is_quarantined_with_its_reason_and_original_bytes() {
    let c = config(4000, 0.25);
    let mut h = harness(&c);
    let mut out = h.run_all();
    h.pipe.seal_all(&mut out);
    let lines = quarantine_lines(&out);
    assert!(lines.len() > 800, "{} quarantined", lines.len());
    let mut kinds = std::collections::HashSet::new();
    for l in &lines {
        let back: Line = serde_json::from_str(l).unwrap();
        let partition: u64 = back.partition.parse().unwrap();
        let (payload, plain, expected) = h.gen.record(partition, back.position);
        assert_no_value_of(&plain, &back.message);
        let Expected::Rejected {
            kind,
            stage,
            rule,
            field,
        } = expected
        else {
            panic!(
                "good record {partition}/{} was quarantined: {}",
                back.position, back.message
            )
        };
        kinds.insert(kind);
        assert_eq!(
            (back.stage.as_str(), back.rule.as_str()),
            (stage.as_str(), rule.as_str()),
            "{kind:?}: {}",
            back.message
        );
        assert_eq!(back.field.as_deref(), field, "{kind:?}");
        assert!(!back.message.is_empty());
        assert_eq!(back.payload_base64, crate::load::quarantine::encode_payload(&payload));
        let routed = !matches!(rule, Rule::Authentication | Rule::UnknownKeyId | Rule::MalformedJson);
        assert_eq!(back.table.is_some(), routed, "{kind:?}");
    }
    assert_eq!(kinds.len(), 7, "{kinds:?}");
    assert_eq!(h.pipe.counters.records_quarantined, lines.len() as u64);
    assert_eq!(h.pipe.counters.records_etl + h.pipe.counters.records_quarantined, 4000);
}

#[test]
fn good_records_land_with_their_values_in_their_event_hour() {
    let c = config(600, 0.0);
    let mut h = harness(&c);
    let mut out = h.run_all();
    h.pipe.seal_all(&mut out);
    let mut rows = 0;
    for o in &out {
        let Output::Etl { sealed, key } = o else { continue };
        let b = &h.pipe.sealed_batch(sealed);
        let col = |name: &str| b.schema().index_of(name).unwrap();
        let ids = b.column(col("event_id")).as_string::<i32>();
        let ts = b.column(col("ts")).as_primitive::<TimestampMicrosecondType>();
        let user = b.column(col("user.id")).as_primitive::<Int64Type>();
        let amount = b.column(col("metrics.amount_cents")).as_primitive::<Int64Type>();
        let part = b.column(col("_partition")).as_string::<i32>();
        let pos = b.column(col("_position")).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            let (_, plain, e) = h.gen.record(part.value(i).parse().unwrap(), pos.value(i) as u64);
            assert_eq!(e, Expected::Good);
            let v: serde_json::Value = serde_json::from_slice(&plain).unwrap();
            assert_eq!(ids.value(i), v["event_id"].as_str().unwrap());
            assert_eq!(ts.value(i), parse_rfc3339(v["ts"].as_str().unwrap()).unwrap());
            assert_eq!(user.value(i), v["user"]["id"].as_i64().unwrap());
            assert_eq!(
                amount.value(i),
                v["metrics"]["amount_cents"].as_i64().unwrap_or(0),
                "default 0"
            );
            let (dt, hr) = crate::extract::timestamp::dt_hr(hour_bucket(ts.value(i)));
            assert!(key.contains(&format!("dt={dt}/hr={hr}/")), "{key}");
            rows += 1;
        }
    }
    assert_eq!(rows, 600);
}

#[test]
fn checkpoints_follow_durability_and_come_after_the_audit() {
    let c = config(300, 0.1);
    let mut h = harness(&c);
    let mut out = h.run_all();
    h.pipe.seal_all(&mut out);
    // Nothing is durable yet: flushing the audit yields no checkpoint.
    let mut flushed = Vec::new();
    h.pipe.flush_audit(&mut flushed);
    assert!(flushed.iter().all(|o| !matches!(o, Output::Checkpoint(_))));
    assert!(flushed
        .iter()
        .any(|o| matches!(o, Output::File(f) if f.meta.zone == Zone::Audit)));

    // Make every file durable except partition 1's RAW segment (ETL and quarantine files
    // mix the partitions of a source; RAW segments are per partition).
    let mut held_back = None;
    for o in out {
        let f = match o {
            Output::Etl { sealed, key } => h.pipe.etl_file(sealed, key, vec![1, 2, 3]),
            Output::File(f) => f,
            Output::Checkpoint(_) | Output::Retire(_) => unreachable!(),
        };
        if f.meta.zone == Zone::Raw && f.meta.provenance.ranges[0].0 == 1 {
            held_back = Some(f);
        } else {
            let in_flight = h.pipe.in_flight(f).0;
            h.pipe.on_durable(in_flight);
        }
    }
    let mut flushed = Vec::new();
    h.pipe.flush_audit(&mut flushed);
    let cps: Vec<Checkpoint> = flushed
        .iter()
        .filter_map(|o| match o {
            Output::Checkpoint(c) => Some(c.checkpoints.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(cps.len(), 1, "only partition 0 is fully durable: {cps:?}");
    assert_eq!((cps[0].partition.as_str(), cps[0].next_position), ("0", 150));
    assert!(
        matches!(flushed.last(), Some(Output::Checkpoint(_))),
        "the checkpoint follows the audit files"
    );
    let in_flight = h.pipe.in_flight(held_back.unwrap()).0;
    h.pipe.on_durable(in_flight);
    let mut flushed = Vec::new();
    h.pipe.flush_audit(&mut flushed);
    let last = flushed.iter().find_map(|o| match o {
        Output::Checkpoint(c) => Some(c.checkpoints.clone()),
        _ => None,
    });
    assert_eq!(
        last.unwrap(),
        vec![Checkpoint {
            source: "generator".into(),
            partition: "1".into(),
            next_position: 150,
            cursor: None,
        }]
    );
    assert_eq!(h.pipe.open_batches(), 0);
}

#[test]
fn routes_drop_and_quarantine_and_the_fetch_row_counts_them() {
    let mut c = config(500, 0.0);
    c.sources[0] = SourceConfig {
        table: None,
        route: Some(RouteConfig {
            field: "event_type".into(),
            tables: HashMap::from([("click".to_string(), "events".to_string())])
                .into_iter()
                .collect(),
            unmatched: Unmatched::Drop,
        }),
        ..c.sources[0].clone()
    };
    c.tables[0].transforms.push(TransformConfig::Drop {
        field: "payload.text".into(),
    });
    let mut h = harness(&c);
    let mut out = h.run_all();
    let k = &h.pipe.counters;
    assert!(k.records_dropped > 300 && k.records_etl > 30, "{k:?}");
    assert_eq!(k.records_dropped + k.records_etl, 500);
    h.pipe.flush_audit(&mut out);
    let audit = out
        .iter()
        .find_map(|o| match o {
            Output::File(f) if f.meta.zone == Zone::Audit && f.meta.key.contains("kind=fetch") => Some(f),
            _ => None,
        })
        .unwrap();
    let batches: Vec<_> = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(bytes_of(&audit.bytes), 1024)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let sum = |name: &str| -> i64 {
        batches
            .iter()
            .map(|b| {
                let c = b.column(b.schema().index_of(name).unwrap()).as_primitive::<Int64Type>();
                c.iter().flatten().sum::<i64>()
            })
            .sum()
    };
    assert_eq!(sum("records_in"), 500);
    assert_eq!(sum("records_dropped") as u64, h.pipe.counters.records_dropped);
}

fn bytes_of(b: &[u8]) -> bytes::Bytes {
    bytes::Bytes::from(b.to_vec())
}

/// A spill file of segment `seg` of the harness's ring, as `SpillDir::write` lays it out.
fn spill_file(h: &Harness, seg: u64) -> Vec<u8> {
    let ring = h.pipe.buffers().ring();
    let used = ring.used(seg);
    let (s, records) = ring.spill_candidate().expect("a closed segment");
    assert_eq!(s, seg);
    let mut records = records.to_vec();
    crate::buffer::row::fill_crcs(&mut records);
    let head = h.pipe.spill_header(seg, used).encode();
    let mut out = vec![0; crate::buffer::spill::file_len(head.len(), used)];
    crate::buffer::spill::lay_out(&head, &records, &mut out);
    out
}

#[test]
fn recovery_flushes_whole_records_below_the_checkpoint_once_cuts_a_torn_tail_and_refuses_corruption() {
    use crate::buffer::row::{access_checked, frame_at};
    use crate::delivery::recover::recover;
    use crate::store::{CheckpointStore, LocalCheckpoints, LocalDirStore, ObjectStore};
    let c = config(3000, 0.0);
    let mut h = harness(&c);
    let out = h.run_all();
    assert!(
        out.iter().all(|o| !matches!(o, Output::Etl { .. })),
        "everything still buffered"
    );
    let file = spill_file(&h, 0);

    // The records in the file, by (slot, position), read independently of recovery.
    let (header, head_len) = crate::buffer::spill::SpillHeader::decode(&file).unwrap();
    let mut region = crate::buffer::ring::Buf::zeroed(header.used as usize);
    region.copy_from_slice(&file[head_len..head_len + header.used as usize]);
    let mut rows = Vec::new();
    let mut at = 0;
    while let Some((range, next)) = frame_at(&region, at).unwrap() {
        let head = access_checked(&region[range], at).unwrap().head();
        rows.push((head.slot, head.position));
        at = next;
    }
    assert!(rows.len() > 100, "{} records in a 1 MiB segment", rows.len());

    // Checkpoint partition 0 in the middle of its records in the file; partition 1 not at all.
    let mid = rows
        .iter()
        .filter(|r| r.0 == 0)
        .map(|r| r.1)
        .nth(20)
        .expect("partition 0 records");
    let dir = tempfile::tempdir().unwrap();
    let cps = LocalCheckpoints::new(&dir.path().join("state"));
    let ids: Vec<String> = header.slots.iter().map(|s| s.1.clone()).collect();
    cps.save(&[crate::store::checkpoint::Checkpoint {
        source: header.slots[0].0.clone(),
        partition: ids[0].clone(),
        next_position: mid,
        cursor: None,
    }])
    .unwrap();
    let below = rows.iter().filter(|r| r.0 == 0 && r.1 < mid).count() as u64;

    // Two files: the whole one, and the same records as core 1's, torn in its 31st frame.
    let spill = dir.path().join("spill");
    std::fs::create_dir_all(spill.join("core-0")).unwrap();
    std::fs::write(spill.join("core-0/a-0000000000000000.sgsp"), &file).unwrap();
    let mut torn = {
        let mut h1 = header.clone();
        h1.core = 1;
        let head = h1.encode();
        assert_eq!(head.len(), head_len);
        let mut out = file.clone();
        out[..head_len].copy_from_slice(&head);
        out
    };
    let cut = {
        let mut at = 0;
        for _ in 0..30 {
            at = frame_at(&region, at).unwrap().unwrap().1;
        }
        head_len + at + 40
    };
    let mut corrupt = torn.clone();
    torn.truncate(cut); // a crash mid-write: shorter than its header says
    std::fs::create_dir_all(spill.join("core-1")).unwrap();
    std::fs::write(spill.join("core-1/b-0000000000000001.sgsp"), &torn).unwrap();

    let lake = LocalDirStore::new(&dir.path().join("lake"), false).unwrap();
    let r = recover(&spill, &h.pipe.plan, &lake, Some(&cps), &Delivered::default()).unwrap();
    let below_torn = rows[..30].iter().filter(|r| r.0 == 0 && r.1 < mid).count() as u64;
    assert_eq!(r.files, 2);
    assert_eq!(r.records_flushed, below + below_torn);
    assert_eq!(r.records_replayed, (rows.len() as u64 - below) + (30 - below_torn));
    assert_eq!(r.torn.len(), 1, "{:?}", r.torn);
    assert!(r.torn[0].contains("runs past the end"), "{}", r.torn[0]);
    assert!(
        crate::buffer::spill::spill_files(&spill).is_empty(),
        "recovered files are deleted"
    );
    // A file written whole with a byte the disk changed is corruption: the start stops,
    // naming it, and the file stays.
    corrupt[cut] ^= 0xff;
    std::fs::create_dir_all(spill.join("core-2")).unwrap();
    let bad = spill.join("core-2/c-0000000000000002.sgsp");
    std::fs::write(&bad, &corrupt).unwrap();
    let e = recover(&spill, &h.pipe.plan, &lake, Some(&cps), &Delivered::default()).unwrap_err();
    assert!(e.contains("c-0000000000000002.sgsp: corrupt: frame at byte"), "{e}");
    assert!(bad.exists(), "a corrupt file is never deleted");
    std::fs::remove_file(&bad).unwrap();

    let count_rows = || -> u64 {
        lake.list("etl/")
            .unwrap()
            .iter()
            .map(|k| crate::load::parquet::footer_rows(&lake.get(k).unwrap().unwrap()).unwrap() as u64)
            .sum()
    };
    assert_eq!(count_rows(), below + below_torn);

    // Recovering the same file again (a crash during recovery) writes the same objects.
    std::fs::write(spill.join("core-0/a-0000000000000000.sgsp"), &file).unwrap();
    let again = recover(&spill, &h.pipe.plan, &lake, Some(&cps), &Delivered::default()).unwrap();
    assert_eq!(again.records_flushed, below);
    assert_eq!(count_rows(), below + below_torn, "no duplicates");
    assert_eq!(
        again.rows.len() as u64,
        again.lake_files,
        "one audit row per file written"
    );
    assert_eq!(again.rows.iter().map(|r| r.records as u64).sum::<u64>(), below);

    // A record a committed intent delivered (its ETL file was durable, the spill file not yet
    // deleted) is not written again.
    let first = rows.iter().find(|r| r.0 == 0 && r.1 < mid).unwrap().1;
    let mut d = Delivered::default();
    d.add("generator", "0", first, first);
    std::fs::write(spill.join("core-0/a-0000000000000000.sgsp"), &file).unwrap();
    let third = recover(&spill, &h.pipe.plan, &lake, Some(&cps), &d.seal()).unwrap();
    assert_eq!((third.records_delivered, third.records_flushed), (1, below - 1));

    // A file of another format version (written by an older release) is whole, not torn:
    // recovery stops with the reason and leaves it on disk.
    let mut old = file.clone();
    old[7] = b'1';
    let path = spill.join("core-0/a-0000000000000000.sgsp");
    std::fs::write(&path, &old).unwrap();
    let e = recover(&spill, &h.pipe.plan, &lake, Some(&cps), &Delivered::default()).unwrap_err();
    assert!(e.contains("spill format version 1, this build reads version 2"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), old, "the file is kept");
}

/// Every ETL and quarantine file of a run, as the in-flight file and intent the edge gets.
fn intents_of(h: &mut Harness, out: Vec<Output>) -> Vec<crate::store::Intent> {
    let mut intents = Vec::new();
    for o in out {
        let f = match o {
            Output::Etl { sealed, key } => h.pipe.etl_file(sealed, key, vec![1]),
            Output::File(f) => f,
            _ => continue,
        };
        let zone = f.meta.zone;
        let (file, _) = h.pipe.in_flight(f);
        let intent = h.pipe.intent_for(&file);
        assert_eq!(
            intent.is_some(),
            matches!(zone, Zone::Etl | Zone::Quarantine),
            "{zone:?}"
        );
        intents.extend(intent);
    }
    intents
}

#[test]
fn intents_name_exactly_the_records_of_their_files_and_a_replay_skips_them() {
    let c = config(400, 0.1);
    let mut h = harness(&c);
    let mut out = h.run_all();
    h.pipe.seal_all(&mut out);
    let delivered_total = h.pipe.counters.records_etl + h.pipe.counters.records_quarantined;
    let intents = intents_of(&mut h, out);
    assert!(intents.len() >= 3, "{} intents", intents.len());
    let mut all = Delivered::default();
    let mut claimed = 0;
    for i in &intents {
        for r in &i.runs {
            all.add(&r.source, &r.partition, r.first, r.last);
            claimed += r.last - r.first + 1;
        }
    }
    // Generator positions are dense, so the runs cover each delivered record once, no more.
    assert_eq!(claimed, delivered_total, "runs overlap or miss records");
    assert_eq!(all.seal().positions(), delivered_total);

    // Restart as if the process died with the first ETL file durable: its records are skipped.
    let first = intents.iter().find(|i| i.row.zone == "etl").unwrap();
    let mut d = Delivered::default();
    for r in &first.runs {
        d.add(&r.source, &r.partition, r.first, r.last);
    }
    let mut again = harness_skipping(&c, &d.seal());
    let mut out = again.run_all();
    again.pipe.seal_all(&mut out);
    let k = &again.pipe.counters;
    assert_eq!(k.records_skipped, first.row.records as u64);
    assert_eq!(
        k.records_etl + k.records_quarantined,
        delivered_total - first.row.records as u64
    );
}
