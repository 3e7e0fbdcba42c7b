//! The delivery contract: every source record lands in the ETL (or quarantine) zone exactly
//! once, whatever moment the process dies at.
//!
//! Owns: upload [`Intent`]s, their store ([`IntentStore`]), the [`Delivered`] position sets
//! that recovery derives from them, and the per-partition [`Skip`](crate::lineage::Skip) cursor the replay uses.
//!
//! The protocol, per ETL or quarantine file (docs/delivery.md says why each step is where it is):
//! 1. **Intent** — before the upload, the edge records the object key and the exact runs of
//!    source positions the file holds (`lineage::Provenance::runs`), durably;
//! 2. **Upload** — the object appears atomically (single PUT, or a completed multipart upload);
//! 3. **Audit** — the file's audit row is written with the core's next audit flush;
//! 4. **Checkpoint** — once every earlier position of a partition is durable, its checkpoint
//!    moves past them (after the audit files, see `runtime::core`);
//! 5. **Retire** — the intent is removed once the checkpoints cover all of its runs and no
//!    spill file still holds any of its records.
//!
//! Recovery ([`resolve`]) runs before anything else on start: an intent whose object exists is
//! *committed* — its audit row is written again (the object key is the row's identity) and its
//! runs become the [`Delivered`] set, which spill recovery and the sources' replay pass over; an
//! intent whose object does not exist is an *orphan* — its partial upload is aborted and the
//! intent removed, and its records come back from the spill or the source. A complete object is
//! never deleted: its records may straddle a checkpoint, so deleting it could lose the part the
//! checkpoint has already passed.
//!
//! Bounds: live intents per core are bounded by the files in flight plus those waiting for a
//! checkpoint (one audit interval); intents left by crashed runs are retired on a later start.

use crate::store::{Intent, IntentStore};

pub mod recover;

use crate::audit::FileRow;
use crate::lineage::Delivered;
use crate::store::{CheckpointStore, ObjectStore};
use std::collections::HashMap;

/// What [`resolve`] found.
#[derive(Debug, Default)]
pub struct Resolution {
    pub delivered: Delivered,
    /// Intents whose object exists; their audit rows must be written again.
    pub committed: Vec<Intent>,
    /// Intents whose object never completed: aborted and removed.
    pub orphans: u64,
}

impl Resolution {
    /// Audit rows for the committed files, stamped `written_at_us`.
    pub fn file_rows(&self, written_at_us: i64) -> Vec<FileRow> {
        self.committed
            .iter()
            .map(|i| FileRow {
                written_at_us,
                ..i.row.clone()
            })
            .collect()
    }
}

/// Resolve every open intent against the store (see the module comment). Idempotent: a
/// crash during resolution leaves intents that resolve the same way next time.
pub fn resolve(intents: &dyn IntentStore, store: &dyn ObjectStore) -> Result<Resolution, String> {
    let mut r = Resolution::default();
    let mut delivered = Delivered::default();
    for intent in intents.list()? {
        let exists = store.exists(&intent.row.key).map_err(|e| e.to_string())?;
        if exists {
            for run in &intent.runs {
                delivered.add(&run.source, &run.partition, run.first, run.last);
            }
            r.committed.push(intent);
        } else {
            store.abort_partial(&intent.row.key).map_err(|e| e.to_string())?;
            intents.remove(&[intent.id])?;
            r.orphans += 1;
        }
    }
    r.delivered = delivered.seal();
    Ok(r)
}

/// Remove committed intents whose runs the checkpoints have all passed (call after spill
/// recovery, which still needs them). Returns how many were retired.
pub fn retire_covered(
    committed: &[Intent],
    intents: &dyn IntentStore,
    checkpoints: &dyn CheckpointStore,
) -> Result<u64, String> {
    let mut cache: HashMap<(&str, &str), Option<u64>> = HashMap::new();
    let mut retire = Vec::new();
    for intent in committed {
        let mut covered = true;
        for run in &intent.runs {
            let cp = match cache.get(&(run.source.as_str(), run.partition.as_str())) {
                Some(cp) => *cp,
                None => {
                    let cp = checkpoints.load(&run.source, &run.partition)?.map(|r| r.position);
                    cache.insert((&run.source, &run.partition), cp);
                    cp
                }
            };
            covered &= cp.is_some_and(|next| run.last < next);
        }
        if covered {
            retire.push(intent.id.clone());
        }
    }
    intents.remove(&retire)?;
    Ok(retire.len() as u64)
}

#[cfg(test)]
mod tests;
