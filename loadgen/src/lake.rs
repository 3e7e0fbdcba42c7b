//! End-to-end latency from the lake: when did each record become durable in the ETL zone?
//!
//! The audit trail says when each ETL file became durable (`audit/kind=file`, column
//! `written_at`: a row is written only once its file is in the store); the file's `ts` column
//! says when each of its records was due (loadgen stamps the due time as the event time, see
//! `events`). A record's end-to-end latency is `written_at − ts`, charged to the interval in
//! which it was due. Only a local lake directory is read (the embedded default, and the HTTP
//! receiver's lake when loadgen runs beside it).
//!
//! A run's records are told apart by source name and by `ts` inside the run's window, so a
//! lake that already holds other runs can be measured again; the audit rows of files another
//! run wrote are passed over by their event-time range without opening the file.
//!
//! Bounds: files are read one at a time, the `ts` column only; while waiting for a run to land,
//! each audit file is read once ([`Audit::update`] reads only the files new since its last
//! call: the store writes a file whole, by rename, and never changes it).

use crate::record::Recorder;
use arrow_array::{Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// What reading the lake found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Landed {
    /// Records of the run in the ETL zone (each counted once, however many audit rows).
    pub records: u64,
    /// ETL files of the run.
    pub files: u64,
}

/// The window of a run: records due in `[from_us, to_us]` (wall time) from source `source`.
#[derive(Debug, Clone)]
pub struct Window {
    pub source: String,
    pub base_us: i64,
    pub from_us: i64,
    pub to_us: i64,
}

fn parquet_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in entries {
        let p = e?.path();
        if p.is_dir() {
            parquet_files(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
    Ok(())
}

fn read(path: &Path, columns: &[&str]) -> Result<Vec<RecordBatch>, String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let f = std::fs::File::open(path).map_err(|e| err(&e))?;
    let b = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| err(&e))?;
    let schema = b.parquet_schema();
    let wanted: Vec<usize> = (0..schema.num_columns())
        .filter(|&i| columns.contains(&schema.column(i).name()))
        .collect();
    let mask = ProjectionMask::leaves(schema, wanted);
    b.with_projection(mask)
        .build()
        .map_err(|e| err(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(&e))
}

fn column<'a, T: 'static>(b: &'a RecordBatch, name: &str, path: &Path) -> Result<&'a T, String> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| format!("{}: no column {name} of the expected type", path.display()))
}

/// An ETL file of the window's source whose event times may hold the window.
struct Durable {
    key: String,
    written_us: i64,
    records: i64,
}

/// The ETL files of a window found in the audit trail so far.
#[derive(Default)]
pub struct Audit {
    /// Audit files read.
    read: HashSet<PathBuf>,
    /// Keys of the ETL files found (one audit row counts, however many there are).
    seen: HashSet<String>,
    durable: Vec<Durable>,
}

impl Audit {
    /// Read the audit files written since the last call.
    pub fn update(&mut self, lake: &Path, w: &Window) -> Result<(), String> {
        let mut files = Vec::new();
        parquet_files(&lake.join("audit/kind=file"), &mut files).map_err(|e| format!("{}: {e}", lake.display()))?;
        for path in files {
            if !self.read.contains(&path) {
                self.read_file(&path, w)?;
                self.read.insert(path);
            }
        }
        Ok(())
    }

    /// Records in the ETL files that may hold the window, by the audit trail alone (no data
    /// file is opened): for waiting until a run has landed. At least the window's own records
    /// once they have landed; more only if another run's records share the files' event-time
    /// range.
    pub fn records(&self) -> u64 {
        self.durable.iter().map(|d| d.records.max(0) as u64).sum()
    }

    fn read_file(&mut self, path: &Path, w: &Window) -> Result<(), String> {
        let cols = [
            "zone",
            "key",
            "source",
            "records",
            "event_time_min",
            "event_time_max",
            "written_at",
        ];
        for b in read(path, &cols)? {
            let zone = column::<StringArray>(&b, "zone", path)?;
            let key = column::<StringArray>(&b, "key", path)?;
            let source = column::<StringArray>(&b, "source", path)?;
            let min = column::<TimestampMicrosecondArray>(&b, "event_time_min", path)?;
            let max = column::<TimestampMicrosecondArray>(&b, "event_time_max", path)?;
            let written = column::<TimestampMicrosecondArray>(&b, "written_at", path)?;
            let records = column::<Int64Array>(&b, "records", path)?;
            for i in 0..b.num_rows() {
                let ours = zone.value(i) == "etl" && source.is_valid(i) && source.value(i) == w.source;
                let overlaps =
                    min.is_null(i) || max.is_null(i) || (min.value(i) <= w.to_us && max.value(i) >= w.from_us);
                if ours && overlaps && self.seen.insert(key.value(i).to_string()) {
                    self.durable.push(Durable {
                        key: key.value(i).to_string(),
                        written_us: written.value(i),
                        records: records.value(i),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Record the end-to-end latency of every record of the window found in the lake at `lake`
/// (the lake's root, with its prefix if it has one); `audit` is brought up to date first.
pub fn measure(lake: &Path, w: &Window, audit: &mut Audit, rec: &mut Recorder) -> Result<Landed, String> {
    audit.update(lake, w)?;
    let mut landed = Landed::default();
    for Durable { key, written_us, .. } in &audit.durable {
        let (path, written_us) = (lake.join(key), *written_us);
        let mut ours = 0;
        for b in read(&path, &["ts"])? {
            let ts = column::<TimestampMicrosecondArray>(&b, "ts", &path)?;
            for i in 0..b.num_rows() {
                let t = ts.value(i);
                if ts.is_valid(i) && (w.from_us..=w.to_us).contains(&t) {
                    let due_ns = (t - w.base_us).max(0) as u64 * 1000;
                    rec.e2e(due_ns, (written_us - t).max(0) as u64);
                    ours += 1;
                }
            }
        }
        landed.records += ours;
        landed.files += u64::from(ours > 0);
    }
    Ok(landed)
}
