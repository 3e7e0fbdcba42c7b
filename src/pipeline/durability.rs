//! The pipeline's side of durability: what happens to a file once it leaves the core — its
//! bookkeeping and upload intent ([`Pipeline::in_flight`]), the store's confirmation
//! ([`Pipeline::on_durable`]: audit row, batch releases), the audit flush and the checkpoints
//! that follow it, and the retirement of intents (see `delivery` and `retiring`).
//!
//! Invariants: a checkpoint is only emitted after the audit files describing the data it
//! covers, in the same output list; an intent is retired only once `retiring` says no crash
//! could bring its records back.

use super::{Checkpoints, InFlightFile, Output, Pipeline};
use crate::audit::{crc32c_hex, FileRow};
use crate::lineage::Provenance;
use crate::load::layout::object_name;
use crate::load::{FileMeta, ReadyFile, Zone, NO_INDEX};
use crate::store::checkpoint::Checkpoint;
use crate::store::{Intent, IntentRun};

impl Pipeline {
    /// Write the pending audit rows, then the checkpoints of positions that became durable.
    /// The store applies a core's writes in order, so the checkpoint lands after the audit.
    pub fn flush_audit(&mut self, out: &mut Vec<Output>) {
        let now_us = self.clock.now_us();
        for (kind, batch, rows) in self.audit.take() {
            let name = self.next_file();
            let bytes = crate::load::parquet::encode(&batch, self.plan.audit_props.clone())
                .expect("audit batches always encode");
            let key = self.plan.layout.audit(kind, now_us, &name);
            out.push(Output::File(ReadyFile {
                meta: FileMeta::untabled(Zone::Audit, key, rows, NO_INDEX, Provenance::default()),
                bytes,
            }));
        }
        let changed = self.tracker.take_changed();
        if self.plan.checkpoints_enabled && !changed.is_empty() {
            let slots = changed.iter().map(|(slot, next)| (*slot, next.position)).collect();
            let checkpoints = changed
                .into_iter()
                .map(|(slot, next)| {
                    let p = &self.partitions[slot];
                    Checkpoint {
                        source: self.plan.sources[p.source as usize].name.clone(),
                        partition: p.id.clone(),
                        next_position: next.position,
                        cursor: next.cursor,
                    }
                })
                .collect();
            out.push(Output::Checkpoint(Checkpoints { checkpoints, slots }));
        }
        self.retire(out);
    }

    /// Queue the removal of every intent no longer needed.
    pub fn retire(&mut self, out: &mut Vec<Output>) {
        let ring = self.buffers.ring();
        let ids = self.retiring.take_retirable(|seg| ring.finished(seg));
        if !ids.is_empty() {
            out.push(Output::Retire(ids));
        }
    }

    /// After a drain, once every file is durable and its checkpoint acknowledged: no segment
    /// will be written again (the active one included), so only the checkpoints decide.
    pub fn retire_drained(&mut self, out: &mut Vec<Output>) {
        let ids = self.retiring.take_retirable(|_| true);
        if !ids.is_empty() {
            out.push(Output::Retire(ids));
        }
    }

    /// The checkpoint store confirmed a checkpoint write.
    pub fn checkpointed(&mut self, slots: &[(usize, u64)]) {
        self.retiring.acknowledged(slots);
        for &(slot, position) in slots {
            self.partitions[slot].checkpointed = Some(position);
        }
    }

    /// Intents of durable files not yet retired.
    pub fn live_intents(&self) -> usize {
        self.retiring.live()
    }

    /// Take back the buffer of a file the store has written, to reuse its memory.
    pub fn recycle(&mut self, zone: Zone, bytes: Vec<u8>) {
        if zone == Zone::Raw {
            self.raw.recycle(bytes);
        }
    }

    /// Split a ready file into its bookkeeping and its bytes.
    pub fn in_flight(&self, f: ReadyFile) -> (InFlightFile, Vec<u8>) {
        let meta = f.meta;
        let plan = &self.plan;
        let partitions = &self.partitions;
        let row = FileRow {
            run_id: plan.run_id.clone(),
            core: self.core as u32,
            zone: meta.zone.as_str().to_string(),
            key: meta.key.clone(),
            source: plan.sources.get(meta.source as usize).map(|s| s.name.clone()),
            table: plan.tables.get(meta.table as usize).map(|t| t.name.clone()),
            records: meta.records as i64,
            bytes: f.bytes.len() as i64,
            crc32c: crc32c_hex(&f.bytes),
            schema_version: (meta.zone == Zone::Etl).then_some(meta.schema_version as i64),
            event_time_min_us: meta.event_time_min_us,
            event_time_max_us: meta.event_time_max_us,
            positions: meta.provenance.ranges_json(|slot| partitions[slot].id.clone()),
            written_at_us: 0,
        };
        let intent = plan.checkpoints_enabled && matches!(meta.zone, Zone::Etl | Zone::Quarantine);
        (InFlightFile { meta, row, intent }, f.bytes)
    }

    /// The intent to record before a file's upload (see `delivery`), if it has one: ETL and
    /// quarantine files, when checkpoints are on.
    pub fn intent_for(&self, f: &InFlightFile) -> Option<Intent> {
        let (plan, partitions) = (&self.plan, &self.partitions);
        f.intent.then(|| Intent {
            id: object_name(&f.meta.key).to_string(),
            row: f.row.clone(),
            runs: f
                .meta
                .provenance
                .runs
                .iter()
                .map(|r| {
                    let p = &partitions[r.slot];
                    IntentRun {
                        source: plan.sources[p.source as usize].name.clone(),
                        partition: p.id.clone(),
                        first: r.first,
                        last: r.last,
                    }
                })
                .collect(),
        })
    }

    /// The store confirmed a file: account for it, add its audit row, release its batches.
    pub fn on_durable(&mut self, done: InFlightFile) {
        let InFlightFile {
            meta: f,
            mut row,
            intent,
        } = done;
        let zone = f.zone as usize;
        self.counters.files[zone] += 1;
        self.counters.file_bytes[zone] += row.bytes as u64;
        if f.zone == Zone::Audit {
            return;
        }
        row.written_at_us = self.clock.now_us();
        self.audit.add_file(row, self.clock.monotonic_ns());
        if intent {
            self.retiring.add(object_name(&f.key), &f);
        }
        if f.zone == Zone::Etl {
            let fx = self.buffers.durable(&f.ring);
            self.apply(fx);
        } else {
            for id in f.provenance.batch_ids {
                self.tracker.release(id);
            }
        }
    }
}
