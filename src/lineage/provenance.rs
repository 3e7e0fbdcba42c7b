//! Provenance: where an output's records came from, from the first record buffered to the
//! upload intent that names them (see [`Provenance`]).
//!
//! Bounds: one range per source partition in the output, and one run per stretch of a
//! partition's consecutive records ([`Provenance::memory_bytes`] counts them for the budget).

/// Where an output's records came from: the fetch batches it holds (for the tracker), the
/// position range per source partition (for the audit trail), and the exact runs of records it
/// holds (for the delivery contract: an upload intent names them, and after a crash the
/// source's replay skips them).
///
/// A run `[first, last]` of a partition claims *every* record of that partition with a
/// position in it. Positions need not be dense (file offsets, sequence numbers), so contiguity
/// is decided by the record's ordinal — its index in the partition's stream in this process —
/// not by the position: a run grows only while the next record of its partition comes here.
#[derive(Debug, Default, Clone)]
pub struct Provenance {
    pub batch_ids: Vec<u64>,
    /// (partition slot, first position, last position), in first-seen order.
    pub ranges: Vec<(usize, u64, u64)>,
    /// Exact runs, in arrival order (a partition's runs ascend).
    pub runs: Vec<Run>,
    /// Index into `ranges` of the last partition noted.
    last: usize,
    /// Per entry of `ranges`: index into `runs` of that partition's latest run (`usize::MAX`:
    /// none yet).
    latest_run: Vec<usize>,
}

/// Records `first..=last` (positions) of partition `slot`, all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub slot: usize,
    pub first: u64,
    pub last: u64,
    /// Ordinal the next record must have to extend this run.
    next_ordinal: u64,
}

impl Provenance {
    /// Heap bytes it holds (its vectors' capacity): exact runs can be one per record when a
    /// partition's records alternate between files (event hours), so this is per-record memory.
    pub fn memory_bytes(&self) -> u64 {
        (self.batch_ids.capacity() * std::mem::size_of::<u64>()
            + self.ranges.capacity() * std::mem::size_of::<(usize, u64, u64)>()
            + self.runs.capacity() * std::mem::size_of::<Run>()
            + self.latest_run.capacity() * std::mem::size_of::<usize>()) as u64
    }

    /// Note one record with its position and ordinal (see the type's comment); returns true
    /// if it is the first record of `batch_id` here (the caller then takes a tracker hold on
    /// the batch). Records arrive batch by batch, so only the last batch id and the last
    /// range need checking on the common path.
    #[inline]
    pub fn note(&mut self, batch_id: u64, slot: usize, position: u64, ordinal: u64) -> bool {
        let new_batch = self.note_batch(batch_id);
        let i = self.note_range(slot, position, position);
        match self.runs.get_mut(self.latest_run[i]) {
            Some(run) if run.next_ordinal == ordinal => {
                run.last = position;
                run.next_ordinal += 1;
            }
            _ => {
                self.latest_run[i] = self.runs.len();
                self.runs.push(Run {
                    slot,
                    first: position,
                    last: position,
                    next_ordinal: ordinal + 1,
                });
            }
        }
        new_batch
    }

    /// Note a whole batch's position range without runs (the RAW zone, which is delivered at
    /// least once and names its range in the object key). Returns whether the batch is new here.
    pub fn note_span(&mut self, batch_id: u64, slot: usize, first: u64, last: u64) -> bool {
        let new_batch = self.note_batch(batch_id);
        self.note_range(slot, first, last);
        new_batch
    }

    fn note_batch(&mut self, batch_id: u64) -> bool {
        let new_batch = self.batch_ids.last() != Some(&batch_id);
        if new_batch {
            self.batch_ids.push(batch_id);
        }
        new_batch
    }

    /// Widen `slot`'s range to cover `first..=last`; returns the range's index.
    fn note_range(&mut self, slot: usize, first: u64, last: u64) -> usize {
        let i = match self.ranges.get(self.last).filter(|r| r.0 == slot) {
            Some(_) => self.last,
            None => match self.ranges.iter().position(|r| r.0 == slot) {
                Some(i) => i,
                None => {
                    self.ranges.push((slot, first, last));
                    self.latest_run.push(usize::MAX);
                    self.ranges.len() - 1
                }
            },
        };
        let r = &mut self.ranges[i];
        r.1 = r.1.min(first);
        r.2 = r.2.max(last);
        self.last = i;
        i
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provenance_tracks_ranges_and_batches() {
        let mut p = Provenance::default();
        assert!(p.note(1, 0, 10, 0));
        assert!(!p.note(1, 0, 11, 1));
        assert!(p.note(2, 1, 5, 0));
        assert!(p.note(3, 0, 12, 2));
        // Ordinal 3 went elsewhere: position 14 starts a new run of partition 0.
        assert!(!p.note(3, 0, 14, 4));
        assert!(p.note_span(4, 2, 100, 120));
        assert_eq!(p.batch_ids, vec![1, 2, 3, 4]);
        assert_eq!(p.ranges, vec![(0, 10, 14), (1, 5, 5), (2, 100, 120)]);
        let runs: Vec<_> = p.runs.iter().map(|r| (r.slot, r.first, r.last)).collect();
        assert_eq!(runs, vec![(0, 10, 12), (1, 5, 5), (0, 14, 14)]);
        assert_eq!(
            p.ranges_json(|s| format!("p{s}")),
            r#"[{"first":10,"last":14,"partition":"p0"},{"first":5,"last":5,"partition":"p1"},{"first":100,"last":120,"partition":"p2"}]"#
        );
    }
}
