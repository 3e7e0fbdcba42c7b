//! Placement: which core owns a source partition. A pure function, so every part of the
//! system (and every test) computes the same owner without asking anyone.
//!
//! `core = (ordinal + offset(source)) mod cores`, where `ordinal` is the partition's dense
//! number within its source and `offset` is a stable hash of the source name. Consecutive
//! partitions go round-robin over the cores (balanced by construction, unlike a hash of the
//! partition id), and the per-source offset spreads single-partition sources over the cores
//! instead of stacking them on core 0.

use crate::lineage::fnv1a;

/// Index (into the configured core list) of the core that owns partition `ordinal` of `source`.
pub fn core_for(source: &str, ordinal: u64, cores: usize) -> usize {
    assert!(cores > 0, "placement needs at least one core");
    let offset = fnv1a(source.as_bytes()) % cores as u64;
    ((ordinal % cores as u64 + offset) % cores as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_and_stable() {
        for cores in 1..=16 {
            let mut per_core = vec![0; cores];
            for p in 0..(cores as u64 * 10) {
                per_core[core_for("gen", p, cores)] += 1;
            }
            assert!(per_core.iter().all(|&n| n == 10), "{cores} cores: {per_core:?}");
        }
        // A pure function of stable inputs: these values are pinned, because a change would move
        // every partition (and its checkpointed state) to another core after an upgrade.
        let two: Vec<usize> = (0..4).map(|p| core_for("generator", p, 2)).collect();
        let three: Vec<usize> = (0..4).map(|p| core_for("generator", p, 3)).collect();
        assert_eq!((two, three), (vec![0, 1, 0, 1], vec![1, 2, 0, 1]));
        assert_eq!(core_for("generator", 3, 1), 0);
    }

    #[test]
    fn single_partition_sources_spread_over_cores() {
        let used: std::collections::HashSet<usize> = (0..32).map(|i| core_for(&format!("source-{i}"), 0, 4)).collect();
        assert_eq!(used.len(), 4);
    }
}
