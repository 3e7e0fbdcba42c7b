//! The `generator` source: seeded, realistic, encrypted events over N partitions.
//!
//! Partition `p` produces sequence numbers `0, 1, 2, …` (its positions); the record at
//! `(p, seq)` is a pure function of the seed (see [`event`]), so a restart at a checkpoint
//! continues the same stream. The run is bounded by a record count (split evenly over the
//! partitions), a duration, or both; it runs as fast as possible or at `rate_per_s` in total.
//! At a set rate a partition hands out its records in batches of [`RATE_BATCH_INTERVAL`]'s
//! worth (at least one record), as a real source's poll would, rather than one record per
//! fetch: per-batch costs (the fetch audit row, position tracking) then stay per batch.
//!
//! A share `bad_ratio` of records is bad, of every kind in turn at random: bad ciphertext,
//! unknown key id, malformed JSON, missing required key, constraint violation, unparseable and
//! out-of-bounds timestamps (without encryption, only the last five).
//!
//! Nonces are derived from the record's seed, not drawn at random, so that records are
//! reproducible. That is only safe because the data is synthetic; `sluicegate encrypt` uses
//! random nonces.

pub mod event;

use super::{Fetch, FetchBatch, PartitionInfo, PartitionReader, Source, SourceError};
use crate::lineage::Resume;

/// At a set rate, a partition's records come in batches of this much time's worth.
pub const RATE_BATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);
use crate::clock::Clock;
use crate::config::{Encryption, GeneratorConfig};
use crate::extract::envelope;
use crate::extract::keyring::Keyring;
use event::{BadKind, Expected, Rng};
use ring::aead::{LessSafeKey, UnboundKey, AES_256_GCM};
use std::sync::Arc;
use std::time::Duration;

pub use crate::config::{BUILTIN_PREFIX, BUILTIN_SCHEMA_NAME};
/// Key id of the key that no keyring holds, used for `unknown key id` records.
pub const UNKNOWN_KEY_ID: &str = "retired-2019";

struct Inner {
    name: String,
    cfg: GeneratorConfig,
    encryption: Encryption,
    keyring: Arc<Keyring>,
    start_us: i64,
    unknown_key: LessSafeKey,
}

pub struct GeneratorSource {
    inner: Arc<Inner>,
}

impl GeneratorSource {
    /// `now_us` is the base of event times when the config sets no `start_time`.
    pub fn try_new(
        name: &str,
        cfg: &GeneratorConfig,
        encryption: Encryption,
        keyring: Arc<Keyring>,
        now_us: i64,
    ) -> Result<GeneratorSource, SourceError> {
        let err = |message: String| SourceError {
            source_name: name.into(),
            partition: "*".into(),
            message,
        };
        if encryption == Encryption::Envelope && keyring.get(cfg.key_id.as_bytes()).is_none() {
            return Err(err(format!("generator key id {:?} is not in the keyring", cfg.key_id)));
        }
        let start_us = match &cfg.start_time {
            Some(t) => crate::extract::timestamp::parse_rfc3339(t)
                .ok_or_else(|| err(format!("start_time {t:?} is not RFC 3339")))?,
            None => now_us,
        };
        let unknown = ring::digest::digest(&ring::digest::SHA256, UNKNOWN_KEY_ID.as_bytes());
        Ok(GeneratorSource {
            inner: Arc::new(Inner {
                name: name.into(),
                cfg: cfg.clone(),
                encryption,
                keyring,
                start_us,
                unknown_key: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, unknown.as_ref()).expect("32-byte key")),
            }),
        })
    }

    /// Records partition `p` produces in a count-bounded run.
    pub fn partition_records(&self, partition: u64) -> u64 {
        let (total, parts) = (self.inner.cfg.records, self.inner.cfg.partitions as u64);
        if total == 0 {
            return u64::MAX;
        }
        total / parts + u64::from(partition < total % parts)
    }

    /// The record at `(partition, seq)`: its payload as sent, its plaintext JSON, and how it
    /// must come out of the pipeline.
    pub fn record(&self, partition: u64, seq: u64) -> (Vec<u8>, Vec<u8>, Expected) {
        let (mut payload, mut plain) = (Vec::new(), String::new());
        let e = self.inner.generate(partition, seq, &mut plain, &mut payload);
        (payload, plain.into_bytes(), e)
    }

    /// Append the record at `(partition, seq)` to `out`, with its event time (`ts`) exactly
    /// `event_time_us` instead of a draw from the configured spread: `loadgen` stamps each
    /// record with its scheduled send time and reads it back from the lake to measure latency.
    /// `plain` is left holding the plaintext JSON.
    pub fn write_record(
        &self,
        partition: u64,
        seq: u64,
        event_time_us: i64,
        plain: &mut String,
        out: &mut Vec<u8>,
    ) -> Expected {
        self.inner.generate_at(partition, seq, event_time_us, 0, plain, out)
    }
}

impl Inner {
    /// Append the record's payload to `out`; `plain` is left holding its plaintext JSON.
    fn generate(&self, partition: u64, seq: u64, plain: &mut String, out: &mut Vec<u8>) -> Expected {
        let (start_us, spread_s) = (self.start_us, self.cfg.event_time_spread_s);
        self.generate_at(partition, seq, start_us, spread_s, plain, out)
    }

    fn generate_at(
        &self,
        partition: u64,
        seq: u64,
        start_us: i64,
        spread_s: u64,
        plain: &mut String,
        out: &mut Vec<u8>,
    ) -> Expected {
        let mut rng = Rng::for_record(self.cfg.seed, partition, seq);
        let kind = (rng.unit() < self.cfg.bad_ratio).then(|| match self.encryption {
            Encryption::Envelope => *rng.pick(&BadKind::ALL),
            Encryption::None => *rng.pick(&BadKind::PLAIN),
        });
        let expected = event::write_event(&mut rng, kind, start_us, spread_s, plain);
        if kind == Some(BadKind::MalformedJson) {
            // Cut at a character boundary (the text is ASCII) in the middle.
            plain.truncate(plain.len() / 2);
        }
        if self.encryption == Encryption::None {
            out.extend_from_slice(plain.as_bytes());
            return expected;
        }
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
        nonce[8..].copy_from_slice(&(rng.next_u64() as u32).to_le_bytes());
        let start = out.len();
        if kind == Some(BadKind::UnknownKeyId) {
            envelope::seal(UNKNOWN_KEY_ID, &self.unknown_key, nonce, plain.as_bytes(), out);
        } else {
            let key = self
                .keyring
                .get(self.cfg.key_id.as_bytes())
                .expect("checked in try_new");
            envelope::seal(&self.cfg.key_id, key.aead(), nonce, plain.as_bytes(), out);
        }
        if kind == Some(BadKind::BadCiphertext) {
            let body = start + envelope::overhead(&self.cfg.key_id) - envelope::TAG_LEN;
            let i = body + rng.below((out.len() - body) as u64) as usize;
            out[i] ^= 1 << rng.below(8);
        }
        expected
    }
}

impl Source for GeneratorSource {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn partitions(&self) -> Result<Vec<PartitionInfo>, SourceError> {
        Ok((0..self.inner.cfg.partitions as u64)
            .map(|p| PartitionInfo {
                id: p.to_string(),
                ordinal: p,
            })
            .collect())
    }

    fn open(
        &self,
        partition: &PartitionInfo,
        resume: Option<&Resume>,
    ) -> Result<Box<dyn PartitionReader>, SourceError> {
        let resume = resume.map(|r| r.position);
        let parts = self.inner.cfg.partitions.max(1) as f64;
        Ok(Box::new(GeneratorReader {
            inner: self.inner.clone(),
            partition: partition.ordinal,
            next_seq: resume.unwrap_or(0),
            end_seq: self.partition_records(partition.ordinal),
            rate_per_s: self.inner.cfg.rate_per_s as f64 / parts,
            started: None,
            plain: String::with_capacity(1024),
        }))
    }
}

struct GeneratorReader {
    inner: Arc<Inner>,
    partition: u64,
    next_seq: u64,
    end_seq: u64,
    /// Records per second for this partition (0: unlimited).
    rate_per_s: f64,
    /// (monotonic ns, seq) at the first fetch: the origin of the rate and duration bounds.
    started: Option<(u64, u64)>,
    plain: String,
}

impl PartitionReader for GeneratorReader {
    fn fetch(&mut self, batch: &mut FetchBatch, max_records: usize, clock: &dyn Clock) -> Result<Fetch, SourceError> {
        batch.clear();
        let now = clock.monotonic_ns();
        let (t0, seq0) = *self.started.get_or_insert((now, self.next_seq));
        let elapsed_ns = now.saturating_sub(t0);
        let duration_ms = self.inner.cfg.duration_ms;
        batch.next_position = self.next_seq;
        if self.next_seq >= self.end_seq || (duration_ms > 0 && elapsed_ns >= duration_ms * 1_000_000) {
            return Ok(Fetch::End);
        }
        let mut n = (max_records as u64).min(self.end_seq - self.next_seq);
        if self.rate_per_s > 0.0 {
            let allowed = seq0 + (elapsed_ns as f64 * self.rate_per_s / 1e9) as u64;
            let quantum =
                ((self.rate_per_s * RATE_BATCH_INTERVAL.as_secs_f64()) as u64).clamp(1, self.end_seq - self.next_seq);
            if allowed < self.next_seq + quantum {
                let wait_s = (self.next_seq + quantum - seq0) as f64 / self.rate_per_s - elapsed_ns as f64 / 1e9;
                return Ok(Fetch::Idle(Duration::from_secs_f64(wait_s.clamp(0.0001, 1.0))));
            }
            n = n.min(allowed - self.next_seq);
        }
        for _ in 0..n {
            if batch.is_full() {
                break;
            }
            let start = batch.data.len();
            self.inner
                .generate(self.partition, self.next_seq, &mut self.plain, &mut batch.data);
            batch.records.push(super::RecordSpan {
                start: start as u32,
                len: (batch.data.len() - start) as u32,
                position: self.next_seq,
                reject: None,
            });
            self.next_seq += 1;
        }
        batch.next_position = self.next_seq;
        Ok(if self.next_seq >= self.end_seq {
            Fetch::End
        } else {
            Fetch::Records
        })
    }
}

#[cfg(test)]
mod tests;
