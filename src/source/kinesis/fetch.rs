//! One shard's fetch task, on the Kinesis runtime: GetShardIterator, then GetRecords at the
//! shard's pace, each response handed to the shard's reader over a bounded channel.
//!
//! Owns: the shard iterator (never persisted: it expires after 5 minutes), the pacing, and the
//! retries. Invariants:
//! - calls per shard stay under `shard_calls_per_s_max`, bytes per shard under
//!   `shard_bytes_per_s_max` (the next call waits until the last response's bytes are paid
//!   for), and calls over all shards under `stream_calls_per_s_max` ([`Pace`]);
//! - records are sent in shard order, each exactly once per task: an expired iterator is
//!   re-opened *after the last record sent*, not at the checkpoint — re-reading from the
//!   checkpoint would send records the reader already holds a second time;
//! - a child shard's first call waits until every listed parent's checkpoint says `end`.
//!
//! Retries: this loop retries GetRecords and GetShardIterator itself (the SDK's own retries are
//! off for them, so every throttled call is counted): throttling (ProvisionedThroughputExceeded,
//! LimitExceeded, KMS throttling) and transient failures (5xx, timeouts, dropped connections)
//! back off exponentially with jitter
//! from [`BACKOFF_MIN`] to [`BACKOFF_MAX`] and retry without end — a source that is slow or
//! briefly unreachable must not stop the appliance. Anything else (no such stream, access
//! denied) is fatal and reaches the core as a source error.
//!
//! Bounds: the channel holds `prefetch_max` responses; a full channel (the core is not taking
//! records, e.g. under backpressure) stops the task's calls until there is room.

use super::decode::DecodeGetRecords;
use super::records::Records;
use super::CURSOR_END;
use crate::aws::{error_chain, is_transport, status};
use crate::clock::Clock;
use crate::config::KinesisConfig;
use crate::store::CheckpointStore;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::types::ShardIteratorType;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::Sender;

/// Connect timeout per attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of one attempt of any call (a GetRecords of 10 MiB included).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// First and largest wait between retries of a throttled or failed call.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How often a child shard looks whether its parents are finished.
pub const PARENT_POLL: Duration = Duration::from_millis(500);

/// What the task tells the reader.
#[derive(Debug)]
pub enum Msg {
    Records {
        /// The response's records, packed.
        records: Records,
        /// Per record: a KPL aggregate whose digest matches (`kpl::digests_match`), checked
        /// here, on the fetch runtime, rather than on the owning core.
        aggregates: Vec<bool>,
        /// MillisBehindLatest of the response.
        lag_ms: Option<u64>,
        /// Throttled calls since the last message.
        throttles: u64,
        /// The shard is closed and these are its last records.
        closed: bool,
    },
    Fatal(String),
}

/// Where the task's first iterator starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartAt {
    TrimHorizon,
    After(String),
    Timestamp(i64),
    /// Nothing left to read (the checkpoint says `end`).
    Finished,
}

impl StartAt {
    /// A checkpoint cursor (`after:<seq>`, `ts:<ms>`, `end`).
    pub fn parse(cursor: &str) -> Option<StartAt> {
        if cursor == CURSOR_END {
            return Some(StartAt::Finished);
        }
        if let Some(seq) = cursor.strip_prefix("after:") {
            return (!seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit())).then(|| StartAt::After(seq.into()));
        }
        cursor.strip_prefix("ts:")?.parse().ok().map(StartAt::Timestamp)
    }
}

/// A shard of the listing and the parents it names.
#[derive(Debug, Clone)]
pub struct ShardInfo {
    pub id: String,
    pub parents: Vec<String>,
}

/// Every shard of `stream` (ListShards, all pages), by id.
pub async fn list_shards(client: &aws_sdk_kinesis::Client, stream: &str) -> Result<Vec<ShardInfo>, String> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        // With a token the stream name must not be sent (the token names it).
        let req = match &token {
            Some(t) => client.list_shards().next_token(t),
            None => client.list_shards().stream_name(stream),
        };
        let page = req
            .send()
            .await
            .map_err(|e| format!("ListShards of stream {stream}: {}", describe(&e)))?;
        for s in page.shards() {
            out.push(ShardInfo {
                id: s.shard_id().to_string(),
                parents: s
                    .parent_shard_id()
                    .into_iter()
                    .chain(s.adjacent_parent_shard_id())
                    .map(str::to_string)
                    .collect(),
            });
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Spaces calls at least `interval` apart (none with a zero interval); shared by tasks.
pub struct Pace {
    interval: Duration,
    /// When the next caller may go, on the injected clock (monotonic ns).
    next: tokio::sync::Mutex<Option<u64>>,
}

impl Pace {
    /// At most `per_second` calls a second; 0 = unlimited.
    pub fn per_second(per_second: u32) -> Pace {
        Pace {
            interval: if per_second == 0 {
                Duration::ZERO
            } else {
                Duration::from_secs(1) / per_second
            },
            next: tokio::sync::Mutex::new(None),
        }
    }

    /// Wait for this caller's turn.
    pub async fn wait(&self, clock: &dyn Clock) {
        if self.interval.is_zero() {
            return;
        }
        let (at, now) = {
            let mut next = self.next.lock().await;
            let now = clock.monotonic_ns();
            let at = next.map_or(now, |n| n.max(now));
            *next = Some(at + self.interval.as_nanos() as u64);
            (at, now)
        };
        pause(clock, Duration::from_nanos(at - now)).await;
    }
}

/// Wait `d` on the injected clock: tokio's timer for a real clock, none for a simulated one.
pub async fn pause(clock: &dyn Clock, d: Duration) {
    if let Some(d) = clock.wait(d) {
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }
}

/// How a failed call goes on.
#[derive(Debug)]
enum Failure {
    /// The iterator expired: open a new one after the last record sent.
    Expired,
    /// Counted (the reader's throttle count), not logged: throttling is the service pacing us.
    Throttled,
    /// Logged, then retried.
    Transient(String),
    Fatal(String),
}

fn describe<E: ProvideErrorMetadata + std::error::Error + 'static>(
    e: &SdkError<E, aws_sdk_kinesis::config::http::HttpResponse>,
) -> String {
    match e {
        SdkError::ServiceError(se) => format!(
            "HTTP {} {}: {}",
            status(e).map_or("-".into(), |s| s.to_string()),
            se.err().code().unwrap_or("?"),
            se.err().message().unwrap_or("")
        ),
        other => error_chain(other),
    }
}

fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    op: &str,
    e: SdkError<E, aws_sdk_kinesis::config::http::HttpResponse>,
) -> Failure {
    let message = format!("{op}: {}", describe(&e));
    if is_transport(&e) {
        return Failure::Transient(message);
    }
    let code = match &e {
        SdkError::ServiceError(se) => se.err().code().unwrap_or_default().to_string(),
        _ => String::new(),
    };
    match code.as_str() {
        "ExpiredIteratorException" => Failure::Expired,
        "ProvisionedThroughputExceededException"
        | "LimitExceededException"
        | "KMSThrottlingException"
        | "ThrottlingException" => Failure::Throttled,
        "InternalFailureException" | "ServiceUnavailable" => Failure::Transient(message),
        _ if status(&e).is_some_and(|s| s >= 500 || s == 429) => Failure::Transient(message),
        _ => Failure::Fatal(message),
    }
}

/// The shard loop retries GetRecords and GetShardIterator itself (backoff with jitter,
/// throttles counted, expired iterators re-opened), so the SDK must not retry them first.
fn no_sdk_retries() -> aws_sdk_kinesis::config::Builder {
    aws_sdk_kinesis::config::Builder::default().retry_config(aws_sdk_kinesis::config::retry::RetryConfig::disabled())
}

/// Exponential backoff with jitter between [`BACKOFF_MIN`] and [`BACKOFF_MAX`].
struct Backoff {
    next: Duration,
    rng: crate::rng::Rng,
}

impl Backoff {
    fn new(seed: u64) -> Backoff {
        Backoff {
            next: BACKOFF_MIN,
            rng: crate::rng::Rng::new(seed),
        }
    }

    async fn wait(&mut self, clock: &dyn Clock) {
        // "Equal jitter": half the step fixed, half random, so waits still grow.
        let half = self.next / 2;
        let jitter = half.mul_f64(self.rng.unit());
        pause(clock, half + jitter).await;
        self.next = (self.next * 2).min(BACKOFF_MAX);
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

/// Everything one shard's task needs.
pub struct ShardTask {
    pub client: aws_sdk_kinesis::Client,
    pub source: String,
    pub stream: String,
    pub shard: String,
    /// Parents in the listing: read to their end before this shard.
    pub parents: Vec<String>,
    pub checkpoints: Option<Arc<dyn CheckpointStore>>,
    pub cfg: KinesisConfig,
    pub stream_pace: Arc<Pace>,
    /// The clock every wait and pace of the task reads (the engine's, injected).
    pub clock: Arc<dyn Clock>,
    /// Buffers of responses the reader has handed out, to decode later responses into.
    pub recycled: crossbeam_channel::Receiver<Records>,
}

impl ShardTask {
    pub async fn run(self, start: StartAt, tx: Sender<Msg>) {
        if let Err(e) = self.fetch(start, &tx).await {
            let _ = tx.send(Msg::Fatal(e)).await;
        }
    }

    /// Whether every parent's checkpoint says `end`.
    fn parents_done(&self) -> Result<bool, String> {
        let Some(cps) = &self.checkpoints else {
            return Ok(true);
        };
        for p in &self.parents {
            let done = cps
                .load(&self.source, p)?
                .is_some_and(|r| r.cursor.as_deref() == Some(CURSOR_END));
            if !done {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn iterator(&self, at: &StartAt) -> Result<String, Failure> {
        let req = self
            .client
            .get_shard_iterator()
            .stream_name(&self.stream)
            .shard_id(&self.shard);
        let req = match at {
            StartAt::TrimHorizon => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
            StartAt::After(seq) => req
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq),
            StartAt::Timestamp(ms) => req
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(aws_sdk_kinesis::primitives::DateTime::from_millis(*ms)),
            StartAt::Finished => unreachable!("a finished shard has no task"),
        };
        let out = req
            .customize()
            .config_override(no_sdk_retries())
            .send()
            .await
            .map_err(|e| classify("GetShardIterator", e))?;
        out.shard_iterator
            .ok_or_else(|| Failure::Transient("GetShardIterator: no iterator in the response".into()))
    }

    /// The loop; returns only on a fatal error, the shard's end, or a reader gone.
    async fn fetch(&self, mut at: StartAt, tx: &Sender<Msg>) -> Result<(), String> {
        while !self.parents_done()? {
            pause(&*self.clock, PARENT_POLL).await;
        }
        let cfg = &self.cfg;
        let call_interval = Duration::from_secs(1) / cfg.shard_calls_per_s_max.max(1);
        // Jitter differs per shard, so throttled shards do not retry in step.
        let seed = self.shard.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let mut backoff = Backoff::new(seed);
        let mut iterator: Option<String> = None;
        let clock = &*self.clock;
        let mut next_call = clock.monotonic_ns();
        let mut throttles = 0u64;
        // One interceptor for the task's calls (each call takes a clone: no allocation).
        let decode = DecodeGetRecords::new(self.recycled.clone());
        loop {
            let result = match iterator.take() {
                None => self.iterator(&at).await.map(|it| {
                    iterator = Some(it);
                    None
                }),
                Some(it) => {
                    pause(
                        clock,
                        Duration::from_nanos(next_call.saturating_sub(clock.monotonic_ns())),
                    )
                    .await;
                    self.stream_pace.wait(clock).await;
                    let started = clock.monotonic_ns();
                    let r = self
                        .client
                        .get_records()
                        .shard_iterator(&it)
                        .limit(cfg.records_per_call_max as i32)
                        .customize()
                        .config_override(no_sdk_retries())
                        .interceptor(decode.clone())
                        .send()
                        .await;
                    if r.is_err() {
                        iterator = Some(it);
                    }
                    r.map(|out| Some((out, started))).map_err(|e| classify("GetRecords", e))
                }
            };
            match result {
                Ok(None) => backoff.reset(),
                Ok(Some((out, started))) => {
                    backoff.reset();
                    // Decoded by `decode` (packed as read), or by the SDK when `decode` refused
                    // the body (packed here).
                    let records = decode.take().unwrap_or_else(|| Records::from_sdk(&out.records));
                    let paid = Duration::from_secs_f64(records.data_bytes() as f64 / cfg.shard_bytes_per_s_max as f64);
                    next_call = started + call_interval.max(paid).as_nanos() as u64;
                    if let Some(last) = records.last_sequence() {
                        at = StartAt::After(last.to_string());
                    }
                    let closed = out.next_shard_iterator.is_none();
                    let empty = records.is_empty();
                    // Empty responses are sent too: their MillisBehindLatest says the shard
                    // caught up.
                    let aggregates = super::kpl::digests_match(&records.payloads().collect::<Vec<_>>());
                    let msg = Msg::Records {
                        records,
                        aggregates,
                        lag_ms: out.millis_behind_latest.map(|l| l.max(0) as u64),
                        throttles: std::mem::take(&mut throttles),
                        closed,
                    };
                    if tx.send(msg).await.is_err() || closed {
                        return Ok(()); // the reader is gone, or the shard is done
                    }
                    iterator = out.next_shard_iterator;
                    if empty {
                        next_call = next_call.max(clock.monotonic_ns() + cfg.idle_ms * 1_000_000);
                    }
                }
                Err(Failure::Expired) => iterator = None,
                Err(Failure::Throttled) => {
                    throttles += 1;
                    backoff.wait(clock).await;
                }
                Err(Failure::Transient(e)) => {
                    tracing::warn!(source = %self.source, shard = %self.shard, error = %e, "Kinesis call failed, retrying");
                    backoff.wait(clock).await;
                }
                Err(Failure::Fatal(e)) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_parse_or_are_refused() {
        assert_eq!(StartAt::parse("after:4959"), Some(StartAt::After("4959".into())));
        assert_eq!(
            StartAt::parse("ts:1700000000000"),
            Some(StartAt::Timestamp(1_700_000_000_000))
        );
        assert_eq!(StartAt::parse("end"), Some(StartAt::Finished));
        for bad in ["after:", "after:12x", "ts:soon", "12", ""] {
            assert_eq!(StartAt::parse(bad), None, "{bad:?}");
        }
    }

    /// The stream's pace and the task's waits run on the injected clock: ten calls at five a
    /// second take 1.8 s of a simulated clock and no real time.
    #[test]
    fn pacing_waits_on_the_injected_clock() {
        let rt = crate::aws::runtime("pace-test", 1).unwrap();
        let clock = crate::clock::ManualClock::new(0);
        let pace = Pace::per_second(5);
        let real = std::time::Instant::now();
        rt.block_on(async {
            for _ in 0..10 {
                pace.wait(&clock).await;
            }
            let mut b = Backoff::new(7);
            b.wait(&clock).await;
        });
        assert!(real.elapsed() < Duration::from_millis(500), "{:?}", real.elapsed());
        let simulated = Duration::from_nanos(clock.monotonic_ns());
        // 9 gaps of 200 ms, then one backoff of half to all of BACKOFF_MIN.
        assert!(
            simulated >= Duration::from_millis(1800) + BACKOFF_MIN / 2,
            "{simulated:?}"
        );
        assert!(simulated <= Duration::from_millis(1800) + BACKOFF_MIN, "{simulated:?}");
    }
}
