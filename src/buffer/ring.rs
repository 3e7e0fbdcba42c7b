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

use super::row::{
    access_checked, access_trusted, archive_range, frame_at, ArchivedRow, FrameError, RowHead, RowSource, RowWriter,
    FRAME_ALIGN,
};
use std::collections::VecDeque;

/// Size of a ring segment.
pub const SEGMENT_BYTES: usize = 1 << 20;
/// Where a record is: segment id, byte offset and length of its frame (16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub seg: u64,
    pub off: u32,
    pub len: u32,
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

/// A spilled segment read back from disk (glommio's `ReadResult`, or any byte view).
pub type Readback = Box<dyn std::ops::Deref<Target = [u8]>>;

enum Store {
    Memory(Buf),
    /// Spilled and no longer in memory; `Some((start, bytes))` while the encoder reads back the
    /// window of the segment's records that starts at byte `start`.
    Disk(Option<(usize, Readback)>),
    /// Every record consumed: nothing left to read.
    Gone,
}

/// Life of a segment: records are written while it is the active (last) one; it is *closed*
/// once a newer segment exists. Its memory goes when every record is consumed (encoded) or it
/// is spilled; its batch holds go when every record so far is durable in the lake, or when it
/// is spilled; it is *finished* — dropped, and its spill file deleted — once closed and every
/// record is durable.
struct Segment {
    store: Store,
    used: usize,
    written: u32,
    consumed: u32,
    durable: u32,
    /// Batches with records here whose holds this segment still has.
    held: Vec<u64>,
    /// A copy is on disk (fsynced).
    spilled: bool,
}

/// What an event asks of the caller: tracker holds to release and spill files to delete.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effects {
    pub release: Vec<u64>,
    pub delete: Vec<u64>,
}

impl Effects {
    pub fn merge(&mut self, other: Effects) {
        self.release.extend(other.release);
        self.delete.extend(other.delete);
    }
}

/// The record ring of one core.
pub struct Ring {
    segments: VecDeque<Segment>,
    /// Id of `segments[0]`.
    first_id: u64,
    pool: Vec<Buf>,
    budget: u64,
    writer: RowWriter,
    /// Bytes of segment buffers and read-backs in memory (not the pool).
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

    /// Memory held by segments (buffers and read-backs).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Memory held by free buffers kept for reuse.
    pub fn pooled_bytes(&self) -> u64 {
        (self.pool.len() * SEGMENT_BYTES) as u64
    }

    /// Id of the oldest segment with records in memory, if any.
    pub fn oldest(&self) -> Option<u64> {
        self.segments
            .iter()
            .position(|s| matches!(s.store, Store::Memory(_)))
            .map(|i| self.first_id + i as u64)
    }

    fn index(&self, id: u64) -> usize {
        (id - self.first_id) as usize
    }

    fn closed(&self, id: u64) -> bool {
        self.index(id) + 1 < self.segments.len()
    }

    /// Whether segment `seg` can never again be written to a spill file: it has left the ring,
    /// or it is closed and every record in it is durable (a spill takes only segments with
    /// records not yet encoded). Its spill file, if any, has then been handed out for deletion.
    pub fn finished(&self, seg: u64) -> bool {
        if seg < self.first_id {
            return true;
        }
        let Some(s) = self.segments.get(self.index(seg)) else {
            return false;
        };
        self.closed(seg) && s.durable == s.written
    }

    /// Archive one row; returns where it is, its frame's length, and whether the caller must
    /// take a hold on its batch for this segment (its first record of that batch here).
    pub fn append(&mut self, head: RowHead, src: RowSource) -> (Loc, usize, bool) {
        let active = self.first_id + self.segments.len() as u64;
        if let Some(seg) = self.segments.back_mut() {
            if let Store::Memory(buf) = &mut seg.store {
                if let Some(n) = self.writer.write(&mut buf[seg.used..], head, src) {
                    let id = active - 1;
                    let loc = Loc {
                        seg: id,
                        off: seg.used as u32,
                        len: n as u32,
                    };
                    seg.used += n;
                    seg.written += 1;
                    let hold = seg.held.last() != Some(&head.batch_id);
                    if hold {
                        seg.held.push(head.batch_id);
                    }
                    return (loc, n, hold);
                }
            }
        }
        let full = (!self.segments.is_empty()).then(|| self.first_id + self.segments.len() as u64 - 1);
        let mut size = SEGMENT_BYTES;
        let (loc, n) = loop {
            let mut buf = self.take_buffer(size);
            if let Some(n) = self.writer.write(&mut buf, head, src) {
                let id = self.first_id + self.segments.len() as u64;
                self.segments.push_back(Segment {
                    store: Store::Memory(buf),
                    used: n,
                    written: 1,
                    consumed: 0,
                    durable: 0,
                    held: vec![head.batch_id],
                    spilled: false,
                });
                break (
                    Loc {
                        seg: id,
                        off: 0,
                        len: n as u32,
                    },
                    n,
                );
            }
            // One record larger than a segment: a segment of its own, big enough.
            self.give_back(buf);
            size *= 2;
        };
        // The previous segment is closed now: its memory may go. (Its holds went when its
        // records became durable, and only closed segments are spilled, so closing has no
        // other effect.)
        if let Some(id) = full {
            let fx = self.settle(id);
            debug_assert_eq!(fx, Effects::default());
        }
        (loc, n, true)
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

    /// The archived row at `loc`. A spilled segment must have been read back first
    /// ([`Self::needs_readback`]); its frames are checked (length, CRC32C, archive validity).
    pub fn row(&self, loc: Loc) -> Result<&ArchivedRow<'static>, FrameError> {
        let seg = &self.segments[self.index(loc.seg)];
        match &seg.store {
            Store::Memory(buf) => {
                let range = archive_range(buf, loc.off as usize);
                // SAFETY: `loc` came from `append`, which wrote this frame with
                // `RowWriter::write` into this 16-aligned buffer at a 16-aligned offset, and a
                // buffer is not reused before every record in it was consumed: the range is
                // exactly that frame's archive. (Memory is trusted; frames read back from disk
                // are checked below.)
                Ok(unsafe { access_trusted(&buf[range]) })
            }
            Store::Disk(Some((start, rb))) => {
                let at = (loc.off as usize)
                    .checked_sub(*start)
                    .expect("a location inside the read-back window");
                let (range, _) = frame_at(rb, at)?.ok_or(FrameError::Truncated {
                    at: loc.off as usize,
                    len: 0,
                    end: start + rb.len(),
                })?;
                access_checked(&rb[range], loc.off as usize)
            }
            Store::Disk(None) => panic!("segment {} read before it was read back", loc.seg),
            Store::Gone => panic!("segment {} read after all its records were consumed", loc.seg),
        }
    }

    /// Whether segment `seg` is on disk only and must be read back before [`Self::row`].
    pub fn needs_readback(&self, seg: u64) -> bool {
        matches!(self.segments[self.index(seg)].store, Store::Disk(None))
    }

    /// Bytes of segment `seg`'s records (what a spill file holds after its header).
    pub fn used(&self, seg: u64) -> usize {
        self.segments[self.index(seg)].used
    }

    /// Install a read-back of segment `seg`'s records from byte `start` on (a multiple of 16).
    pub fn set_readback(&mut self, seg: u64, start: usize, rb: Readback) {
        let i = self.index(seg);
        assert!(matches!(self.segments[i].store, Store::Disk(None)));
        assert!(start.is_multiple_of(FRAME_ALIGN));
        self.bytes += rb.len() as u64;
        self.segments[i].store = Store::Disk(Some((start, rb)));
    }

    /// Drop a read-back (the file stays; it is read again if needed).
    pub fn evict_readback(&mut self, seg: u64) {
        let i = self.index(seg);
        if let Store::Disk(Some((_, rb))) = &self.segments[i].store {
            self.bytes -= rb.len() as u64;
            self.segments[i].store = Store::Disk(None);
        }
    }

    /// `count` records of segment `seg` are encoded: their memory is no longer needed.
    pub fn consume(&mut self, seg: u64, count: u32) -> Effects {
        let i = self.index(seg);
        let s = &mut self.segments[i];
        assert!(
            s.consumed + count <= s.written,
            "consuming more records of segment {seg} than it holds"
        );
        s.consumed += count;
        self.settle(seg)
    }

    /// `count` records of segment `seg` are durable in the lake.
    pub fn durable(&mut self, seg: u64, count: u32) -> Effects {
        let i = self.index(seg);
        let s = &mut self.segments[i];
        assert!(
            s.durable + count <= s.written,
            "more records of segment {seg} durable than it holds"
        );
        s.durable += count;
        self.settle(seg)
    }

    /// The oldest closed segment still in memory with records not yet encoded: what to spill
    /// first. Returns its id and its records' bytes.
    pub fn spill_candidate(&self) -> Option<(u64, &[u8])> {
        let last = self.segments.len().checked_sub(1)?;
        self.segments
            .iter()
            .take(last)
            .enumerate()
            .find_map(|(i, s)| match &s.store {
                Store::Memory(buf) if !s.spilled && s.consumed < s.written => {
                    Some((self.first_id + i as u64, &buf[..s.used]))
                }
                _ => None,
            })
    }

    /// Segment `seg` is on disk (fsynced): its memory and its batch holds go.
    /// The spill write runs while the ring goes on: if every record of the segment became
    /// durable meanwhile and the segment left the ring, the new file is not needed — delete it.
    pub fn spilled(&mut self, seg: u64) -> Effects {
        if seg < self.first_id {
            return Effects {
                release: Vec::new(),
                delete: vec![seg],
            };
        }
        let i = self.index(seg);
        let s = &mut self.segments[i];
        s.spilled = true;
        let mut fx = Effects {
            release: std::mem::take(&mut s.held),
            delete: Vec::new(),
        };
        if let Store::Memory(_) = s.store {
            let Store::Memory(buf) = std::mem::replace(&mut s.store, Store::Disk(None)) else {
                unreachable!()
            };
            self.give_back(buf);
        }
        let more = self.settle(seg);
        fx.release.extend(more.release);
        fx.delete.extend(more.delete);
        fx
    }

    /// Apply what segment `seg`'s counts now allow; drop finished segments from the front.
    fn settle(&mut self, seg: u64) -> Effects {
        let mut fx = Effects::default();
        let closed = self.closed(seg);
        let i = self.index(seg);
        let s = &mut self.segments[i];
        if s.durable == s.written {
            fx.release.append(&mut s.held);
        }
        if closed && s.consumed == s.written && !matches!(s.store, Store::Gone) {
            match std::mem::replace(&mut s.store, Store::Gone) {
                Store::Memory(buf) => self.give_back(buf),
                Store::Disk(Some((_, rb))) => self.bytes -= rb.len() as u64,
                Store::Disk(None) | Store::Gone => {}
            }
        }
        let s = &mut self.segments[i];
        if closed && s.durable == s.written && s.spilled {
            fx.delete.push(seg);
            s.spilled = false;
        }
        while self.segments.len() > 1 {
            let f = &self.segments[0];
            if f.durable == f.written && matches!(f.store, Store::Gone) && !f.spilled {
                self.segments.pop_front();
                self.first_id += 1;
            } else {
                break;
            }
        }
        fx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::value::{RecordRefs, StrRef, Val};

    fn append(ring: &mut Ring, batch: u64, text: &str) -> (Loc, usize, bool) {
        let refs = RecordRefs {
            nodes: &[],
            scratch: text,
        };
        let values = [Val::Str(StrRef::Scratch {
            start: 0,
            len: text.len() as u32,
        })];
        let head = RowHead {
            source: 0,
            table: 0,
            slot: 0,
            hour: 0,
            position: batch,
            batch_id: batch,
            event_time_us: 0,
        };
        ring.append(
            head,
            RowSource {
                values: &values,
                refs: &refs,
            },
        )
    }

    fn text(ring: &Ring, loc: Loc) -> String {
        match &ring.row(loc).unwrap().cells[0] {
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
    fn a_segment_that_became_durable_during_its_spill_write_has_its_file_deleted() {
        let mut ring = Ring::new(64 << 20);
        let rec = "r".repeat(600_000);
        for batch in 0..3 {
            append(&mut ring, batch, &rec); // 600 kB records: one per 1 MiB segment
        }
        let (seg, _) = ring.spill_candidate().unwrap();
        assert_eq!(seg, 0);
        // While the write is in flight, the encoder and the store finish segment 0.
        ring.consume(0, 1);
        ring.durable(0, 1);
        assert_eq!(ring.oldest(), Some(1), "segment 0 left the ring");
        assert_eq!(
            ring.spilled(0),
            Effects {
                release: vec![],
                delete: vec![0]
            }
        );
    }

    #[test]
    fn oversized_records_get_a_segment_of_their_own_size() {
        let mut ring = Ring::new(64 << 20);
        let small = "s".repeat(1000);
        let big = "b".repeat(3 * SEGMENT_BYTES);
        let (a, _, _) = append(&mut ring, 0, &small);
        let (b, n, _) = append(&mut ring, 1, &big);
        let (c, _, _) = append(&mut ring, 2, &small);
        // The oversized record opened a 4 MiB segment; the next record used its free tail.
        assert_eq!((a.seg, b.seg, c.seg), (0, 1, 1));
        assert!(n > 3 * SEGMENT_BYTES);
        assert_eq!(ring.bytes(), (SEGMENT_BYTES + 4 * SEGMENT_BYTES) as u64);
        assert_eq!(text(&ring, b).len(), big.len());
        assert_eq!(text(&ring, c), small);
        assert_eq!(ring.row(c).unwrap().head().position, 2);
        // Pooled on consume: segment 0, and the standard buffer the big record did not fit.
        ring.consume(0, 1);
        assert_eq!(ring.pooled_bytes(), 2 * SEGMENT_BYTES as u64);
        assert_eq!(ring.oldest(), Some(1));
    }

    #[test]
    fn holds_go_when_records_are_durable_and_memory_when_they_are_encoded() {
        let mut ring = Ring::new(64 << 20);
        let rec = "r".repeat(100_000);
        let mut locs = Vec::new();
        for batch in [7, 7, 8] {
            locs.push(append(&mut ring, batch, &rec));
        }
        assert_eq!(locs.iter().map(|l| l.2).collect::<Vec<_>>(), vec![true, false, true]);
        // Encoded but not durable: the active segment keeps its memory and its holds.
        assert_eq!(ring.consume(0, 3), Effects::default());
        assert_eq!(ring.bytes(), SEGMENT_BYTES as u64);
        assert_eq!(
            ring.durable(0, 2),
            Effects::default(),
            "one record of batch 8 is not durable"
        );
        assert_eq!(
            ring.durable(0, 1),
            Effects {
                release: vec![7, 8],
                delete: vec![]
            }
        );
        // Fill the segment so it closes; its memory goes once its records are consumed.
        let mut n = 3;
        while append(&mut ring, 9, &rec).0.seg == 0 {
            n += 1;
        }
        ring.consume(0, n - 3);
        assert_eq!(ring.bytes(), SEGMENT_BYTES as u64, "only the new active segment");
        assert_eq!(ring.oldest(), Some(1));
    }

    #[test]
    fn a_spilled_segment_releases_its_holds_reads_back_checked_and_is_deleted_when_durable() {
        let mut ring = Ring::new(64 << 20);
        let rec = "x".repeat(300_000);
        let mut locs = Vec::new();
        loop {
            let (l, _, _) = append(&mut ring, 5, &rec);
            if l.seg == 1 {
                break;
            }
            locs.push(l);
        }
        let (seg, bytes) = ring.spill_candidate().expect("segment 0 is closed and unencoded");
        assert_eq!(seg, 0);
        let mut copy = bytes.to_vec();
        crate::buffer::row::fill_crcs(&mut copy);
        assert_eq!(copy.len(), ring.used(0));
        let fx = ring.spilled(0);
        assert_eq!(fx.release, vec![5]);
        assert!(ring.spill_candidate().is_none(), "the active segment is never spilled");
        assert_eq!(ring.bytes(), SEGMENT_BYTES as u64);
        assert!(ring.needs_readback(0));
        // Read back (a 16-aligned copy, as a DMA read gives): rows are checked.
        let mut aligned = Buf::zeroed(copy.len().next_multiple_of(FRAME_ALIGN));
        aligned[..copy.len()].copy_from_slice(&copy);
        ring.set_readback(0, 0, Box::new(aligned));
        assert_eq!(text(&ring, locs[1]), rec);
        ring.evict_readback(0);
        assert!(ring.needs_readback(0));
        // A damaged read-back is an error, not a crash.
        let mut bad = Buf::zeroed(copy.len().next_multiple_of(FRAME_ALIGN));
        bad[..copy.len()].copy_from_slice(&copy);
        bad[locs[1].off as usize + 40] ^= 1;
        ring.set_readback(0, 0, Box::new(bad));
        assert!(matches!(ring.row(locs[1]), Err(FrameError::Checksum { .. })));
        assert_eq!(ring.consume(0, locs.len() as u32), Effects::default());
        assert!(!ring.needs_readback(0), "all consumed: nothing left to read");
        let fx = ring.durable(0, locs.len() as u32);
        assert_eq!(fx.delete, vec![0], "durable in the lake: the spill file goes");
        assert!(fx.release.is_empty(), "the holds went at spill time");
    }
}
