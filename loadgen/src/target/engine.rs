//! The in-process engine target: loadgen runs sluicegate's engine in its own process, with an
//! `in_process` source whose records appear on the schedule. Each lane is one partition of
//! that source; a core fetching the partition gets every record that is due by then (up to its
//! batch size) and nothing that is not, so an engine that falls behind finds a backlog whose
//! records were due long ago — their latency counts from then (open loop). The `request`
//! latency here is from due time to the fetch that took the request's last record (a request
//! split over fetches counts once); `e2e` is read from the lake once the engine has drained.
//!
//! Bounds: a reader holds one request's records (`batch`) at a time, in buffers it reuses (no
//! allocation per record on the core); each fetch returns at most what the core asks for.

use crate::events::Events;
use crate::profile::{Schedule, Slot};
use crate::record::Answer;
use crate::record::Recorder;
use sluicegate::clock::Clock;
use sluicegate::lineage::Resume;
use sluicegate::source::{Fetch, FetchBatch, PartitionInfo, PartitionReader, Source, SourceError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The name of the in-process source in the engine's configuration.
pub const SOURCE_NAME: &str = "loadgen";
/// Longest a reader asks the core to wait before it fetches again.
pub const IDLE_MAX: Duration = Duration::from_millis(50);

pub struct ScheduledSource {
    events: Arc<Events>,
    schedule: Schedule,
    lanes: u64,
    origin: Instant,
    /// One recorder per lane, filled by the lane's reader on its core.
    recorders: Vec<Arc<Mutex<Recorder>>>,
}

impl ScheduledSource {
    pub fn new(events: Arc<Events>, schedule: Schedule, lanes: u64, origin: Instant, interval: Duration) -> Self {
        ScheduledSource {
            events,
            schedule,
            lanes,
            origin,
            recorders: (0..lanes)
                .map(|_| Arc::new(Mutex::new(Recorder::new(interval))))
                .collect(),
        }
    }

    /// Every lane's measurements, merged.
    pub fn recorded(&self, interval: Duration) -> Recorder {
        let mut all = Recorder::new(interval);
        for r in &self.recorders {
            all.merge(&r.lock().expect("a reader panicked"));
        }
        all
    }
}

impl Source for ScheduledSource {
    fn name(&self) -> &str {
        SOURCE_NAME
    }

    fn partitions(&self) -> Result<Vec<PartitionInfo>, SourceError> {
        Ok((0..self.lanes)
            .map(|l| PartitionInfo {
                id: format!("lane-{l}"),
                ordinal: l,
            })
            .collect())
    }

    fn open(&self, p: &PartitionInfo, resume: Option<&Resume>) -> Result<Box<dyn PartitionReader>, SourceError> {
        if resume.is_some() {
            return Err(SourceError {
                source_name: SOURCE_NAME.into(),
                partition: p.id.clone(),
                message: "a load run does not resume: give the engine no state.dir".into(),
            });
        }
        let slots = crate::lane::lane_slots(self.schedule.clone(), p.ordinal, self.lanes);
        Ok(Box::new(Reader {
            events: self.events.clone(),
            slots: Box::new(slots),
            pending: Pending::default(),
            next: None,
            position: 0,
            origin: self.origin,
            rec: self.recorders[p.ordinal as usize].clone(),
            plain: String::new(),
        }))
    }
}

/// The due request's records, back to back in one buffer, and how many were fetched.
#[derive(Default)]
struct Pending {
    data: Vec<u8>,
    /// (start, length, good) of each record in `data`.
    spans: Vec<(usize, usize, bool)>,
    taken: usize,
    /// Good records among those taken.
    taken_good: u64,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.taken == self.spans.len()
    }

    fn fill(&mut self, events: &Events, slot: Slot, plain: &mut String) {
        let Pending {
            data,
            spans,
            taken,
            taken_good,
        } = self;
        data.clear();
        spans.clear();
        *taken = 0;
        *taken_good = 0;
        events.each(slot, plain, |payload, good| {
            spans.push((data.len(), payload.len(), good));
            data.extend_from_slice(payload);
        });
    }
}

struct Reader {
    events: Arc<Events>,
    slots: Box<dyn Iterator<Item = Slot> + Send>,
    pending: Pending,
    /// The request whose records are in `pending`, or the next one due.
    next: Option<Slot>,
    position: u64,
    origin: Instant,
    rec: Arc<Mutex<Recorder>>,
    plain: String,
}

impl PartitionReader for Reader {
    fn fetch(&mut self, batch: &mut FetchBatch, max_records: usize, _clock: &dyn Clock) -> Result<Fetch, SourceError> {
        batch.clear();
        let now = self.origin.elapsed().as_nanos() as u64;
        let mut rec = self.rec.lock().expect("one reader per lane");
        while batch.records.len() < max_records && !batch.is_full() {
            if self.pending.is_empty() {
                let Some(slot) = self.next.take().or_else(|| self.slots.next()) else {
                    batch.next_position = self.position;
                    return Ok(Fetch::End);
                };
                if slot.due_ns > now {
                    self.next = Some(slot);
                    break;
                }
                self.pending.fill(&self.events, slot, &mut self.plain);
                self.next = Some(slot);
            }
            let slot = self.next.expect("set with pending");
            while batch.records.len() < max_records && !batch.is_full() && !self.pending.is_empty() {
                let (start, len, g) = self.pending.spans[self.pending.taken];
                self.pending.taken += 1;
                self.pending.taken_good += u64::from(g);
                batch.push(&self.pending.data[start..start + len], self.position, None);
                self.position += 1;
            }
            if self.pending.is_empty() {
                // The request's wait from its due time to the fetch that took its last record.
                self.next = None;
                let a = Answer {
                    accepted: self.pending.spans.len() as u64,
                    accepted_good: self.pending.taken_good,
                    ..Answer::default()
                };
                rec.request(slot.due_ns, now, a);
            }
        }
        batch.next_position = self.position;
        if !batch.records.is_empty() {
            return Ok(Fetch::Records);
        }
        let wait = self
            .next
            .map_or(IDLE_MAX, |s| Duration::from_nanos(s.due_ns.saturating_sub(now)));
        Ok(Fetch::Idle(wait.clamp(Duration::from_micros(100), IDLE_MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;
    use sluicegate::clock::SystemClock;
    use sluicegate::config::Encryption;
    use sluicegate::extract::keyring::Keyring;

    #[test]
    fn a_request_split_over_fetches_counts_once_with_all_its_records() {
        let mut keys = Keyring::default();
        keys.insert_demo().unwrap();
        let events = Events::new(
            7,
            0.1,
            Encryption::None,
            Arc::new(keys),
            "demo",
            1_800_000_000_000_000,
            50,
        )
        .unwrap();
        // 1,000 records/s for 0.5 s in requests of 50: 10 requests, all due long ago.
        let schedule = Schedule::new(Profile::parse("constant:1000").unwrap(), Duration::from_millis(500), 50);
        let origin = Instant::now() - Duration::from_secs(10);
        let source = ScheduledSource::new(Arc::new(events), schedule, 1, origin, Duration::from_secs(1));
        let mut reader = source.open(&source.partitions().unwrap()[0], None).unwrap();
        let (mut batch, mut fetched) = (FetchBatch::default(), 0);
        // 20 at a time: each request spans two or three fetches, and fetches span requests.
        while reader.fetch(&mut batch, 20, &SystemClock).unwrap() != Fetch::End {
            fetched += batch.records.len() as u64;
        }
        fetched += batch.records.len() as u64;
        let t = source.recorded(Duration::from_secs(1)).totals();
        assert_eq!(fetched, 500);
        assert_eq!((t.requests, t.accepted), (10, 500));
        assert!(t.accepted_good < 500 && t.accepted_good > 400, "{t:?}");
    }
}
