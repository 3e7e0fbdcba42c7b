//! QUARANTINE zone writer: one NDJSON line per rejected record, zstd-compressed, per
//! (source, ingest hour).
//!
//! Line fields (stable: people query them):
//! `source`, `partition`, `position`, `core`, `ingest_time` (RFC 3339), `stage`, `rule`,
//! `field` (or null), `table` (or null, when the record never reached a table), `message`,
//! and `payload_base64` — the original bytes exactly as received (still encrypted if they came
//! in an envelope), so a fixed record can be replayed and no plaintext leaks into quarantine.
//!
//! Files seal at `quarantine.file_bytes_max` uncompressed bytes or `quarantine.interval_ms`.

use crate::lineage::Provenance;
use crate::lineage::{due_keys, Due, Origin};
use base64::Engine as _;
use serde::Serialize;
use std::collections::HashMap;
use std::io::Write;

#[derive(Debug, Serialize, PartialEq)]
pub struct QuarantineLine<'a> {
    pub source: &'a str,
    pub partition: &'a str,
    pub position: u64,
    pub core: usize,
    pub ingest_time: String,
    pub stage: &'a str,
    pub rule: &'a str,
    pub field: Option<&'a str>,
    pub table: Option<&'a str>,
    pub message: &'a str,
    pub payload_base64: String,
}

pub fn encode_payload(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub struct SealedQuarantine {
    pub source: u16,
    pub hour: i64,
    pub records: u64,
    pub bytes: Vec<u8>,
    pub provenance: Provenance,
}

struct File {
    enc: zstd::stream::write::Encoder<'static, Vec<u8>>,
    records: u64,
    plain_bytes: u64,
    opened_ns: u64,
    provenance: Provenance,
}

pub struct QuarantineFiles {
    level: i32,
    bytes_max: u64,
    interval_ns: u64,
    open: HashMap<(u16, i64), File>,
}

/// Counts bytes written through it.
struct Counting<'a, W> {
    inner: &'a mut W,
    n: u64,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl QuarantineFiles {
    pub fn new(level: i32, bytes_max: u64, interval_ns: u64) -> QuarantineFiles {
        QuarantineFiles {
            level,
            bytes_max,
            interval_ns,
            open: HashMap::new(),
        }
    }

    /// Append one line. Returns whether this is the file's first record of `batch_id` (the
    /// caller then holds the batch), and the file if it is now full.
    pub fn append(
        &mut self,
        source: u16,
        hour: i64,
        line: &QuarantineLine,
        origin: Origin,
        now_ns: u64,
    ) -> (bool, Option<SealedQuarantine>) {
        let level = self.level;
        let f = self.open.entry((source, hour)).or_insert_with(|| File {
            enc: zstd::stream::write::Encoder::new(Vec::new(), level).expect("zstd level validated by config"),
            records: 0,
            plain_bytes: 0,
            opened_ns: now_ns,
            provenance: Provenance::default(),
        });
        let mut w = Counting {
            inner: &mut f.enc,
            n: 0,
        };
        serde_json::to_writer(&mut w, line).expect("serialising to memory");
        w.write_all(b"\n").expect("writing to memory");
        f.plain_bytes += w.n;
        f.records += 1;
        let new_batch = f
            .provenance
            .note(origin.batch_id, origin.slot, line.position, origin.ordinal);
        (
            new_batch,
            (f.plain_bytes >= self.bytes_max).then(|| self.seal((source, hour))),
        )
    }

    /// Seal what is due (see [`Due`]).
    pub fn take(&mut self, due: Due) -> Vec<SealedQuarantine> {
        due_keys(&self.open, |f| f.opened_ns, due, self.interval_ns)
            .into_iter()
            .map(|k| self.seal(k))
            .collect()
    }

    fn seal(&mut self, key: (u16, i64)) -> SealedQuarantine {
        let f = self.open.remove(&key).expect("sealing an open file");
        SealedQuarantine {
            source: key.0,
            hour: key.1,
            records: f.records,
            bytes: f.enc.finish().expect("finishing in-memory zstd"),
            provenance: f.provenance,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Record `position` of batch 1, partition 0, with ordinal = position.
    fn at(position: u64) -> Origin {
        Origin {
            batch_id: 1,
            slot: 0,
            position,
            ordinal: position,
        }
    }

    fn line(position: u64) -> QuarantineLine<'static> {
        QuarantineLine {
            source: "gen",
            partition: "3",
            position,
            core: 1,
            ingest_time: "2026-11-26T10:00:00.000000Z".into(),
            stage: "schema",
            rule: "min",
            field: Some("metrics.latency_ms"),
            table: Some("events"),
            message: "must be at least 0, got -1",
            payload_base64: encode_payload(b"\x01\x02"),
        }
    }

    #[test]
    fn lines_round_trip_through_zstd() {
        let mut q = QuarantineFiles::new(3, 1 << 20, u64::MAX);
        assert!(matches!(q.append(0, 10, &line(5), at(5), 0), (true, None)));
        assert!(matches!(q.append(0, 10, &line(6), at(6), 0), (false, None)));
        let f = q.take(Due::All).pop().unwrap();
        assert_eq!(f.records, 2);
        let text = String::from_utf8(zstd::decode_all(&f.bytes[..]).unwrap()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let back: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(back, serde_json::to_value(line(6)).unwrap());
        assert_eq!(f.provenance.ranges, vec![(0, 5, 6)]);
    }

    #[test]
    fn seals_by_size() {
        let mut q = QuarantineFiles::new(1, 400, u64::MAX);
        assert!(q.append(0, 1, &line(1), at(1), 0).1.is_none());
        assert!(q.append(0, 1, &line(2), at(2), 0).1.is_some());
    }
}
