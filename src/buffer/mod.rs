//! Buffer and seal: per-core, per-(source, table, hour) buffers of processed records.
//!
//! Owns: the open partition buffers of one core and the seal policy (bytes, records, age: the
//! seed's "by time or by batch size"). Records are appended column-wise straight into Arrow
//! builders, so sealing is `finish()` and the encoder gets a `RecordBatch` without another pass.
//!
//! This is the in-memory implementation behind a small interface — [`BufferSet::append`],
//! [`BufferSet::take`] and [`Sealed`] — which the spilling rkyv
//! ring replaces in the next step without touching the stages around it.
//!
//! Invariants:
//! - A buffer is sealed as soon as an append makes it reach `flush_bytes_max` or
//!   `flush_records_max`; no buffer ever holds more than one record past either bound.
//! - Records of one source partition keep their order within a buffer.
//! - `bytes` counts the Arrow payload (values, offsets, validity): the memory the buffer holds.
//!
//! Bounds: per core, open buffers × `flush_bytes_max`. The number of open partitions is not
//! capped here yet (the ring issue adds `buffer.open_partitions_max`).

use crate::extract::schema::ColumnType;
use crate::extract::value::{RecordRefs, Val};
use crate::load::Provenance;
use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use std::collections::HashMap;
use std::sync::Arc;

/// Which buffer a record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub source: u16,
    pub table: u16,
    /// Hours since the epoch of the record's event time.
    pub hour: i64,
}

/// When to seal.
#[derive(Debug, Clone, Copy)]
pub struct SealPolicy {
    pub bytes_max: u64,
    pub records_max: u64,
    pub interval_ns: u64,
}

/// Which open outputs to seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Those opened at least their interval before this monotonic time.
    Aged(u64),
    /// All of them (drain).
    All,
}

/// Keys of the open outputs in `map` that are due, sorted, so sealing order (and with it file
/// names) is deterministic. Shared by every rolling writer: buffers, RAW and quarantine.
pub fn due_keys<K: Copy + Ord, V>(
    map: &HashMap<K, V>,
    opened_ns: impl Fn(&V) -> u64,
    due: Due,
    interval_ns: u64,
) -> Vec<K> {
    let mut keys: Vec<K> = map
        .iter()
        .filter(|(_, v)| match due {
            Due::All => true,
            Due::Aged(now) => now.saturating_sub(opened_ns(v)) >= interval_ns,
        })
        .map(|(k, _)| *k)
        .collect();
    keys.sort();
    keys
}

/// A sealed buffer, ready to encode.
#[derive(Debug)]
pub struct Sealed {
    pub key: PartitionKey,
    pub batch: RecordBatch,
    pub bytes: u64,
    pub event_time_min_us: i64,
    pub event_time_max_us: i64,
    pub provenance: Provenance,
}

/// Where a record came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub batch_id: u64,
    pub slot: usize,
    pub position: u64,
}

/// What an append did.
#[derive(Debug)]
pub struct Appended {
    /// This is the buffer's first record of the batch: the caller holds the batch.
    pub new_batch: bool,
    /// The buffer this append sealed.
    pub sealed: Option<Sealed>,
}

enum Builder {
    Str(StringBuilder),
    I64(Int64Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    Ts(TimestampMicrosecondBuilder),
}

impl Builder {
    /// A builder sized for `rows` values and `data` bytes of string data.
    fn with_capacity(ty: ColumnType, rows: usize, data: usize) -> Builder {
        match ty {
            ColumnType::String | ColumnType::Json => Builder::Str(StringBuilder::with_capacity(rows, data)),
            ColumnType::Int64 => Builder::I64(Int64Builder::with_capacity(rows)),
            ColumnType::Float64 => Builder::F64(Float64Builder::with_capacity(rows)),
            ColumnType::Boolean => Builder::Bool(BooleanBuilder::with_capacity(rows)),
            ColumnType::Timestamp => Builder::Ts(TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC")),
        }
    }

    /// String bytes held (0 for fixed-width columns).
    fn data_len(&self) -> usize {
        match self {
            Builder::Str(b) => b.values_slice().len(),
            _ => 0,
        }
    }

    /// Append one value; returns the bytes it adds.
    #[inline]
    fn append(&mut self, v: Val, refs: &RecordRefs) -> u64 {
        match (self, v) {
            (Builder::Str(b), Val::Null) => {
                b.append_null();
                4
            }
            (Builder::Str(b), Val::Str(r)) => {
                let s = refs.str(r);
                b.append_value(s);
                4 + s.len() as u64
            }
            (Builder::I64(b), Val::I64(x)) => {
                b.append_value(x);
                8
            }
            (Builder::F64(b), Val::F64(x)) => {
                b.append_value(x);
                8
            }
            (Builder::Bool(b), Val::Bool(x)) => {
                b.append_value(x);
                1
            }
            (Builder::Ts(b), Val::Ts(x)) => {
                b.append_value(x);
                8
            }
            (Builder::I64(b), Val::Null) => {
                b.append_null();
                8
            }
            (Builder::F64(b), Val::Null) => {
                b.append_null();
                8
            }
            (Builder::Bool(b), Val::Null) => {
                b.append_null();
                1
            }
            (Builder::Ts(b), Val::Null) => {
                b.append_null();
                8
            }
            (_, v) => panic!("value {v:?} does not match its column builder: the table plan is inconsistent"),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Str(b) => Arc::new(b.finish()),
            Builder::I64(b) => Arc::new(b.finish()),
            Builder::F64(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Ts(b) => Arc::new(b.finish()),
        }
    }
}

struct Open {
    builders: Vec<Builder>,
    records: u64,
    bytes: u64,
    opened_ns: u64,
    event_time_min_us: i64,
    event_time_max_us: i64,
    provenance: Provenance,
}

/// Capacity to give a new buffer of a table: what its last sealed buffer held. Growing
/// column buffers by doubling copied every value ~once more and faulted in fresh pages.
#[derive(Debug, Clone, Default)]
struct SizeHint {
    rows: usize,
    data: Vec<usize>,
}

/// Smallest row capacity a new buffer starts with.
const BUFFER_ROWS_MIN: usize = 1024;

/// The open buffers of one core.
pub struct BufferSet {
    policy: SealPolicy,
    /// Arrow schema and column types of each table's output, by table index.
    tables: Vec<(SchemaRef, Vec<ColumnType>)>,
    hints: Vec<SizeHint>,
    open: HashMap<PartitionKey, Open>,
    bytes: u64,
}

impl BufferSet {
    pub fn new(policy: SealPolicy, tables: Vec<(SchemaRef, Vec<ColumnType>)>) -> BufferSet {
        BufferSet {
            policy,
            hints: vec![SizeHint::default(); tables.len()],
            tables,
            open: HashMap::new(),
            bytes: 0,
        }
    }

    /// Bytes held by all open buffers of this core.
    pub fn bytes(&self) -> u64 {
        self.bytes
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
        let (tables, hints) = (&self.tables, &self.hints);
        let open = self.open.entry(key).or_insert_with(|| {
            let hint = &hints[key.table as usize];
            let rows = hint.rows.max(BUFFER_ROWS_MIN);
            let builders = tables[key.table as usize]
                .1
                .iter()
                .enumerate()
                .map(|(i, t)| Builder::with_capacity(*t, rows, hint.data.get(i).copied().unwrap_or(0)))
                .collect();
            Open {
                builders,
                records: 0,
                bytes: 0,
                opened_ns: now_ns,
                event_time_min_us: i64::MAX,
                event_time_max_us: i64::MIN,
                provenance: Provenance::default(),
            }
        });
        debug_assert_eq!(open.builders.len(), row.len());
        let mut added = 0;
        for (b, v) in open.builders.iter_mut().zip(row) {
            added += b.append(*v, refs);
        }
        open.records += 1;
        open.bytes += added;
        open.event_time_min_us = open.event_time_min_us.min(event_time_us);
        open.event_time_max_us = open.event_time_max_us.max(event_time_us);
        let new_batch = open.provenance.note(origin.batch_id, origin.slot, origin.position);
        self.bytes += added;
        let full = open.bytes >= self.policy.bytes_max || open.records >= self.policy.records_max;
        Appended {
            new_batch,
            sealed: full.then(|| self.seal(key)),
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

    fn seal(&mut self, key: PartitionKey) -> Sealed {
        let mut open = self.open.remove(&key).expect("sealing an open buffer");
        self.bytes -= open.bytes;
        self.hints[key.table as usize] = SizeHint {
            rows: open.records as usize,
            data: open.builders.iter().map(Builder::data_len).collect(),
        };
        let columns: Vec<ArrayRef> = open.builders.iter_mut().map(Builder::finish).collect();
        let schema = self.tables[key.table as usize].0.clone();
        let batch = RecordBatch::try_new(schema, columns).expect("builders follow the table's arrow schema");
        debug_assert_eq!(batch.num_rows() as u64, open.records);
        Sealed {
            key,
            batch,
            bytes: open.bytes,
            event_time_min_us: open.event_time_min_us,
            event_time_max_us: open.event_time_max_us,
            provenance: open.provenance,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::value::StrRef;
    use arrow_schema::{DataType, Field, Schema};

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
        }
    }

    fn refs() -> RecordRefs<'static> {
        RecordRefs {
            nodes: &[],
            scratch: SCRATCH,
        }
    }

    #[test]
    fn seals_by_records_and_bytes() {
        let mut b = set(SealPolicy {
            bytes_max: 1 << 30,
            records_max: 3,
            interval_ns: u64::MAX,
        });
        assert!(b.append(key(1), &row(1), &refs(), 0, at(7), 0).new_batch);
        assert!(b.append(key(2), &row(2), &refs(), 0, at(7), 0).sealed.is_none());
        assert!(b.append(key(1), &row(3), &refs(), 0, at(8), 0).sealed.is_none());
        let a = b.append(key(1), &row(4), &refs(), 0, at(8), 0);
        assert!(!a.new_batch);
        let s = a.sealed.expect("third record seals");
        assert_eq!(s.batch.num_rows(), 3);
        assert_eq!(s.provenance.batch_ids, vec![7, 8]);
        assert_eq!(s.bytes, 3 * (12 + 8));
        assert_eq!(b.bytes(), 20);

        let mut b = set(SealPolicy {
            bytes_max: 40,
            records_max: u64::MAX,
            interval_ns: u64::MAX,
        });
        assert!(b.append(key(1), &row(1), &refs(), 0, at(1), 0).sealed.is_none());
        assert!(
            b.append(key(1), &row(2), &refs(), 0, at(1), 0).sealed.is_some(),
            "40 bytes reached"
        );
        assert_eq!(b.bytes(), 0);
    }

    #[test]
    fn seals_by_age_and_on_drain_with_event_time_bounds() {
        let mut b = set(SealPolicy {
            bytes_max: 1 << 30,
            records_max: u64::MAX,
            interval_ns: 100,
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
}
