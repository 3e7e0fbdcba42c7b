//! The I/O edge: worker threads that make files, intents and checkpoints durable, off the
//! cores.
//!
//! Cores hand it [`Job`]s over one bounded queue ([`EDGE_QUEUE_JOBS_MAX`]) and get a
//! [`Ack`] back on their own reply queue. Buffers move by ownership, never by copy, and
//! a put's buffer comes back with its `Ack` so the core can reuse the memory. The store
//! may block (fsync, network): that is why it lives here and not on a core. A put with an
//! intent records the intent first (see `delivery`).
//!
//! Concurrency and order: `workers` threads take jobs from the shared queue, so up to that many
//! uploads run at once and jobs may finish out of order. Where order matters — a checkpoint
//! must land after the audit files that describe the data it covers — the core waits for the
//! earlier jobs' acknowledgements before it submits the later job (`runtime::core`).
//!
//! Retries: a retryable error is retried with exponential backoff and jitter for up to the
//! configured window (`lake.retry_for_ms`) — a store outage is ridden out while the buffers
//! spill and the sources slow down; then the job fails and the core stops the run.
//!
//! Bounds: a core has at most [`IN_FLIGHT_JOBS_MAX`] jobs at the edge (its outbox,
//! `runtime::outbox`, holds the rest), and its reply queue has exactly that capacity, so the
//! edge never blocks on a reply.

use crate::clock::Clock;
use crate::store::checkpoint::{Checkpoint, CheckpointStore};
use crate::store::ObjectStore;
use crate::store::{Intent, IntentStore};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Jobs waiting for the edge, over all cores. Each may hold a file of up to a few tens of MiB,
/// so this bounds memory in the hand-off at `EDGE_QUEUE_JOBS_MAX × file size`.
pub const EDGE_QUEUE_JOBS_MAX: usize = 16;
/// Jobs one core may have outstanding (queued or running).
pub const IN_FLIGHT_JOBS_MAX: usize = 8;
/// First retry delay; doubles per attempt, capped at [`RETRY_DELAY_MAX`].
pub const RETRY_DELAY_FIRST: Duration = Duration::from_millis(20);
pub const RETRY_DELAY_MAX: Duration = Duration::from_secs(2);

pub enum Job {
    Put {
        core: usize,
        token: u64,
        key: String,
        bytes: Vec<u8>,
        /// Recorded, durably, before the upload starts.
        intent: Option<Box<Intent>>,
    },
    Checkpoint {
        core: usize,
        token: u64,
        checkpoints: Vec<Checkpoint>,
    },
    /// Remove intents no longer needed.
    Retire { core: usize, token: u64, ids: Vec<String> },
}

#[derive(Debug)]
pub struct Ack {
    pub token: u64,
    pub result: Result<(), String>,
    /// Time from the edge picking the job up to durable.
    pub write_ns: u64,
    /// A put's buffer, handed back so the core can reuse its memory.
    pub bytes: Option<Vec<u8>>,
    /// Attempts beyond the first that the job took (the store's own SDK retries not counted).
    pub retries: u32,
}

/// Where the edge keeps delivery state (none: checkpoints are off, nothing is recorded).
#[derive(Clone)]
pub struct StateStores {
    pub checkpoints: Arc<dyn CheckpointStore>,
    pub intents: Arc<dyn IntentStore>,
}

pub struct Edge {
    pub jobs: Sender<Job>,
    /// Reply queue per core; each core takes its own.
    pub replies: Vec<Receiver<Ack>>,
    handles: Vec<JoinHandle<()>>,
}

impl Edge {
    /// `workers` jobs run at once; a failing job is retried for up to `retry_for`.
    pub fn start(
        store: Arc<dyn ObjectStore>,
        state: Option<StateStores>,
        cores: usize,
        workers: usize,
        retry_for: Duration,
        clock: Arc<dyn Clock>,
    ) -> Edge {
        let (jobs, rx) = bounded::<Job>(EDGE_QUEUE_JOBS_MAX);
        let (reply_txs, replies): (Vec<Sender<Ack>>, Vec<Receiver<Ack>>) =
            (0..cores).map(|_| bounded(IN_FLIGHT_JOBS_MAX)).unzip();
        let reply_txs = Arc::new(reply_txs);
        let handles = (0..workers.max(1))
            .map(|w| {
                let (rx, reply_txs, store, state) = (rx.clone(), reply_txs.clone(), store.clone(), state.clone());
                let retrier = Retrier {
                    jitter: crate::rng::Rng::new(std::process::id() as u64 ^ ((w as u64) << 32)),
                    window: retry_for,
                    clock: clock.clone(),
                };
                std::thread::Builder::new()
                    .name(format!("sluicegate-edge-{w}"))
                    .spawn(move || worker(retrier, &rx, &reply_txs, &*store, state.as_ref()))
                    .expect("spawning an edge thread")
            })
            .collect();
        Edge { jobs, replies, handles }
    }

    /// Wait for the edge to finish every job; call after every sender is dropped.
    pub fn join(self) {
        drop(self.jobs);
        for h in self.handles {
            let _ = h.join();
        }
    }
}

fn worker(
    mut retrier: Retrier,
    rx: &Receiver<Job>,
    reply_txs: &[Sender<Ack>],
    store: &dyn ObjectStore,
    state: Option<&StateStores>,
) {
    while let Ok(job) = rx.recv() {
        let started = retrier.clock.monotonic_ns();
        let mut retries = 0;
        let (core, token, result, bytes) = match job {
            Job::Put {
                core,
                token,
                key,
                bytes,
                intent,
            } => {
                let recorded = match (intent, state) {
                    (Some(i), Some(s)) => retrier.retry(&mut retries, || s.intents.record(&i).map_err(|e| (true, e))),
                    _ => Ok(()),
                };
                // Shared for the store (S3 slices it into parts without copying); every
                // reference is gone once `put_shared` returns, so the buffer comes back whole.
                let shared = bytes::Bytes::from(bytes);
                let r = recorded.and_then(|()| {
                    retrier.retry(&mut retries, || {
                        store
                            .put_shared(&key, &shared)
                            .map_err(|e| (e.retryable, e.to_string()))
                    })
                });
                (core, token, r, shared.try_into_mut().ok().map(Vec::from))
            }
            Job::Checkpoint {
                core,
                token,
                checkpoints,
            } => {
                let r = match state {
                    Some(s) => retrier.retry(&mut retries, || s.checkpoints.save(&checkpoints).map_err(|e| (true, e))),
                    None => Ok(()),
                };
                (core, token, r, None)
            }
            Job::Retire { core, token, ids } => {
                let r = match state {
                    Some(s) => retrier.retry(&mut retries, || s.intents.remove(&ids).map_err(|e| (true, e))),
                    None => Ok(()),
                };
                (core, token, r, None)
            }
        };
        let done = Ack {
            token,
            result,
            write_ns: retrier.clock.monotonic_ns().saturating_sub(started),
            bytes,
            retries,
        };
        // A core that has gone away no longer cares; nothing else to do.
        let _ = reply_txs[core].send(done);
    }
}

/// An edge worker's retries: its jitter, its window (`lake.retry_for_ms`) and the clock it
/// waits on (injected: a simulated clock lets a test ride out an hour's outage at once).
struct Retrier {
    jitter: crate::rng::Rng,
    window: Duration,
    clock: Arc<dyn Clock>,
}

impl Retrier {
    /// Run `op` until it succeeds, fails with a non-retryable error, or the window would be
    /// exceeded by the next wait. Waits double from [`RETRY_DELAY_FIRST`] to [`RETRY_DELAY_MAX`],
    /// plus up to half again of jitter; failures are logged at attempts 1, 2, 4, 8, ….
    fn retry(&mut self, retries: &mut u32, mut op: impl FnMut() -> Result<(), (bool, String)>) -> Result<(), String> {
        let started = self.clock.monotonic_ns();
        let elapsed = |clock: &dyn Clock| Duration::from_nanos(clock.monotonic_ns().saturating_sub(started));
        let mut delay = RETRY_DELAY_FIRST;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let (retryable, msg) = match op() {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let wait = delay + Duration::from_millis(self.jitter.below(delay.as_millis() as u64 / 2 + 1));
            if !retryable || elapsed(&*self.clock) + wait > self.window {
                return Err(format!(
                    "{msg} (after {attempt} attempt(s) in {:.1} s)",
                    elapsed(&*self.clock).as_secs_f64()
                ));
            }
            if attempt.is_power_of_two() {
                tracing::warn!(attempt, error = %msg, "store write failed, retrying");
            }
            self.clock.sleep(wait);
            *retries += 1;
            delay = (delay * 2).min(RETRY_DELAY_MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A store that fails the first `fail` puts with a retryable error.
    struct Flaky {
        fail: u32,
        calls: AtomicU32,
        retryable: bool,
    }

    impl ObjectStore for Flaky {
        fn put(&self, key: &str, _: &[u8]) -> Result<(), StoreError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n < self.fail {
                return Err(StoreError {
                    op: "put",
                    key: key.into(),
                    message: "injected".into(),
                    retryable: self.retryable,
                });
            }
            Ok(())
        }
        fn get(&self, _: &str) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(None)
        }
        fn exists(&self, _: &str) -> Result<bool, StoreError> {
            Ok(false)
        }
        fn abort_partial(&self, _: &str) -> Result<(), StoreError> {
            Ok(())
        }
        fn list(&self, _: &str) -> Result<Vec<String>, StoreError> {
            Ok(vec![])
        }
        fn describe(&self) -> String {
            "flaky".into()
        }
    }

    fn put_once(store: Arc<Flaky>) -> Ack {
        put_once_with(store, Duration::from_millis(300), Arc::new(crate::clock::SystemClock))
    }

    fn put_once_with(store: Arc<Flaky>, window: Duration, clock: Arc<dyn Clock>) -> Ack {
        let edge = Edge::start(store, None, 1, 2, window, clock);
        edge.jobs
            .send(Job::Put {
                core: 0,
                token: 9,
                key: "k".into(),
                bytes: vec![1],
                intent: None,
            })
            .unwrap();
        let done = edge.replies[0].recv().unwrap();
        edge.join();
        done
    }

    #[test]
    fn retries_retryable_errors_then_succeeds() {
        let store = Arc::new(Flaky {
            fail: 2,
            calls: AtomicU32::new(0),
            retryable: true,
        });
        let done = put_once(store.clone());
        assert_eq!((done.token, done.result), (9, Ok(())));
        assert_eq!(store.calls.load(Ordering::SeqCst), 3);
        assert_eq!(done.retries, 2);
    }

    #[test]
    fn gives_up_when_the_window_would_pass_or_at_once_when_not_retryable() {
        let store = Arc::new(Flaky {
            fail: u32::MAX,
            calls: AtomicU32::new(0),
            retryable: true,
        });
        let done = put_once(store.clone());
        let calls = store.calls.load(Ordering::SeqCst);
        // 20 + 40 + 80 ms (plus jitter) fit the 300 ms window; the next 160 ms wait does not.
        assert!((3..=4).contains(&calls), "{calls} calls");
        assert!(done.result.unwrap_err().contains(&format!("after {calls} attempt(s)")));
        let store = Arc::new(Flaky {
            fail: u32::MAX,
            calls: AtomicU32::new(0),
            retryable: false,
        });
        let done = put_once(store.clone());
        assert!(done.result.unwrap_err().contains("after 1 attempt(s)"));
    }

    /// The retry waits run on the injected clock: an hour's window rides out on a simulated
    /// clock in no real time, with the attempts the real schedule would make (waits doubling
    /// from 20 ms to 2 s: ~1,800 attempts in an hour).
    #[test]
    fn retry_waits_run_on_the_injected_clock() {
        let store = Arc::new(Flaky {
            fail: u32::MAX,
            calls: AtomicU32::new(0),
            retryable: true,
        });
        let clock = Arc::new(crate::clock::ManualClock::new(0));
        let real = std::time::Instant::now();
        let done = put_once_with(store.clone(), Duration::from_secs(3600), clock.clone());
        assert!(
            real.elapsed() < Duration::from_secs(5),
            "waited in real time: {:?}",
            real.elapsed()
        );
        let calls = store.calls.load(Ordering::SeqCst);
        assert!((1_400..=1_900).contains(&calls), "{calls} calls in a simulated hour");
        let simulated = Duration::from_nanos(clock.monotonic_ns());
        assert!(
            simulated <= Duration::from_secs(3600) && simulated > Duration::from_secs(3500),
            "{simulated:?}"
        );
        assert!(done.result.unwrap_err().contains(&format!("after {calls} attempt(s)")));
    }
}
