//! The audit trail: one row per durable file and one per fetch batch, as Parquet in the
//! AUDIT zone (`audit/kind=file/…`, `audit/kind=fetch/…`). It is the ledger that accounts for
//! every record: for any run,
//!
//! - `sum(fetch.records_in) = sum(fetch.records_etl + records_quarantined + records_dropped +
//!   records_skipped)`, where skipped records were already delivered by a file of an earlier,
//!   crashed run (see `delivery`) and are replayed by the source only to be passed over;
//! - `sum(file.records where zone='etl')` = rows in the ETL zone, and likewise for quarantine;
//! - `sum(fetch.records_etl) = sum(file.records where zone='etl')` once the run has drained.
//!
//! A file row is added only once the file is durable in the store (its bytes, CRC32C — the
//! checksum S3 can verify — and the position ranges it covers); a fetch row when its batch
//! has been processed. A core flushes its rows every `audit.interval_ms` and on drain.

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use std::sync::{Arc, OnceLock};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FileRow {
    pub run_id: String,
    pub core: u32,
    pub zone: String,
    pub key: String,
    pub source: Option<String>,
    pub table: Option<String>,
    pub records: i64,
    pub bytes: i64,
    /// CRC32C of the file's bytes, 8 lowercase hex digits.
    pub crc32c: String,
    pub schema_version: Option<i64>,
    pub event_time_min_us: Option<i64>,
    pub event_time_max_us: Option<i64>,
    /// JSON list of `{partition, first, last}` position ranges.
    pub positions: String,
    pub written_at_us: i64,
}

impl FileRow {
    /// Heap bytes of its strings.
    pub fn text_bytes(&self) -> u64 {
        [&self.run_id, &self.zone, &self.key, &self.crc32c, &self.positions]
            .into_iter()
            .chain(self.source.iter())
            .chain(self.table.iter())
            .map(|s| s.capacity() as u64)
            .sum()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FetchRow {
    pub run_id: String,
    pub core: u32,
    /// The CPU the batch was processed on, as the kernel reports it.
    pub cpu: u32,
    pub source: String,
    pub partition: String,
    pub position_first: i64,
    pub position_last: i64,
    pub position_next: i64,
    pub records_in: i64,
    pub records_etl: i64,
    pub records_quarantined: i64,
    pub records_dropped: i64,
    /// Already delivered by a file of an earlier run (see `delivery`): passed over.
    pub records_skipped: i64,
    pub bytes_in: i64,
    pub fetched_at_us: i64,
    pub process_us: i64,
}

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

pub fn file_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new("run_id", DataType::Utf8, false),
            Field::new("core", DataType::UInt32, false),
            Field::new("zone", DataType::Utf8, false),
            Field::new("key", DataType::Utf8, false),
            Field::new("source", DataType::Utf8, true),
            Field::new("table", DataType::Utf8, true),
            Field::new("records", DataType::Int64, false),
            Field::new("bytes", DataType::Int64, false),
            Field::new("crc32c", DataType::Utf8, false),
            Field::new("schema_version", DataType::Int64, true),
            Field::new("event_time_min", ts_type(), true),
            Field::new("event_time_max", ts_type(), true),
            Field::new("positions", DataType::Utf8, false),
            Field::new("written_at", ts_type(), false),
        ]))
    })
    .clone()
}

pub fn fetch_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new("run_id", DataType::Utf8, false),
            Field::new("core", DataType::UInt32, false),
            Field::new("cpu", DataType::UInt32, false),
            Field::new("source", DataType::Utf8, false),
            Field::new("partition", DataType::Utf8, false),
            Field::new("position_first", DataType::Int64, false),
            Field::new("position_last", DataType::Int64, false),
            Field::new("position_next", DataType::Int64, false),
            Field::new("records_in", DataType::Int64, false),
            Field::new("records_etl", DataType::Int64, false),
            Field::new("records_quarantined", DataType::Int64, false),
            Field::new("records_dropped", DataType::Int64, false),
            Field::new("records_skipped", DataType::Int64, false),
            Field::new("bytes_in", DataType::Int64, false),
            Field::new("fetched_at", ts_type(), false),
            Field::new("process_us", DataType::Int64, false),
        ]))
    })
    .clone()
}

fn strings<T>(rows: &[T], f: impl Fn(&T) -> Option<&str>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<StringArray>())
}

fn ints<T>(rows: &[T], f: impl Fn(&T) -> Option<i64>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<Int64Array>())
}

fn times<T>(rows: &[T], f: impl Fn(&T) -> Option<i64>) -> ArrayRef {
    Arc::new(
        rows.iter()
            .map(f)
            .collect::<TimestampMicrosecondArray>()
            .with_timezone("UTC"),
    )
}

fn u32s<T>(rows: &[T], f: impl Fn(&T) -> u32) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<UInt32Array>())
}

pub fn file_batch(rows: &[FileRow]) -> RecordBatch {
    let columns = vec![
        strings(rows, |r| Some(&r.run_id)),
        u32s(rows, |r| r.core),
        strings(rows, |r| Some(&r.zone)),
        strings(rows, |r| Some(&r.key)),
        strings(rows, |r| r.source.as_deref()),
        strings(rows, |r| r.table.as_deref()),
        ints(rows, |r| Some(r.records)),
        ints(rows, |r| Some(r.bytes)),
        strings(rows, |r| Some(&r.crc32c)),
        ints(rows, |r| r.schema_version),
        times(rows, |r| r.event_time_min_us),
        times(rows, |r| r.event_time_max_us),
        strings(rows, |r| Some(&r.positions)),
        times(rows, |r| Some(r.written_at_us)),
    ];
    RecordBatch::try_new(file_schema(), columns).expect("columns follow file_schema")
}

pub fn fetch_batch(rows: &[FetchRow]) -> RecordBatch {
    let columns = vec![
        strings(rows, |r| Some(&r.run_id)),
        u32s(rows, |r| r.core),
        u32s(rows, |r| r.cpu),
        strings(rows, |r| Some(&r.source)),
        strings(rows, |r| Some(&r.partition)),
        ints(rows, |r| Some(r.position_first)),
        ints(rows, |r| Some(r.position_last)),
        ints(rows, |r| Some(r.position_next)),
        ints(rows, |r| Some(r.records_in)),
        ints(rows, |r| Some(r.records_etl)),
        ints(rows, |r| Some(r.records_quarantined)),
        ints(rows, |r| Some(r.records_dropped)),
        ints(rows, |r| Some(r.records_skipped)),
        ints(rows, |r| Some(r.bytes_in)),
        times(rows, |r| Some(r.fetched_at_us)),
        ints(rows, |r| Some(r.process_us)),
    ];
    RecordBatch::try_new(fetch_schema(), columns).expect("columns follow fetch_schema")
}

/// Rows of one core awaiting their flush. Bounds: rows accumulate for `audit.interval_ms` (or
/// while the flush waits for room in the core's outbox); [`AuditLog::memory_bytes`] counts
/// them, and the core counts that in its memory budget.
#[derive(Debug, Default)]
pub struct AuditLog {
    pub files: Vec<FileRow>,
    pub fetches: Vec<FetchRow>,
    /// Monotonic time of the oldest unflushed row.
    oldest_ns: Option<u64>,
    /// Heap bytes of the rows' strings.
    text_bytes: u64,
}

impl AuditLog {
    pub fn add_file(&mut self, row: FileRow, now_ns: u64) {
        self.oldest_ns.get_or_insert(now_ns);
        self.text_bytes += row.text_bytes();
        self.files.push(row);
    }

    pub fn add_fetch(&mut self, row: FetchRow, now_ns: u64) {
        self.oldest_ns.get_or_insert(now_ns);
        self.text_bytes += [&row.run_id, &row.source, &row.partition]
            .iter()
            .map(|s| s.capacity() as u64)
            .sum::<u64>();
        self.fetches.push(row);
    }

    /// Memory the unflushed rows hold: the rows (their vectors' capacity) and their strings.
    pub fn memory_bytes(&self) -> u64 {
        (self.files.capacity() * std::mem::size_of::<FileRow>()
            + self.fetches.capacity() * std::mem::size_of::<FetchRow>()) as u64
            + self.text_bytes
    }

    pub fn is_due(&self, now_ns: u64, interval_ns: u64) -> bool {
        self.oldest_ns.is_some_and(|t| now_ns.saturating_sub(t) >= interval_ns)
    }

    /// Take the rows as batches: `(kind, batch)` for each non-empty kind.
    pub fn take(&mut self) -> Vec<(&'static str, RecordBatch, u64)> {
        self.oldest_ns = None;
        self.text_bytes = 0;
        let mut out = Vec::new();
        if !self.files.is_empty() {
            let rows = std::mem::take(&mut self.files);
            out.push(("file", file_batch(&rows), rows.len() as u64));
        }
        if !self.fetches.is_empty() {
            let rows = std::mem::take(&mut self.fetches);
            out.push(("fetch", fetch_batch(&rows), rows.len() as u64));
        }
        out
    }
}

/// CRC32C as the audit trail spells it.
pub fn crc32c_hex(bytes: &[u8]) -> String {
    format!("{:08x}", crc32c::crc32c(bytes))
}
