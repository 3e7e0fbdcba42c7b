//! Which of this core's upload intents may be retired (step 5 of the delivery contract in
//! `delivery`).
//!
//! An intent is still needed while a crash could make recovery write its records again:
//! - the source could replay them: some run of it is at or past its partition's *acknowledged*
//!   checkpoint (one the checkpoint store has confirmed, not merely one submitted);
//! - spill recovery could flush them: a ring segment holding its records could still be, or
//!   become, a spill file. A segment spilled after the file was durable writes the file's records
//!   too (a spill takes whole segments), so "no spill file now" is not enough: the segment must
//!   be finished (`Ring::finished`) and its spill file deletion done.
//!
//! Bounds: one entry per durable file with an intent until retired; retirement follows the
//! checkpoints (one audit interval) and the ring's oldest segment.

use crate::load::FileMeta;
use std::collections::HashSet;

#[derive(Debug, Default)]
pub struct Retiring {
    live: Vec<Live>,
    /// Per partition slot: the last checkpoint the store acknowledged (`next_position`).
    acknowledged: Vec<Option<u64>>,
    /// Segments whose spill file deletion was asked for but is not yet done.
    deleting: HashSet<u64>,
}

#[derive(Debug)]
struct Live {
    id: String,
    /// (partition slot, highest position of the file in it).
    covers: Vec<(usize, u64)>,
    /// Ring segments that held its records (ETL files only).
    segments: Vec<u64>,
}

impl Retiring {
    /// A file with an intent is durable.
    pub fn add(&mut self, id: &str, meta: &FileMeta) {
        self.live.push(Live {
            id: id.to_string(),
            covers: meta
                .provenance
                .ranges
                .iter()
                .map(|&(slot, _, last)| (slot, last))
                .collect(),
            segments: meta.ring.iter().map(|&(seg, _)| seg).collect(),
        });
    }

    /// The checkpoint store confirmed these `(slot, next_position)`s.
    pub fn acknowledged(&mut self, checkpoints: &[(usize, u64)]) {
        for &(slot, next) in checkpoints {
            if self.acknowledged.len() <= slot {
                self.acknowledged.resize(slot + 1, None);
            }
            self.acknowledged[slot] = Some(next);
        }
    }

    pub fn deleting(&mut self, seg: u64) {
        self.deleting.insert(seg);
    }

    pub fn deleted(&mut self, seg: u64) {
        self.deleting.remove(&seg);
    }

    /// Take the ids of every intent no longer needed; `finished` is `Ring::finished`.
    pub fn take_retirable(&mut self, finished: impl Fn(u64) -> bool) -> Vec<String> {
        let (acknowledged, deleting) = (&self.acknowledged, &self.deleting);
        let needed = |l: &Live| {
            let replayable = l.covers.iter().any(|&(slot, last)| {
                acknowledged
                    .get(slot)
                    .copied()
                    .flatten()
                    .is_none_or(|next| last >= next)
            });
            replayable || l.segments.iter().any(|&s| !finished(s) || deleting.contains(&s))
        };
        let mut out = Vec::new();
        self.live.retain(|l| {
            let keep = needed(l);
            if !keep {
                out.push(l.id.clone());
            }
            keep
        });
        out
    }

    pub fn live(&self) -> usize {
        self.live.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineage::Provenance;
    use crate::load::{FileMeta, Zone};

    fn meta(slot: usize, last: u64) -> FileMeta {
        let mut p = Provenance::default();
        p.note(1, slot, last - 1, 0);
        p.note(1, slot, last, 1);
        FileMeta::untabled(Zone::Quarantine, "q/x".into(), 2, 0, p)
    }

    #[test]
    fn retires_only_once_the_acknowledged_checkpoint_passes_every_run() {
        let mut r = Retiring::default();
        r.add("a", &meta(0, 10));
        r.add("b", &meta(1, 5));
        assert!(r.take_retirable(|_| true).is_empty(), "no checkpoint acknowledged yet");
        r.acknowledged(&[(0, 10)]);
        assert!(
            r.take_retirable(|_| true).is_empty(),
            "position 10 is at the checkpoint: replayable"
        );
        r.acknowledged(&[(0, 11), (1, 6)]);
        assert_eq!(r.take_retirable(|_| true), vec!["a".to_string(), "b".to_string()]);
        assert_eq!(r.live(), 0);
    }

    #[test]
    fn waits_for_the_spill_file_deletion() {
        let mut r = Retiring::default();
        let mut m = meta(0, 3);
        m.ring = vec![(0, 2)];
        r.add("a", &m);
        r.acknowledged(&[(0, 100)]);
        r.deleting(0);
        assert!(r.take_retirable(|_| false).is_empty(), "segment 0 may still be spilled");
        assert!(
            r.take_retirable(|_| true).is_empty(),
            "its spill file deletion is pending"
        );
        r.deleted(0);
        assert_eq!(r.take_retirable(|_| true), vec!["a".to_string()]);
    }
}
