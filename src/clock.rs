//! Time, injected: stage code asks a [`Clock`], never `SystemTime` or `Instant` directly, so
//! tests can pin wall time (partitions, lateness bounds) and drive time-based sealing.
//!
//! Two readings: wall time (microseconds since the epoch, for ingest time and `dt`/`hr`) and
//! a monotonic counter (nanoseconds, for ages, rates and latencies).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync {
    fn now_us(&self) -> i64;
    fn monotonic_ns(&self) -> u64;
    /// A wait of `d` on this clock: `Some(d)` to sleep that long on the caller's own timer
    /// (a thread's, tokio's, glommio's), or `None` when the clock has moved its own time by
    /// `d` already (a simulated clock: the wait costs no real time). Every wait in code that
    /// takes an injected clock goes through here, whatever runtime it runs on.
    fn wait(&self, d: std::time::Duration) -> Option<std::time::Duration> {
        Some(d)
    }
    /// Block the calling thread for `d` on this clock (a thread off the cores: the I/O edge's
    /// retry waits).
    fn sleep(&self, d: std::time::Duration) {
        if let Some(d) = self.wait(d) {
            std::thread::sleep(d)
        }
    }
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

impl Clock for SystemClock {
    fn now_us(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64)
    }

    fn monotonic_ns(&self) -> u64 {
        origin().elapsed().as_nanos() as u64
    }
}

/// Wall time pinned by the test, monotonic time real (so rates and timeouts still progress).
#[derive(Debug)]
pub struct FixedWallClock {
    wall_us: AtomicI64,
}

impl FixedWallClock {
    pub fn new(wall_us: i64) -> FixedWallClock {
        FixedWallClock {
            wall_us: AtomicI64::new(wall_us),
        }
    }
}

impl Clock for FixedWallClock {
    fn now_us(&self) -> i64 {
        self.wall_us.load(Ordering::Relaxed)
    }

    fn monotonic_ns(&self) -> u64 {
        SystemClock.monotonic_ns()
    }
}

/// Both readings set by the test; time moves only when told.
#[derive(Debug, Default)]
pub struct ManualClock {
    wall_us: AtomicI64,
    mono_ns: AtomicU64,
}

impl ManualClock {
    pub fn new(wall_us: i64) -> ManualClock {
        ManualClock {
            wall_us: AtomicI64::new(wall_us),
            mono_ns: AtomicU64::new(0),
        }
    }

    pub fn advance_ns(&self, ns: u64) {
        self.mono_ns.fetch_add(ns, Ordering::Relaxed);
        self.wall_us.fetch_add((ns / 1000) as i64, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_us(&self) -> i64 {
        self.wall_us.load(Ordering::Relaxed)
    }

    fn monotonic_ns(&self) -> u64 {
        self.mono_ns.load(Ordering::Relaxed)
    }

    /// Time passes at once: a wait of an hour costs the test nothing.
    fn wait(&self, d: std::time::Duration) -> Option<std::time::Duration> {
        self.advance_ns(d.as_nanos() as u64);
        None
    }
}
