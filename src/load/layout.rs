//! Object keys of every zone (Hive-style, so Athena, DuckDB, Spark and pyarrow read the
//! partitions as columns):
//!
//! ```text
//! <prefix>/raw/source=<s>/dt=YYYY-MM-DD/hr=HH/<partition>-<first>-<last>-<run>.sgf.lz4
//! <prefix>/etl/source=<s>/table=<t>/dt=YYYY-MM-DD/hr=HH/<run>-c<core>-<seq>.parquet
//! <prefix>/quarantine/source=<s>/dt=YYYY-MM-DD/hr=HH/<run>-c<core>-<seq>.ndjson.zst
//! <prefix>/audit/kind=<file|fetch>/dt=YYYY-MM-DD/<run>-c<core>-<seq>.parquet
//! <prefix>/_schemas/<table>/v<N>.json
//! ```
//! ETL `dt`/`hr` come from event time; RAW and quarantine from ingest time (a payload is not
//! decrypted, or not valid, when it is filed there); audit from the time of the flush.
//!
//! The run id (`YYYYMMDDTHHMMSSZ-xxxx`, start time plus 16 random bits) keeps two runs from
//! ever writing the same key. File names are unique per (run, core, zone) by a sequence.

use crate::extract::timestamp::{civil_from_days, dt_hr, hour_bucket, MICROS_PER_SECOND};
use crate::lineage::safe_id;

#[derive(Debug, Clone)]
pub struct Layout {
    /// Empty, or `prefix/` (with the trailing slash).
    prefix: String,
}

impl Layout {
    pub fn new(prefix: &str) -> Layout {
        Layout {
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        }
    }

    pub fn etl(&self, source: &str, table: &str, hour: i64, file: &str) -> String {
        let (dt, hr) = dt_hr(hour);
        format!(
            "{}etl/source={source}/table={table}/dt={dt}/hr={hr}/{file}.parquet",
            self.prefix
        )
    }

    pub fn raw(&self, source: &str, hour: i64, partition: &str, first: u64, last: u64, run: &str) -> String {
        let (dt, hr) = dt_hr(hour);
        format!(
            "{}raw/source={source}/dt={dt}/hr={hr}/{}-{first}-{last}-{run}.sgf.lz4",
            self.prefix,
            safe_id(partition)
        )
    }

    pub fn quarantine(&self, source: &str, hour: i64, file: &str) -> String {
        let (dt, hr) = dt_hr(hour);
        format!(
            "{}quarantine/source={source}/dt={dt}/hr={hr}/{file}.ndjson.zst",
            self.prefix
        )
    }

    pub fn audit(&self, kind: &str, time_us: i64, file: &str) -> String {
        let (dt, _) = dt_hr(hour_bucket(time_us));
        format!("{}audit/kind={kind}/dt={dt}/{file}.parquet", self.prefix)
    }

    pub fn schemas_dir(&self, table: &str) -> String {
        format!("{}_schemas/{table}/", self.prefix)
    }

    pub fn schema(&self, table: &str, version: u32) -> String {
        format!("{}v{version}.json", self.schemas_dir(table))
    }
}

/// File stem of the `seq`-th file a core writes in a run.
/// The last segment of an object key: unique over runs and cores for the files we name.
pub fn object_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

pub fn file_name(run: &str, core: usize, seq: u64) -> String {
    format!("{run}-c{core:02}-{seq:06}")
}

/// A run id from the start time and 16 random bits.
pub fn run_id(now_us: i64, random: u16) -> String {
    let secs = now_us.div_euclid(MICROS_PER_SECOND);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z-{random:04x}",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::timestamp::parse_rfc3339;

    #[test]
    fn keys_follow_the_documented_layout() {
        let l = Layout::new("lake1");
        let h = hour_bucket(parse_rfc3339("2026-11-26T07:30:00Z").unwrap());
        assert_eq!(
            l.etl("gen", "events", h, "R-c01-000003"),
            "lake1/etl/source=gen/table=events/dt=2026-11-26/hr=07/R-c01-000003.parquet"
        );
        assert_eq!(
            l.raw("gen", h, "3", 100, 199, "R"),
            "lake1/raw/source=gen/dt=2026-11-26/hr=07/3-100-199-R.sgf.lz4"
        );
        assert_eq!(
            Layout::new("").quarantine("gen", h, "f"),
            "quarantine/source=gen/dt=2026-11-26/hr=07/f.ndjson.zst"
        );
        assert_eq!(l.schema("events", 2), "lake1/_schemas/events/v2.json");
        assert_eq!(
            run_id(parse_rfc3339("2026-11-26T07:30:05Z").unwrap(), 0xab),
            "20261126T073005Z-00ab"
        );
    }

    #[test]
    fn safe_ids_never_collide_and_never_hide() {
        assert_eq!(safe_id("shardId-000000000001"), "shardId-000000000001");
        let a = safe_id("/data/in/a b.ndjson#0");
        let b = safe_id("/data/in/a_b.ndjson#0");
        assert_ne!(a, b);
        assert!(a.starts_with("_data_in_a_b.ndjson_0~"), "{a}");
        assert!(!safe_id(".hidden").starts_with('.'));
        assert!(safe_id(&"x/".repeat(100)).len() < 64);
    }
}
