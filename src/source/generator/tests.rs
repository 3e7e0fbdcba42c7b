use super::*;
use crate::clock::ManualClock;
use std::collections::HashSet;

fn keyring() -> Arc<Keyring> {
    let mut k = Keyring::default();
    k.insert_demo().unwrap();
    Arc::new(k)
}

fn source(cfg: GeneratorConfig, encryption: Encryption) -> GeneratorSource {
    GeneratorSource::try_new("gen", &cfg, encryption, keyring(), 1_764_151_200_000_000).unwrap()
}

#[test]
fn records_are_a_pure_function_of_seed_partition_and_sequence() {
    let g = source(GeneratorConfig::default(), Encryption::Envelope);
    assert_eq!(g.record(3, 17), g.record(3, 17));
    assert_ne!(g.record(3, 17).0, g.record(3, 18).0);
    assert_ne!(g.record(3, 17).0, g.record(4, 17).0);
    let other = source(
        GeneratorConfig {
            seed: 7,
            ..GeneratorConfig::default()
        },
        Encryption::Envelope,
    );
    assert_ne!(g.record(3, 17).1, other.record(3, 17).1);
}

#[test]
fn good_events_are_realistic_json_of_500_to_900_bytes() {
    let g = source(
        GeneratorConfig {
            bad_ratio: 0.0,
            ..GeneratorConfig::default()
        },
        Encryption::Envelope,
    );
    let k = keyring();
    for seq in 0..2000 {
        let (mut payload, plain, expected) = g.record(seq % 8, seq);
        assert_eq!(expected, Expected::Good);
        assert!((500..=900).contains(&plain.len()), "{} bytes", plain.len());
        let v: serde_json::Value = serde_json::from_slice(&plain).unwrap();
        for key in ["event_id", "ts", "user", "geo", "device", "metrics", "tags", "payload"] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        let r = envelope::open_in_place(&k, &mut payload).unwrap();
        assert_eq!(&payload[r], &plain[..]);
    }
}

#[test]
fn bad_records_come_in_every_kind_at_about_the_configured_share() {
    let g = source(
        GeneratorConfig {
            bad_ratio: 0.1,
            ..GeneratorConfig::default()
        },
        Encryption::Envelope,
    );
    let mut kinds = HashSet::new();
    let mut rules = HashSet::new();
    let mut bad = 0;
    let n = 20_000;
    for seq in 0..n {
        if let (_, _, Expected::Rejected { kind, rule, .. }) = g.record(0, seq) {
            bad += 1;
            kinds.insert(kind);
            rules.insert(rule);
        }
    }
    assert_eq!(kinds.len(), BadKind::ALL.len(), "{kinds:?}");
    assert!(
        rules.len() >= 11,
        "every constraint and bound variant appears: {rules:?}"
    );
    let share = bad as f64 / n as f64;
    assert!((0.09..0.11).contains(&share), "bad share {share}");

    let plain = source(
        GeneratorConfig {
            bad_ratio: 0.5,
            ..GeneratorConfig::default()
        },
        Encryption::None,
    );
    for seq in 0..2000 {
        if let (payload, text, Expected::Rejected { kind, .. }) = plain.record(0, seq) {
            assert!(BadKind::PLAIN.contains(&kind));
            assert_eq!(payload, text, "without encryption the payload is the JSON");
        }
    }
}

#[test]
fn counts_split_over_partitions_and_readers_stop_there() {
    let g = source(
        GeneratorConfig {
            records: 10,
            partitions: 3,
            ..GeneratorConfig::default()
        },
        Encryption::Envelope,
    );
    assert_eq!(
        (0..3).map(|p| g.partition_records(p)).collect::<Vec<_>>(),
        vec![4, 3, 3]
    );
    let clock = ManualClock::new(0);
    let parts = g.partitions().unwrap();
    let mut r = g
        .open(
            &parts[0],
            Some(&crate::lineage::Resume {
                position: 1,
                cursor: None,
            }),
        )
        .unwrap();
    let mut batch = FetchBatch::default();
    assert_eq!(r.fetch(&mut batch, 100, &clock).unwrap(), Fetch::End);
    let positions: Vec<u64> = batch.records.iter().map(|r| r.position).collect();
    assert_eq!(positions, vec![1, 2, 3], "resumed at sequence 1");
    assert_eq!(batch.next_position, 4);
}

#[test]
fn rate_and_duration_bounds_follow_the_clock() {
    let g = source(
        GeneratorConfig {
            records: 0,
            duration_ms: 1000,
            rate_per_s: 2000,
            partitions: 2,
            ..GeneratorConfig::default()
        },
        Encryption::Envelope,
    );
    let clock = ManualClock::new(0);
    let mut r = g.open(&g.partitions().unwrap()[0], None).unwrap();
    let mut batch = FetchBatch::default();
    assert!(matches!(r.fetch(&mut batch, 100, &clock).unwrap(), Fetch::Idle(_)));
    clock.advance_ns(10_000_000); // 10 ms at 1000/s for this partition: 10 records
    assert_eq!(r.fetch(&mut batch, 100, &clock).unwrap(), Fetch::Records);
    assert_eq!(batch.records.len(), 10);
    // One record is due after another millisecond, but a batch is 10 ms' worth: wait 9 more.
    clock.advance_ns(1_000_000);
    match r.fetch(&mut batch, 100, &clock).unwrap() {
        Fetch::Idle(wait) => assert!((wait.as_secs_f64() - 0.009).abs() < 1e-6, "{wait:?}"),
        other => panic!("{other:?}"),
    }
    clock.advance_ns(9_000_000);
    assert_eq!(r.fetch(&mut batch, 100, &clock).unwrap(), Fetch::Records);
    assert_eq!(batch.records.len(), 10);
    assert!(matches!(r.fetch(&mut batch, 100, &clock).unwrap(), Fetch::Idle(_)));
    clock.advance_ns(500_000_000);
    r.fetch(&mut batch, 100_000, &clock).unwrap();
    assert_eq!(batch.records.len(), 500);
    clock.advance_ns(480_000_000);
    assert_eq!(
        r.fetch(&mut batch, 100_000, &clock).unwrap(),
        Fetch::End,
        "duration reached"
    );
}
