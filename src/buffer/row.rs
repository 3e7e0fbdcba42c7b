//! The archived form of a buffered record, and the Arrow columns built back from it.
//!
//! Owns: the `rkyv` layout of one processed record ([`Row`]: where it goes, where it came
//! from, its typed cells) and the two ways over it — [`RowWriter`] archives a row straight into
//! a segment's free space, [`ColumnsBuilder`] appends archived rows to Arrow builders for the
//! encoder, reading strings and numbers in place (no deserialisation, no copy but the one into
//! Arrow).
//!
//! Frame of one record inside a segment, 16-byte aligned:
//!
//! ```text
//! offset 0   u32 LE  archive length n
//! offset 4   u32 LE  CRC32C of the n archive bytes (0 in memory; filled in by
//!                    [`fill_crcs`] when the segment is spilled)
//! offset 8   u64 LE  reserved (0)
//! offset 16  n bytes the rkyv archive of `Row` (root at its end; rkyv's `unaligned` format:
//!            little-endian primitives without padding, a cell is 9 bytes)
//!            padding to the next multiple of 16
//! ```
//!
//! A zero length word ends the records of a segment (the writer puts one after every frame it
//! writes), so a reader needs no record count, and a torn write is found by its length running past the end or its
//! checksum not matching.
//!
//! Invariants: a frame starts at a multiple of [`FRAME_ALIGN`] from a buffer whose address is
//! itself a multiple of [`FRAME_ALIGN`]; rkyv's archived types need at most 8.

use crate::extract::schema::ColumnType;
use crate::extract::value::{RecordRefs, Val};
use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use rkyv::rancor::Failure;
use rkyv::ser::allocator::Arena;
use rkyv::ser::writer::Buffer;
use std::sync::Arc;

/// Alignment of every frame (and so of every archive).
pub const FRAME_ALIGN: usize = 16;
/// Bytes of a frame's header.
pub const FRAME_HEADER_BYTES: usize = 16;

/// One typed value of a record.
#[derive(rkyv::Archive, rkyv::Serialize, Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Null,
    Bool(bool),
    I64(i64),
    F64(f64),
    /// Microseconds since the epoch, UTC.
    Ts(i64),
    Str(#[rkyv(with = rkyv::with::InlineAsBox)] &'a str),
}

/// One processed record: its partition buffer, its origin and its output cells in the table's
/// column order.
#[derive(rkyv::Archive, rkyv::Serialize, Debug)]
pub struct Row<'a> {
    pub source: u16,
    pub table: u16,
    /// The core's partition slot it was fetched from (see the segment's slot table).
    pub slot: u32,
    /// Hours since the epoch of its event-time partition.
    pub hour: i64,
    pub position: u64,
    pub batch_id: u64,
    pub event_time_us: i64,
    #[rkyv(with = rkyv::with::InlineAsBox)]
    pub cells: &'a [Cell<'a>],
}

/// Round `n` up to the frame alignment.
pub fn align(n: usize) -> usize {
    n.next_multiple_of(FRAME_ALIGN)
}

/// Archives rows into frames; keeps its scratch (cells, rkyv arena) across records.
#[derive(Default)]
pub struct RowWriter {
    arena: Arena,
    cells: Vec<Cell<'static>>,
}

/// What the cells of a row are made of.
#[derive(Clone, Copy)]
pub struct RowSource<'r, 'a> {
    pub values: &'r [Val],
    pub refs: &'r RecordRefs<'a>,
}

impl RowWriter {
    /// Write `row` (with `cells` taken from `src`) as one frame at the start of `out`. Returns the
    /// frame's length (aligned), or `None` if it does not fit in `out`.
    pub fn write(&mut self, out: &mut [u8], head: RowHead, src: RowSource) -> Option<usize> {
        if out.len() < FRAME_HEADER_BYTES {
            return None;
        }
        // Reuse the cell vector's allocation for this record's borrowed cells.
        let mut cells: Vec<Cell<'_>> = std::mem::take(&mut self.cells)
            .into_iter()
            .map(|_| Cell::Null)
            .collect();
        cells.clear();
        cells.extend(src.values.iter().map(|v| match *v {
            Val::Null => Cell::Null,
            Val::Bool(b) => Cell::Bool(b),
            Val::I64(x) => Cell::I64(x),
            Val::F64(x) => Cell::F64(x),
            Val::Ts(x) => Cell::Ts(x),
            Val::Str(r) => Cell::Str(src.refs.str(r)),
        }));
        let row = Row {
            source: head.source,
            table: head.table,
            slot: head.slot,
            hour: head.hour,
            position: head.position,
            batch_id: head.batch_id,
            event_time_us: head.event_time_us,
            cells: &cells,
        };
        let (header, body) = out.split_at_mut(FRAME_HEADER_BYTES);
        let written = rkyv::api::high::to_bytes_in_with_alloc::<_, _, Failure>(
            &row,
            Buffer::from(&mut *body),
            self.arena.acquire(),
        )
        .ok()
        .map(|b| b.len());
        cells.clear();
        self.cells = cells.into_iter().map(|_| Cell::Null).collect();
        let n = written?;
        let frame = align(FRAME_HEADER_BYTES + n);
        if frame > FRAME_HEADER_BYTES + body.len() {
            return None;
        }
        header[0..4].copy_from_slice(&(n as u32).to_le_bytes());
        // The checksum is filled in only if the segment is spilled (`fill_crcs`): memory is
        // trusted, and most segments never reach the disk.
        header[4..8].fill(0);
        header[8..16].fill(0);
        body[n..frame - FRAME_HEADER_BYTES].fill(0);
        // End mark: a zero length word after the last frame, so a buffer reused without being
        // cleared never shows a reader stale frames.
        if let Some(end) = out.get_mut(frame..frame + 4) {
            end.fill(0);
        }
        Some(frame)
    }
}

/// The fixed part of a [`Row`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowHead {
    pub source: u16,
    pub table: u16,
    pub slot: u32,
    pub hour: i64,
    pub position: u64,
    pub batch_id: u64,
    pub event_time_us: i64,
}

impl ArchivedRow<'_> {
    pub fn head(&self) -> RowHead {
        RowHead {
            source: self.source.to_native(),
            table: self.table.to_native(),
            slot: self.slot.to_native(),
            hour: self.hour.to_native(),
            position: self.position.to_native(),
            batch_id: self.batch_id.to_native(),
            event_time_us: self.event_time_us.to_native(),
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame at byte {at}: length {len} runs past the end ({end})")]
    Truncated { at: usize, len: usize, end: usize },
    #[error("frame at byte {at}: checksum mismatch")]
    Checksum { at: usize },
    #[error("frame at byte {at}: not a valid archived row ({message})")]
    Invalid { at: usize, message: String },
}

/// The frame at `at` in `seg`: `Ok(None)` at the end of the records (a zero length word or
/// the end of the buffer), else the archive's byte range and the next frame's offset. Checks
/// bounds and the checksum; does not validate the archive.
pub fn frame_at(seg: &[u8], at: usize) -> Result<Option<(std::ops::Range<usize>, usize)>, FrameError> {
    if at + FRAME_HEADER_BYTES > seg.len() {
        return Ok(None);
    }
    let len = u32::from_le_bytes(seg[at..at + 4].try_into().expect("4 bytes")) as usize;
    if len == 0 {
        return Ok(None);
    }
    let start = at + FRAME_HEADER_BYTES;
    if start + len > seg.len() {
        return Err(FrameError::Truncated {
            at,
            len,
            end: seg.len(),
        });
    }
    let crc = u32::from_le_bytes(seg[at + 4..at + 8].try_into().expect("4 bytes"));
    if crc32c::crc32c(&seg[start..start + len]) != crc {
        return Err(FrameError::Checksum { at });
    }
    Ok(Some((start..start + len, align(start + len).min(seg.len()))))
}

/// Fill in the CRC32C of every frame in `records` (a segment's frames, as written), before
/// they go to disk.
pub fn fill_crcs(records: &mut [u8]) {
    let mut at = 0;
    while at + FRAME_HEADER_BYTES <= records.len() {
        let range = archive_range(records, at);
        if range.is_empty() {
            break;
        }
        let crc = crc32c::crc32c(&records[range.clone()]);
        records[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        at = align(range.end);
    }
}

/// The archive range of the frame at `at`, from its length word alone (no checksum): for
/// frames this process wrote into memory.
pub fn archive_range(seg: &[u8], at: usize) -> std::ops::Range<usize> {
    let len = u32::from_le_bytes(seg[at..at + 4].try_into().expect("4 bytes")) as usize;
    at + FRAME_HEADER_BYTES..at + FRAME_HEADER_BYTES + len
}

/// The archived row in `bytes` (a frame's archive range), validated: for bytes read from disk.
pub fn access_checked(bytes: &[u8], at: usize) -> Result<&ArchivedRow<'static>, FrameError> {
    rkyv::access::<ArchivedRow, rkyv::rancor::Error>(bytes).map_err(|e| FrameError::Invalid {
        at,
        message: e.to_string(),
    })
}

/// The archived row in `bytes`, trusted: for frames this process wrote into memory.
///
/// # Safety
/// `bytes` must be exactly the archive range of a frame written by [`RowWriter::write`] in
/// this process (so it holds a valid `ArchivedRow` with its root at the end), and must start at
/// an address aligned to [`FRAME_ALIGN`].
pub unsafe fn access_trusted(bytes: &[u8]) -> &ArchivedRow<'static> {
    debug_assert_eq!(bytes.as_ptr() as usize % FRAME_ALIGN, 0);
    // SAFETY: guaranteed by the caller (see above): the bytes are a complete archive of `Row`
    // serialised by rkyv in this process, suitably aligned.
    unsafe { rkyv::access_unchecked::<ArchivedRow>(bytes) }
}

enum Column {
    Str(StringBuilder),
    I64(Int64Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    Ts(TimestampMicrosecondBuilder),
}

/// Builds Arrow record batches of one table from archived rows.
pub struct ColumnsBuilder {
    schema: SchemaRef,
    columns: Vec<Column>,
    types: Vec<ColumnType>,
    rows: usize,
}

impl ColumnsBuilder {
    pub fn new(schema: SchemaRef, types: &[ColumnType], rows: usize) -> ColumnsBuilder {
        let mut b = ColumnsBuilder {
            schema,
            columns: Vec::new(),
            types: types.to_vec(),
            rows: 0,
        };
        b.reset(rows, &[]);
        b
    }

    /// Start empty builders for `rows` rows. String columns get `per_row[i]` bytes a row: what
    /// the previous batch held (growing by doubling copies every value again and faults in
    /// fresh pages).
    fn reset(&mut self, rows: usize, per_row: &[usize]) {
        self.columns = self
            .types
            .iter()
            .enumerate()
            .map(|(i, t)| match t {
                ColumnType::String | ColumnType::Json => Column::Str(StringBuilder::with_capacity(
                    rows,
                    rows * per_row.get(i).copied().unwrap_or(16),
                )),
                ColumnType::Int64 => Column::I64(Int64Builder::with_capacity(rows)),
                ColumnType::Float64 => Column::F64(Float64Builder::with_capacity(rows)),
                ColumnType::Boolean => Column::Bool(BooleanBuilder::with_capacity(rows)),
                ColumnType::Timestamp => {
                    Column::Ts(TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"))
                }
            })
            .collect();
        self.rows = 0;
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Append one archived row (its cells must follow the table's column types).
    pub fn append(&mut self, row: &ArchivedRow<'_>) {
        debug_assert_eq!(row.cells.len(), self.columns.len());
        for (col, cell) in self.columns.iter_mut().zip(row.cells.iter()) {
            match (col, cell) {
                (Column::Str(b), ArchivedCell::Str(s)) => b.append_value(s.as_ref()),
                (Column::I64(b), ArchivedCell::I64(x)) => b.append_value(x.to_native()),
                (Column::F64(b), ArchivedCell::F64(x)) => b.append_value(x.to_native()),
                (Column::Bool(b), ArchivedCell::Bool(x)) => b.append_value(*x),
                (Column::Ts(b), ArchivedCell::Ts(x)) => b.append_value(x.to_native()),
                (Column::Str(b), ArchivedCell::Null) => b.append_null(),
                (Column::I64(b), ArchivedCell::Null) => b.append_null(),
                (Column::F64(b), ArchivedCell::Null) => b.append_null(),
                (Column::Bool(b), ArchivedCell::Null) => b.append_null(),
                (Column::Ts(b), ArchivedCell::Null) => b.append_null(),
                _ => panic!("an archived cell does not match its column type: the table plan is inconsistent"),
            }
        }
        self.rows += 1;
    }

    /// The rows appended so far as a record batch; starts a new one sized for `next_rows`.
    pub fn finish(&mut self, next_rows: usize) -> RecordBatch {
        let per_row: Vec<usize> = self
            .columns
            .iter()
            .map(|c| match c {
                Column::Str(b) => b.values_slice().len() / self.rows.max(1) + 1,
                _ => 0,
            })
            .collect();
        let columns: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|c| -> ArrayRef {
                match c {
                    Column::Str(b) => Arc::new(b.finish()),
                    Column::I64(b) => Arc::new(b.finish()),
                    Column::F64(b) => Arc::new(b.finish()),
                    Column::Bool(b) => Arc::new(b.finish()),
                    Column::Ts(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        let batch =
            RecordBatch::try_new(self.schema.clone(), columns).expect("columns follow the table's arrow schema");
        self.reset(next_rows, &per_row);
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::value::StrRef;
    use arrow_array::{Array, Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    /// A zeroed buffer aligned like a segment.
    pub fn aligned(n: usize) -> rkyv::util::AlignedVec<FRAME_ALIGN> {
        let mut v = rkyv::util::AlignedVec::with_capacity(n);
        v.resize(n, 0);
        v
    }

    fn head(position: u64) -> RowHead {
        RowHead {
            source: 1,
            table: 0,
            slot: 3,
            hour: 493_000,
            position,
            batch_id: 9,
            event_time_us: 1_700_000_000_000_000,
        }
    }

    #[test]
    fn archived_cells_are_packed() {
        // rkyv's `unaligned` format: a tag byte and an 8-byte payload (a number, or a string's
        // relative pointer and length), instead of 16 bytes with the aligned format.
        assert_eq!(std::mem::size_of::<ArchivedCell>(), 9);
        assert_eq!(std::mem::align_of::<ArchivedCell>(), 1);
        let mut out = aligned(256);
        let n = write(&mut RowWriter::default(), &mut out, 1, "abc", Val::I64(7)).unwrap();
        // 16 header + 40 head + 8 cells pointer + 2 × 9 cells + 3 string bytes, aligned to 16.
        assert_eq!(n, align(FRAME_HEADER_BYTES + 40 + 8 + 18 + 3), "frame of {n} bytes");
    }

    fn write(w: &mut RowWriter, out: &mut [u8], position: u64, text: &str, n: Val) -> Option<usize> {
        let refs = RecordRefs {
            nodes: &[],
            scratch: text,
        };
        let values = [
            Val::Str(StrRef::Scratch {
                start: 0,
                len: text.len() as u32,
            }),
            n,
        ];
        w.write(
            out,
            head(position),
            RowSource {
                values: &values,
                refs: &refs,
            },
        )
    }

    #[test]
    fn rows_round_trip_through_frames_and_arrow() {
        let mut seg = aligned(4096);
        let seg = seg.as_mut_slice();
        let mut w = RowWriter::default();
        let a = write(&mut w, seg, 10, "hello", Val::I64(-5)).unwrap();
        let b = write(&mut w, &mut seg[a..], 11, "", Val::Null).unwrap();
        assert_eq!((a % FRAME_ALIGN, b % FRAME_ALIGN), (0, 0));
        fill_crcs(seg);

        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]));
        let mut cols = ColumnsBuilder::new(schema, &[ColumnType::String, ColumnType::Int64], 2);
        let mut at = 0;
        let mut heads = Vec::new();
        while let Some((range, next)) = frame_at(seg, at).unwrap() {
            let checked = access_checked(&seg[range.clone()], at).unwrap();
            // SAFETY: the range is a frame RowWriter wrote above, in a 16-aligned buffer.
            let row = unsafe { access_trusted(&seg[range]) };
            assert_eq!(checked.head(), row.head());
            heads.push(row.head());
            cols.append(row);
            at = next;
        }
        assert_eq!(heads, vec![head(10), head(11)]);
        let batch = cols.finish(0);
        let s = batch.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let n = batch.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!((s.value(0), s.value(1)), ("hello", ""));
        assert_eq!((n.value(0), n.is_null(1)), (-5, true));
    }

    #[test]
    fn a_full_buffer_refuses_the_row_and_damage_is_reported() {
        let mut seg = aligned(64);
        let seg = seg.as_mut_slice();
        let mut w = RowWriter::default();
        assert_eq!(write(&mut w, seg, 1, &"x".repeat(100), Val::I64(1)), None);
        assert!(frame_at(seg, 0).unwrap().is_none(), "nothing written: zero length word");

        let mut seg = aligned(1024);
        let seg = seg.as_mut_slice();
        let n = write(&mut w, seg, 1, "abc", Val::I64(1)).unwrap();
        fill_crcs(seg);
        assert!(frame_at(seg, 0).unwrap().is_some());
        seg[FRAME_HEADER_BYTES + 2] ^= 0x40;
        assert_eq!(frame_at(seg, 0), Err(FrameError::Checksum { at: 0 }));
        assert!(matches!(frame_at(&seg[..n - 17], 0), Err(FrameError::Truncated { .. })));
    }
}
