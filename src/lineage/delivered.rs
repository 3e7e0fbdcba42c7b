//! Positions already delivered: the runs committed upload intents name, merged per partition
//! ([`Delivered`]), and each partition's cursor over them as its replay moves forward ([`Skip`]).
//!
//! Bounds: one entry per committed run; a partition's [`Skip`] pops them as it passes them.

use std::collections::HashMap;

/// Positions already delivered, per (source, partition): sorted, merged, inclusive runs.
#[derive(Debug, Default, Clone)]
pub struct Delivered {
    runs: HashMap<(String, String), Vec<(u64, u64)>>,
}

impl Delivered {
    pub fn add(&mut self, source: &str, partition: &str, first: u64, last: u64) {
        self.runs
            .entry((source.to_string(), partition.to_string()))
            .or_default()
            .push((first, last));
    }

    /// Sort and merge every partition's runs (call once, after the last `add`).
    pub fn seal(mut self) -> Delivered {
        for runs in self.runs.values_mut() {
            runs.sort_unstable();
            let mut merged: Vec<(u64, u64)> = Vec::with_capacity(runs.len());
            for &(first, last) in runs.iter() {
                match merged.last_mut() {
                    Some(m) if first <= m.1.saturating_add(1) => m.1 = m.1.max(last),
                    _ => merged.push((first, last)),
                }
            }
            *runs = merged;
        }
        self
    }

    pub fn contains(&self, source: &str, partition: &str, position: u64) -> bool {
        let Some(runs) = self.runs.get(&(source.to_string(), partition.to_string())) else {
            return false;
        };
        let i = runs.partition_point(|r| r.1 < position);
        runs.get(i).is_some_and(|r| r.0 <= position)
    }

    /// The replay cursor of one partition.
    pub fn skip(&self, source: &str, partition: &str) -> Skip {
        let mut runs = self
            .runs
            .get(&(source.to_string(), partition.to_string()))
            .cloned()
            .unwrap_or_default();
        runs.reverse();
        Skip { runs }
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Records covered, over all partitions.
    pub fn positions(&self) -> u64 {
        self.runs.values().flatten().map(|r| r.1 - r.0 + 1).sum()
    }
}

/// One partition's delivered runs, consumed as its replay moves forward: positions of a
/// partition arrive in ascending order, so each check is O(1) amortised.
#[derive(Debug, Default, Clone)]
pub struct Skip {
    /// Runs in descending order: the next one is at the end.
    runs: Vec<(u64, u64)>,
}

impl Skip {
    pub fn contains(&mut self, position: u64) -> bool {
        while let Some(&(first, last)) = self.runs.last() {
            if position > last {
                self.runs.pop();
                continue;
            }
            return position >= first;
        }
        false
    }
}
