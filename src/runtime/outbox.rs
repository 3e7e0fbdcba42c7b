//! A core's outbox: every write the core owes the store, from submission until the I/O edge
//! acknowledges it.
//!
//! Owns: the tokens (one per submission, in submission order), what each acknowledgement means
//! to the core ([`InFlight`]), the queue of writes not yet handed to the edge, and the rule of
//! when each may go:
//! - files and intent retirements go in submission order, at most [`IN_FLIGHT_JOBS_MAX`] at the
//!   edge at once;
//! - a checkpoint goes only once every earlier submission is acknowledged (above all the audit
//!   files describing the data it covers; the edge runs jobs concurrently), and checkpoints go one
//!   at a time, in order, so an older one never lands over a newer one. Later files do not wait
//!   for it.
//!
//! Submitting never waits for the store while there is room: a core keeps fetching through a
//! slow or failed store, its files wait here. Waiting files' bytes stay in memory up to
//! `buffer.outbox_memory_bytes_max`; a file whose bytes do not fit is parked on local disk (the
//! spill directory, under the spill budget; `buffer::spill`) and read back by the pump in its
//! turn. Every unacknowledged file also keeps its bookkeeping in memory — its audit row and
//! exact position runs, up to one run per record when a partition's records alternate between
//! files — within `buffer.outbox_bookkeeping_bytes_max`. When that is full too, or the spill, or
//! `buffer.outbox_entries_max` submissions are unacknowledged, submitting waits (backpressure:
//! the sources pause).
//!
//! Bounds ([`OutboxLimits`], from the `buffer` configuration): at the edge ≤
//! [`IN_FLIGHT_JOBS_MAX`] jobs; waiting bytes in memory ≤ `memory_bytes_max` and bookkeeping ≤
//! `bookkeeping_bytes_max` (either may hold one larger entry alone); unacknowledged submissions
//! ≤ `entries_max`; waiting checkpoints ≤ [`CHECKPOINTS_WAITING_MAX`] (past it the newest two
//! merge).

use super::edge::{Ack, Job, IN_FLIGHT_JOBS_MAX};
use crate::pipeline::{InFlightFile, OutboxLimits};
use crate::store::checkpoint::Checkpoint;
use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use std::collections::{BTreeMap, VecDeque};

/// Checkpoint writes waiting for earlier submissions; past it the newest two merge (the merged
/// one waits for the later of the two barriers, and holds the newer position of each partition).
pub const CHECKPOINTS_WAITING_MAX: usize = 16;

/// What an acknowledgement means to the core.
pub enum InFlight {
    File(Box<InFlightFile>),
    /// The `(slot, next_position)`s the checkpoint write acknowledges.
    Checkpoint(Vec<(usize, u64)>),
    Retire,
}

/// Where a waiting file's bytes are.
pub enum Body {
    Memory(Vec<u8>),
    /// Parked on disk (`SpillDir::park`'s id): this many bytes.
    Parked {
        id: u64,
        len: usize,
    },
}

enum Waiting {
    Put { key: String, body: Body },
    Retire(Vec<String>),
}

/// What the pump should do next.
pub enum Next {
    /// Hand this job to the edge.
    Send(Job),
    /// The next file is parked: read it back, then [`Outbox::unparked`].
    Unpark { token: u64, id: u64, len: usize },
    /// Nothing can go now.
    Wait,
}

/// What an attempt to hand a job to the edge gave.
pub enum Sent {
    Yes,
    /// The edge's queue is full: the job goes first next time.
    Full,
    /// The edge has stopped.
    Gone,
}

pub struct Outbox {
    core: usize,
    limits: OutboxLimits,
    jobs: Sender<Job>,
    replies: Receiver<Ack>,
    /// Every submission not yet acknowledged, by token, with the memory its bookkeeping holds.
    unacked: BTreeMap<u64, (InFlight, u64)>,
    /// Files and retirements not yet handed to the edge, in token order.
    queue: VecDeque<(u64, Waiting)>,
    /// Checkpoints not yet handed to the edge, in token order.
    checkpoints: VecDeque<(u64, Vec<Checkpoint>)>,
    /// The edge's queue refused it (full): it goes first.
    refused: Option<Job>,
    /// Jobs handed to the edge (or refused by its queue) and not yet acknowledged.
    at_edge: usize,
    /// Bytes of waiting files held in memory (their buffers' capacity: what stays resident).
    memory_bytes: u64,
    /// Memory of unacknowledged files' bookkeeping.
    bookkeeping_bytes: u64,
    next_token: u64,
}

impl Outbox {
    pub fn new(core: usize, limits: OutboxLimits, jobs: Sender<Job>, replies: Receiver<Ack>) -> Outbox {
        Outbox {
            core,
            limits,
            jobs,
            replies,
            unacked: BTreeMap::new(),
            queue: VecDeque::new(),
            checkpoints: VecDeque::new(),
            refused: None,
            at_edge: 0,
            memory_bytes: 0,
            bookkeeping_bytes: 0,
            next_token: 0,
        }
    }

    /// Submissions not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// Bytes of waiting files held in memory, and memory of unacknowledged files' bookkeeping.
    pub fn memory_bytes(&self) -> (u64, u64) {
        (self.memory_bytes, self.bookkeeping_bytes)
    }

    /// The bookkeeping of an unacknowledged file.
    pub fn file(&self, token: u64) -> Option<&InFlightFile> {
        match self.unacked.get(&token) {
            Some((InFlight::File(f), _)) => Some(f),
            _ => None,
        }
    }

    /// Whether a file submitted now would wait (the edge has all it may take, or others wait).
    pub fn would_wait(&self) -> bool {
        !self.queue.is_empty() || self.at_edge >= IN_FLIGHT_JOBS_MAX
    }

    /// Whether a file with `meta` bytes of bookkeeping may be submitted at all now (its bytes
    /// parked if they do not fit in memory; the disk's own room is the spill's).
    pub fn may_park(&self, meta: u64) -> bool {
        self.unacked.len() < self.limits.entries_max
            && (self.bookkeeping_bytes == 0 || self.bookkeeping_bytes + meta <= self.limits.bookkeeping_bytes_max)
    }

    /// Whether a file of `len` bytes with `meta` bytes of bookkeeping may wait in memory now.
    pub fn fits_in_memory(&self, len: usize, meta: u64) -> bool {
        self.may_park(meta)
            && (self.memory_bytes == 0 || self.memory_bytes + len as u64 <= self.limits.memory_bytes_max)
    }

    fn token(&mut self, item: InFlight, meta: u64) -> u64 {
        let t = self.next_token;
        self.next_token += 1;
        self.bookkeeping_bytes += meta;
        self.unacked.insert(t, (item, meta));
        t
    }

    /// Submit a file (its body in memory only if [`Self::fits_in_memory`] said so).
    pub fn put(&mut self, key: String, body: Body, file: InFlightFile) -> u64 {
        if let Body::Memory(b) = &body {
            self.memory_bytes += b.capacity() as u64;
        }
        let meta = file.memory_bytes();
        let t = self.token(InFlight::File(Box::new(file)), meta);
        self.queue.push_back((t, Waiting::Put { key, body }));
        t
    }

    pub fn retire(&mut self, ids: Vec<String>) {
        let t = self.token(InFlight::Retire, 0);
        self.queue.push_back((t, Waiting::Retire(ids)));
    }

    /// Submit a checkpoint write for `slots` (`(slot, next_position)`, one per checkpoint).
    pub fn checkpoint(&mut self, mut checkpoints: Vec<Checkpoint>, mut slots: Vec<(usize, u64)>) {
        if self.checkpoints.len() >= CHECKPOINTS_WAITING_MAX {
            let (old, older) = self.checkpoints.pop_back().expect("at the bound, not empty");
            let Some((InFlight::Checkpoint(older_slots), _)) = self.unacked.remove(&old) else {
                unreachable!("a waiting checkpoint's token maps to its slots")
            };
            let newer: std::collections::HashSet<usize> = slots.iter().map(|s| s.0).collect();
            for (c, s) in older.into_iter().zip(older_slots) {
                if !newer.contains(&s.0) {
                    checkpoints.push(c);
                    slots.push(s);
                }
            }
        }
        let t = self.token(InFlight::Checkpoint(slots), 0);
        self.checkpoints.push_back((t, checkpoints));
    }

    /// Decide what goes to the edge next.
    pub fn next_step(&mut self) -> Next {
        if let Some(job) = self.refused.take() {
            return Next::Send(job);
        }
        // The oldest waiting checkpoint, once everything before it is acknowledged.
        if let Some(&(t, _)) = self.checkpoints.front() {
            if self.unacked.keys().next() == Some(&t) && self.at_edge < IN_FLIGHT_JOBS_MAX {
                let (token, checkpoints) = self.checkpoints.pop_front().expect("a front");
                self.at_edge += 1;
                return Next::Send(Job::Checkpoint {
                    core: self.core,
                    token,
                    checkpoints,
                });
            }
        }
        if self.at_edge >= IN_FLIGHT_JOBS_MAX {
            return Next::Wait;
        }
        match self.queue.front() {
            None => Next::Wait,
            Some(&(
                token,
                Waiting::Put {
                    body: Body::Parked { id, len },
                    ..
                },
            )) => Next::Unpark { token, id, len },
            Some(_) => {
                let (token, w) = self.queue.pop_front().expect("a front");
                self.at_edge += 1;
                let core = self.core;
                Next::Send(match w {
                    Waiting::Put { key, body } => {
                        let Body::Memory(bytes) = body else {
                            unreachable!("parked bodies are read first")
                        };
                        self.memory_bytes -= bytes.capacity() as u64;
                        // The intent, if any, is the core's to build (`Pipeline::intent_for`).
                        Job::Put {
                            core,
                            token,
                            key,
                            bytes,
                            intent: None,
                        }
                    }
                    Waiting::Retire(ids) => Job::Retire { core, token, ids },
                })
            }
        }
    }

    /// A parked file is back in memory: it goes next.
    pub fn unparked(&mut self, token: u64, bytes: Vec<u8>) {
        match self.queue.front_mut() {
            Some((t, Waiting::Put { body, .. })) if *t == token => {
                self.memory_bytes += bytes.capacity() as u64;
                *body = Body::Memory(bytes);
            }
            _ => unreachable!("only the pump takes the queue's front"),
        }
    }

    /// Hand a job from [`Self::next_step`] to the edge.
    pub fn send(&mut self, job: Job) -> Sent {
        match self.jobs.try_send(job) {
            Ok(()) => Sent::Yes,
            Err(TrySendError::Full(job)) => {
                self.refused = Some(job);
                Sent::Full
            }
            Err(TrySendError::Disconnected(_)) => Sent::Gone,
        }
    }

    /// The next acknowledgement from the edge, with what it acknowledges; `Err(())` once the
    /// edge is gone (no more will come).
    #[allow(clippy::result_unit_err)]
    pub fn ack(&mut self) -> Result<Option<(Ack, InFlight)>, ()> {
        let done = match self.replies.try_recv() {
            Ok(d) => d,
            Err(TryRecvError::Empty) => return Ok(None),
            Err(TryRecvError::Disconnected) => return Err(()),
        };
        let (item, meta) = self
            .unacked
            .remove(&done.token)
            .unwrap_or_else(|| panic!("acknowledgement for unknown token {}", done.token));
        self.at_edge -= 1;
        self.bookkeeping_bytes -= meta;
        Ok(Some((done, item)))
    }

    /// Whether the pump has anything to do now or later (something unacknowledged).
    pub fn busy(&self) -> bool {
        !self.unacked.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::FileRow;
    use crate::lineage::Provenance;
    use crate::load::{FileMeta, Zone};

    fn file(key: &str) -> InFlightFile {
        InFlightFile {
            meta: FileMeta::untabled(Zone::Raw, key.into(), 1, 0, Provenance::default()),
            row: FileRow {
                run_id: "r".into(),
                core: 0,
                zone: "raw".into(),
                key: key.into(),
                source: None,
                table: None,
                records: 1,
                bytes: 1,
                crc32c: "00000000".into(),
                schema_version: None,
                event_time_min_us: None,
                event_time_max_us: None,
                positions: "[]".into(),
                written_at_us: 0,
            },
            intent: false,
        }
    }

    fn cp(partition: &str, next: u64) -> Checkpoint {
        Checkpoint {
            source: "s".into(),
            partition: partition.into(),
            next_position: next,
            cursor: None,
        }
    }

    struct Edge {
        jobs: Receiver<Job>,
        replies: Sender<Ack>,
    }

    /// Smaller than the defaults, so the tests see the configured limits honoured.
    const LIMITS: OutboxLimits = OutboxLimits {
        memory_bytes_max: 1 << 20,
        bookkeeping_bytes_max: 2 << 20,
        entries_max: 100,
    };

    fn outbox(queue: usize) -> (Outbox, Edge) {
        let (jt, jr) = crossbeam_channel::bounded(queue);
        let (rt, rr) = crossbeam_channel::bounded(IN_FLIGHT_JOBS_MAX);
        (Outbox::new(0, LIMITS, jt, rr), Edge { jobs: jr, replies: rt })
    }

    /// Run the pump's decisions without I/O: parked bodies come back as `len` zero bytes.
    fn pump(ob: &mut Outbox) -> Vec<u64> {
        let mut sent = Vec::new();
        loop {
            match ob.next_step() {
                Next::Send(job) => {
                    let t = token_of(&job);
                    match ob.send(job) {
                        Sent::Yes => sent.push(t),
                        Sent::Full => return sent,
                        Sent::Gone => panic!("edge gone"),
                    }
                }
                Next::Unpark { token, len, .. } => ob.unparked(token, vec![0; len]),
                Next::Wait => return sent,
            }
        }
    }

    fn token_of(job: &Job) -> u64 {
        match job {
            Job::Put { token, .. } | Job::Checkpoint { token, .. } | Job::Retire { token, .. } => *token,
        }
    }

    fn finish(edge: &Edge, n: usize) -> Vec<u64> {
        (0..n)
            .map(|_| {
                let job = edge.jobs.try_recv().expect("a job at the edge");
                let token = token_of(&job);
                edge.replies
                    .send(Ack {
                        token,
                        result: Ok(()),
                        write_ns: 0,
                        bytes: None,
                        retries: 0,
                    })
                    .unwrap();
                token
            })
            .collect()
    }

    fn drain_acks(ob: &mut Outbox) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some((d, _)) = ob.ack().unwrap() {
            out.push(d.token);
        }
        out
    }

    #[test]
    fn files_wait_in_order_beyond_the_edge_bound_and_memory_is_counted() {
        let (mut ob, edge) = outbox(64);
        let n = IN_FLIGHT_JOBS_MAX as u64 + 3;
        let meta = file("k").memory_bytes();
        assert!(meta > 0);
        for i in 0..n {
            ob.put(format!("k{i}"), Body::Memory(vec![1; 100]), file("k"));
        }
        assert_eq!(ob.memory_bytes(), (n * 100, n * meta));
        let sent = pump(&mut ob);
        assert_eq!(sent, (0..IN_FLIGHT_JOBS_MAX as u64).collect::<Vec<_>>());
        assert_eq!(
            ob.memory_bytes(),
            (300, n * meta),
            "three wait; bookkeeping stays until acknowledged"
        );
        assert_eq!(finish(&edge, 2), vec![0, 1]);
        assert_eq!(drain_acks(&mut ob), vec![0, 1]);
        assert_eq!(ob.memory_bytes(), (300, (n - 2) * meta));
        assert_eq!(pump(&mut ob), vec![8, 9]);
        assert_eq!(ob.unacked(), IN_FLIGHT_JOBS_MAX + 1);
    }

    #[test]
    fn a_checkpoint_waits_for_every_earlier_submission_but_holds_no_later_file_back() {
        let (mut ob, edge) = outbox(64);
        ob.put("audit".into(), Body::Memory(vec![0; 10]), file("a"));
        ob.checkpoint(vec![cp("p0", 5)], vec![(0, 5)]);
        ob.put("raw".into(), Body::Memory(vec![0; 10]), file("r"));
        assert_eq!(
            pump(&mut ob),
            vec![0, 2],
            "the later file passes the waiting checkpoint"
        );
        assert_eq!(finish(&edge, 1), vec![0]);
        drain_acks(&mut ob);
        assert_eq!(pump(&mut ob), vec![1], "everything before it is acknowledged");
        assert!(matches!(edge.jobs.try_recv().unwrap(), Job::Put { token: 2, .. }));
        assert!(matches!(
            edge.jobs.try_recv().unwrap(),
            Job::Checkpoint { token: 1, .. }
        ));
    }

    #[test]
    fn checkpoints_go_one_at_a_time_and_merge_past_their_bound() {
        let (mut ob, edge) = outbox(64);
        ob.put("stuck".into(), Body::Memory(vec![0; 10]), file("s"));
        for i in 0..CHECKPOINTS_WAITING_MAX as u64 + 2 {
            // Partition 0 moves every time; partition 1 only in the first.
            let mut cps = vec![cp("p0", 10 + i)];
            let mut slots = vec![(0, 10 + i)];
            if i == 0 {
                cps.push(cp("p1", 7));
                slots.push((1, 7));
            }
            ob.checkpoint(cps, slots);
        }
        assert_eq!(ob.checkpoints.len(), CHECKPOINTS_WAITING_MAX);
        assert_eq!(pump(&mut ob), vec![0]);
        assert_eq!(finish(&edge, 1), vec![0]);
        drain_acks(&mut ob);
        // One checkpoint at a time: the next waits for the one before it.
        let mut landed = Vec::new();
        loop {
            let sent = pump(&mut ob);
            if sent.is_empty() {
                break;
            }
            assert_eq!(sent.len(), 1);
            match edge.jobs.try_recv().unwrap() {
                Job::Checkpoint { checkpoints, .. } => landed.push(checkpoints),
                _ => panic!("not a checkpoint"),
            }
            edge.replies
                .send(Ack {
                    token: sent[0],
                    result: Ok(()),
                    write_ns: 0,
                    bytes: None,
                    retries: 0,
                })
                .unwrap();
            drain_acks(&mut ob);
        }
        assert_eq!(landed.len(), CHECKPOINTS_WAITING_MAX);
        let positions: Vec<u64> = landed.iter().map(|c| c[0].next_position).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "in order: {positions:?}");
        assert_eq!(*positions.last().unwrap(), 10 + CHECKPOINTS_WAITING_MAX as u64 + 1);
        assert_eq!(landed[0][1], cp("p1", 7));
        assert!(!ob.busy());
    }

    #[test]
    fn parked_files_are_read_back_in_their_turn_and_memory_is_bounded() {
        let (mut ob, _edge) = outbox(64);
        let meta = file("a").memory_bytes();
        let big = LIMITS.memory_bytes_max as usize / 2;
        assert!(ob.fits_in_memory(big, meta));
        ob.put("a".into(), Body::Memory(vec![0; big]), file("a"));
        assert!(ob.fits_in_memory(big, meta));
        ob.put("b".into(), Body::Memory(vec![0; big]), file("b"));
        assert!(!ob.fits_in_memory(1, meta), "no room for another file's bytes");
        assert!(ob.may_park(meta), "but room for its bookkeeping: it is parked");
        let t = ob.put("c".into(), Body::Parked { id: 9, len: 123 }, file("c"));
        assert_eq!(t, 2);
        let mut order = Vec::new();
        loop {
            match ob.next_step() {
                Next::Send(Job::Put { token, bytes, .. }) => order.push((token, bytes.len())),
                Next::Unpark { token, id, len } => {
                    assert_eq!((token, id, len), (2, 9, 123));
                    ob.unparked(token, vec![7; len]);
                }
                Next::Send(_) => panic!("only files"),
                Next::Wait => break,
            }
        }
        assert_eq!(order, vec![(0, big), (1, big), (2, 123)]);
        assert_eq!(
            ob.memory_bytes(),
            (0, 3 * meta),
            "bytes gone to the edge, bookkeeping until acknowledged"
        );
    }

    #[test]
    fn a_full_edge_queue_keeps_the_job_for_next_time() {
        let (mut ob, edge) = outbox(1);
        ob.put("a".into(), Body::Memory(vec![0; 1]), file("a"));
        ob.put("b".into(), Body::Memory(vec![0; 1]), file("b"));
        assert_eq!(pump(&mut ob), vec![0]);
        assert_eq!(finish(&edge, 1), vec![0]);
        assert_eq!(pump(&mut ob), vec![1], "the refused job went first");
        drain_acks(&mut ob);
        assert_eq!(finish(&edge, 1), vec![1]);
        assert_eq!(drain_acks(&mut ob), vec![1]);
        assert!(!ob.busy());
    }

    #[test]
    fn entries_are_bounded() {
        let (mut ob, _edge) = outbox(1);
        for i in 0..LIMITS.entries_max {
            assert!(ob.may_park(0), "entry {i}");
            ob.put("k".into(), Body::Parked { id: i as u64, len: 1 }, file("k"));
        }
        assert!(!ob.may_park(0));
        assert!(!ob.fits_in_memory(1, 0));
    }

    #[test]
    fn bookkeeping_has_its_own_bound() {
        let (mut ob, _edge) = outbox(1);
        let mut f = file("k");
        f.meta
            .provenance
            .runs
            .reserve_exact(LIMITS.bookkeeping_bytes_max as usize / 32 / 2);
        let meta = f.memory_bytes();
        assert!(meta > LIMITS.bookkeeping_bytes_max / 2);
        ob.put("k".into(), Body::Parked { id: 0, len: 1 }, f);
        assert!(
            !ob.may_park(meta),
            "a second such file must wait: its runs would not fit"
        );
        assert!(!ob.fits_in_memory(1, meta));
    }
}
