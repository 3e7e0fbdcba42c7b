//! The records loadgen sends: the engine's own generator (`sluicegate::source::generator`),
//! so loadgen's events are the embedded default's — same shapes, sizes, bad-record kinds and
//! encryption — with one change: every record's event time (`ts`) is the moment its request was
//! due. The lake keeps `ts` to the microsecond, so the lake itself says when each record was
//! sent (see `lake`).
//!
//! Request `seq` of `batch` records holds generator records `seq × batch … seq × batch + batch
//! − 1` of partition 0: every record of a run is distinct. The generator derives nonces from the
//! seed, so loadgen draws a fresh seed per run unless one is given (a repeated seed with new
//! event times would reuse nonces under the same key).

use crate::profile::Slot;
use sluicegate::config::{Encryption, GeneratorConfig};
use sluicegate::extract::keyring::Keyring;
use sluicegate::source::framing;
use sluicegate::source::generator::event::Expected;
use sluicegate::source::generator::GeneratorSource;
use std::sync::Arc;

/// How a request's records are framed in one body or file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// One JSON document per line (plaintext records).
    Ndjson,
    /// `SGF1` framing: the magic, then a length-prefixed payload per record (envelopes).
    Framed,
}

pub struct Events {
    generator: GeneratorSource,
    encryption: Encryption,
    base_us: i64,
    batch: u64,
}

/// Records and good records (those that must land in the ETL zone) of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub records: u64,
    pub good: u64,
}

impl Events {
    /// `base_us`: wall time of the run's start (request due times are offsets from it).
    pub fn new(
        seed: u64,
        bad_ratio: f64,
        encryption: Encryption,
        keyring: Arc<Keyring>,
        key_id: &str,
        base_us: i64,
        batch: u32,
    ) -> Result<Events, String> {
        let cfg = GeneratorConfig {
            partitions: 1,
            records: 0,
            duration_ms: 1,
            bad_ratio,
            seed,
            key_id: key_id.to_string(),
            event_time_spread_s: 0,
            ..GeneratorConfig::default()
        };
        let generator =
            GeneratorSource::try_new("loadgen", &cfg, encryption, keyring, base_us).map_err(|e| e.to_string())?;
        Ok(Events {
            generator,
            encryption,
            base_us,
            batch: u64::from(batch.max(1)),
        })
    }

    pub fn format(&self) -> BodyFormat {
        match self.encryption {
            Encryption::Envelope => BodyFormat::Framed,
            Encryption::None => BodyFormat::Ndjson,
        }
    }

    pub fn base_us(&self) -> i64 {
        self.base_us
    }

    /// The wall time a request due at `due_ns` after the start stamps on its records.
    pub fn event_time_us(&self, due_ns: u64) -> i64 {
        self.base_us + (due_ns / 1000) as i64
    }

    /// Call `each(payload, good)` for every record of `slot`'s request.
    pub fn each(&self, slot: Slot, plain: &mut String, mut each: impl FnMut(&[u8], bool)) -> Counts {
        let ts = self.event_time_us(slot.due_ns);
        let mut counts = Counts::default();
        let mut payload = Vec::with_capacity(1024);
        for i in 0..self.batch {
            payload.clear();
            let e = self
                .generator
                .write_record(0, slot.seq * self.batch + i, ts, plain, &mut payload);
            let good = e == Expected::Good;
            each(&payload, good);
            counts.records += 1;
            counts.good += u64::from(good);
        }
        counts
    }

    /// `slot`'s request as one body (or file) in [`Events::format`], appended to `out`.
    pub fn body(&self, slot: Slot, plain: &mut String, out: &mut Vec<u8>) -> Counts {
        let format = self.format();
        if format == BodyFormat::Framed {
            out.extend_from_slice(framing::MAGIC);
        }
        self.each(slot, plain, |payload, _| match format {
            BodyFormat::Framed => framing::write_frame(out, payload).expect("writing to a Vec"),
            BodyFormat::Ndjson => {
                out.extend_from_slice(payload);
                out.push(b'\n');
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(encryption: Encryption, bad_ratio: f64) -> Events {
        let mut k = Keyring::default();
        k.insert_demo().unwrap();
        Events::new(7, bad_ratio, encryption, Arc::new(k), "demo", 1_800_000_000_000_000, 50).unwrap()
    }

    #[test]
    fn records_carry_their_due_time_and_bodies_are_framed() {
        let e = events(Encryption::None, 0.0);
        let slot = Slot {
            seq: 3,
            due_ns: 2_500_000_123,
        };
        let (mut plain, mut body) = (String::new(), Vec::new());
        let c = e.body(slot, &mut plain, &mut body);
        assert_eq!(c, Counts { records: 50, good: 50 });
        let lines: Vec<&[u8]> = body.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 50);
        for l in lines {
            let v: serde_json::Value = serde_json::from_slice(l).unwrap();
            // base + 2.500000123 s, to the microsecond.
            assert_eq!(v["ts"], "2027-01-15T08:00:02.500000Z");
        }
        let framed = events(Encryption::Envelope, 0.5);
        let mut body = Vec::new();
        let c = framed.body(slot, &mut plain, &mut body);
        assert!(body.starts_with(b"SGF1"));
        assert!(c.good < 50 && c.good > 10, "about half are bad: {c:?}");
    }
}
