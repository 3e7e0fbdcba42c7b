//! The outbox's pump: hands a core's submissions to the I/O edge as it takes them, reading
//! parked files back in their turn, and applies the edge's acknowledgements to the pipeline
//! (see `super::outbox` for the rules of what may go when).
//!
//! Bounds: a submission waits (backpressure) while the outbox is full in memory, in
//! bookkeeping and in the spill; the pump polls every [`EDGE_POLL_INTERVAL`] while anything is
//! unacknowledged and otherwise sleeps until woken.

use super::context::CoreCtx;
use super::edge::Job;
use super::outbox::{Body, InFlight, Next, Sent};
use crate::telemetry::StageId;
use glommio::channels::local_channel::LocalReceiver;
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

/// How long a core sleeps while it waits for the edge (queue full, or draining).
pub const EDGE_POLL_INTERVAL: Duration = Duration::from_millis(1);

impl CoreCtx {
    /// Apply every acknowledgement that has arrived.
    /// Returns false once the edge is gone (its reply queue disconnected): no more
    /// acknowledgements will ever come.
    pub(super) fn poll_acks(&self) -> bool {
        loop {
            let acked = self.outbox.borrow_mut().ack();
            let (done, item) = match acked {
                Ok(Some(a)) => a,
                Ok(None) => return true,
                Err(()) => return false,
            };
            self.pipe.borrow_mut().counters.store_retries += u64::from(done.retries);
            match (done.result, item) {
                (Ok(()), InFlight::File(f)) => {
                    let mut pipe = self.pipe.borrow_mut();
                    pipe.hist.record(StageId::Write, done.write_ns);
                    if let Some(bytes) = done.bytes {
                        pipe.recycle(f.meta.zone, bytes);
                    }
                    pipe.on_durable(*f);
                }
                (Ok(()), InFlight::Checkpoint(slots)) => self.pipe.borrow_mut().checkpointed(&slots),
                (Ok(()), InFlight::Retire) => {}
                (Err(e), _) => self.fail(format!("store write failed, stopping the run: {e}"), true),
            }
        }
    }

    /// Hand a file to the outbox: its bytes wait in memory while the outbox has room, else on
    /// disk while the spill has room; else (backpressure) this task waits for the store.
    pub(super) async fn submit_file(&self, file: crate::load::ReadyFile) {
        let (in_flight, mut bytes) = self.pipe.borrow().in_flight(file);
        let key = in_flight.meta.key.clone();
        // A file that will wait keeps only its bytes: a buffer sized for a full segment (RAW,
        // sealed early by age) goes back to its writer rather than sit mostly empty, and resident.
        if bytes.capacity() - bytes.len() > bytes.len() / 4 && self.outbox.borrow().would_wait() {
            let exact = bytes.clone();
            self.pipe
                .borrow_mut()
                .recycle(in_flight.meta.zone, std::mem::replace(&mut bytes, exact));
        }
        let t0 = self.shared.clock.monotonic_ns();
        let mut waited = false;
        let meta = in_flight.memory_bytes();
        let body = loop {
            let (fits, may_park) = {
                let ob = self.outbox.borrow();
                (ob.fits_in_memory(bytes.len(), meta), ob.may_park(meta))
            };
            if fits {
                break Body::Memory(bytes);
            }
            if let Some(spill) = self
                .spill
                .as_ref()
                .filter(|s| may_park && s.has_room_to_park(bytes.len()))
            {
                match spill.park(&bytes).await {
                    Ok(id) => {
                        let mut pipe = self.pipe.borrow_mut();
                        pipe.counters.files_parked += 1;
                        pipe.counters.set_spill_bytes(spill.bytes());
                        break Body::Parked { id, len: bytes.len() };
                    }
                    Err(e) => {
                        self.fail(format!("parking {key} on disk failed, stopping the run: {e}"), true);
                        return;
                    }
                }
            }
            if !self.poll_acks() {
                self.fail("the I/O edge has stopped".into(), true);
                return;
            }
            waited = true;
            glommio::timer::sleep(EDGE_POLL_INTERVAL).await;
        };
        if waited {
            self.waited_since(t0);
        }
        self.outbox.borrow_mut().put(key, body, in_flight);
        self.wake_pump();
    }

    /// Hand the outbox what it can send to the edge now, reading parked files back in their
    /// turn. Returns whether anything moved.
    pub(super) async fn pump(&self) -> bool {
        let mut moved = false;
        loop {
            let next = self.outbox.borrow_mut().next_step();
            match next {
                Next::Send(mut job) => {
                    if let Job::Put { token, intent, .. } = &mut job {
                        if intent.is_none() {
                            let ob = self.outbox.borrow();
                            let f = ob.file(*token).expect("a put's bookkeeping waits for its ack");
                            *intent = self.pipe.borrow().intent_for(f).map(Box::new);
                        }
                    }
                    let sent = self.outbox.borrow_mut().send(job);
                    match sent {
                        Sent::Yes => moved = true,
                        Sent::Full => return moved,
                        Sent::Gone => {
                            self.fail("the I/O edge has stopped".into(), true);
                            return moved;
                        }
                    }
                }
                Next::Unpark { token, id, len } => {
                    let spill = self.spill.as_ref().expect("a parked file implies a spill directory");
                    match spill.unpark(id, len).await {
                        Ok(bytes) => {
                            self.outbox.borrow_mut().unparked(token, bytes);
                            self.pipe.borrow_mut().counters.set_spill_bytes(spill.bytes());
                            moved = true;
                        }
                        Err(e) => {
                            self.fail(
                                format!("reading back a parked file failed, stopping the run: {e}"),
                                true,
                            );
                            return moved;
                        }
                    }
                }
                Next::Wait => return moved,
            }
        }
    }

    /// Wait until the edge has acknowledged everything this core submitted.
    pub(super) async fn settle(&self) {
        loop {
            let edge_alive = self.poll_acks();
            let pending = self.outbox.borrow().unacked();
            if pending == 0 {
                return;
            }
            if !edge_alive {
                self.fail(format!("the I/O edge stopped with {pending} writes unconfirmed"), true);
                return;
            }
            glommio::timer::sleep(EDGE_POLL_INTERVAL).await;
        }
    }
}

/// The outbox's pump: hands submissions to the edge as it takes them, and applies its
/// acknowledgements. Polls while anything is unacknowledged; otherwise sleeps until woken.
pub(super) async fn pump_task(ctx: CoreCtx, wake: LocalReceiver<()>, pumping: Rc<Cell<bool>>) {
    loop {
        let alive = ctx.poll_acks();
        let moved = ctx.pump().await;
        if !alive {
            return; // nothing more will be acknowledged: whoever waits reports it
        }
        if moved {
            glommio::executor().yield_if_needed().await;
        } else if ctx.outbox.borrow().busy() {
            glommio::timer::sleep(EDGE_POLL_INTERVAL).await;
        } else if !pumping.get() || wake.recv().await.is_none() {
            return;
        }
    }
}
