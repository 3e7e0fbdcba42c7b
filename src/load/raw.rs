//! RAW zone writer: every payload exactly as received, per source partition, in LZ4-framed
//! `SGF1` segments (format in `source::framing`). This is what backfill replays, through the
//! `file` source, so it is written before anything else looks at a batch.
//!
//! LZ4 because this path touches every byte at full rate. Its input is often ciphertext, which
//! no codec shrinks, so the frame writer ([`super::lz4frame`]) stores incompressible blocks as
//! they are and only probes now and then; plain-JSON sources still get LZ4's usual 2–4x.
//!
//! A segment is sealed at `raw.segment_bytes_max` compressed bytes or `raw.segment_interval_ms`
//! of age, or early when the core's open segments together pass `raw.memory_bytes_max` (then
//! the segment just written to is sealed: memory does not grow with the partitions a core
//! owns). Bounds: open segments ≤ `raw.memory_bytes_max` + one batch, plus
//! [`RAW_SPARE_BUFFERS_MAX`] spare buffers. Its `dt`/`hr` are the ingest hour at which it was opened.

use super::lz4frame::Lz4FrameWriter;
use crate::lineage::Provenance;
use crate::lineage::{due_keys, Due};
use crate::source::{framing, FetchBatch};
use std::collections::HashMap;

/// A segment overshoots `segment_bytes_max` by at most one batch (plus an LZ4 block).
const RAW_SEGMENT_SLACK_BYTES: usize = 2 << 20;
/// Written segments' buffers kept per core for reuse. A fresh buffer costs a page fault and a
/// zeroed page per 4 KiB it fills (12% of all CPU in a profile of the file path); a spare is
/// resident memory (up to a full segment), so only a few are kept (8 measured no faster).
pub const RAW_SPARE_BUFFERS_MAX: usize = 2;

pub struct SealedRaw {
    pub source: u16,
    pub slot: usize,
    pub hour: i64,
    pub first: u64,
    pub last: u64,
    pub records: u64,
    pub bytes: Vec<u8>,
    pub provenance: Provenance,
}

struct Segment {
    enc: Lz4FrameWriter,
    first: u64,
    last: u64,
    records: u64,
    opened_ns: u64,
    hour: i64,
    provenance: Provenance,
}

pub struct RawSegments {
    bytes_max: u64,
    interval_ns: u64,
    open: HashMap<(u16, usize), Segment>,
    /// Bytes of all open segments, and their cap.
    open_bytes: u64,
    open_bytes_max: u64,
    /// Buffers of written segments, at most [`RAW_SPARE_BUFFERS_MAX`].
    spare: Vec<Vec<u8>>,
}

impl RawSegments {
    pub fn new(bytes_max: u64, open_bytes_max: u64, interval_ns: u64) -> RawSegments {
        RawSegments {
            bytes_max,
            interval_ns,
            open: HashMap::new(),
            open_bytes: 0,
            open_bytes_max,
            spare: Vec::new(),
        }
    }

    /// Keep a written segment's buffer for the next segment (if there is room for it).
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if self.spare.len() < RAW_SPARE_BUFFERS_MAX && buf.capacity() >= self.segment_capacity() {
            self.spare.push(buf);
        }
    }

    fn segment_capacity(&self) -> usize {
        self.bytes_max as usize + RAW_SEGMENT_SLACK_BYTES
    }

    /// Append every payload of `batch` (the caller holds the batch once for the segment).
    /// Returns the segment if it is now full.
    pub fn append(
        &mut self,
        source: u16,
        slot: usize,
        batch: &FetchBatch,
        batch_id: u64,
        hour: i64,
        now_ns: u64,
    ) -> Option<SealedRaw> {
        let first_pos = batch.records.first()?.position;
        let capacity = self.segment_capacity();
        let created = !self.open.contains_key(&(source, slot));
        let spare = &mut self.spare;
        let seg = self.open.entry((source, slot)).or_insert_with(|| {
            // Sized for a full segment up front: growing a tens-of-MiB vector by doubling
            // copied it over and over (pages are only touched as they fill).
            let mut enc = match spare.pop() {
                Some(buf) => Lz4FrameWriter::with_buffer(buf),
                None => Lz4FrameWriter::with_capacity(capacity),
            };
            enc.write(framing::MAGIC);
            Segment {
                enc,
                first: first_pos,
                last: first_pos,
                records: 0,
                opened_ns: now_ns,
                hour,
                provenance: Provenance::default(),
            }
        });
        let before = if created { 0 } else { seg.enc.len() as u64 };
        for r in &batch.records {
            framing::write_frame(&mut seg.enc, batch.payload(r)).expect("writing to memory");
        }
        // Compressing a block can shrink the segment: re-count it instead of adding a delta.
        self.open_bytes = self.open_bytes - before + seg.enc.len() as u64;
        let last_pos = batch.records.last().map_or(first_pos, |r| r.position);
        seg.provenance.note_span(batch_id, slot, first_pos, last_pos);
        seg.records += batch.records.len() as u64;
        seg.last = batch.records.last().map_or(seg.last, |r| r.position);
        let full = seg.enc.len() as u64 >= self.bytes_max || self.open_bytes > self.open_bytes_max;
        full.then(|| self.seal((source, slot)))
    }

    /// Seal what is due (see [`Due`]).
    pub fn take(&mut self, due: Due) -> Vec<SealedRaw> {
        due_keys(&self.open, |f| f.opened_ns, due, self.interval_ns)
            .into_iter()
            .map(|k| self.seal(k))
            .collect()
    }

    fn seal(&mut self, key: (u16, usize)) -> SealedRaw {
        let s = self.open.remove(&key).expect("sealing an open segment");
        self.open_bytes -= s.enc.len() as u64;
        SealedRaw {
            source: key.0,
            slot: key.1,
            hour: s.hour,
            first: s.first,
            last: s.last,
            records: s.records,
            bytes: s.enc.finish(),
            provenance: s.provenance,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::framing::{Frame, FrameReader};
    use std::io::Read;

    #[test]
    fn segments_read_back_with_a_standard_lz4_decoder() {
        let mut raw = RawSegments::new(1 << 30, 1 << 30, u64::MAX);
        let mut batch = FetchBatch::default();
        batch.push(b"first", 10, None);
        batch.push(b"", 11, None);
        batch.push(&[0xff; 3000], 12, None);
        assert!(raw.append(0, 2, &batch, 7, 5, 0).is_none());
        let s = raw.take(Due::All).pop().unwrap();
        assert_eq!((s.first, s.last, s.records, s.hour), (10, 12, 3, 5));
        assert_eq!(s.provenance.batch_ids, vec![7]);
        let mut plain = Vec::new();
        lz4_flex::frame::FrameDecoder::new(&s.bytes[..])
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(&plain[..4], framing::MAGIC);
        let mut fr = FrameReader::new(&plain[4..], 4);
        let mut out = Vec::new();
        let mut n = 0;
        while let Frame::Payload(_) = fr.next(&mut out).unwrap() {
            n += 1;
        }
        assert_eq!(n, 3);
        assert_eq!(out.len(), 5 + 3000);
    }

    #[test]
    fn a_recycled_buffer_carries_the_next_segment() {
        let mut raw = RawSegments::new(1 << 20, 1 << 30, u64::MAX);
        let mut batch = FetchBatch::default();
        batch.push(b"one", 1, None);
        raw.append(0, 0, &batch, 0, 0, 0);
        let first = raw.take(Due::All).pop().unwrap().bytes;
        let addr = first.as_ptr();
        raw.recycle(first);
        raw.recycle(Vec::with_capacity(10)); // too small to hold a segment: not kept
        assert_eq!(raw.spare.len(), 1);
        let mut batch = FetchBatch::default();
        batch.push(b"two", 2, None);
        raw.append(0, 0, &batch, 1, 0, 0);
        let second = raw.take(Due::All).pop().unwrap().bytes;
        assert_eq!(second.as_ptr(), addr, "the spare buffer was reused");
        let mut plain = Vec::new();
        lz4_flex::frame::FrameDecoder::new(&second[..])
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, [framing::MAGIC.as_slice(), &[3, 0, 0, 0], b"two"].concat());
    }

    #[test]
    fn open_segments_of_many_partitions_stay_under_the_memory_cap() {
        let cap = 64 * 1024;
        let mut raw = RawSegments::new(1 << 30, cap, u64::MAX);
        let mut batch = FetchBatch::default();
        batch.push(&[7u8; 1000], 0, None);
        let mut sealed = 0;
        for i in 0..1000u64 {
            let slot = (i % 50) as usize;
            if raw.append(0, slot, &batch, i, 0, 0).is_some() {
                sealed += 1;
            }
            assert!(raw.open_bytes <= cap + 2 * 1024, "{} open bytes", raw.open_bytes);
        }
        assert!(sealed > 0, "the cap sealed segments early");
        let rest = raw.take(Due::All);
        assert_eq!(raw.open_bytes, 0);
        let records: u64 = rest.iter().map(|s| s.records).sum();
        assert!(records > 0 && records < 1000);
    }

    #[test]
    fn seals_by_size_and_age() {
        let mut raw = RawSegments::new(100, 1 << 30, 1000);
        let mut batch = FetchBatch::default();
        batch.push(b"tiny", 0, None);
        assert!(raw.append(0, 0, &batch, 0, 0, 0).is_none());
        assert!(raw.take(Due::Aged(999)).is_empty());
        assert_eq!(raw.take(Due::Aged(1000)).len(), 1);
        let mut big = FetchBatch::default();
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        big.push(&noise, 0, None);
        // The encoder holds up to a block before it emits bytes, so feed until it seals.
        let sealed = (0..200).find_map(|i| raw.append(0, 0, &big, i, 0, 0));
        assert!(sealed.is_some());
    }
}
