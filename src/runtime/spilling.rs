//! Spilling, seen from a core: writing the ring's oldest closed segment to the core's spill
//! directory when the buffers are over budget, reading a spilled segment's window back for the
//! encoder, and deleting spill files once every record in them is durable in the lake.
//!
//! The spill format and its directory are `buffer::spill`'s; this file is the glue between
//! them, the ring (which segment, when) and the pipeline (the batch holds a spill releases),
//! which only the core sees together.

use super::context::CoreCtx;

impl CoreCtx {
    /// Spill the oldest closed segment that still has unencoded records, if the spill has room.
    /// Returns whether one was spilled.
    pub(super) async fn spill_one(&self) -> bool {
        let Some(spill) = &self.spill else { return false };
        let (header, mut records) = {
            let pipe = self.pipe.borrow();
            let Some((seg, bytes)) = pipe.buffers().ring().spill_candidate() else {
                return false;
            };
            if !spill.has_room(bytes.len()) {
                return false;
            }
            // The copy into the DMA buffer happens in `write`; this one keeps the ring free
            // to change while the write is in flight (the encoder may consume the segment).
            (pipe.spill_header(seg, bytes.len()), bytes.to_vec())
        };
        crate::buffer::row::fill_crcs(&mut records);
        let seg = header.segment;
        match spill.write(&header, &records).await {
            Ok(()) => {
                let mut pipe = self.pipe.borrow_mut();
                let fx = pipe.buffers_mut().ring_mut().spilled(seg);
                pipe.apply(fx);
                pipe.counters.spill_writes += 1;
                pipe.counters.set_spill_bytes(spill.bytes());
                true
            }
            Err(e) => {
                self.fail(format!("spilling segment {seg} failed, stopping the run: {e}"), true);
                false
            }
        }
    }

    /// Read back the window of a spilled segment that holds `run` (locations in one segment,
    /// in order), if the ring needs it.
    pub(super) async fn read_back(&self, run: &[crate::buffer::ring::Loc]) -> Result<(), String> {
        let seg = run[0].seg;
        if !self.pipe.borrow().buffers().ring().needs_readback(seg) {
            return Ok(());
        }
        let last = run[run.len() - 1];
        let (from, to) = (run[0].off as usize, (last.off + last.len) as usize);
        let spill = self
            .spill
            .as_ref()
            .expect("a spilled segment implies a spill directory");
        let (start, rr) = spill.read(seg, from, to).await.map_err(|e| e.to_string())?;
        let mut pipe = self.pipe.borrow_mut();
        pipe.buffers_mut().ring_mut().set_readback(seg, start, Box::new(rr));
        pipe.counters.spill_reads += 1;
        Ok(())
    }

    /// Delete the spill files whose records are all durable in the lake.
    pub(super) async fn delete_spilled(&self) {
        let Some(spill) = &self.spill else { return };
        let segs = self.pipe.borrow_mut().take_spill_deletes();
        for seg in segs {
            match spill.remove(seg).await {
                Ok(()) => {
                    let mut pipe = self.pipe.borrow_mut();
                    pipe.spill_deleted(seg);
                    pipe.counters.set_spill_bytes(spill.bytes());
                }
                Err(e) => self.fail(format!("deleting spill file of segment {seg}: {e}"), false),
            }
        }
    }
}
