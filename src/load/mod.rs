//! Load: turning sealed outputs into files for the object store, in every zone.
//!
//! Owns: the object [`layout`], the Parquet encoder ([`parquet`]), the RAW segment and
//! quarantine writers, and [`ReadyFile`] — a file's bytes plus what the audit trail and the
//! position tracker need to know about it once it is durable.

pub mod layout;
pub mod lz4frame;
pub mod parquet;
pub mod quarantine;
pub mod raw;
pub mod schemas;

/// The zones of the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Zone {
    Etl,
    Raw,
    Quarantine,
    Audit,
}

impl Zone {
    pub fn as_str(self) -> &'static str {
        match self {
            Zone::Etl => "etl",
            Zone::Raw => "raw",
            Zone::Quarantine => "quarantine",
            Zone::Audit => "audit",
        }
    }
}

/// Where an output's records came from: the fetch batches it holds (for the tracker) and the
/// position range per source partition (for the audit trail).
#[derive(Debug, Default, Clone)]
pub struct Provenance {
    pub batch_ids: Vec<u64>,
    /// (partition slot, first position, last position), in first-seen order.
    pub ranges: Vec<(usize, u64, u64)>,
    last: usize,
}

impl Provenance {
    /// Note one record; returns true if it is the first record of `batch_id` here (the
    /// caller then takes a tracker hold on the batch). Records arrive batch by batch, so only
    /// the last batch id and the last range need checking on the common path.
    #[inline]
    pub fn note(&mut self, batch_id: u64, slot: usize, position: u64) -> bool {
        let new_batch = self.batch_ids.last() != Some(&batch_id);
        if new_batch {
            self.batch_ids.push(batch_id);
        }
        if let Some(r) = self.ranges.get_mut(self.last).filter(|r| r.0 == slot) {
            r.1 = r.1.min(position);
            r.2 = r.2.max(position);
            return new_batch;
        }
        match self.ranges.iter().position(|r| r.0 == slot) {
            Some(i) => {
                let r = &mut self.ranges[i];
                r.1 = r.1.min(position);
                r.2 = r.2.max(position);
                self.last = i;
            }
            None => {
                self.ranges.push((slot, position, position));
                self.last = self.ranges.len() - 1;
            }
        }
        new_batch
    }

    /// The ranges as JSON: `[{"partition":"3","first":0,"last":999}]`.
    pub fn ranges_json(&self, partition_id: impl Fn(usize) -> String) -> String {
        let list: Vec<serde_json::Value> = self
            .ranges
            .iter()
            .map(|(slot, first, last)| serde_json::json!({"partition": partition_id(*slot), "first": first, "last": last}))
            .collect();
        serde_json::Value::Array(list).to_string()
    }
}

/// What the audit trail and the position tracker need to know about a file.
#[derive(Debug)]
pub struct FileMeta {
    pub zone: Zone,
    pub key: String,
    pub records: u64,
    /// Source index ([`NO_INDEX`] for audit files, which span sources).
    pub source: u16,
    /// Table index ([`NO_INDEX`] outside the ETL zone).
    pub table: u16,
    pub schema_version: u32,
    pub event_time_min_us: Option<i64>,
    pub event_time_max_us: Option<i64>,
    pub provenance: Provenance,
    /// ETL files: `(ring segment, records)` it holds; when durable, the segments release the
    /// batch holds (other zones release `provenance.batch_ids` directly).
    pub ring: Vec<(u64, u32)>,
}

impl FileMeta {
    /// A file outside the ETL zone: no table, schema or event times.
    pub fn untabled(zone: Zone, key: String, records: u64, source: u16, provenance: Provenance) -> FileMeta {
        FileMeta {
            zone,
            key,
            records,
            source,
            table: NO_INDEX,
            schema_version: 0,
            event_time_min_us: None,
            event_time_max_us: None,
            provenance,
            ring: Vec::new(),
        }
    }
}

/// A file ready for the store.
#[derive(Debug)]
pub struct ReadyFile {
    pub meta: FileMeta,
    pub bytes: Vec<u8>,
}

pub const NO_INDEX: u16 = u16::MAX;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provenance_tracks_ranges_and_batches() {
        let mut p = Provenance::default();
        assert!(p.note(1, 0, 10));
        assert!(!p.note(1, 0, 11));
        assert!(p.note(2, 1, 5));
        assert!(p.note(3, 0, 12));
        assert!(!p.note(3, 0, 9));
        assert_eq!(p.batch_ids, vec![1, 2, 3]);
        assert_eq!(p.ranges, vec![(0, 9, 12), (1, 5, 5)]);
        assert_eq!(
            p.ranges_json(|s| format!("p{s}")),
            r#"[{"first":9,"last":12,"partition":"p0"},{"first":5,"last":5,"partition":"p1"}]"#
        );
    }
}
