//! The pipeline's side of the record ring: what the core's tasks need to drive buffering —
//! admission against the memory budget, relief, spill headers, consuming encoded records, and
//! applying ring effects (tracker releases, spill files to delete).
//!
//! Invariants: every ring event's [`Effects`] go through [`Pipeline::apply`], so a batch hold
//! released by a segment reaches the tracker exactly once.

use super::{Output, Pipeline};
use crate::buffer::ring::{Effects, Loc};
use crate::buffer::spill::SpillHeader;
use crate::buffer::{BufferSet, Sealed};
use arrow_array::RecordBatch;

impl Pipeline {
    /// The core's buffers (the encoder reads sealed records through them).
    pub fn buffers(&self) -> &BufferSet {
        &self.buffers
    }

    /// All records of a sealed buffer as one record batch (tests and benches; the encoder
    /// builds bounded chunks instead).
    pub fn sealed_batch(&self, sealed: &Sealed) -> RecordBatch {
        let mut cols = self.buffers.columns(sealed.key.table, sealed.records());
        self.buffers.build(&sealed.locs, &mut cols, 0)
    }

    /// The encoder is done with these records of a sealed buffer.
    pub fn consume(&mut self, locs: &[Loc]) {
        let fx = self.buffers.consume(locs);
        self.apply(fx);
    }

    /// Release the holds and queue the spill-file deletions a ring event asks for.
    pub fn apply(&mut self, fx: Effects) {
        for id in fx.release {
            self.tracker.release(id);
        }
        for &seg in &fx.delete {
            self.retiring.deleting(seg);
        }
        self.spill_deletes.extend(fx.delete);
    }

    /// The core deleted the spill file of `seg`.
    pub fn spill_deleted(&mut self, seg: u64) {
        self.retiring.deleted(seg);
    }

    /// The header of the spill file of segment `seg` (`used` bytes of records).
    pub fn spill_header(&self, seg: u64, used: usize) -> SpillHeader {
        SpillHeader {
            run_id: self.plan.run_id.clone(),
            core: self.core,
            segment: seg,
            used: used as u64,
            created_us: self.clock.now_us(),
            slots: self
                .partitions
                .iter()
                .map(|p| (self.plan.sources[p.source as usize].name.clone(), p.id.clone()))
                .collect(),
            tables: self.plan.tables.iter().map(|t| t.name.clone()).collect(),
        }
    }

    /// Spill files whose records are all durable in the lake: the core deletes them.
    pub fn take_spill_deletes(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.spill_deletes)
    }

    /// Mutable access to the buffers (spill and read-back are driven by the core).
    pub fn buffers_mut(&mut self) -> &mut BufferSet {
        &mut self.buffers
    }

    /// Memory counted in the core's budget (`buffer.memory_bytes_max`): buffered records and
    /// their index, and the bookkeeping that grows while the store is slow (tracked batches,
    /// unflushed audit rows).
    pub fn memory_bytes(&self) -> u64 {
        self.buffers.memory_bytes() + self.bookkeeping_bytes()
    }

    fn bookkeeping_bytes(&self) -> u64 {
        self.tracker.memory_bytes() + self.audit.memory_bytes()
    }

    /// Whether the core must stop fetching (it is at its memory budget).
    pub fn over_budget(&self) -> bool {
        self.buffers.over_budget(self.bookkeeping_bytes())
    }

    /// Over budget: seal the buffers holding the oldest records (see [`BufferSet::relieve`]).
    /// Returns whether anything was sealed.
    pub fn relieve(&mut self, out: &mut Vec<Output>) -> bool {
        let sealed = self.buffers.relieve();
        let any = !sealed.is_empty();
        for s in sealed {
            let o = self.etl_output(s);
            out.push(o);
        }
        any
    }
}
