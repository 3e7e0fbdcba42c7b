use super::*;
use crate::clock::SystemClock;
use crate::source::framing::write_frame;

fn cfg(paths: Vec<PathBuf>, split_bytes: u64) -> FileConfig {
    FileConfig {
        paths,
        framing: Framing::Auto,
        split_bytes,
    }
}

/// One record read back: payload, position, reject rule.
type Read = (Vec<u8>, u64, Option<Rule>);

/// Read a partition to its end: every record, and the last `next_position`.
fn read_all(src: &FileSource, p: &PartitionInfo, resume: Option<u64>, per_fetch: usize) -> (Vec<Read>, u64) {
    let mut r = src
        .open(
            p,
            resume
                .map(|position| crate::lineage::Resume { position, cursor: None })
                .as_ref(),
        )
        .unwrap();
    let mut batch = FetchBatch::default();
    let mut out = Vec::new();
    loop {
        let kind = r.fetch(&mut batch, per_fetch, &SystemClock).unwrap();
        for rec in &batch.records {
            out.push((
                batch.payload(rec).to_vec(),
                rec.position,
                rec.reject.as_ref().map(|x| x.rule),
            ));
        }
        if kind == Fetch::End {
            return (out, batch.next_position);
        }
    }
}

fn lines(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(i % 37)))
        .collect()
}

#[test]
fn ndjson_splits_read_every_line_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.ndjson");
    let ls = lines(500);
    std::fs::write(&path, ls.join("\n") + "\n").unwrap();
    for split in [64, 100, 997, 1 << 20] {
        let src = FileSource::try_new("f", &cfg(vec![path.clone()], split)).unwrap();
        let mut seen = Vec::new();
        for p in src.partitions().unwrap() {
            seen.extend(read_all(&src, &p, None, 7).0);
        }
        let got: Vec<String> = seen
            .iter()
            .map(|(b, _, _)| String::from_utf8(b.clone()).unwrap())
            .collect();
        assert_eq!(got, ls, "split_bytes {split}");
        // Positions are the byte offsets of line starts.
        let mut off = 0;
        for (i, (_, pos, _)) in seen.iter().enumerate() {
            assert_eq!(*pos, off);
            off += ls[i].len() as u64 + 1;
        }
    }
}

#[test]
fn resume_continues_at_next_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.ndjson");
    let ls = lines(50);
    std::fs::write(&path, ls.join("\r\n") + "\r\n").unwrap();
    let src = FileSource::try_new("f", &cfg(vec![path], 1 << 30)).unwrap();
    let p = &src.partitions().unwrap()[0];
    let mut r = src.open(p, None).unwrap();
    let mut batch = FetchBatch::default();
    r.fetch(&mut batch, 20, &SystemClock).unwrap();
    assert_eq!(batch.records.len(), 20);
    assert_eq!(batch.payload(&batch.records[0]), ls[0].as_bytes(), "CRLF is stripped");
    let (rest, _) = read_all(&src, p, Some(batch.next_position), 1000);
    let got: Vec<&[u8]> = rest.iter().map(|(b, _, _)| b.as_slice()).collect();
    let want: Vec<&[u8]> = ls[20..].iter().map(|s| s.as_bytes()).collect();
    assert_eq!(got, want);
}

#[test]
fn oversized_lines_are_cut_and_flagged_and_blank_lines_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.ndjson");
    let big = "y".repeat(RECORD_BYTES_MAX + 500_000);
    std::fs::write(&path, format!("{{\"a\":1}}\n\n   \n{big}\n{{\"b\":2}}")).unwrap();
    let src = FileSource::try_new("f", &cfg(vec![path], 1 << 30)).unwrap();
    let (recs, next) = read_all(&src, &src.partitions().unwrap()[0], None, 10);
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[0].0, b"{\"a\":1}");
    assert_eq!(recs[1].0.len(), RECORD_BYTES_MAX);
    assert_eq!(recs[1].2, Some(Rule::Framing));
    assert_eq!(recs[2].0, b"{\"b\":2}", "the line after an oversized one is intact");
    assert_eq!(recs[2].1, 8 + 1 + 4 + big.len() as u64 + 1);
    assert_eq!(next, recs[2].1 + 7);
}

#[test]
fn framed_files_and_corrupt_tails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.sgf");
    let mut data = MAGIC.to_vec();
    for i in 0..10u8 {
        write_frame(&mut data, &[i; 5]).unwrap();
    }
    data.extend_from_slice(&100u32.to_le_bytes());
    data.extend_from_slice(b"short");
    std::fs::write(&path, &data).unwrap();
    let src = FileSource::try_new("f", &cfg(vec![path.clone()], 1 << 30)).unwrap();
    let p = &src.partitions().unwrap()[0];
    assert_eq!(p.id, format!("{}#0", path.display()));
    let (recs, next) = read_all(&src, p, None, 3);
    assert_eq!(recs.len(), 11);
    assert_eq!(recs[9], (vec![9; 5], 4 + 9 * 9, None));
    assert_eq!(recs[10].2, Some(Rule::Framing));
    assert_eq!(next, u64::MAX, "a corrupt stream resumes nowhere");
    // Resume mid-stream at a frame boundary.
    let (rest, _) = read_all(&src, p, Some(4 + 9 * 7), 100);
    assert_eq!(rest[0].0, vec![7; 5]);
}

#[test]
fn raw_segments_read_back_and_resume() {
    use crate::load::raw::RawSegments;
    let dir = tempfile::tempdir().unwrap();
    let mut raw = RawSegments::new(1 << 30, 1 << 30, u64::MAX);
    let mut batch = FetchBatch::default();
    for i in 0..100u64 {
        batch.push(format!("payload-{i}").as_bytes(), i, None);
    }
    raw.append(0, 0, &batch, 0, 0, 0);
    let seg = raw.take(crate::lineage::Due::All).pop().unwrap();
    let path = dir.path().join("0-0-99-run.sgf.lz4");
    std::fs::write(&path, &seg.bytes).unwrap();
    let src = FileSource::try_new("replay", &cfg(vec![dir.path().to_path_buf()], 1 << 30)).unwrap();
    let p = &src.partitions().unwrap()[0];
    let (recs, next) = read_all(&src, p, None, 30);
    assert_eq!(recs.len(), 100);
    assert_eq!(recs[42].0, b"payload-42");
    let (rest, _) = read_all(&src, p, Some(recs[60].1), 30);
    assert_eq!(rest.len(), 40);
    assert_eq!(rest[0].0, b"payload-60");
    assert!(next > recs[99].1);
}

#[test]
fn directories_are_walked_in_order_skipping_hidden_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("b/c")).unwrap();
    for f in ["a.ndjson", "b/c/d.ndjson", "b/_SUCCESS", ".tmp.ndjson", "b/.x"] {
        std::fs::write(dir.path().join(f), "{}\n").unwrap();
    }
    let src = FileSource::try_new("f", &cfg(vec![dir.path().to_path_buf()], 1 << 30)).unwrap();
    let ids: Vec<String> = src.partitions().unwrap().into_iter().map(|p| p.id).collect();
    let rel: Vec<String> = ids
        .iter()
        .map(|i| {
            i.strip_prefix(&format!("{}/", dir.path().display()))
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(rel, ["a.ndjson#0", "b/c/d.ndjson#0"]);
    let e = FileSource::try_new("f", &cfg(vec![dir.path().join("missing")], 1 << 30)).unwrap_err();
    assert!(e.message.starts_with("cannot list"), "{e}");
}

#[test]
fn large_framed_files_split_at_frame_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.sgf");
    let mut data = MAGIC.to_vec();
    let payloads: Vec<Vec<u8>> = (0..300u32)
        .map(|i| vec![(i % 251) as u8; 10 + (i as usize * 7) % 90])
        .collect();
    for p in &payloads {
        write_frame(&mut data, p).unwrap();
    }
    std::fs::write(&path, &data).unwrap();
    for split in [100, 1000, 4096, 1 << 20] {
        let src = FileSource::try_new("f", &cfg(vec![path.clone()], split)).unwrap();
        let parts = src.partitions().unwrap();
        if split < 4096 {
            assert!(parts.len() > 3, "split {split}: {} partitions", parts.len());
        }
        let mut got = Vec::new();
        for p in &parts {
            got.extend(read_all(&src, p, None, 13).0.into_iter().map(|(b, _, _)| b));
        }
        assert_eq!(got, payloads, "split_bytes {split}");
    }
}

#[test]
fn a_batch_stops_at_its_byte_bound() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.sgf");
    let mut data = MAGIC.to_vec();
    for i in 0..40u8 {
        write_frame(&mut data, &vec![i; RECORD_BYTES_MAX]).unwrap();
    }
    std::fs::write(&path, &data).unwrap();
    let src = FileSource::try_new("f", &cfg(vec![path], 1 << 40)).unwrap();
    let mut r = src.open(&src.partitions().unwrap()[0], None).unwrap();
    let mut batch = FetchBatch::default();
    assert_eq!(r.fetch(&mut batch, 1000, &SystemClock).unwrap(), Fetch::Records);
    assert_eq!(batch.records.len(), crate::source::BATCH_BYTES_MAX / RECORD_BYTES_MAX);
    let (rest, _) = read_all(&src, &src.partitions().unwrap()[0], Some(batch.next_position), 1000);
    assert_eq!(batch.records.len() + rest.len(), 40);
}
