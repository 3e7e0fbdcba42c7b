//! The I/O edge: one thread that makes files and checkpoints durable, off the cores.
//!
//! Cores hand it [`Job`]s over one bounded queue ([`EDGE_QUEUE_JOBS_MAX`]) and get a
//! [`Done`] back on their own reply queue. Buffers move by ownership, never by copy, and
//! a put's buffer comes back with its `Done` so the core can reuse the memory. The store
//! may block (fsync, network): that is why it lives here and not on a core.
//!
//! Ordering: jobs run one at a time in arrival order, so a core's checkpoint job — enqueued
//! after the audit files that describe the data it covers — always lands after them. (A
//! concurrent S3 edge will have to keep that order explicitly.)
//!
//! Retries: a retryable store error is retried up to [`PUT_ATTEMPTS_MAX`] times with
//! exponential backoff and jitter; then the job fails and the core stops the run.
//!
//! Bounds: a core has at most [`IN_FLIGHT_JOBS_MAX`] jobs outstanding, and its reply queue has
//! exactly that capacity, so the edge never blocks on a reply.

use crate::store::checkpoint::{Checkpoint, CheckpointStore};
use crate::store::ObjectStore;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Jobs waiting for the edge, over all cores. Each may hold a file of up to a few tens of MiB,
/// so this bounds memory in the hand-off at `EDGE_QUEUE_JOBS_MAX × file size`.
pub const EDGE_QUEUE_JOBS_MAX: usize = 16;
/// Jobs one core may have outstanding (queued or running).
pub const IN_FLIGHT_JOBS_MAX: usize = 8;
/// Attempts per job before the run fails.
pub const PUT_ATTEMPTS_MAX: u32 = 5;
/// First retry delay; doubles per attempt, capped at [`RETRY_DELAY_MAX`].
pub const RETRY_DELAY_FIRST: Duration = Duration::from_millis(20);
pub const RETRY_DELAY_MAX: Duration = Duration::from_secs(2);

pub enum Job {
    Put {
        core: usize,
        token: u64,
        key: String,
        bytes: Vec<u8>,
    },
    Checkpoint {
        core: usize,
        token: u64,
        checkpoints: Vec<Checkpoint>,
    },
}

#[derive(Debug)]
pub struct Done {
    pub token: u64,
    pub result: Result<(), String>,
    /// Time from the edge picking the job up to durable.
    pub write_ns: u64,
    /// A put's buffer, handed back so the core can reuse its memory.
    pub bytes: Option<Vec<u8>>,
}

pub struct Edge {
    pub jobs: Sender<Job>,
    /// Reply queue per core; each core takes its own.
    pub replies: Vec<Receiver<Done>>,
    handle: JoinHandle<()>,
}

impl Edge {
    pub fn start(store: Arc<dyn ObjectStore>, checkpoints: Option<Arc<dyn CheckpointStore>>, cores: usize) -> Edge {
        let (jobs, rx) = bounded::<Job>(EDGE_QUEUE_JOBS_MAX);
        let (reply_txs, replies): (Vec<Sender<Done>>, Vec<Receiver<Done>>) =
            (0..cores).map(|_| bounded(IN_FLIGHT_JOBS_MAX)).unzip();
        let handle = std::thread::Builder::new()
            .name("sluicegate-edge".into())
            .spawn(move || {
                let mut jitter = crate::rng::Rng::new(std::process::id() as u64);
                while let Ok(job) = rx.recv() {
                    let started = Instant::now();
                    let (core, token, result, bytes) = match job {
                        Job::Put {
                            core,
                            token,
                            key,
                            bytes,
                        } => {
                            let r = retry(&mut jitter, || {
                                store.put(&key, &bytes).map_err(|e| (e.retryable, e.to_string()))
                            });
                            (core, token, r, Some(bytes))
                        }
                        Job::Checkpoint {
                            core,
                            token,
                            checkpoints: cps,
                        } => {
                            let r = match &checkpoints {
                                Some(c) => retry(&mut jitter, || c.save(&cps).map_err(|e| (true, e))),
                                None => Ok(()),
                            };
                            (core, token, r, None)
                        }
                    };
                    let done = Done {
                        token,
                        result,
                        write_ns: started.elapsed().as_nanos() as u64,
                        bytes,
                    };
                    // A core that has gone away no longer cares; nothing else to do.
                    let _ = reply_txs[core].send(done);
                }
            })
            .expect("spawning the edge thread");
        Edge { jobs, replies, handle }
    }

    /// Wait for the edge to finish every job; call after every sender is dropped.
    pub fn join(self) {
        drop(self.jobs);
        let _ = self.handle.join();
    }
}

fn retry(jitter: &mut crate::rng::Rng, mut op: impl FnMut() -> Result<(), (bool, String)>) -> Result<(), String> {
    let mut delay = RETRY_DELAY_FIRST;
    for attempt in 1..=PUT_ATTEMPTS_MAX {
        match op() {
            Ok(()) => return Ok(()),
            Err((retryable, msg)) if !retryable || attempt == PUT_ATTEMPTS_MAX => {
                return Err(format!("{msg} (after {attempt} attempt(s))"));
            }
            Err(_) => {
                let j = jitter.below(delay.as_millis() as u64 / 2 + 1);
                std::thread::sleep(delay + Duration::from_millis(j));
                delay = (delay * 2).min(RETRY_DELAY_MAX);
            }
        }
    }
    unreachable!("the loop returns on the last attempt")
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
        fn list(&self, _: &str) -> Result<Vec<String>, StoreError> {
            Ok(vec![])
        }
        fn describe(&self) -> String {
            "flaky".into()
        }
    }

    fn put_once(store: Arc<Flaky>) -> Done {
        let edge = Edge::start(store, None, 1);
        edge.jobs
            .send(Job::Put {
                core: 0,
                token: 9,
                key: "k".into(),
                bytes: vec![1],
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
    }

    #[test]
    fn gives_up_after_the_bound_or_at_once_when_not_retryable() {
        let store = Arc::new(Flaky {
            fail: u32::MAX,
            calls: AtomicU32::new(0),
            retryable: true,
        });
        let done = put_once(store.clone());
        assert!(done.result.unwrap_err().contains("after 5 attempt(s)"));
        assert_eq!(store.calls.load(Ordering::SeqCst), PUT_ATTEMPTS_MAX);
        let store = Arc::new(Flaky {
            fail: u32::MAX,
            calls: AtomicU32::new(0),
            retryable: false,
        });
        let done = put_once(store.clone());
        assert!(done.result.unwrap_err().contains("after 1 attempt(s)"));
    }
}
