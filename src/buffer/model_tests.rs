//! Property test: the ring and its spill lifecycle against a plain reference model.
//!
//! Random interleavings of append, seal (a file takes the oldest unsealed records), spill,
//! encode (read back + consume), durable, and crash + recover, checked against a `VecDeque` of
//! what was appended. The simulated disk holds the exact bytes `spill_candidate` handed out,
//! as a spill file would; a crash may tear the last spilled copy anywhere.

use super::ring::{Buf, Effects, Loc, Ring, SEGMENT_BYTES};
use super::row::{access_checked, frame_at, ArchivedCell, RowHead, RowSource};
use crate::extract::value::{RecordRefs, StrRef, Val};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap, VecDeque};

#[derive(Debug, Clone)]
enum Op {
    Append { len: usize, new_batch: bool },
    Seal { records: usize },
    Spill,
    Encode,
    Durable,
    Crash { tear_at: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..40_000, any::<bool>()).prop_map(|(len, new_batch)| Op::Append { len, new_batch }),
        2 => (1usize..40).prop_map(|records| Op::Seal { records }),
        2 => Just(Op::Spill),
        2 => Just(Op::Encode),
        2 => Just(Op::Durable),
        1 => (0usize..2_000_000).prop_map(|tear_at| Op::Crash { tear_at }),
    ]
}

/// One appended record in the reference.
#[derive(Debug, Clone)]
struct Rec {
    id: u64,
    batch: u64,
    len: usize,
    loc: Loc,
}

fn text(id: u64, len: usize) -> String {
    let c = (b'a' + (id % 26) as u8) as char;
    std::iter::repeat_n(c, len).collect()
}

fn append(ring: &mut Ring, id: u64, batch: u64, len: usize) -> (Loc, bool) {
    let s = text(id, len);
    let refs = RecordRefs {
        nodes: &[],
        scratch: &s,
    };
    let values = [
        Val::Str(StrRef::Scratch {
            start: 0,
            len: len as u32,
        }),
        Val::I64(id as i64),
    ];
    let head = RowHead {
        source: 0,
        table: 0,
        slot: 0,
        hour: 0,
        position: id,
        batch_id: batch,
        event_time_us: 0,
    };
    let (loc, _, hold) = ring.append(
        head,
        RowSource {
            values: &values,
            refs: &refs,
        },
    );
    (loc, hold)
}

fn check_row(ring: &Ring, r: &Rec) {
    let row = ring.row(r.loc).expect("a readable row");
    assert_eq!(row.head().position, r.id);
    match &row.cells[0] {
        ArchivedCell::Str(s) => assert_eq!(s.as_ref(), text(r.id, r.len)),
        _ => panic!("string cell"),
    }
}

/// Ids of the whole records in a spill copy (frames up to the first bad one).
fn whole_records(copy: &[u8]) -> Vec<u64> {
    let mut buf = Buf::zeroed(copy.len().next_multiple_of(16).max(16));
    buf[..copy.len()].copy_from_slice(copy);
    let region = &buf[..copy.len()];
    let mut out = Vec::new();
    let mut at = 0;
    while let Ok(Some((range, next))) = frame_at(region, at) {
        match access_checked(&region[range], at) {
            Ok(row) => out.push(row.head().position),
            Err(_) => break,
        }
        at = next;
    }
    out
}

struct Model {
    ring: Ring,
    next_id: u64,
    batch: u64,
    /// Appended, not yet sealed.
    unsealed: VecDeque<Rec>,
    /// Sealed files not yet encoded, then encoded not yet durable.
    sealed: VecDeque<Vec<Rec>>,
    encoded: VecDeque<Vec<Rec>>,
    /// The simulated disk: segment → bytes of its records as spilled.
    disk: BTreeMap<u64, Vec<u8>>,
    /// Holds per batch: taken minus released.
    holds: HashMap<u64, i64>,
    /// Records durable in the lake.
    durable_ids: std::collections::HashSet<u64>,
    spilled_segments: std::collections::HashSet<u64>,
}

impl Model {
    fn new() -> Model {
        Model {
            ring: Ring::new(8 * SEGMENT_BYTES as u64),
            next_id: 0,
            batch: 0,
            unsealed: VecDeque::new(),
            sealed: VecDeque::new(),
            encoded: VecDeque::new(),
            disk: BTreeMap::new(),
            holds: HashMap::new(),
            durable_ids: Default::default(),
            spilled_segments: Default::default(),
        }
    }

    fn effects(&mut self, fx: Effects) {
        for b in fx.release {
            let h = self.holds.get_mut(&b).expect("released a batch that was held");
            *h -= 1;
            assert!(*h >= 0, "batch {b} released more often than held");
        }
        for seg in fx.delete {
            assert!(
                self.spilled_segments.contains(&seg),
                "deleting segment {seg} that was never spilled"
            );
            assert!(self.disk.remove(&seg).is_some(), "segment {seg} deleted twice");
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Append { len, new_batch } => {
                if new_batch {
                    self.batch += 1;
                }
                let id = self.next_id;
                self.next_id += 1;
                let (loc, hold) = append(&mut self.ring, id, self.batch, len);
                if hold {
                    *self.holds.entry(self.batch).or_default() += 1;
                }
                self.unsealed.push_back(Rec {
                    id,
                    batch: self.batch,
                    len,
                    loc,
                });
            }
            Op::Seal { records } => {
                let n = records.min(self.unsealed.len());
                if n > 0 {
                    let file: Vec<Rec> = self.unsealed.drain(..n).collect();
                    self.sealed.push_back(file);
                }
            }
            Op::Spill => {
                if let Some((seg, bytes)) = self.ring.spill_candidate() {
                    let mut copy = bytes.to_vec();
                    super::row::fill_crcs(&mut copy);
                    assert_eq!(copy.len(), self.ring.used(seg));
                    self.disk.insert(seg, copy);
                    self.spilled_segments.insert(seg);
                    let fx = self.ring.spilled(seg);
                    self.effects(fx);
                }
            }
            Op::Encode => {
                if let Some(file) = self.sealed.pop_front() {
                    for run in file.chunk_by(|a, b| a.loc.seg == b.loc.seg) {
                        let seg = run[0].loc.seg;
                        if self.ring.needs_readback(seg) {
                            let copy = &self.disk[&seg];
                            let from = run[0].loc.off as usize / 4096 * 4096;
                            let last = run[run.len() - 1].loc;
                            let to = ((last.off + last.len) as usize)
                                .next_multiple_of(4096)
                                .min(copy.len().next_multiple_of(16));
                            let mut w = Buf::zeroed((to - from).next_multiple_of(16));
                            let end = to.min(copy.len());
                            w[..end - from].copy_from_slice(&copy[from..end]);
                            self.ring.set_readback(seg, from, Box::new(w));
                        }
                        for r in run {
                            check_row(&self.ring, r);
                        }
                        let fx = self.ring.consume(seg, run.len() as u32);
                        self.effects(fx);
                        self.ring.evict_readback(seg);
                    }
                    self.encoded.push_back(file);
                }
            }
            Op::Durable => {
                if let Some(file) = self.encoded.pop_front() {
                    for run in file.chunk_by(|a, b| a.loc.seg == b.loc.seg) {
                        let fx = self.ring.durable(run[0].loc.seg, run.len() as u32);
                        self.effects(fx);
                    }
                    self.durable_ids.extend(file.iter().map(|r| r.id));
                }
            }
            Op::Crash { tear_at } => {
                // Every record whose batch holds are all gone but that is not durable in the
                // lake must be whole on disk: that is what recovery flushes.
                let on_disk: std::collections::HashSet<u64> =
                    self.disk.values().flat_map(|c| whole_records(c)).collect();
                let all = self
                    .unsealed
                    .iter()
                    .chain(self.sealed.iter().flatten())
                    .chain(self.encoded.iter().flatten());
                for r in all {
                    let released = self.holds.get(&r.batch).copied().unwrap_or(0) == 0;
                    if released && !self.durable_ids.contains(&r.id) {
                        assert!(
                            on_disk.contains(&r.id),
                            "record {} counted durable but only in memory",
                            r.id
                        );
                    }
                }
                // A torn copy keeps exactly its whole frames before the tear.
                if let Some((_, copy)) = self.disk.iter().next_back() {
                    let cut = tear_at % (copy.len() + 1);
                    let whole = whole_records(&copy[..cut]);
                    let full = whole_records(copy);
                    assert_eq!(&full[..whole.len()], &whole[..], "a torn copy keeps a prefix");
                    assert!(whole.len() == full.len() || cut < copy.len());
                }
                // Memory is gone; recovery flushed the disk's whole records and deleted the
                // files; the source replays the rest. Start over.
                *self = Model::new();
            }
        }
    }

    /// Drain: seal, encode and make durable everything; then no holds, no disk, one segment.
    fn finish(&mut self) {
        self.apply(Op::Seal { records: usize::MAX });
        while !self.sealed.is_empty() {
            self.apply(Op::Encode);
        }
        while !self.encoded.is_empty() {
            self.apply(Op::Durable);
        }
        assert!(self.holds.values().all(|&h| h == 0), "holds left: {:?}", self.holds);
        assert!(
            self.disk.is_empty(),
            "spill files left: {:?}",
            self.disk.keys().collect::<Vec<_>>()
        );
        assert!(
            self.ring.bytes() <= (4 * SEGMENT_BYTES) as u64,
            "{} bytes left",
            self.ring.bytes()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn ring_and_spill_match_the_reference(ops in proptest::collection::vec(op(), 1..300)) {
        let mut m = Model::new();
        for op in ops {
            m.apply(op);
        }
        m.finish();
    }
}
