//! Parquet encoding with explicit writer properties (nothing is left to the library's
//! defaults: arrow-rs defaults to *uncompressed*).
//!
//! - zstd at `parquet.zstd_level` for every column;
//! - row groups of at most `parquet.row_group_rows_max` rows, data pages of at most
//!   `parquet.data_page_bytes_max` bytes;
//! - dictionary encoding per `parquet.dictionary`, decided per column and file: a column whose
//!   sampled values are mostly distinct (ids, free text) gets none, because interning every
//!   value into a dictionary that is then abandoned cost more than a third of encoding time
//!   and shrank nothing; statistics per `parquet.statistics` (page level by default: min/max
//!   per page lets readers skip pages);
//! - format version 1.0 data pages, which every reader (Athena, Spark, DuckDB, pyarrow) reads;
//! - key/value metadata: `sluicegate.table` and `sluicegate.schema_version`.
//!
//! Encoding is chunked ([`ENCODE_CHUNK_ROWS`] rows per call) so the core can yield between
//! chunks and other partitions keep moving while a large file is written.
//!
//! Paired assertion: the row count the writer reports, and the row count in the footer read
//! back from the encoded bytes, must both equal the rows handed in.

use crate::config::{ParquetConfig, Statistics};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, ParquetMetaDataReader};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};

/// Rows written per call while encoding: ~2–5 ms of work, the longest a core goes unyielded.
pub const ENCODE_CHUNK_ROWS: usize = 8192;

pub fn writer_properties(cfg: &ParquetConfig, table: &str, schema_version: u32) -> WriterProperties {
    WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(cfg.zstd_level).expect("zstd level validated by config"),
        ))
        .set_max_row_group_row_count(Some(cfg.row_group_rows_max as usize))
        .set_data_page_size_limit(cfg.data_page_bytes_max as usize)
        .set_dictionary_enabled(cfg.dictionary)
        .set_statistics_enabled(match cfg.statistics {
            Statistics::None => EnabledStatistics::None,
            Statistics::Chunk => EnabledStatistics::Chunk,
            Statistics::Page => EnabledStatistics::Page,
        })
        .set_created_by(format!("sluicegate {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![
            KeyValue::new("sluicegate.table".into(), table.to_string()),
            KeyValue::new("sluicegate.schema_version".into(), schema_version.to_string()),
        ]))
        .build()
}

/// Rows sampled per column to judge whether a dictionary pays.
pub const DICTIONARY_SAMPLE_ROWS: usize = 1024;
/// A column with more than this share of distinct values among the sample gets no dictionary.
pub const DICTIONARY_DISTINCT_SHARE_MAX: f64 = 0.5;

/// Distinct share of the values of `col` at up to [`DICTIONARY_SAMPLE_ROWS`] evenly spaced rows
/// (`None` for types a dictionary does not apply to).
fn distinct_share(col: &dyn arrow_array::Array) -> Option<f64> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
    use arrow_array::Array;
    use arrow_schema::DataType;
    let rows = col.len();
    if rows == 0 {
        return None;
    }
    let n = rows.min(DICTIONARY_SAMPLE_ROWS);
    let at = |i: usize| i * rows / n;
    let mut seen = std::collections::HashSet::with_capacity(n);
    match col.data_type() {
        DataType::Utf8 => {
            let a = col.as_string::<i32>();
            (0..n).filter(|&i| a.is_valid(at(i))).for_each(|i| {
                seen.insert(fnv(a.value(at(i)).as_bytes()));
            });
        }
        DataType::Int64 => {
            let a = col.as_primitive::<Int64Type>();
            (0..n).for_each(|i| {
                seen.insert(a.value(at(i)) as u64);
            });
        }
        DataType::Float64 => {
            let a = col.as_primitive::<Float64Type>();
            (0..n).for_each(|i| {
                seen.insert(a.value(at(i)).to_bits());
            });
        }
        DataType::Timestamp(..) => {
            let a = col.as_primitive::<TimestampMicrosecondType>();
            (0..n).for_each(|i| {
                seen.insert(a.value(at(i)) as u64);
            });
        }
        _ => return None,
    }
    Some(seen.len() as f64 / n as f64)
}

fn fnv(b: &[u8]) -> u64 {
    crate::lineage::fnv1a(b)
}

/// `base`, with the dictionary switched off for the columns of `batch` whose values are
/// mostly distinct. Unchanged when `base` has dictionaries off.
pub fn props_for_batch(base: &WriterProperties, batch: &RecordBatch) -> WriterProperties {
    use parquet::schema::types::ColumnPath;
    let schema = batch.schema();
    let mut b = base.clone().into_builder();
    for (i, field) in schema.fields().iter().enumerate() {
        let path = ColumnPath::new(vec![field.name().clone()]);
        if !base.dictionary_enabled(&path) {
            continue;
        }
        if distinct_share(batch.column(i).as_ref()).is_some_and(|s| s > DICTIONARY_DISTINCT_SHARE_MAX) {
            b = b.set_column_dictionary_enabled(path, false);
        }
    }
    b.build()
}

/// An encoder for one file, fed in chunks.
pub struct ParquetEncoder {
    writer: ArrowWriter<Vec<u8>>,
    rows: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("parquet encode failed: {0}")]
pub struct EncodeError(pub String);

impl ParquetEncoder {
    pub fn try_new(schema: SchemaRef, props: WriterProperties) -> Result<ParquetEncoder, EncodeError> {
        let writer = ArrowWriter::try_new(Vec::new(), schema, Some(props)).map_err(|e| EncodeError(e.to_string()))?;
        Ok(ParquetEncoder { writer, rows: 0 })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), EncodeError> {
        self.writer.write(batch).map_err(|e| EncodeError(e.to_string()))?;
        self.rows += batch.num_rows();
        Ok(())
    }

    /// Close the file; returns its bytes after checking the row count twice.
    pub fn finish(self) -> Result<Vec<u8>, EncodeError> {
        let rows = self.rows;
        let mut writer = self.writer;
        let meta = writer.finish().map_err(|e| EncodeError(e.to_string()))?;
        let written = meta.file_metadata().num_rows();
        assert_eq!(
            written as usize, rows,
            "parquet writer reports {written} rows, {rows} were written"
        );
        let bytes = std::mem::take(writer.inner_mut());
        assert_eq!(
            footer_rows(&bytes)?,
            rows,
            "parquet footer disagrees with the rows written"
        );
        Ok(bytes)
    }
}

/// Row count from the footer of an encoded file (`PAR1`, metadata, length, `PAR1`).
pub fn footer_rows(file: &[u8]) -> Result<usize, EncodeError> {
    let bad = |m: &str| EncodeError(format!("cannot read back the footer: {m}"));
    if file.len() < 12 || &file[file.len() - 4..] != b"PAR1" {
        return Err(bad("no PAR1 trailer"));
    }
    let len_at = file.len() - 8;
    let meta_len = u32::from_le_bytes(file[len_at..len_at + 4].try_into().expect("4 bytes")) as usize;
    let start = len_at
        .checked_sub(meta_len)
        .ok_or_else(|| bad("metadata length exceeds the file"))?;
    let meta = ParquetMetaDataReader::decode_metadata(&file[start..len_at]).map_err(|e| bad(&e.to_string()))?;
    Ok(meta.file_metadata().num_rows() as usize)
}

/// Encode a whole batch at once (audit files, tests, benches).
pub fn encode(batch: &RecordBatch, props: WriterProperties) -> Result<Vec<u8>, EncodeError> {
    let mut e = ParquetEncoder::try_new(batch.schema(), props)?;
    let mut off = 0;
    while off < batch.num_rows() {
        let n = ENCODE_CHUNK_ROWS.min(batch.num_rows() - off);
        e.write(&batch.slice(off, n))?;
        off += n;
    }
    e.finish()
}
