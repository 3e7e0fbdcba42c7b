//! Buffer and seal: per-core, per-(source, table, hour) buffers of processed records.
//!
//! Owns: the open partition buffers of one core, the seal policy (bytes, records, age: the
//! seed's "by time or by batch size"), the cap on open partitions, and the core's record
//! [`ring::Ring`], where every buffered record lives archived ([`row`]). A partition buffer is
//! only the list of its records' locations in the ring; sealing hands that list to the encoder,
//! which builds Arrow batches from the archived rows ([`BufferSet::build`]) and then releases
//! them ([`BufferSet::consume`]).
//!
//! Invariants:
//! - A buffer is sealed as soon as an append makes it reach `flush_bytes_max` or
//!   `flush_records_max`; no buffer ever holds more than one record past either bound.
//! - Records of one source partition keep their order within a buffer.
//! - `bytes` of a buffer counts its archived records (frames in the ring).
//! - At most `open_partitions_max` buffers are open: opening one more first seals the least
//!   recently written one. (Least recently written, because a partition nobody writes to is the
//!   one whose file will not grow any more: an old event hour, a quiet table. Sealing the
//!   oldest-opened instead would cut the busiest current hour into small files.)
//!
//! Bounds: records in memory are bounded by the ring's budget, which the core enforces before
//! each fetch ([`BufferSet::over_budget`], [`BufferSet::relieve`]); index memory is
//! `size_of::<Loc>()` bytes per buffered record, counted in the budget, and so is whatever else
//! the caller counts in it (the pipeline's tracked batches and unflushed audit rows).

pub mod ring;
pub mod row;
pub mod spill;

#[cfg(test)]
mod model_tests;

use crate::extract::schema::ColumnType;
use crate::extract::value::{RecordRefs, Val};
use crate::lineage::{due_keys, Due, Origin, Provenance};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use ring::{Effects, Loc, Ring};
use row::{ColumnsBuilder, FrameError, RowHead, RowSource};
use std::collections::HashMap;

/// Which buffer a record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub source: u16,
    pub table: u16,
    /// Hours since the epoch of the record's event time.
    pub hour: i64,
}

/// When to seal, and how much a core may hold.
#[derive(Debug, Clone, Copy)]
pub struct SealPolicy {
    pub bytes_max: u64,
    pub records_max: u64,
    pub interval_ns: u64,
    /// `buffer.memory_bytes_max`: the ring's budget (records and their index).
    pub memory_bytes_max: u64,
    /// `buffer.open_partitions_max`.
    pub open_partitions_max: usize,
}

/// A sealed buffer, ready to encode: where its records are in the ring.
#[derive(Debug)]
pub struct Sealed {
    pub key: PartitionKey,
    pub locs: Vec<Loc>,
    pub bytes: u64,
    pub event_time_min_us: i64,
    pub event_time_max_us: i64,
    pub provenance: Provenance,
}

impl Sealed {
    pub fn records(&self) -> usize {
        self.locs.len()
    }
}

/// What an append did.
#[derive(Debug)]
pub struct Appended {
    /// This is the ring segment's first record of the batch: the caller holds the batch (the
    /// segment releases it once its records are durable, in the lake or in a spill file).
    pub new_batch: bool,
    /// Buffers this append sealed: the one it filled, and one sealed early to make room under
    /// the open-partitions cap.
    pub sealed: Vec<Sealed>,
}

struct Open {
    locs: Vec<Loc>,
    bytes: u64,
    opened_ns: u64,
    written_ns: u64,
    event_time_min_us: i64,
    event_time_max_us: i64,
    provenance: Provenance,
}

/// The open buffers of one core.
pub struct BufferSet {
    policy: SealPolicy,
    /// Arrow schema and column types of each table's output, by table index.
    tables: Vec<(SchemaRef, Vec<ColumnType>)>,
    open: HashMap<PartitionKey, Open>,
    ring: Ring,
    /// Records in the ring not yet consumed (each costs one `Loc` of index).
    records: u64,
    /// Open buffer bytes.
    bytes: u64,
}

impl BufferSet {
    pub fn new(policy: SealPolicy, tables: Vec<(SchemaRef, Vec<ColumnType>)>) -> BufferSet {
        BufferSet {
            policy,
            tables,
            open: HashMap::new(),
            ring: Ring::new(policy.memory_bytes_max),
            records: 0,
            bytes: 0,
        }
    }

    /// Bytes held by the open buffers of this core (archived records).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Memory this core's buffered records hold: ring segments in use and the index (the
    /// ring's pool of free buffers fills at most the rest of the budget and is not counted).
    pub fn memory_bytes(&self) -> u64 {
        self.ring.bytes() + self.records * std::mem::size_of::<Loc>() as u64
    }

    /// Whether the core must stop admitting records until [`Self::relieve`] has freed memory,
    /// with `other_bytes` of the caller's own bookkeeping counted in the same budget.
    pub fn over_budget(&self, other_bytes: u64) -> bool {
        self.memory_bytes() + other_bytes >= self.policy.memory_bytes_max
    }

    pub fn open_partitions(&self) -> usize {
        self.open.len()
    }

    /// Append one output row.
    pub fn append(
        &mut self,
        key: PartitionKey,
        row: &[Val],
        refs: &RecordRefs,
        event_time_us: i64,
        origin: Origin,
        now_ns: u64,
    ) -> Appended {
        let mut sealed = Vec::new();
        if !self.open.contains_key(&key) && self.open.len() >= self.policy.open_partitions_max {
            let lru = *self
                .open
                .iter()
                .min_by_key(|(k, o)| (o.written_ns, **k))
                .expect("the cap is at least 1")
                .0;
            sealed.push(self.seal(lru));
        }
        let head = RowHead {
            source: key.source,
            table: key.table,
            slot: origin.slot as u32,
            hour: key.hour,
            position: origin.position,
            batch_id: origin.batch_id,
            event_time_us,
        };
        let (loc, frame, hold) = self.ring.append(head, RowSource { values: row, refs });
        let added = frame as u64;
        let open = self.open.entry(key).or_insert_with(|| Open {
            locs: Vec::new(),
            bytes: 0,
            opened_ns: now_ns,
            written_ns: now_ns,
            event_time_min_us: i64::MAX,
            event_time_max_us: i64::MIN,
            provenance: Provenance::default(),
        });
        open.locs.push(loc);
        open.bytes += added;
        open.written_ns = now_ns;
        open.event_time_min_us = open.event_time_min_us.min(event_time_us);
        open.event_time_max_us = open.event_time_max_us.max(event_time_us);
        open.provenance
            .note(origin.batch_id, origin.slot, origin.position, origin.ordinal);
        self.bytes += added;
        self.records += 1;
        if open.bytes >= self.policy.bytes_max || open.locs.len() as u64 >= self.policy.records_max {
            sealed.push(self.seal(key));
        }
        Appended {
            new_batch: hold,
            sealed,
        }
    }

    /// Seal the buffers that are due: by age (first record at least `flush_interval` old),
    /// or all of them on drain.
    pub fn take(&mut self, due: Due) -> Vec<Sealed> {
        due_keys(&self.open, |o| o.opened_ns, due, self.policy.interval_ns)
            .into_iter()
            .map(|k| self.seal(k))
            .collect()
    }

    /// Over budget: seal the buffers that hold records of the oldest ring segment still in
    /// memory, so that encoding them frees it. Returns nothing when no open buffer holds any (everything in the
    /// ring is already with the encoder: the caller waits for it).
    pub fn relieve(&mut self) -> Vec<Sealed> {
        let Some(oldest) = self.ring.oldest() else {
            return Vec::new();
        };
        let mut keys: Vec<PartitionKey> = self
            .open
            .iter()
            // Locations are in ring order, so a binary search finds any record in the segment
            // (a buffer's first records may be in an older, spilled segment).
            .filter(|(_, o)| o.locs.binary_search_by_key(&oldest, |l| l.seg).is_ok())
            .map(|(k, _)| *k)
            .collect();
        keys.sort();
        keys.into_iter().map(|k| self.seal(k)).collect()
    }

    fn seal(&mut self, key: PartitionKey) -> Sealed {
        let open = self.open.remove(&key).expect("sealing an open buffer");
        self.bytes -= open.bytes;
        Sealed {
            key,
            locs: open.locs,
            bytes: open.bytes,
            event_time_min_us: open.event_time_min_us,
            event_time_max_us: open.event_time_max_us,
            provenance: open.provenance,
        }
    }

    /// A column builder for `table`'s output, sized for `rows` rows per batch.
    pub fn columns(&self, table: u16, rows: usize) -> ColumnsBuilder {
        let (schema, types) = &self.tables[table as usize];
        ColumnsBuilder::new(schema.clone(), types, rows)
    }

    /// Append the rows at `locs` (all in segment `locs[0].seg`, which must be in memory or
    /// read back) to `cols`.
    pub fn append_rows(&self, locs: &[Loc], cols: &mut ColumnsBuilder) -> Result<(), FrameError> {
        for l in locs {
            cols.append(self.ring.row(*l)?);
        }
        Ok(())
    }

    /// The records at `locs` as one record batch, all in memory (tests, benches).
    pub fn build(&self, locs: &[Loc], cols: &mut ColumnsBuilder, next_rows: usize) -> RecordBatch {
        self.append_rows(locs, cols).expect("records in memory read back");
        cols.finish(next_rows)
    }

    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    pub fn ring_mut(&mut self) -> &mut Ring {
        &mut self.ring
    }

    /// The records at `locs` are encoded: their memory may go.
    pub fn consume(&mut self, locs: &[Loc]) -> Effects {
        let mut fx = Effects::default();
        for run in locs.chunk_by(|a, b| a.seg == b.seg) {
            fx.merge(self.ring.consume(run[0].seg, run.len() as u32));
        }
        self.records -= locs.len() as u64;
        fx
    }

    /// Records of a file are durable in the lake: `(segment, count)` pairs from [`runs`].
    pub fn durable(&mut self, runs: &[(u64, u32)]) -> Effects {
        let mut fx = Effects::default();
        for &(seg, n) in runs {
            fx.merge(self.ring.durable(seg, n));
        }
        fx
    }
}

/// `(segment, count)` of each run of consecutive locations in one segment.
pub fn runs(locs: &[Loc]) -> Vec<(u64, u32)> {
    locs.chunk_by(|a, b| a.seg == b.seg)
        .map(|r| (r[0].seg, r.len() as u32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::value::StrRef;
    use arrow_array::{Array, Int64Array};
    use arrow_schema::{DataType, Field, Schema};
    use std::sync::Arc;

    fn policy() -> SealPolicy {
        SealPolicy {
            bytes_max: 1 << 30,
            records_max: u64::MAX,
            interval_ns: u64::MAX,
            memory_bytes_max: 64 << 20,
            open_partitions_max: 1000,
        }
    }

    fn set(policy: SealPolicy) -> BufferSet {
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]));
        BufferSet::new(policy, vec![(schema, vec![ColumnType::String, ColumnType::Int64])])
    }

    fn key(hour: i64) -> PartitionKey {
        PartitionKey {
            source: 0,
            table: 0,
            hour,
        }
    }

    const SCRATCH: &str = "abcdefgh";

    fn row(n: i64) -> [Val; 2] {
        [Val::Str(StrRef::Scratch { start: 0, len: 8 }), Val::I64(n)]
    }

    fn at(batch_id: u64) -> Origin {
        Origin {
            batch_id,
            slot: 0,
            position: batch_id * 10,
            ordinal: batch_id,
        }
    }

    fn refs() -> RecordRefs<'static> {
        RecordRefs {
            nodes: &[],
            scratch: SCRATCH,
        }
    }

    /// The `n` column of a sealed buffer, read back through the ring.
    fn numbers(b: &BufferSet, s: &Sealed) -> Vec<i64> {
        let mut cols = b.columns(s.key.table, 16);
        let batch = b.build(&s.locs, &mut cols, 0);
        let n = batch.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        (0..n.len()).map(|i| n.value(i)).collect()
    }

    #[test]
    fn seals_by_records_and_bytes() {
        let mut b = set(SealPolicy {
            records_max: 3,
            ..policy()
        });
        assert!(b.append(key(1), &row(1), &refs(), 0, at(7), 0).new_batch);
        assert!(b.append(key(2), &row(2), &refs(), 0, at(7), 0).sealed.is_empty());
        assert!(b.append(key(1), &row(3), &refs(), 0, at(8), 0).sealed.is_empty());
        let a = b.append(key(1), &row(4), &refs(), 0, at(8), 0);
        assert!(!a.new_batch);
        let s = a.sealed.into_iter().next().expect("third record seals");
        assert_eq!(s.records(), 3);
        assert_eq!(numbers(&b, &s), vec![1, 3, 4]);
        assert_eq!(s.provenance.batch_ids, vec![7, 8]);
        let frame = s.bytes / 3;
        assert_eq!(frame % 16, 0);
        assert_eq!(b.bytes(), frame, "the other buffer's one record");

        let mut b = set(SealPolicy {
            bytes_max: 2 * frame,
            ..policy()
        });
        assert!(b.append(key(1), &row(1), &refs(), 0, at(1), 0).sealed.is_empty());
        assert_eq!(
            b.append(key(1), &row(2), &refs(), 0, at(1), 0).sealed.len(),
            1,
            "2 frames reached"
        );
        assert_eq!(b.bytes(), 0);
    }

    #[test]
    fn seals_by_age_and_on_drain_with_event_time_bounds() {
        let mut b = set(SealPolicy {
            interval_ns: 100,
            ..policy()
        });
        b.append(key(1), &row(1), &refs(), 50, at(1), 0);
        b.append(key(1), &row(2), &refs(), 10, at(1), 60);
        b.append(key(2), &row(3), &refs(), 0, at(1), 60);
        assert!(b.take(Due::Aged(99)).is_empty());
        let aged = b.take(Due::Aged(100));
        assert_eq!(aged.len(), 1);
        assert_eq!((aged[0].event_time_min_us, aged[0].event_time_max_us), (10, 50));
        let rest = b.take(Due::All);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].key, key(2));
        assert_eq!(b.open_partitions(), 0);
    }

    #[test]
    fn the_cap_seals_the_least_recently_written_buffer() {
        let mut b = set(SealPolicy {
            open_partitions_max: 2,
            ..policy()
        });
        b.append(key(1), &row(1), &refs(), 0, at(1), 10);
        b.append(key(2), &row(2), &refs(), 0, at(1), 20);
        b.append(key(1), &row(3), &refs(), 0, at(1), 30);
        let a = b.append(key(3), &row(4), &refs(), 0, at(1), 40);
        assert_eq!(a.sealed.len(), 1);
        assert_eq!(a.sealed[0].key, key(2), "hour 2 was written least recently");
        assert_eq!(b.open_partitions(), 2);
    }

    #[test]
    fn memory_is_freed_when_sealed_records_are_consumed_and_relief_seals_the_oldest() {
        let mut b = set(SealPolicy {
            memory_bytes_max: 3 << 20,
            ..policy()
        });
        let mut n = 0;
        // Hour 1 gets one record early, hour 2 everything after: hour 1 pins the first segment.
        b.append(key(1), &row(-1), &refs(), 0, at(0), 0);
        while !b.over_budget(0) {
            b.append(key(2), &row(n), &refs(), 0, at(1), 0);
            n += 1;
        }
        let relieved = b.relieve();
        let keys: Vec<_> = relieved.iter().map(|s| s.key).collect();
        assert_eq!(keys, vec![key(1), key(2)], "both hold records of the oldest segment");
        assert_eq!(numbers(&b, &relieved[0]), vec![-1]);
        assert_eq!(numbers(&b, &relieved[1]).len() as i64, n);
        assert!(b.over_budget(0), "nothing is freed before the encoder is done");
        for s in &relieved {
            b.consume(&s.locs);
        }
        assert!(
            b.memory_bytes() <= ring::SEGMENT_BYTES as u64,
            "only the active segment is left"
        );
        assert!(!b.over_budget(0));
        assert!(b.relieve().is_empty());
    }

    #[test]
    fn relief_finds_a_buffer_whose_first_records_were_spilled() {
        let mut b = set(policy());
        let big = "x".repeat(300_000);
        let refs = RecordRefs {
            nodes: &[],
            scratch: &big,
        };
        let row = [Val::Str(StrRef::Scratch { start: 0, len: 300_000 }), Val::I64(0)];
        // Hour 1 has records in segments 0 and 1; segment 0 is spilled, so the oldest segment
        // in memory is 1, where hour 1's first record is not.
        let mut seg_of = Vec::new();
        for i in 0..8 {
            let a = b.append(key(1), &row, &refs, 0, at(i), 0);
            assert!(a.sealed.is_empty());
            seg_of.push(b.open[&key(1)].locs.last().unwrap().seg);
        }
        assert!(
            seg_of.contains(&0) && seg_of.contains(&1) && seg_of.contains(&2),
            "{seg_of:?}"
        );
        let (seg, _) = b.ring().spill_candidate().unwrap();
        assert_eq!(seg, 0);
        b.ring_mut().spilled(0);
        assert_eq!(b.ring().oldest(), Some(1));
        let relieved = b.relieve();
        assert_eq!(relieved.len(), 1, "hour 1 holds records of segment 1");
        assert_eq!(relieved[0].records(), 8);
    }
}
