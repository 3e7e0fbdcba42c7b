use super::*;
use crate::config::{Config, RouteConfig, SourceConfig, TransformConfig, Unmatched};
use crate::extract::timestamp::parse_rfc3339;
use crate::extract::Rule;
use crate::runtime::clock::ManualClock;
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
        pipe.add_partition(0, &p.id);
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
        let (payload, _, expected) = h.gen.record(partition, back.position);
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
            Output::Checkpoint(_) => unreachable!(),
        };
        if f.meta.zone == Zone::Raw && f.meta.provenance.ranges[0].0 == 1 {
            held_back = Some(f);
        } else {
            h.pipe.on_durable(InFlightFile::from_ready(f).0);
        }
    }
    let mut flushed = Vec::new();
    h.pipe.flush_audit(&mut flushed);
    let cps: Vec<Checkpoint> = flushed
        .iter()
        .filter_map(|o| match o {
            Output::Checkpoint(c) => Some(c.clone()),
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
    h.pipe.on_durable(InFlightFile::from_ready(held_back.unwrap()).0);
    let mut flushed = Vec::new();
    h.pipe.flush_audit(&mut flushed);
    let last = flushed.iter().find_map(|o| match o {
        Output::Checkpoint(c) => Some(c.clone()),
        _ => None,
    });
    assert_eq!(
        last.unwrap(),
        vec![Checkpoint {
            source: "generator".into(),
            partition: "1".into(),
            next_position: 150
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
