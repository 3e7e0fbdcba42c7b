//! Recovery of spill files left by a run that died: before any source starts.
//!
//! Owns: the start-up pass over `buffer.spill_dir`. For every spill file (every core's
//! directory, any run): check the header, walk the frames, and stop at the first one that fails
//! its length, checksum or archive check — a torn tail from a crash mid-write — keeping every
//! whole record before it. A whole record whose position is below its partition's checkpoint
//! was counted as durable because it was in this file (the segment released its batch holds
//! when it was spilled), so it is written to the lake now; a record at or past the checkpoint
//! is dropped from the file, because the source replays it. Then the file is deleted.
//!
//! Exactly once: the files written here have names derived from the spill file's run id, core
//! and segment (`recovered-<run>-c<core>-<segment>-<n>`), so recovering the same file twice (a crash during
//! recovery) overwrites the same objects instead of adding copies.
//!
//! Known gap: a file whose records had already reached the lake in a durable ETL file, when the
//! process died before deleting it, is flushed again; closing that window needs the upload
//! intents of the S3 issue (the intent names the records, recovery checks the object).

use super::row::{access_checked, frame_at, ColumnsBuilder};
use super::spill::{SpillHeader, EXTENSION};
use crate::pipeline::Plan;
use crate::store::{CheckpointStore, ObjectStore};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// What recovery did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub files: u64,
    /// Whole records below their checkpoint, written to the lake.
    pub records_flushed: u64,
    /// Whole records at or past their checkpoint, left to the source's replay.
    pub records_replayed: u64,
    /// One message per file whose tail was cut.
    pub torn: Vec<String>,
    pub lake_files: u64,
}

/// Every spill file under `root`, sorted.
pub fn spill_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir(root) else {
        return out;
    };
    for d in dirs.flatten() {
        if let Ok(files) = std::fs::read_dir(d.path()) {
            out.extend(
                files
                    .flatten()
                    .map(|f| f.path())
                    .filter(|p| p.extension().is_some_and(|e| e == EXTENSION)),
            );
        }
    }
    out.sort();
    out
}

/// Recover every spill file under `root` into `store` (see the module comment). Without a
/// checkpoint store nothing was ever counted as durable by a spill, so files are only deleted.
pub fn recover(
    root: &Path,
    plan: &Plan,
    store: &dyn ObjectStore,
    checkpoints: Option<&dyn CheckpointStore>,
) -> Result<Recovered, String> {
    let mut done = Recovered::default();
    let mut cps: HashMap<(String, String), Option<u64>> = HashMap::new();
    for path in spill_files(root) {
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let name = path.display().to_string();
        done.files += 1;
        let (header, head_len) = match SpillHeader::decode(&bytes) {
            Ok(h) => h,
            Err(e) => {
                // A crash before the header reached the disk: the segment was never counted
                // as spilled, so nothing in it is owed.
                done.torn.push(format!("{name}: {e}; file dropped"));
                remove(&path)?;
                continue;
            }
        };
        // Frames are read in place from a 16-aligned copy (rkyv's checked access needs it).
        let end = (head_len + header.used as usize).min(bytes.len());
        let mut region = super::ring::Buf::zeroed((end - head_len).next_multiple_of(16));
        region[..end - head_len].copy_from_slice(&bytes[head_len..end]);
        let region = &region[..end - head_len];

        // (table, hour, source name) → rows to flush.
        let mut groups: BTreeMap<(u16, i64, String), Vec<std::ops::Range<usize>>> = BTreeMap::new();
        let mut at = 0;
        loop {
            match frame_at(region, at) {
                Ok(None) => break,
                Ok(Some((range, next))) => {
                    let row = match access_checked(&region[range.clone()], at) {
                        Ok(r) => r,
                        Err(e) => {
                            done.torn.push(format!("{name}: {e}; the rest of the file was cut"));
                            break;
                        }
                    };
                    let h = row.head();
                    let (source, partition) = header.slots.get(h.slot as usize).ok_or_else(|| {
                        format!("{name}: frame at {at} names slot {} of {}", h.slot, header.slots.len())
                    })?;
                    let cp = *cps
                        .entry((source.clone(), partition.clone()))
                        .or_insert_with(|| checkpoints.and_then(|c| c.load(source, partition).ok().flatten()));
                    if cp.is_some_and(|cp| h.position < cp) {
                        groups.entry((h.table, h.hour, source.clone())).or_default().push(range);
                        done.records_flushed += 1;
                    } else {
                        done.records_replayed += 1;
                    }
                    at = next;
                }
                Err(e) => {
                    done.torn.push(format!("{name}: {e}; the rest of the file was cut"));
                    break;
                }
            }
        }
        for (n, ((table, hour, source_name), ranges)) in groups.into_iter().enumerate() {
            let table_name = header
                .tables
                .get(table as usize)
                .ok_or_else(|| format!("{name}: a record names table {table} of {}", header.tables.len()))?;
            let t = plan.tables.iter().find(|t| &t.name == table_name).ok_or_else(|| {
                format!("{name}: table {table_name:?} is no longer configured; keep it until the spill is recovered")
            })?;
            let types: Vec<_> = t.transforms.outputs.iter().map(|o| o.ty).collect();
            let mut cols = ColumnsBuilder::new(t.arrow_schema.clone(), &types, ranges.len());
            for r in ranges {
                let row = access_checked(&region[r.clone()], r.start).map_err(|e| format!("{name}: {e}"))?;
                if row.cells.len() != types.len() {
                    return Err(format!(
                        "{name}: table {table_name:?} now has {} columns, the spilled records {}; restore its schema until the spill is recovered",
                        types.len(),
                        row.cells.len()
                    ));
                }
                cols.append(row);
            }
            let batch = cols.finish(0);
            let props = crate::load::parquet::props_for_batch(&t.writer_props, &batch);
            let file = crate::load::parquet::encode(&batch, props).map_err(|e| format!("{name}: {e}"))?;
            let key = plan.layout.etl(
                &source_name,
                table_name,
                hour,
                &format!(
                    "recovered-{}-c{}-{:016x}-{n}",
                    header.run_id, header.core, header.segment
                ),
            );
            store.put(&key, &file).map_err(|e| e.to_string())?;
            done.lake_files += 1;
        }
        remove(&path)?;
    }
    Ok(done)
}

fn remove(path: &Path) -> Result<(), String> {
    std::fs::remove_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    Ok(())
}
