//! Positions and lineage: the small types every layer uses to say where a record came from and
//! where a partition resumes, kept below all of them so no stage imports another for them.
//!
//! Owns: [`Resume`] (a checkpoint's position and cursor), [`Origin`] (one record's batch, slot,
//! position and ordinal), [`Due`] and [`due_keys`] (which rolling outputs to seal),
//! [`Provenance`] (an output's batches, ranges and exact runs), [`Delivered`] and [`Skip`] (the
//! runs committed files already hold, and a partition's replay cursor over them), and the
//! names derived from partition ids ([`safe_id`]).
//!
//! Nothing here does I/O or keeps state beyond its own value.

mod delivered;
mod provenance;

pub use delivered::{Delivered, Skip};
pub use provenance::{Provenance, Run};

use std::collections::HashMap;

/// Where a partition resumes: a checkpoint's position and, for sources that need it, their
/// own cursor at that position.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resume {
    pub position: u64,
    pub cursor: Option<String>,
}

/// Where a record came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub batch_id: u64,
    pub slot: usize,
    pub position: u64,
    /// The record's index in its partition's stream (see [`Provenance`]).
    pub ordinal: u64,
}

/// Which open outputs to seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Those opened at least their interval before this monotonic time.
    Aged(u64),
    /// All of them (drain).
    All,
}

/// Keys of the open outputs in `map` that are due, sorted, so sealing order (and with it file
/// names) is deterministic. Shared by every rolling writer: buffers, RAW and quarantine.
pub fn due_keys<K: Copy + Ord, V>(
    map: &HashMap<K, V>,
    opened_ns: impl Fn(&V) -> u64,
    due: Due,
    interval_ns: u64,
) -> Vec<K> {
    let mut keys: Vec<K> = map
        .iter()
        .filter(|(_, v)| match due {
            Due::All => true,
            Due::Aged(now) => now.saturating_sub(opened_ns(v)) >= interval_ns,
        })
        .map(|(k, _)| *k)
        .collect();
    keys.sort();
    keys
}

/// A partition id fit for a file name: kept as is when it is short and of `[A-Za-z0-9._-]`,
/// otherwise the tail of it made safe plus a hash of the whole (so two ids never collide).
pub fn safe_id(id: &str) -> String {
    const KEEP_MAX: usize = 40;
    let safe = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    if !id.is_empty() && id.len() <= 64 && id.bytes().all(safe) && !id.starts_with('.') {
        return id.to_string();
    }
    let cleaned: String = id.bytes().map(|b| if safe(b) { b as char } else { '_' }).collect();
    let tail = &cleaned[cleaned.len().saturating_sub(KEEP_MAX)..];
    format!("{}~{:016x}", tail.trim_start_matches('.'), fnv1a(id.as_bytes()))
}

/// FNV-1a 64: a stable hash (unlike `std`'s, which may change between releases).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
