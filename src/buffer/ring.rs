//! The per-core record ring: processed records archived with `rkyv` into a log of fixed-size
//! segments, shared by every open partition buffer of the core.
//!
//! Owns: the segments (filled in append order, whatever partition a record belongs to), the
//! free-buffer pool and the byte accounting the memory budget is enforced with. A partition
//! buffer is a list of [`Loc`]s into the ring; sealing hands those to the encoder, which reads
//! the archived rows in place ([`Ring::row`]) and then gives them back ([`Ring::consume`]).
//!
//! Why one shared log and not a chain per partition: 10,000 open partitions through a 64 MiB
//! budget leave 6.5 KiB per partition; per-partition segments would be nearly empty, a shared
//! log packs records densely whatever the partition count, and 8 bytes of index per record is
//! all a partition costs.
//!
//! Invariants:
//! - segment ids increase by one per opened segment; a segment's buffer is returned to the pool
//!   once it is closed (no longer the active one) and every record in it was consumed;
//! - frames are written with [`RowWriter`] at 16-byte-aligned offsets of 16-byte-aligned
//!   buffers, so [`Ring::row`] may read them without validation.
//!
//! Bounds: memory is `bytes()` (segments in use plus pooled buffers). The ring itself never
//! refuses a record — a segment is at least [`SEGMENT_BYTES`], larger for one oversized record —
//! the budget is enforced where records are admitted: a core fetches only while the ring is
//! under `buffer.memory_bytes_max` (see `runtime::core`), so it overshoots by at most one batch.
//! Freed buffers are pooled only while in-use plus pooled bytes stay within the budget, so the
//! ring's memory never exceeds the budget plus one batch (and oversized one-record segments).

use super::row::{access_trusted, archive_range, ArchivedRow, RowHead, RowSource, RowWriter, FRAME_ALIGN};
use std::collections::VecDeque;

/// Size of a ring segment.
pub const SEGMENT_BYTES: usize = 1 << 20;
/// Where a record is: segment id and byte offset of its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub seg: u64,
    pub off: u32,
}

/// A segment's memory: 16-byte aligned, zero-initialised by the allocator (a fresh
/// allocation's pages come zeroed from the kernel, so no memset of our own).
pub struct Buf(Box<[u128]>);

impl Buf {
    pub fn zeroed(len: usize) -> Buf {
        assert!(len.is_multiple_of(FRAME_ALIGN));
        Buf(vec![0u128; len / FRAME_ALIGN].into_boxed_slice())
    }

    pub fn len(&self) -> usize {
        self.0.len() * FRAME_ALIGN
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

const _: () = assert!(std::mem::size_of::<u128>() == FRAME_ALIGN && std::mem::align_of::<u128>() >= FRAME_ALIGN);

impl std::ops::Deref for Buf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the boxed slice owns `len()` initialised bytes (u128 has no padding bytes),
        // u8 has alignment 1, and the shared borrow of `self` covers the returned slice.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast::<u8>(), self.len()) }
    }
}

impl std::ops::DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; any byte pattern is a valid u128, so writes through the byte
        // view cannot create invalid values, and the mutable borrow of `self` is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<u8>(), self.len()) }
    }
}

impl std::fmt::Debug for Buf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buf({} bytes)", self.len())
    }
}

#[derive(Debug)]
struct Segment {
    /// `None` once freed.
    buf: Option<Buf>,
    used: usize,
    /// Records written and not yet consumed.
    live: u32,
}

/// The record ring of one core.
pub struct Ring {
    segments: VecDeque<Segment>,
    /// Id of `segments[0]`.
    first_id: u64,
    pool: Vec<Buf>,
    budget: u64,
    writer: RowWriter,
    /// Bytes of the buffers of segments in use (not the pool).
    bytes: u64,
}

impl Ring {
    /// A ring whose records the caller keeps under `budget` bytes.
    pub fn new(budget: u64) -> Ring {
        Ring {
            segments: VecDeque::new(),
            first_id: 0,
            pool: Vec::new(),
            budget,
            writer: RowWriter::default(),
            bytes: 0,
        }
    }

    /// Memory held by segments in use.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Memory held by free buffers kept for reuse.
    pub fn pooled_bytes(&self) -> u64 {
        (self.pool.len() * SEGMENT_BYTES) as u64
    }

    /// Segments holding records (the active one included).
    pub fn segments_in_use(&self) -> usize {
        self.segments.iter().filter(|s| s.buf.is_some()).count()
    }

    /// Id of the oldest segment still holding records, if any.
    pub fn oldest(&self) -> Option<u64> {
        self.segments
            .iter()
            .position(|s| s.buf.is_some())
            .map(|i| self.first_id + i as u64)
    }

    fn active_id(&self) -> Option<u64> {
        (!self.segments.is_empty()).then(|| self.first_id + self.segments.len() as u64 - 1)
    }

    fn segment(&self, id: u64) -> &Segment {
        &self.segments[(id - self.first_id) as usize]
    }

    /// Archive one row; returns where it is and its frame's length.
    pub fn append(&mut self, head: RowHead, src: RowSource) -> (Loc, usize) {
        if let Some(id) = self.active_id() {
            let seg = self.segments.back_mut().expect("active segment");
            if let Some(buf) = seg.buf.as_mut() {
                if let Some(n) = self.writer.write(&mut buf[seg.used..], head, src) {
                    let off = seg.used as u32;
                    seg.used += n;
                    seg.live += 1;
                    return (Loc { seg: id, off }, n);
                }
            }
        }
        let full = self.active_id();
        let mut size = SEGMENT_BYTES;
        let loc = loop {
            let mut buf = self.take_buffer(size);
            if let Some(n) = self.writer.write(&mut buf, head, src) {
                let id = self.first_id + self.segments.len() as u64;
                self.segments.push_back(Segment {
                    buf: Some(buf),
                    used: n,
                    live: 1,
                });
                break (Loc { seg: id, off: 0 }, n);
            }
            // One record larger than a segment: a segment of its own, big enough.
            self.give_back(buf);
            size *= 2;
        };
        // The full segment is closed now; free it if everything in it is already consumed.
        if let Some(id) = full {
            self.maybe_free(id);
        }
        loc
    }

    fn take_buffer(&mut self, size: usize) -> Buf {
        self.bytes += size as u64;
        if size == SEGMENT_BYTES {
            if let Some(buf) = self.pool.pop() {
                return buf;
            }
        }
        Buf::zeroed(size)
    }

    fn give_back(&mut self, mut buf: Buf) {
        self.bytes -= buf.len() as u64;
        if buf.len() == SEGMENT_BYTES && self.bytes + self.pooled_bytes() + SEGMENT_BYTES as u64 <= self.budget {
            // No clearing: the writer ends every frame with a zero length word.
            buf[..4].fill(0);
            self.pool.push(buf);
        }
    }

    /// The archived row at `loc`.
    pub fn row(&self, loc: Loc) -> &ArchivedRow<'static> {
        let buf = self
            .segment(loc.seg)
            .buf
            .as_ref()
            .expect("reading a record of a freed segment");
        let range = archive_range(buf, loc.off as usize);
        // SAFETY: `loc` came from `append`, which wrote this frame with `RowWriter::write` into
        // this 16-aligned buffer at a 16-aligned offset, and buffers are not reused before every
        // record in them was consumed: the range is exactly that frame's archive. (Memory is
        // trusted; frames read back from disk go through `frame_at` and `access_checked`.)
        unsafe { access_trusted(&buf[range]) }
    }

    /// `count` records of segment `seg` are done with (encoded, or durable).
    pub fn consume(&mut self, seg: u64, count: u32) {
        let s = &mut self.segments[(seg - self.first_id) as usize];
        assert!(s.live >= count, "consuming more records of segment {seg} than it holds");
        s.live -= count;
        self.maybe_free(seg);
    }

    /// Free segment `id` if it is closed (not the active one) and all its records are consumed.
    fn maybe_free(&mut self, id: u64) {
        let i = (id - self.first_id) as usize;
        if i + 1 == self.segments.len() || self.segments[i].live > 0 {
            return;
        }
        if let Some(buf) = self.segments[i].buf.take() {
            self.give_back(buf);
        }
        while self.segments.len() > 1 && self.segments.front().is_some_and(|s| s.buf.is_none()) {
            self.segments.pop_front();
            self.first_id += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::value::{RecordRefs, StrRef, Val};

    fn head(position: u64) -> RowHead {
        RowHead {
            source: 0,
            table: 0,
            slot: 0,
            hour: 0,
            position,
            batch_id: 0,
            event_time_us: 0,
        }
    }

    fn append(ring: &mut Ring, position: u64, text: &str) -> (Loc, usize) {
        let refs = RecordRefs {
            nodes: &[],
            scratch: text,
        };
        let values = [Val::Str(StrRef::Scratch {
            start: 0,
            len: text.len() as u32,
        })];
        ring.append(
            head(position),
            RowSource {
                values: &values,
                refs: &refs,
            },
        )
    }

    fn text(ring: &Ring, loc: Loc) -> String {
        match &ring.row(loc).cells[0] {
            super::super::row::ArchivedCell::Str(s) => s.as_ref().to_string(),
            _ => panic!("a string cell"),
        }
    }

    #[test]
    fn buffers_are_aligned_zeroed_byte_views() {
        let mut b = Buf::zeroed(64);
        assert_eq!((b.len(), b.as_ptr() as usize % FRAME_ALIGN), (64, 0));
        assert!(b.iter().all(|&x| x == 0));
        b[63] = 7;
        assert_eq!(b[63], 7);
    }

    #[test]
    fn records_fill_segments_in_order_and_oversized_ones_get_their_own() {
        let mut ring = Ring::new(64 << 20);
        let small = "s".repeat(1000);
        let big = "b".repeat(3 * SEGMENT_BYTES);
        let (a, _) = append(&mut ring, 0, &small);
        let (b, n) = append(&mut ring, 1, &big);
        let (c, _) = append(&mut ring, 2, &small);
        // The oversized record opened a segment of 4 MiB; the next record used its free tail.
        assert_eq!((a.seg, b.seg, c.seg), (0, 1, 1));
        assert!(n > 3 * SEGMENT_BYTES);
        assert_eq!(ring.bytes(), (SEGMENT_BYTES + 4 * SEGMENT_BYTES) as u64);
        assert_eq!(text(&ring, b).len(), big.len());
        assert_eq!(text(&ring, c), small);
        assert_eq!(ring.row(c).head().position, 2);
        ring.consume(0, 1);
        assert_eq!(ring.oldest(), Some(1));
        // Pooled: segment 0, and the standard buffer the oversized record did not fit in.
        assert_eq!(ring.pooled_bytes(), 2 * SEGMENT_BYTES as u64);
        // Fill the oversized segment; once it is closed and consumed it is freed, not pooled.
        let mut last = c;
        while last.seg == 1 {
            last = append(&mut ring, 3, &small).0;
        }
        assert_eq!(
            ring.pooled_bytes(),
            SEGMENT_BYTES as u64,
            "the new segment came from the pool"
        );
        let in_big = ring.segment(1).live;
        ring.consume(1, in_big);
        assert_eq!(ring.bytes(), SEGMENT_BYTES as u64);
        assert_eq!(ring.oldest(), Some(last.seg));
        assert_eq!(ring.pooled_bytes(), SEGMENT_BYTES as u64);
    }
}
