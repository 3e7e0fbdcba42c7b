//! Position tracking: which source positions are durable, so checkpoints never run ahead.
//!
//! Every fetch batch gets an id and a hold count: one hold while the core processes it, plus
//! one per output (ETL buffer, quarantine file, RAW segment) that took records from it. An
//! output releases its holds when its file is durable in the store. A partition's durable
//! position is the `next_position` of the longest prefix of its batches with no holds left —
//! batches complete out of order (a small hour buffer may seal before a big one), but the
//! checkpoint only moves over a gap-free prefix.
//!
//! Invariants: a batch id is opened once and released exactly as often as it was held; the
//! durable position of a partition never decreases.
//! Bounds: an entry lives from fetch until its batch and every batch before it are durable:
//! while the store is down, that is every batch since. [`Tracker::memory_bytes`] counts them,
//! and the core counts that in its memory budget (`buffer.memory_bytes_max`), so a long outage
//! ends in backpressure, not in unbounded growth.

use crate::lineage::Resume;
use std::collections::{HashMap, VecDeque};

#[derive(Debug, Default)]
struct Partition {
    /// Batches in fetch order: (batch id, where to resume once it is durable).
    order: VecDeque<(u64, Resume)>,
    durable: Option<Resume>,
    /// Set when `durable` moved since the last [`Tracker::take_changed`].
    changed: bool,
}

/// Memory one tracked batch costs, at most: its entry in a partition's order (a `VecDeque`
/// that may be up to twice its length) and in the holds map (hashbrown: a control byte, and a
/// load factor of at most 7/8, so ~1.15x its entry; doubling when it grows, so up to 2x).
pub const TRACKED_BATCH_BYTES: u64 =
    2 * std::mem::size_of::<(u64, Resume)>() as u64 + 2 * (std::mem::size_of::<(u64, (usize, u32))>() as u64 + 1);

#[derive(Debug, Default)]
pub struct Tracker {
    partitions: Vec<Partition>,
    /// Batch id → (partition slot, holds).
    holds: HashMap<u64, (usize, u32)>,
    next_id: u64,
    /// Batches in the partitions' orders, and the bytes of their cursors.
    tracked: u64,
    cursor_bytes: u64,
}

impl Tracker {
    /// Register a partition; returns its slot.
    pub fn add_partition(&mut self) -> usize {
        self.partitions.push(Partition::default());
        self.partitions.len() - 1
    }

    /// Open a batch with one hold (the processing hold); returns its id.
    pub fn open(&mut self, slot: usize, next: Resume) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.tracked += 1;
        self.cursor_bytes += next.cursor.as_ref().map_or(0, |c| c.capacity() as u64);
        self.partitions[slot].order.push_back((id, next));
        self.holds.insert(id, (slot, 1));
        id
    }

    pub fn hold(&mut self, id: u64) {
        self.holds.get_mut(&id).expect("holding an open batch").1 += 1;
    }

    pub fn release(&mut self, id: u64) {
        let entry = self.holds.get_mut(&id).expect("releasing an open batch");
        entry.1 -= 1;
        if entry.1 > 0 {
            return;
        }
        let slot = entry.0;
        self.holds.remove(&id);
        let p = &mut self.partitions[slot];
        while let Some((front, _)) = p.order.front() {
            if self.holds.contains_key(front) {
                break;
            }
            let (_, next) = p.order.pop_front().expect("a front entry");
            self.tracked -= 1;
            self.cursor_bytes -= next.cursor.as_ref().map_or(0, |c| c.capacity() as u64);
            p.durable = Some(next);
            p.changed = true;
        }
    }

    pub fn durable(&self, slot: usize) -> Option<u64> {
        self.partitions[slot].durable.as_ref().map(|r| r.position)
    }

    /// Partitions whose durable position moved since the last call, with where they resume.
    pub fn take_changed(&mut self) -> Vec<(usize, Resume)> {
        self.partitions
            .iter_mut()
            .enumerate()
            .filter(|(_, p)| p.changed)
            .map(|(i, p)| {
                p.changed = false;
                (i, p.durable.clone().expect("changed implies durable"))
            })
            .collect()
    }

    /// Batches not yet durable.
    pub fn open_batches(&self) -> usize {
        self.holds.len()
    }

    /// Memory the tracked batches cost, at most (see [`TRACKED_BATCH_BYTES`]).
    pub fn memory_bytes(&self) -> u64 {
        self.tracked * TRACKED_BATCH_BYTES + self.cursor_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(position: u64) -> Resume {
        Resume { position, cursor: None }
    }

    #[test]
    fn durable_moves_over_a_gap_free_prefix_only() {
        let mut t = Tracker::default();
        let p = t.add_partition();
        let a = t.open(p, at(10));
        let b = t.open(
            p,
            Resume {
                position: 20,
                cursor: Some("after:20".into()),
            },
        );
        let c = t.open(p, at(30));
        for id in [a, b, c] {
            t.hold(id); // one output each
            t.release(id); // processing done
        }
        assert_eq!(t.durable(p), None);
        t.release(b);
        assert_eq!(t.durable(p), None, "a is still held");
        t.release(a);
        assert_eq!(t.durable(p), Some(20));
        // The cursor travels with its position into the checkpoint.
        assert_eq!(
            t.take_changed(),
            vec![(
                p,
                Resume {
                    position: 20,
                    cursor: Some("after:20".into())
                }
            )]
        );
        assert!(t.take_changed().is_empty());
        t.release(c);
        assert_eq!(t.durable(p), Some(30));
        assert_eq!(t.open_batches(), 0);
    }

    #[test]
    fn memory_counts_every_batch_until_the_prefix_before_it_is_durable() {
        let mut t = Tracker::default();
        let p = t.add_partition();
        let first = t.open(p, at(1));
        let rest: Vec<u64> = (2..=100)
            .map(|i| {
                t.open(
                    p,
                    Resume {
                        position: i,
                        cursor: Some(format!("{i:020}")),
                    },
                )
            })
            .collect();
        for &id in &rest {
            t.release(id);
        }
        // The first batch is still held (its file is not durable): all 100 stay tracked.
        assert_eq!(t.open_batches(), 1);
        assert!(
            t.memory_bytes() >= 100 * TRACKED_BATCH_BYTES + 99 * 20,
            "{}",
            t.memory_bytes()
        );
        t.release(first);
        assert_eq!(t.memory_bytes(), 0);
    }

    #[test]
    fn partitions_are_independent() {
        let mut t = Tracker::default();
        let (p, q) = (t.add_partition(), t.add_partition());
        let a = t.open(p, at(5));
        let b = t.open(q, at(7));
        t.release(b);
        assert_eq!((t.durable(p), t.durable(q)), (None, Some(7)));
        t.release(a);
        assert_eq!(t.durable(p), Some(5));
    }

    #[test]
    #[should_panic(expected = "releasing an open batch")]
    fn over_release_is_a_programmer_error() {
        let mut t = Tracker::default();
        let p = t.add_partition();
        let a = t.open(p, at(1));
        t.release(a);
        t.release(a);
    }
}
