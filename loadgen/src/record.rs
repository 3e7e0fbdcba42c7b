//! What a run measured, per interval: HDR histograms of latency and the counts of records.
//!
//! Two latencies, both from the time a record was **due** (its scheduled send time):
//! - `request`: until the target answered (the HTTP receiver answers 200 once the request is
//!   durable in its inbox; Kinesis once PutRecords returns; the file target once the file is
//!   fsynced; the in-process engine once a core fetched the record);
//! - `e2e`: until the record was durable in the lake's ETL zone (from the audit trail, see
//!   `lake`).
//!
//! Latencies are binned by the interval in which the request was due, so the plot shows what
//! traffic sent at time t went through; `offered` counts the records due in the interval (the
//! schedule), `accepted`/`refused` are binned by the interval of the answer (throughput). Histograms hold microseconds from 1 µs to
//! [`LATENCY_MAX_US`] with 3 significant digits; a longer latency is recorded as the maximum.

use hdrhistogram::Histogram;
use std::time::Duration;

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Answer {
    /// Records the target took (durable, for the HTTP receiver's 200).
    pub accepted: u64,
    /// Records the target refused (429/503, a failed PutRecords entry) or that never arrived.
    pub refused: u64,
    /// Of the accepted records, those the pipeline must land in the ETL zone.
    pub accepted_good: u64,
    /// A transport or protocol error (not a refusal).
    pub error: bool,
}

/// Longest latency the histograms hold: one hour.
pub const LATENCY_MAX_US: u64 = 3_600_000_000;
/// Intervals a run may have: a day of one-second intervals.
pub const INTERVALS_MAX: usize = 86_400;

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid bounds")
}

#[derive(Debug, Clone)]
pub struct Interval {
    pub request: Histogram<u64>,
    pub e2e: Histogram<u64>,
    /// Records due in this interval.
    pub offered: u64,
    pub accepted: u64,
    pub refused: u64,
    pub errors: u64,
}

impl Default for Interval {
    fn default() -> Self {
        Interval {
            request: histogram(),
            e2e: histogram(),
            offered: 0,
            accepted: 0,
            refused: 0,
            errors: 0,
        }
    }
}

/// Sums over a whole run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    pub accepted: u64,
    pub accepted_good: u64,
    pub refused: u64,
    pub errors: u64,
}

#[derive(Debug, Clone)]
pub struct Recorder {
    interval_ns: u64,
    intervals: Vec<Interval>,
    totals: Totals,
}

impl Recorder {
    pub fn new(interval: Duration) -> Recorder {
        Recorder {
            interval_ns: (interval.as_nanos() as u64).max(1),
            intervals: Vec::new(),
            totals: Totals::default(),
        }
    }

    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns)
    }

    fn at(&mut self, t_ns: u64) -> &mut Interval {
        let i = ((t_ns / self.interval_ns) as usize).min(INTERVALS_MAX - 1);
        if self.intervals.len() <= i {
            self.intervals.resize_with(i + 1, Interval::default);
        }
        &mut self.intervals[i]
    }

    /// A request due at `due_ns` was answered at `done_ns` (both from the start of the run).
    pub fn request(&mut self, due_ns: u64, done_ns: u64, a: Answer) {
        let us = (done_ns.saturating_sub(due_ns) / 1000).clamp(1, LATENCY_MAX_US);
        let due = self.at(due_ns);
        due.request.saturating_record(us);
        due.offered += a.accepted + a.refused;
        let iv = self.at(done_ns);
        iv.accepted += a.accepted;
        iv.refused += a.refused;
        iv.errors += u64::from(a.error);
        let t = &mut self.totals;
        t.requests += 1;
        t.accepted += a.accepted;
        t.accepted_good += a.accepted_good;
        t.refused += a.refused;
        t.errors += u64::from(a.error);
    }

    /// A record due at `due_ns` became durable in the lake `latency_us` later.
    pub fn e2e(&mut self, due_ns: u64, latency_us: u64) {
        self.at(due_ns)
            .e2e
            .saturating_record(latency_us.clamp(1, LATENCY_MAX_US));
    }

    pub fn merge(&mut self, other: &Recorder) {
        for (i, o) in other.intervals.iter().enumerate() {
            let iv = self.at(i as u64 * self.interval_ns);
            iv.request.add(&o.request).expect("same bounds");
            iv.e2e.add(&o.e2e).expect("same bounds");
            iv.offered += o.offered;
            iv.accepted += o.accepted;
            iv.refused += o.refused;
            iv.errors += o.errors;
        }
        let (t, o) = (&mut self.totals, other.totals);
        t.requests += o.requests;
        t.accepted += o.accepted;
        t.accepted_good += o.accepted_good;
        t.refused += o.refused;
        t.errors += o.errors;
    }

    pub fn intervals(&self) -> &[Interval] {
        &self.intervals
    }

    pub fn totals(&self) -> Totals {
        self.totals
    }

    pub fn request_histogram(&self) -> Histogram<u64> {
        self.sum(|i| &i.request)
    }

    pub fn e2e_histogram(&self) -> Histogram<u64> {
        self.sum(|i| &i.e2e)
    }

    fn sum(&self, pick: impl Fn(&Interval) -> &Histogram<u64>) -> Histogram<u64> {
        let mut h = histogram();
        for i in &self.intervals {
            h.add(pick(i)).expect("same bounds");
        }
        h
    }
}
