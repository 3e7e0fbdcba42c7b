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

use crate::lineage::Provenance;

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
    /// Memory its bookkeeping holds, itself included.
    pub fn memory_bytes(&self) -> u64 {
        (std::mem::size_of::<FileMeta>()
            + self.key.capacity()
            + self.ring.capacity() * std::mem::size_of::<(u64, u32)>()) as u64
            + self.provenance.memory_bytes()
    }

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
