use super::*;
use crate::store::checkpoint::Checkpoint;
use crate::store::{IntentRun, LocalCheckpoints, LocalDirStore, LocalIntents};

fn intent(id: &str, key: &str, runs: &[(&str, u64, u64)]) -> Intent {
    Intent {
        id: id.into(),
        row: FileRow {
            run_id: "r".into(),
            core: 0,
            zone: "etl".into(),
            key: key.into(),
            source: Some("gen".into()),
            table: Some("t".into()),
            records: 3,
            bytes: 10,
            crc32c: "00000000".into(),
            schema_version: Some(1),
            event_time_min_us: None,
            event_time_max_us: None,
            positions: "[]".into(),
            written_at_us: 0,
        },
        runs: runs
            .iter()
            .map(|&(p, first, last)| IntentRun {
                source: "gen".into(),
                partition: p.into(),
                first,
                last,
            })
            .collect(),
    }
}

#[test]
fn delivered_merges_runs_and_the_skip_cursor_walks_them_in_order() {
    let mut d = Delivered::default();
    d.add("gen", "0", 10, 12);
    d.add("gen", "0", 3, 5);
    d.add("gen", "0", 6, 7); // adjacent to 3..=5: merged
    d.add("gen", "1", 0, 0);
    let d = d.seal();
    assert_eq!(d.positions(), 5 + 3 + 1);
    assert!(d.contains("gen", "0", 3) && d.contains("gen", "0", 7) && d.contains("gen", "0", 12));
    assert!(!d.contains("gen", "0", 8) && !d.contains("gen", "0", 13) && !d.contains("gen", "2", 0));
    let mut skip = d.skip("gen", "0");
    let skipped: Vec<u64> = (0..15).filter(|&p| skip.contains(p)).collect();
    assert_eq!(skipped, vec![3, 4, 5, 6, 7, 10, 11, 12]);
    assert!(!d.skip("other", "0").contains(3));
}

#[test]
fn intents_round_trip_through_the_local_store() {
    let dir = tempfile::tempdir().unwrap();
    let s = LocalIntents::new(dir.path());
    assert!(s.list().unwrap().is_empty());
    let (a, b) = (intent("b-1", "k1", &[("0", 1, 2)]), intent("a-1", "k2", &[]));
    s.record(&a).unwrap();
    s.record(&b).unwrap();
    assert_eq!(s.list().unwrap(), vec![b.clone(), a.clone()], "sorted by id");
    s.remove(&["b-1".into(), "missing".into()]).unwrap();
    assert_eq!(s.list().unwrap(), vec![b]);
    std::fs::write(dir.path().join("intents/a-1.json"), "{").unwrap();
    assert!(s.list().unwrap_err().contains("corrupt"));
}

#[test]
fn resolve_commits_stored_objects_and_aborts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let lake = LocalDirStore::new(&dir.path().join("lake"), false).unwrap();
    let intents = LocalIntents::new(&dir.path().join("state"));
    lake.put("etl/f1.parquet", b"x").unwrap();
    // A put that died half way: its temporary file is all there is.
    std::fs::create_dir_all(dir.path().join("lake/etl")).unwrap();
    std::fs::write(dir.path().join("lake/etl/.f2.parquet.tmp-1-0"), b"half").unwrap();
    intents
        .record(&intent("f1", "etl/f1.parquet", &[("0", 10, 19), ("1", 5, 5)]))
        .unwrap();
    intents
        .record(&intent("f2", "etl/f2.parquet", &[("0", 20, 29)]))
        .unwrap();

    let r = resolve(&intents, &lake).unwrap();
    assert_eq!(r.orphans, 1);
    assert_eq!(
        r.committed.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        vec!["f1"]
    );
    assert!(r.delivered.contains("gen", "0", 10) && r.delivered.contains("gen", "1", 5));
    assert!(
        !r.delivered.contains("gen", "0", 20),
        "the orphan's records come back by replay"
    );
    assert!(
        !dir.path().join("lake/etl/.f2.parquet.tmp-1-0").exists(),
        "partial put aborted"
    );
    assert_eq!(intents.list().unwrap().len(), 1, "the orphan's intent is gone");
    let rows = r.file_rows(77);
    assert_eq!(
        (rows.len(), rows[0].key.as_str(), rows[0].written_at_us),
        (1, "etl/f1.parquet", 77)
    );

    // Resolving again (a crash during recovery) finds the same.
    let again = resolve(&intents, &lake).unwrap();
    assert_eq!((again.orphans, again.committed.len()), (0, 1));

    // Retired only once the checkpoints pass every run.
    let cps = LocalCheckpoints::new(&dir.path().join("state"));
    let cp = |p: &str, n| Checkpoint {
        source: "gen".into(),
        partition: p.into(),
        next_position: n,
        cursor: None,
    };
    cps.save(&[cp("0", 20)]).unwrap();
    assert_eq!(
        retire_covered(&again.committed, &intents, &cps).unwrap(),
        0,
        "partition 1 has no checkpoint"
    );
    cps.save(&[cp("1", 5)]).unwrap();
    assert_eq!(
        retire_covered(&again.committed, &intents, &cps).unwrap(),
        0,
        "position 5 is replayable"
    );
    cps.save(&[cp("1", 6)]).unwrap();
    assert_eq!(retire_covered(&again.committed, &intents, &cps).unwrap(), 1);
    assert!(intents.list().unwrap().is_empty());
}
