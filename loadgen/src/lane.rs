//! Open-loop lanes: how requests are sent, and how their latency is measured.
//!
//! A run's schedule (see `profile`) is dealt round-robin over `lanes` lanes (one connection
//! each, like wrk2's): lane `i` owns requests `i, i + lanes, …`. A lane prepares a request,
//! waits for its due time, sends it, and waits for the answer before the next. When the system
//! under test stalls, the lane's next requests are already late when they go out; their latency
//! is measured **from the time they were due**, not from when they were sent, so the stall is
//! charged to every request it delayed (the correction for coordinated omission). A lane never
//! sends early and never skips a request: the offered load is the schedule's.
//!
//! Time is injected ([`Pace`]): the real lanes wait on tokio's timer; the tests drive a lane on
//! a virtual clock that moves only when it waits or when the fake service takes time.
//!
//! Bounds: one request in flight per lane; the lane's memory is one prepared request.

use crate::profile::Slot;
use crate::record::{Answer, Recorder};
use std::future::Future;

/// The clock a lane waits on: nanoseconds since the start of the run.
pub trait Pace {
    fn now_ns(&self) -> u64;
    /// Return at `t_ns` (at once if that time has passed).
    fn wait_until(&self, t_ns: u64) -> impl Future<Output = ()>;
}

/// A target's side of a lane: builds requests and sends them, one at a time.
pub trait Client {
    type Request;
    /// Build the request of `slot` (before it is due when the lane is on time).
    fn prepare(&mut self, slot: Slot) -> Self::Request;
    /// Send it and wait for the answer.
    fn send(&mut self, request: Self::Request) -> impl Future<Output = Answer> + Send;
    /// The first error the client saw, to tell the user why requests failed.
    fn first_error(&self) -> Option<String> {
        None
    }
}

/// Send every slot of `slots` in order through `client`, each no earlier than it is due.
/// Latency, from due time to answer, goes into `rec`.
pub async fn run_lane<P: Pace, C: Client>(
    pace: &P,
    slots: impl Iterator<Item = Slot>,
    client: &mut C,
    rec: &mut Recorder,
) {
    for slot in slots {
        let request = client.prepare(slot);
        pace.wait_until(slot.due_ns).await;
        let answer = client.send(request).await;
        rec.request(slot.due_ns, pace.now_ns(), answer);
    }
}

/// The slots of lane `lane` of `lanes`.
pub fn lane_slots(schedule: impl Iterator<Item = Slot>, lane: u64, lanes: u64) -> impl Iterator<Item = Slot> {
    schedule.filter(move |s| s.seq % lanes == lane)
}

/// Real time on tokio's timer, from `origin`.
pub struct TokioPace {
    pub origin: tokio::time::Instant,
}

impl Pace for TokioPace {
    fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    fn wait_until(&self, t_ns: u64) -> impl Future<Output = ()> {
        tokio::time::sleep_until(self.origin + std::time::Duration::from_nanos(t_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Profile, Schedule};
    use std::cell::Cell;
    use std::time::Duration;

    /// A virtual clock: waiting jumps to the due time; the fake service advances it.
    #[derive(Default)]
    struct Virtual {
        now: Cell<u64>,
    }

    impl Pace for Virtual {
        fn now_ns(&self) -> u64 {
            self.now.get()
        }

        fn wait_until(&self, t_ns: u64) -> impl Future<Output = ()> {
            self.now.set(self.now.get().max(t_ns));
            std::future::ready(())
        }
    }

    const MS: u64 = 1_000_000;

    /// A fake service on the virtual clock: request `seq` takes `service(seq)` ns. Also keeps
    /// the latencies an uncorrected (closed-loop) tool would report: from the actual send.
    struct Fake<'a, F> {
        pace: &'a Virtual,
        batch: u64,
        service: F,
        naive: Vec<u64>,
    }

    impl<F: Fn(u64) -> u64> Client for Fake<'_, F> {
        type Request = u64;

        fn prepare(&mut self, slot: Slot) -> u64 {
            slot.seq
        }

        fn send(&mut self, seq: u64) -> impl Future<Output = Answer> + Send {
            let took = (self.service)(seq);
            self.pace.now.set(self.pace.now.get() + took);
            self.naive.push(took);
            std::future::ready(Answer {
                accepted: self.batch,
                accepted_good: self.batch,
                ..Answer::default()
            })
        }
    }

    fn drive(slots: impl Iterator<Item = Slot>, batch: u64, service: impl Fn(u64) -> u64) -> (Recorder, Vec<u64>) {
        let pace = Virtual::default();
        let mut rec = Recorder::new(Duration::from_secs(1));
        let mut fake = Fake {
            pace: &pace,
            batch,
            service,
            naive: Vec::new(),
        };
        futures_lite::future::block_on(run_lane(&pace, slots, &mut fake, &mut rec));
        (rec, fake.naive)
    }

    #[test]
    fn lanes_hold_the_scheduled_rate_within_half_a_percent() {
        // 20,000 records/s in requests of 10 over 4 lanes for 60 s: each lane has a request due
        // every 2 ms, and each takes 1.5 ms, so the lanes keep up.
        let (lanes, batch) = (4u64, 10u32);
        let p = Profile::parse("constant:20000").unwrap();
        let mut total = Recorder::new(Duration::from_secs(1));
        let mut end = 0u64;
        for lane in 0..lanes {
            let s = lane_slots(Schedule::new(p, Duration::from_secs(60), batch), lane, lanes);
            let (rec, _) = drive(s, batch as u64, |_| 3 * MS / 2);
            end = end.max(rec.intervals().len() as u64);
            total.merge(&rec);
        }
        let accepted = total.totals().accepted as f64;
        let rate = accepted / 60.0;
        assert!((rate - 20_000.0).abs() <= 20_000.0 * 0.005, "{rate} records/s");
        // The last answers (due in the last 1.5 ms) come just after the 60th second.
        assert_eq!(end, 61);
        // On time throughout: every latency is the service time.
        let h = total.request_histogram();
        assert!(
            h.value_at_quantile(0.999) <= 1_600,
            "p99.9 {} µs",
            h.value_at_quantile(0.999)
        );
        // Every second of the run took its share (within 0.5%: answers due at a second's end
        // land in the next one).
        for (i, iv) in total.intervals()[..60].iter().enumerate() {
            assert!(
                (iv.accepted as f64 - 20_000.0).abs() <= 100.0,
                "second {i}: {}",
                iv.accepted
            );
        }
    }

    #[test]
    fn a_stall_is_charged_to_every_request_it_delayed() {
        // 100 requests/s (one every 10 ms) on one lane; each answer takes 1 ms, except request
        // 500's, which takes 1 s. The requests due during that second go out late, and their
        // latency counts from when they were due: 1000, 991, 982, … ms until the lane catches
        // up (9 ms gained per request). An uncorrected tool reports one slow request.
        let p = Profile::parse("constant:100").unwrap();
        let slots = Schedule::new(p, Duration::from_secs(20), 1);
        let (rec, naive) = drive(slots, 1, |seq| if seq == 500 { 1000 * MS } else { MS });
        let h = rec.request_histogram();
        let slow = |v: &[u64]| v.iter().filter(|&&x| x >= 500 * MS).count();
        let corrected: Vec<u64> = h
            .iter_recorded()
            .flat_map(|v| std::iter::repeat_n(v.value_iterated_to() * 1000, v.count_at_value() as usize))
            .collect();
        // 1000 − 9k ≥ 500 for k = 0..=55: 56 requests at half a second or more.
        assert_eq!(slow(&corrected), 56);
        assert_eq!(slow(&naive), 1);
        assert!(h.max() >= 999_000, "the stalled request itself: {} µs", h.max());
        // p99 of 2000 requests sees the stall; the uncorrected p99 would be 1 ms.
        assert!(h.value_at_quantile(0.99) >= 500_000, "{}", h.value_at_quantile(0.99));
        assert_eq!(h.len(), 2000);
    }
}
