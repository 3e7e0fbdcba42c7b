//! The Kinesis Data Streams source (`[sources.kinesis]`): one partition per shard.
//!
//! Owns: the Kinesis client and the small tokio runtime it runs on (the cores never run tokio),
//! one fetch task per open shard on that runtime ([`fetch`]), and the readers the cores drain
//! those tasks through. A task calls GetRecords at the shard's pace (its bodies decoded by
//! [`decode`], not the SDK's JSON reader) and hands each response to its reader over a bounded
//! channel of `prefetch_max` responses; the reader (on the core that owns the shard) never
//! waits on the network: with nothing ready it answers `Idle`.
//!
//! Positions: a shard's position is the ordinal of a user record (after KPL de-aggregation,
//! [`kpl`]) counted from where the partition was first read — dense, and the same on every
//! replay, so the delivery contract's runs and skips work unchanged. Where to resume is the
//! batch's cursor, stored in the checkpoint beside the position:
//!
//! - `after:<sequence number>`: after that Kinesis record (a batch always ends on a whole
//!   Kinesis record, every user record of an aggregate included);
//! - `ts:<epoch ms>`: the first start of a shard with `start = "latest"` or `"at_timestamp"`,
//!   fixed as a timestamp and checkpointed by the engine before any record is read
//!   ([`Source::anchor`]), so a crash before the first checkpoint replays the same records;
//! - `end`: the shard is closed and every record of it is durable; a child shard starts only
//!   once every parent's checkpoint says `end`.
//!
//! Without a cursor (no checkpoint, `start = "trim_horizon"`) a shard is read from its trim
//! horizon.
//!
//! A response travels packed ([`records::Records`]: three buffers, not three allocations per
//! record), and once the reader has handed it out its buffers go back to the task for a later
//! response.
//!
//! Bounds: per shard, `prefetch_max` responses of at most `records_per_call_max` records (at
//! most 10 MiB each, the service's limit) wait outside the ring, and [`RECYCLED_MAX`] emptied
//! response buffer waits to be reused (shrunk when the next response needs less than half of
//! it, `Records::reuse`).

pub mod base64_lanes;
pub mod decode;
pub mod fetch;
pub mod kpl;
pub mod md5_lanes;
pub mod records;
pub mod replay;

use super::{Fetch, FetchBatch, PartitionInfo, PartitionReader, Source, SourceError};
use crate::clock::Clock;
use crate::config::{KinesisConfig, KinesisStart};
use crate::lineage::Resume;
use crate::store::CheckpointStore;
use fetch::{Msg, ShardTask, StartAt};
use records::Records;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// Worker threads of the Kinesis runtime: it moves responses off sockets; 256 shards at 5 calls
/// a second are ~1,300 requests a second, well within two threads.
pub const KINESIS_RUNTIME_THREADS: usize = 2;
/// How long a reader with no response ready tells its core to wait before asking again: far
/// below the 200 ms between two GetRecords calls of a shard, so a response waits little.
pub const READER_IDLE: Duration = Duration::from_millis(10);
/// Buffers of handed-out responses a shard's reader gives back to its fetch task; one suffices
/// (the task takes one per call, the reader returns one per response), more would only hold
/// memory.
pub const RECYCLED_MAX: usize = 1;
/// The cursor of a finished shard.
pub const CURSOR_END: &str = "end";

pub struct KinesisSource {
    name: String,
    cfg: KinesisConfig,
    rt: tokio::runtime::Runtime,
    client: aws_sdk_kinesis::Client,
    stream_pace: Arc<fetch::Pace>,
    /// The clock the fetch tasks pace and wait on (the system's unless the engine injects one).
    clock: Arc<dyn Clock>,
    checkpoints: Option<Arc<dyn CheckpointStore>>,
    /// Parents of each shard, from the listing (shard id → parent ids).
    parents: std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>,
}

impl KinesisSource {
    /// Pace and wait on `clock` (the engine's) instead of the system's.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> KinesisSource {
        self.clock = clock;
        self
    }

    /// A source reading `cfg.stream` with credentials from the standard provider chain (or the
    /// given static ones); `checkpoints` tells child shards whether their parents are done.
    pub fn try_new(
        name: &str,
        cfg: &KinesisConfig,
        checkpoints: Option<Arc<dyn CheckpointStore>>,
        credentials: Option<(&str, &str)>,
    ) -> Result<KinesisSource, SourceError> {
        let err = |message: String| SourceError {
            source_name: name.into(),
            partition: "-".into(),
            message,
        };
        let rt = crate::aws::runtime("sluicegate-kinesis", KINESIS_RUNTIME_THREADS)
            .map_err(|e| err(format!("cannot start the Kinesis runtime: {e}")))?;
        let sdk = crate::aws::sdk_config(&rt, &cfg.region, credentials);
        let mut b = aws_sdk_kinesis::config::Builder::from(&sdk)
            .retry_config(aws_sdk_kinesis::config::retry::RetryConfig::standard().with_max_attempts(cfg.attempts_max))
            .timeout_config(
                aws_sdk_kinesis::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(fetch::CONNECT_TIMEOUT)
                    .operation_attempt_timeout(fetch::ATTEMPT_TIMEOUT)
                    .build(),
            );
        if let Some(e) = &cfg.endpoint {
            b = b.endpoint_url(e);
        }
        Ok(KinesisSource {
            name: name.into(),
            cfg: cfg.clone(),
            client: aws_sdk_kinesis::Client::from_conf(b.build()),
            rt,
            stream_pace: Arc::new(fetch::Pace::per_second(cfg.stream_calls_per_s_max)),
            clock: Arc::new(crate::clock::SystemClock),
            checkpoints,
            parents: Default::default(),
        })
    }

    /// The parents of `shard` in the last listing. Only those gate it: a parent past the
    /// retention period is gone, read or not.
    fn listed_parents(&self, shard: &str) -> Vec<String> {
        let listing = self.parents.lock().expect("not poisoned");
        listing
            .get(shard)
            .into_iter()
            .flatten()
            .filter(|p| listing.contains_key(*p))
            .cloned()
            .collect()
    }

    fn error(&self, partition: &str, message: String) -> SourceError {
        SourceError {
            source_name: self.name.clone(),
            partition: partition.into(),
            message,
        }
    }
}

/// The placement ordinal of a shard: the number in its id (`shardId-000000000007` → 7), stable
/// while shards come and go; ids of another form fall back to their rank in the listing.
fn shard_ordinal(id: &str, rank: usize) -> u64 {
    id.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(rank as u64)
}

impl Source for KinesisSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn partitions(&self) -> Result<Vec<PartitionInfo>, SourceError> {
        let shards = self
            .rt
            .block_on(fetch::list_shards(&self.client, &self.cfg.stream))
            .map_err(|e| self.error("-", e))?;
        let mut parents = self.parents.lock().expect("not poisoned");
        let mut out = Vec::with_capacity(shards.len());
        for (rank, s) in shards.into_iter().enumerate() {
            out.push(PartitionInfo {
                ordinal: shard_ordinal(&s.id, rank),
                id: s.id.clone(),
            });
            parents.insert(s.id, s.parents);
        }
        Ok(out)
    }

    fn discovery_interval(&self) -> Option<Duration> {
        Some(Duration::from_millis(self.cfg.discovery_interval_ms))
    }

    fn anchor(&self, partition: &PartitionInfo, now_us: i64) -> Option<Resume> {
        // A child of a listed parent is read from its start, after its parents, whatever the
        // configured start: its records came after the parents' last.
        if !self.listed_parents(&partition.id).is_empty() {
            return None;
        }
        let ms = match self.cfg.start {
            KinesisStart::TrimHorizon => return None,
            KinesisStart::Latest => now_us / 1000,
            KinesisStart::AtTimestamp => chrono::DateTime::parse_from_rfc3339(
                self.cfg
                    .start_timestamp
                    .as_deref()
                    .expect("validated: set with at_timestamp"),
            )
            .expect("validated: RFC 3339")
            .timestamp_millis(),
        };
        Some(Resume {
            position: 0,
            cursor: Some(format!("ts:{ms}")),
        })
    }

    fn open(
        &self,
        partition: &PartitionInfo,
        resume: Option<&Resume>,
    ) -> Result<Box<dyn PartitionReader>, SourceError> {
        let start = match resume.and_then(|r| r.cursor.as_deref()) {
            None => StartAt::TrimHorizon,
            Some(CURSOR_END) => StartAt::Finished,
            Some(c) => StartAt::parse(c).ok_or_else(|| {
                self.error(
                    &partition.id,
                    format!("checkpoint cursor {c:?} is not a Kinesis cursor"),
                )
            })?,
        };
        let parents = self.listed_parents(&partition.id);
        let (tx, rx) = tokio::sync::mpsc::channel(self.cfg.prefetch_max as usize);
        let (recycle, recycled) = crossbeam_channel::bounded(RECYCLED_MAX);
        let task = ShardTask {
            client: self.client.clone(),
            source: self.name.clone(),
            stream: self.cfg.stream.clone(),
            shard: partition.id.clone(),
            parents,
            checkpoints: self.checkpoints.clone(),
            cfg: self.cfg.clone(),
            stream_pace: self.stream_pace.clone(),
            clock: self.clock.clone(),
            recycled,
        };
        let finished = start == StartAt::Finished;
        let handle = (!finished).then(|| self.rt.spawn(task.run(start, tx)));
        Ok(Box::new(KinesisReader {
            source: self.name.clone(),
            shard: partition.id.clone(),
            rx,
            recycle,
            task: handle,
            pending: VecDeque::new(),
            next_position: resume.map_or(0, |r| r.position),
            closed: finished,
            lag_ms: None,
            throttles: 0,
        }))
    }
}

/// A response's records on the owning core.
struct Pending {
    records: Records,
    /// Per record: a KPL aggregate whose digest matched.
    aggregates: Vec<bool>,
    /// The first record not yet handed out.
    next: usize,
}

/// A shard's reader on its core: drains the fetch task's responses into batches.
struct KinesisReader {
    source: String,
    shard: String,
    rx: tokio::sync::mpsc::Receiver<Msg>,
    /// Where handed-out responses' buffers go back to the fetch task.
    recycle: crossbeam_channel::Sender<Records>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Responses received and not yet wholly handed out (none empty).
    pending: VecDeque<Pending>,
    next_position: u64,
    /// The task said the shard is closed and sent its last records.
    closed: bool,
    lag_ms: Option<u64>,
    throttles: u64,
}

impl Drop for KinesisReader {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

impl KinesisReader {
    fn error(&self, message: String) -> SourceError {
        SourceError {
            source_name: self.source.clone(),
            partition: self.shard.clone(),
            message,
        }
    }

    /// Take every response the task has ready (without waiting).
    fn receive(&mut self) -> Result<(), SourceError> {
        while !self.closed {
            match self.rx.try_recv() {
                Ok(Msg::Records {
                    records,
                    aggregates,
                    lag_ms,
                    throttles,
                    closed,
                }) => {
                    if records.is_empty() {
                        // Back at once, as a handed-out response's are.
                        let _ = self.recycle.try_send(records);
                    } else {
                        self.pending.push_back(Pending {
                            records,
                            aggregates,
                            next: 0,
                        });
                    }
                    if let Some(l) = lag_ms {
                        self.lag_ms = Some(l);
                    }
                    self.throttles += throttles;
                    self.closed = closed;
                }
                Ok(Msg::Fatal(e)) => return Err(self.error(e)),
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                    return Err(self.error("the shard's fetch task stopped".into()))
                }
            }
        }
        Ok(())
    }
}

impl PartitionReader for KinesisReader {
    fn fetch(&mut self, batch: &mut FetchBatch, max_records: usize, _clock: &dyn Clock) -> Result<Fetch, SourceError> {
        batch.clear();
        batch.cursor = None;
        if self.pending.iter().map(|p| p.records.len() - p.next).sum::<usize>() < max_records {
            self.receive()?;
        }
        // Whole Kinesis records only, so the cursor `after:<seq>` is exact.
        let mut took = false;
        while batch.records.len() < max_records && !batch.is_full() {
            let Some(p) = self.pending.front_mut() else {
                break;
            };
            let (data, seq) = p.records.get(p.next);
            let next = &mut self.next_position;
            kpl::split(data, p.aggregates[p.next], |user| {
                batch.push(user, *next, None);
                *next += 1;
            });
            p.next += 1;
            took = true;
            if p.next == p.records.len() {
                // The cursor of a response's last record, formatted once per response; a
                // later record of this batch replaces it.
                batch.cursor = Some(format!("after:{seq}"));
                took = false;
                let done = self.pending.pop_front().expect("front");
                // Dropped if the task has one to spare already, or is gone.
                let _ = self.recycle.try_send(done.records);
            }
        }
        if took {
            let p = self.pending.front().expect("took from it");
            batch.cursor = Some(format!("after:{}", p.records.get(p.next - 1).1));
        }
        batch.next_position = self.next_position;
        let finished = self.closed && self.pending.is_empty();
        if finished {
            batch.cursor = Some(CURSOR_END.into());
            return Ok(Fetch::End);
        }
        Ok(if batch.records.is_empty() {
            Fetch::Idle(READER_IDLE)
        } else {
            Fetch::Records
        })
    }

    fn lag_ms(&self) -> Option<u64> {
        self.lag_ms
    }

    fn take_stats(&mut self) -> crate::source::ReaderStats {
        crate::source::ReaderStats {
            throttles: std::mem::take(&mut self.throttles),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn shard_ordinals_come_from_the_id() {
        assert_eq!(shard_ordinal("shardId-000000000007", 0), 7);
        assert_eq!(shard_ordinal("shardId-000000000012", 3), 12);
        assert_eq!(shard_ordinal("custom", 3), 3);
    }
}
