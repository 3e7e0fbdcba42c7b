//! The Kinesis source against a scripted endpoint ([`super::replay`]): what moto cannot be made
//! to do on demand — throttling, an expired iterator, and the pacing of calls and bytes.

use super::replay::{error, get_records, list_shards, Replay};
use super::*;
use crate::clock::SystemClock;
use std::time::Instant;

fn source(replay: &Replay, extra: &str) -> KinesisSource {
    let cfg: KinesisConfig = toml::from_str(&format!(
        "stream = \"s\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\nidle_ms = 10\n{extra}",
        replay.endpoint()
    ))
    .unwrap();
    KinesisSource::try_new("k", &cfg, None, Some(("a", "b"))).unwrap()
}

fn rec(seq: u32, data: &str) -> (String, Vec<u8>) {
    (seq.to_string(), data.as_bytes().to_vec())
}

/// Fetch until `done` holds (checked after every fetch) or 20 s pass.
fn fetch_until(reader: &mut dyn PartitionReader, mut done: impl FnMut(&FetchBatch, Fetch) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut batch = FetchBatch::default();
    loop {
        let f = reader.fetch(&mut batch, 1000, &SystemClock).unwrap();
        if done(&batch, f) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn throttling_is_retried_and_counted_and_an_expired_iterator_resumes_after_the_last_record() {
    let replay = Replay::start(|call, n| match (call.op.as_str(), n) {
        ("ListShards", _) => (200, list_shards(1).into()),
        ("GetShardIterator", n) => (200, format!(r#"{{"ShardIterator":"it-{n}"}}"#).into()),
        ("GetRecords", 0 | 1) => error(400, "ProvisionedThroughputExceededException"),
        ("GetRecords", 2) => (
            200,
            get_records(&[rec(1, "a"), rec(2, "b"), rec(3, "c")], Some("it-x")).into(),
        ),
        ("GetRecords", 3) => error(400, "ExpiredIteratorException"),
        ("GetRecords", _) => (200, get_records(&[rec(4, "d"), rec(5, "e")], None).into()),
        (op, _) => panic!("unexpected {op}"),
    });
    let src = source(&replay, "");
    let parts = src.partitions().unwrap();
    assert_eq!(parts[0].id, "shardId-000000000000");
    let mut reader = src.open(&parts[0], None).unwrap();
    let (mut got, mut cursor) = (Vec::new(), None);
    fetch_until(&mut *reader, |b, f| {
        got.extend(b.records.iter().map(|r| (b.payload(r).to_vec(), r.position)));
        if !b.records.is_empty() || f == Fetch::End {
            cursor = b.cursor.clone();
        }
        f == Fetch::End
    });
    let want: Vec<(Vec<u8>, u64)> = ["a", "b", "c", "d", "e"]
        .iter()
        .enumerate()
        .map(|(i, d)| (d.as_bytes().to_vec(), i as u64))
        .collect();
    assert_eq!(got, want, "every record once, in order, positions dense");
    assert_eq!(cursor.as_deref(), Some(CURSOR_END));
    assert_eq!(reader.take_stats().throttles, 2);
    assert_eq!(reader.lag_ms(), Some(1500));
    let its = replay.calls("GetShardIterator");
    assert_eq!(its.len(), 2, "one iterator, then one after the expiry");
    assert!(its[0].body.contains("TRIM_HORIZON"), "{}", its[0].body);
    assert!(
        its[1].body.contains("AFTER_SEQUENCE_NUMBER") && its[1].body.contains(r#""StartingSequenceNumber":"3""#),
        "re-opened after the last record sent: {}",
        its[1].body
    );
}

#[test]
fn small_batches_cut_responses_on_whole_records_and_name_their_last_one() {
    let agg = kpl::aggregate("pk", &[b"x".as_slice(), b"y", b"z"]);
    let replay = Replay::start(move |call, n| match (call.op.as_str(), n) {
        ("ListShards", _) => (200, list_shards(1).into()),
        ("GetShardIterator", _) => (200, r#"{"ShardIterator":"it"}"#.into()),
        ("GetRecords", 0) => (
            200,
            get_records(&[rec(1, "a"), rec(2, "b"), rec(3, "c")], Some("it")).into(),
        ),
        ("GetRecords", _) => (200, get_records(&[("4".into(), agg.clone()), rec(5, "e")], None).into()),
        (op, _) => panic!("unexpected {op}"),
    });
    let src = source(&replay, "");
    let mut reader = src.open(&src.partitions().unwrap()[0], None).unwrap();
    let seq_of = |payload: &[u8]| match payload {
        b"a" => 1,
        b"b" => 2,
        b"c" => 3,
        b"x" | b"y" | b"z" => 4,
        b"e" => 5,
        other => panic!("unexpected {other:?}"),
    };
    let (mut got, mut batches) = (Vec::new(), 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut batch = FetchBatch::default();
    loop {
        let f = reader.fetch(&mut batch, 2, &SystemClock).unwrap();
        if let Some(last) = batch.records.last() {
            // The shard's last batch says `end` instead.
            if f != Fetch::End {
                let last_seq = seq_of(batch.payload(last));
                assert_eq!(batch.cursor, Some(format!("after:{last_seq}")), "batch {batches}");
            }
            batches += 1;
        }
        got.extend(batch.records.iter().map(|r| (batch.payload(r).to_vec(), r.position)));
        if f == Fetch::End {
            assert_eq!(batch.cursor.as_deref(), Some(CURSOR_END));
            break;
        }
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(2));
    }
    let want: Vec<(Vec<u8>, u64)> = ["a", "b", "c", "x", "y", "z", "e"]
        .iter()
        .enumerate()
        .map(|(i, d)| (d.as_bytes().to_vec(), i as u64))
        .collect();
    assert_eq!(got, want, "every user record once, in order, positions dense");
    assert!(batches >= 4, "batches of 2 (an aggregate whole): {batches}");
}

#[test]
fn a_checkpoint_cursor_resumes_after_its_record_and_end_reads_nothing() {
    let replay = Replay::start(|call, _| match call.op.as_str() {
        "ListShards" => (200, list_shards(1).into()),
        "GetShardIterator" => (200, r#"{"ShardIterator":"it"}"#.into()),
        _ => (200, get_records(&[rec(8, "h")], None).into()),
    });
    let src = source(&replay, "");
    let p = &src.partitions().unwrap()[0];
    let resume = Resume {
        position: 7,
        cursor: Some("after:7".into()),
    };
    let mut reader = src.open(p, Some(&resume)).unwrap();
    let mut got = Vec::new();
    fetch_until(&mut *reader, |b, f| {
        got.extend(b.records.iter().map(|r| r.position));
        f == Fetch::End
    });
    assert_eq!(got, vec![7], "positions continue from the checkpoint");
    assert!(replay.calls("GetShardIterator")[0]
        .body
        .contains(r#""StartingSequenceNumber":"7""#));

    let calls_before = replay.call_count();
    let finished = Resume {
        position: 8,
        cursor: Some(CURSOR_END.into()),
    };
    let mut reader = src.open(p, Some(&finished)).unwrap();
    let mut batch = FetchBatch::default();
    assert_eq!(reader.fetch(&mut batch, 10, &SystemClock).unwrap(), Fetch::End);
    assert_eq!(replay.call_count(), calls_before, "a finished shard costs no call");
    assert!(src
        .open(
            p,
            Some(&Resume {
                position: 0,
                cursor: Some("12x".into())
            })
        )
        .is_err());
}

#[test]
fn calls_and_bytes_are_paced_per_shard() {
    // Small responses: the call limit paces (5 a second: 200 ms apart).
    let replay = Replay::start(|call, _| match call.op.as_str() {
        "ListShards" => (200, list_shards(1).into()),
        "GetShardIterator" => (200, r#"{"ShardIterator":"it"}"#.into()),
        _ => (200, get_records(&[rec(1, "x")], Some("it")).into()),
    });
    let src = source(&replay, "shard_calls_per_s_max = 5");
    let mut reader = src.open(&src.partitions().unwrap()[0], None).unwrap();
    fetch_until(&mut *reader, |_, _| replay.calls("GetRecords").len() >= 6);
    let calls = replay.calls("GetRecords");
    let span = calls[5].at - calls[0].at;
    assert!(
        span >= Duration::from_millis(900),
        "6 calls within {span:?}: over 5 a second"
    );

    // 64 KiB responses against a 64 KiB/s byte limit: a call a second at most.
    let big = "y".repeat(64 << 10);
    let replay = Replay::start(move |call, _| match call.op.as_str() {
        "ListShards" => (200, list_shards(1).into()),
        "GetShardIterator" => (200, r#"{"ShardIterator":"it"}"#.into()),
        _ => (200, get_records(&[rec(1, &big)], Some("it")).into()),
    });
    let src = source(&replay, "shard_bytes_per_s_max = 65536");
    let mut reader = src.open(&src.partitions().unwrap()[0], None).unwrap();
    fetch_until(&mut *reader, |_, _| replay.calls("GetRecords").len() >= 3);
    let calls = replay.calls("GetRecords");
    let span = calls[2].at - calls[0].at;
    assert!(
        span >= Duration::from_millis(1800),
        "3 calls of 64 KiB within {span:?}: over 64 KiB/s"
    );
}

#[test]
fn a_missing_stream_is_a_clear_error() {
    let replay = Replay::start(|_, _| error(400, "ResourceNotFoundException"));
    let e = source(&replay, "").partitions().unwrap_err().to_string();
    assert!(
        e.contains("ListShards of stream s") && e.contains("ResourceNotFoundException"),
        "{e}"
    );
}
