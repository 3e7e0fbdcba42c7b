//! Coordination of a fleet: shard leases in the shape of the Kinesis Client Library's lease
//! table, so operators' KCL tooling reads it, and so a fleet shares a stream's shards without a
//! protocol of its own between instances.
//!
//! Owns: the lease model ([`Lease`], with the KCL's attribute names in [`attr`]), the table a
//! fleet shares ([`LeaseTable`]: every write conditional on the lease's counter, and on its
//! owner where the writer must hold it), and one worker's side of the protocol
//! ([`Coordinator`]): renew what it holds, take what is unowned or expired, steal one lease at a
//! time from the most loaded worker until every worker holds ⌊n/w⌋ or ⌈n/w⌉, parents before
//! children, and release everything on a graceful stop.
//!
//! Invariants (checked by the seeded simulation in `sim_tests.rs`):
//! - **Expiry is judged on the observer's clock**, never by comparing hosts' clocks: a lease is
//!   expired for a worker once its counter has not moved for `lease_duration` of that worker's
//!   monotonic time since it first saw that counter (the KCL's rule).
//! - **A holder stops before a taker starts**: a worker treats a lease as its own only until
//!   `lease_duration` after it *sent* its last successful renewal, so by the time another
//!   worker has watched the counter stand still for `lease_duration`, the holder has stopped.
//! - **Writes are fenced**: a renewal, a release and a checkpoint succeed only if the lease's
//!   counter is the one the writer last wrote (and the owner is the writer), so a worker that
//!   lost a lease — paused, partitioned, slow — cannot commit for it afterwards.
//!
//! Bounds: table calls per worker per renew interval = leases held (one conditional update
//! each); per take interval = one scan plus at most the leases it takes, and one steal.

pub mod dynamodb;
pub mod memory;

#[cfg(test)]
mod sim_tests;

use crate::clock::Clock;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// The attribute names of the KCL's lease table (`DynamoDBLeaseSerializer`).
pub mod attr {
    pub const LEASE_KEY: &str = "leaseKey";
    pub const LEASE_OWNER: &str = "leaseOwner";
    pub const LEASE_COUNTER: &str = "leaseCounter";
    pub const CHECKPOINT: &str = "checkpoint";
    pub const CHECKPOINT_SUB: &str = "checkpointSubSequenceNumber";
    pub const OWNER_SWITCHES: &str = "ownerSwitchesSinceCheckpoint";
    pub const PARENT_SHARD_ID: &str = "parentShardId";
    pub const CHILD_SHARD_IDS: &str = "childShardIds";
}

/// The checkpoint of a shard read to its end (the KCL's sentinel): its children may start.
pub const SHARD_END: &str = "SHARD_END";
/// The checkpoint of a lease no worker has read yet.
pub const TRIM_HORIZON: &str = "TRIM_HORIZON";

/// One shard's lease, as the table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub key: String,
    pub owner: Option<String>,
    /// Moves on every write; a conditional write names the counter it expects.
    pub counter: u64,
    pub checkpoint: String,
    pub checkpoint_sub: u64,
    pub owner_switches: u64,
    pub parents: Vec<String>,
    pub children: Vec<String>,
    /// Attributes this version does not know, kept as they are (a newer KCL's, an operator's).
    pub other: BTreeMap<String, String>,
}

impl Lease {
    /// A new, unowned lease at the start of its shard.
    pub fn new(key: &str, parents: &[&str]) -> Lease {
        Lease {
            key: key.to_string(),
            owner: None,
            counter: 0,
            checkpoint: TRIM_HORIZON.to_string(),
            checkpoint_sub: 0,
            owner_switches: 0,
            parents: parents.iter().map(|p| p.to_string()).collect(),
            children: Vec::new(),
            other: BTreeMap::new(),
        }
    }

    pub fn finished(&self) -> bool {
        self.checkpoint == SHARD_END
    }
}

/// Why a table call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// The condition did not hold: someone else wrote the lease (or it is not ours).
    #[error("lease {0}: changed by another worker")]
    Lost(String),
    /// The table could not be reached or refused the call; retried by the caller.
    #[error("lease table: {0}")]
    Unavailable(String),
}

/// The table a fleet shares. Every write is conditional on the counter the writer expects.
pub trait LeaseTable: Send + Sync {
    fn list(&self) -> Result<Vec<Lease>, LeaseError>;
    /// One lease, read consistently.
    fn get(&self, key: &str) -> Result<Option<Lease>, LeaseError>;
    /// Create the lease unless one with its key exists; returns whether it was created.
    fn create(&self, lease: &Lease) -> Result<bool, LeaseError>;
    /// Set the owner to `owner` if the counter is still `counter`; returns the new counter.
    fn take(&self, key: &str, counter: u64, owner: &str) -> Result<u64, LeaseError>;
    /// Move the counter if it is `counter` and the owner is `owner`; returns the new counter.
    fn renew(&self, key: &str, counter: u64, owner: &str) -> Result<u64, LeaseError>;
    /// Clear the owner if the counter is `counter` and the owner is `owner`.
    fn release(&self, key: &str, counter: u64, owner: &str) -> Result<(), LeaseError>;
    /// Write the checkpoint if the counter is `counter` and the owner is `owner`; returns the
    /// new counter. The fence of every commit a holder makes for the shard.
    fn checkpoint(&self, key: &str, counter: u64, owner: &str, checkpoint: &str) -> Result<u64, LeaseError>;
}

/// How a worker paces its lease work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    /// A lease whose counter has not moved for this long (on the observer's clock) is expired.
    pub lease_duration: Duration,
    /// How often a holder renews: a third of the duration, so two renewals may fail in a row
    /// before the lease is at risk.
    pub renew_interval: Duration,
    /// How often a worker lists the table to take and balance: a tenth of the duration, so a
    /// dead worker's leases are taken within `lease_duration` and a tenth (one scan of the
    /// table per interval per worker: at 10 s, one small scan a second).
    pub take_interval: Duration,
}

impl LeaseTiming {
    pub fn from_duration(lease_duration: Duration) -> LeaseTiming {
        LeaseTiming {
            lease_duration,
            renew_interval: lease_duration / 3,
            take_interval: lease_duration / 10,
        }
    }
}

/// A lease this worker holds: the counter it last wrote, and when it sent that write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub counter: u64,
    pub renewed_ns: u64,
}

/// What a worker last saw of a lease, to judge expiry on its own clock.
#[derive(Debug, Clone)]
struct Seen {
    counter: u64,
    owner: Option<String>,
    since_ns: u64,
}

/// One worker's side of the lease protocol. Calls are made by one thread (the engine's
/// supervisor); the cores hear of gains and losses through what `held` returns.
pub struct Coordinator {
    pub worker: String,
    timing: LeaseTiming,
    held: BTreeMap<String, Held>,
    seen: HashMap<String, Seen>,
}

/// What a round of lease work changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub gained: Vec<String>,
    pub lost: Vec<String>,
    pub stolen: Option<String>,
}

/// Take `l` for `worker` at the counter it listed, into `held`; the lease's validity runs from
/// when the take was sent.
fn acquire(
    held: &mut BTreeMap<String, Held>,
    worker: &str,
    table: &dyn LeaseTable,
    clock: &dyn Clock,
    l: &Lease,
) -> Result<(), LeaseError> {
    let sent = clock.monotonic_ns();
    let counter = table.take(&l.key, l.counter, worker)?;
    held.insert(
        l.key.clone(),
        Held {
            counter,
            renewed_ns: sent,
        },
    );
    Ok(())
}

impl Coordinator {
    pub fn new(worker: &str, timing: LeaseTiming) -> Coordinator {
        Coordinator {
            worker: worker.to_string(),
            timing,
            held: BTreeMap::new(),
            seen: HashMap::new(),
        }
    }

    /// The leases this worker may act on now: held, and renewed less than `lease_duration` ago
    /// (measured from when the renewal was sent).
    pub fn valid(&self, clock: &dyn Clock) -> Vec<(String, Held)> {
        let now = clock.monotonic_ns();
        let d = self.timing.lease_duration.as_nanos() as u64;
        self.held
            .iter()
            .filter(|(_, h)| now.saturating_sub(h.renewed_ns) < d)
            .map(|(k, h)| (k.clone(), *h))
            .collect()
    }

    pub fn holds(&self, key: &str) -> Option<Held> {
        self.held.get(key).copied()
    }

    /// Renew every lease held. A lease whose renewal is refused is lost at once; one whose
    /// renewals fail to reach the table for `lease_duration` is let go too.
    pub fn renew(&mut self, table: &dyn LeaseTable, clock: &dyn Clock) -> Changes {
        let mut changes = Changes::default();
        let d = self.timing.lease_duration.as_nanos() as u64;
        let keys: Vec<String> = self.held.keys().cloned().collect();
        for key in keys {
            let h = self.held[&key];
            let sent = clock.monotonic_ns();
            match table.renew(&key, h.counter, &self.worker) {
                Ok(counter) => {
                    self.held.insert(
                        key,
                        Held {
                            counter,
                            renewed_ns: sent,
                        },
                    );
                }
                Err(LeaseError::Lost(_)) => match table.get(&key) {
                    // Still ours: an earlier write applied but its answer was lost. Only the
                    // owner writes a lease it owns, so every write since was ours: adopt the
                    // counter (the validity still runs from the last write known to apply).
                    Ok(Some(l)) if l.owner.as_deref() == Some(self.worker.as_str()) => {
                        self.held.insert(
                            key,
                            Held {
                                counter: l.counter,
                                renewed_ns: h.renewed_ns,
                            },
                        );
                    }
                    _ => {
                        self.held.remove(&key);
                        changes.lost.push(key);
                    }
                },
                Err(LeaseError::Unavailable(_)) => {
                    if clock.monotonic_ns().saturating_sub(h.renewed_ns) >= d {
                        self.held.remove(&key);
                        changes.lost.push(key);
                    }
                }
            }
        }
        changes
    }

    /// Note a successful checkpoint write (it moved the counter).
    pub fn checkpointed(&mut self, key: &str, counter: u64) {
        if let Some(h) = self.held.get_mut(key) {
            h.counter = counter;
        }
    }

    /// The shard was read to its end and its lease checkpointed `SHARD_END`: nothing more to
    /// hold (its children may start).
    pub fn finished(&mut self, key: &str) {
        self.held.remove(key);
    }

    /// Forget a lease (a checkpoint was refused: someone else holds it now).
    pub fn lost(&mut self, key: &str) {
        self.held.remove(key);
    }

    /// List the table; take unowned and expired leases up to this worker's share, parents
    /// before children; if none were free and this worker holds less than its share, steal one
    /// from the most loaded worker.
    pub fn take(&mut self, table: &dyn LeaseTable, clock: &dyn Clock) -> Result<Changes, LeaseError> {
        let leases = table.list()?;
        let now = clock.monotonic_ns();
        let d = self.timing.lease_duration.as_nanos() as u64;
        self.observe(&leases, now);

        // Leases whose shards may be read: not finished, and every parent finished.
        let finished: std::collections::HashSet<&str> =
            leases.iter().filter(|l| l.finished()).map(|l| l.key.as_str()).collect();
        let known: std::collections::HashSet<&str> = leases.iter().map(|l| l.key.as_str()).collect();
        let readable: Vec<&Lease> = leases
            .iter()
            .filter(|l| !l.finished())
            .filter(|l| {
                l.parents
                    .iter()
                    .all(|p| finished.contains(p.as_str()) || !known.contains(p.as_str()))
            })
            .collect();

        let expired = |l: &Lease| -> bool {
            match &l.owner {
                None => true,
                Some(_) => self
                    .seen
                    .get(&l.key)
                    .is_some_and(|s| now.saturating_sub(s.since_ns) >= d),
            }
        };
        // The fleet: this worker and every owner whose lease is not expired.
        let mut load: BTreeMap<String, usize> = BTreeMap::new();
        load.insert(self.worker.clone(), 0);
        for l in &readable {
            if let Some(o) = &l.owner {
                if !expired(l) {
                    *load.entry(o.clone()).or_default() += 1;
                }
            }
        }
        let workers = load.len();
        let n = readable.len();
        let share_max = n.div_ceil(workers.max(1));
        let mine = readable
            .iter()
            .filter(|l| l.owner.as_deref() == Some(&self.worker) && self.held.contains_key(&l.key))
            .count();

        let mut changes = Changes::default();
        // A finished shard is nothing to hold (its reader wrote the end, or another did).
        self.held.retain(|k, _| !finished.contains(k.as_str()));
        let mut have = mine;
        // Unowned and expired first (not ours: ours are renewed, not taken).
        let mut free: Vec<&Lease> = readable
            .iter()
            .copied()
            .filter(|l| expired(l) && !self.held.contains_key(&l.key))
            .collect();
        free.sort_by(|a, b| a.key.cmp(&b.key));
        for l in free {
            if have >= share_max {
                break;
            }
            match acquire(&mut self.held, &self.worker, table, clock, l) {
                Ok(()) => {
                    changes.gained.push(l.key.clone());
                    have += 1;
                }
                Err(LeaseError::Lost(_)) => {}
                Err(e) => return Err(e),
            }
        }
        // Balance: one steal per round, from the most loaded worker, while it holds at least
        // two more than this one (so counts converge to within one: ⌊n/w⌋ or ⌈n/w⌉).
        if changes.gained.is_empty() && have < share_max {
            let victim = load
                .iter()
                .filter(|(w, c)| **w != self.worker && **c >= have + 2)
                .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
                .map(|(w, _)| w.clone());
            if let Some(victim) = victim {
                let lease = readable
                    .iter()
                    .filter(|l| l.owner.as_deref() == Some(victim.as_str()) && !expired(l))
                    .max_by(|a, b| a.key.cmp(&b.key));
                if let Some(l) = lease {
                    if acquire(&mut self.held, &self.worker, table, clock, l).is_ok() {
                        changes.gained.push(l.key.clone());
                        changes.stolen = Some(l.key.clone());
                    }
                }
            }
        }
        // Leases held here that the listing gave to someone else: lost (not those taken since).
        for l in &leases {
            let taken_now = changes.gained.contains(&l.key);
            if !taken_now && self.held.contains_key(&l.key) && l.owner.as_deref() != Some(&self.worker) {
                self.held.remove(&l.key);
                changes.lost.push(l.key.clone());
            }
        }
        Ok(changes)
    }

    /// Release every lease held (a graceful stop): peers take them at their next listing
    /// instead of after an expiry.
    pub fn release_all(&mut self, table: &dyn LeaseTable) {
        for (key, h) in std::mem::take(&mut self.held) {
            let _ = table.release(&key, h.counter, &self.worker);
        }
    }

    fn observe(&mut self, leases: &[Lease], now: u64) {
        for l in leases {
            let fresh = match self.seen.get(&l.key) {
                Some(s) => s.counter != l.counter || s.owner != l.owner,
                None => true,
            };
            if fresh {
                self.seen.insert(
                    l.key.clone(),
                    Seen {
                        counter: l.counter,
                        owner: l.owner.clone(),
                        since_ns: now,
                    },
                );
            }
        }
    }
}
