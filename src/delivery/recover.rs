//! Recovery of spill files left by a run that died: before any source starts.
//!
//! Owns: the start-up pass over `buffer.spill_dir`. For every spill file (every core's
//! directory, any run): check the header, walk the frames, and tell a torn file from a corrupt
//! one. **Torn**: the file is shorter than its header's `used` says (a crash mid-write: the
//! segment was never counted as spilled), or its records end in zeros past the written end;
//! every whole record before the tear is kept. **Corrupt**: a file written whole whose frame
//! fails its length, checksum or archive check, or whose records end in non-zero bytes. Its
//! records may have been counted as durable, so recovery stops the start with the file and
//! frame named, and leaves the file in place (the operator moves it aside to start without it). A whole record whose position is below its partition's checkpoint
//! was counted as durable because it was in this file (the segment released its batch holds
//! when it was spilled), so it is written to the lake now; a record at or past the checkpoint
//! is dropped from the file, because the source replays it. Then the file is deleted.
//!
//! Exactly once: the files written here have names derived from the spill file's run id, core
//! and segment (`recovered-<run>-c<core>-<segment>-<n>`), so recovering the same file twice (a crash during
//! recovery) overwrites the same objects instead of adding copies.
//!
//! A record that had already reached the lake in an ETL file of the crashed run — the file was
//! durable but the spill file not yet deleted — is in the [`Delivered`] set recovery derived
//! from the committed upload intents (see `delivery`), and is not written again.

use crate::audit::FileRow;
use crate::buffer::row::{access_checked, frame_at, ColumnsBuilder};
use crate::buffer::spill::{spill_files, SpillHeader};
use crate::lineage::{Delivered, Provenance};
use crate::pipeline::Plan;
use crate::store::{CheckpointStore, ObjectStore};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// What recovery did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Recovered {
    pub files: u64,
    /// Whole records below their checkpoint, written to the lake.
    pub records_flushed: u64,
    /// Whole records at or past their checkpoint, left to the source's replay.
    pub records_replayed: u64,
    /// One message per file whose tail was cut.
    pub torn: Vec<String>,
    pub lake_files: u64,
    /// Whole records below their checkpoint already in the lake in a file of the crashed run
    /// (its intent is committed): not written again.
    pub records_delivered: u64,
    /// Audit rows of the files written here.
    pub rows: Vec<FileRow>,
}

/// Records of one spill file to flush into one lake file.
struct Group {
    ranges: Vec<std::ops::Range<usize>>,
    /// Partition position ranges (for the audit row).
    provenance: Provenance,
    /// (min, max) event time.
    event_time: (i64, i64),
}

impl Default for Group {
    fn default() -> Group {
        Group {
            ranges: Vec::new(),
            provenance: Provenance::default(),
            event_time: (i64::MAX, i64::MIN),
        }
    }
}

/// Recover every spill file under `root` into `store` (see the module comment). Without a
/// checkpoint store nothing was ever counted as durable by a spill, so files are only deleted.
pub fn recover(
    root: &Path,
    plan: &Plan,
    store: &dyn ObjectStore,
    checkpoints: Option<&dyn CheckpointStore>,
    delivered: &Delivered,
) -> Result<Recovered, String> {
    let mut done = Recovered::default();
    let mut cps: HashMap<(String, String), Option<u64>> = HashMap::new();
    for path in spill_files(root) {
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let name = path.display().to_string();
        done.files += 1;
        if let Some(v) = crate::buffer::spill::other_version(&bytes) {
            return Err(format!(
                "{name}: spill format version {}, this build reads version {}: finish it with the \
                 release that wrote it (start and drain that release once) before upgrading",
                char::from(v),
                char::from(crate::buffer::spill::MAGIC[7])
            ));
        }
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
        // Written whole: a failed check past here is corruption, not a tear.
        let whole = bytes.len() >= head_len + header.used as usize;
        let mut region = crate::buffer::ring::Buf::zeroed((end - head_len).next_multiple_of(16));
        region[..end - head_len].copy_from_slice(&bytes[head_len..end]);
        let region = &region[..end - head_len];
        let corrupt = |why: String| {
            format!(
                "{name}: corrupt: {why}, in a spill file written whole, so its records may have been \
                 counted as durable. It is left in place; move it out of buffer.spill_dir to start \
                 without it (its records below their checkpoint are then missing from the lake)"
            )
        };
        let mut torn = |why: String| done.torn.push(format!("{name}: {why}; the rest of the file was cut"));

        // (table, hour, source name) → rows to flush.
        let mut groups: BTreeMap<(u16, i64, String), Group> = BTreeMap::new();
        let mut at = 0;
        loop {
            let frame = frame_at(region, at).and_then(|f| match f {
                Some((range, next)) => access_checked(&region[range.clone()], at).map(|row| Some((range, next, row))),
                None => Ok(None),
            });
            match frame {
                Ok(None) => {
                    if !region[at.min(region.len())..].iter().all(|&b| b == 0) {
                        return Err(corrupt(format!("the records end at byte {at} with data after them")));
                    }
                    break;
                }
                Ok(Some((range, next, row))) => {
                    let h = row.head();
                    let (source, partition) = header.slots.get(h.slot as usize).ok_or_else(|| {
                        format!("{name}: frame at {at} names slot {} of {}", h.slot, header.slots.len())
                    })?;
                    let cp = *cps.entry((source.clone(), partition.clone())).or_insert_with(|| {
                        checkpoints.and_then(|c| c.load(source, partition).ok().flatten().map(|r| r.position))
                    });
                    if cp.is_none_or(|cp| h.position >= cp) {
                        done.records_replayed += 1;
                    } else if delivered.contains(source, partition, h.position) {
                        done.records_delivered += 1;
                    } else {
                        let g = groups.entry((h.table, h.hour, source.clone())).or_default();
                        g.ranges.push(range);
                        g.provenance.note_span(0, h.slot as usize, h.position, h.position);
                        g.event_time = (g.event_time.0.min(h.event_time_us), g.event_time.1.max(h.event_time_us));
                        done.records_flushed += 1;
                    }
                    at = next;
                }
                Err(e) if whole => return Err(corrupt(e.to_string())),
                Err(e) => {
                    torn(e.to_string());
                    break;
                }
            }
        }
        for (n, ((table, hour, source_name), group)) in groups.into_iter().enumerate() {
            let Group {
                ranges,
                provenance,
                event_time,
            } = group;
            let table_name = header
                .tables
                .get(table as usize)
                .ok_or_else(|| format!("{name}: a record names table {table} of {}", header.tables.len()))?;
            let t = plan.tables.iter().find(|t| &t.name == table_name).ok_or_else(|| {
                format!("{name}: table {table_name:?} is no longer configured; keep it until the spill is recovered")
            })?;
            let types: Vec<_> = t.transforms.outputs.iter().map(|o| o.ty).collect();
            let records = ranges.len();
            let mut cols = ColumnsBuilder::new(t.arrow_schema.clone(), &types, records);
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
            done.rows.push(FileRow {
                run_id: plan.run_id.clone(),
                core: header.core as u32,
                zone: "etl".into(),
                source: Some(source_name),
                table: Some(table_name.clone()),
                records: records as i64,
                bytes: file.len() as i64,
                crc32c: crate::audit::crc32c_hex(&file),
                schema_version: Some(t.schema_version as i64),
                event_time_min_us: Some(event_time.0),
                event_time_max_us: Some(event_time.1),
                positions: provenance.ranges_json(|slot| header.slots[slot].1.clone()),
                written_at_us: 0,
                key,
            });
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
