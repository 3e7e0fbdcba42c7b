//! `[sources.kinesis]`: a Kinesis Data Streams source (see `source::kinesis`).
//!
//! Owns: the Kinesis keys, their `DEFAULT_*` constants and their validation. The shard limits
//! of the service (5 GetRecords calls/s, 2 MB/s, 10,000 records a call) are the upper bounds of
//! the per-shard keys: the appliance may read slower than the service allows, never faster.

use super::validator::{bytes_human, Validator};
use super::MIB;
use serde::{Deserialize, Serialize};

/// GetRecords calls per second per shard: the service's limit, shared by every consumer of
/// the shard (lower it when other consumers read the same stream).
pub const DEFAULT_KINESIS_SHARD_CALLS_PER_S_MAX: u32 = 5;
/// Bytes per second read per shard: the service's 2 MB/s limit.
pub const DEFAULT_KINESIS_SHARD_BYTES_PER_S_MAX: u64 = 2 * MIB;
/// Records per GetRecords call: the service's maximum (fewer calls for the same data).
pub const DEFAULT_KINESIS_RECORDS_PER_CALL_MAX: u32 = 10_000;
/// GetRecords calls per second over the whole stream (all shards of this appliance); 0 = no
/// limit beyond the per-shard one.
pub const DEFAULT_KINESIS_STREAM_CALLS_PER_S_MAX: u32 = 0;
/// How long a shard waits after an empty GetRecords before asking again (the KCL's
/// `idleTimeBetweenReadsInMillis` is 1 s too).
pub const DEFAULT_KINESIS_IDLE_MS: u64 = 1_000;
/// GetRecords responses fetched ahead per shard while its core is busy: the bound on what a
/// shard holds in memory outside the ring (at most this × 10 MiB).
pub const DEFAULT_KINESIS_PREFETCH_MAX: u32 = 2;
/// How often the shard list is read again to find new shards (a split or merge): the longest
/// a child shard waits to be noticed (the KCL's shard sync runs every 60 s).
pub const DEFAULT_KINESIS_DISCOVERY_INTERVAL_MS: u64 = 10_000;
/// Attempts per ListShards call (the SDK's standard retry mode: backoff with jitter on
/// throttling, 5xx and timeouts). GetRecords and GetShardIterator are retried without end, with
/// backoff, by the shard loop instead.
pub const DEFAULT_KINESIS_ATTEMPTS_MAX: u32 = 3;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KinesisConfig {
    /// Stream name.
    pub stream: String,
    /// Region; empty: the provider chain (AWS_REGION, profile), else us-east-1.
    #[serde(default)]
    pub region: String,
    /// Endpoint override (a local emulator, a VPC endpoint).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Where a shard without a checkpoint starts.
    #[serde(default)]
    pub start: KinesisStart,
    /// With `start = "at_timestamp"`: an RFC 3339 time.
    #[serde(default)]
    pub start_timestamp: Option<String>,
    #[serde(default = "d_shard_calls")]
    pub shard_calls_per_s_max: u32,
    #[serde(default = "d_shard_bytes")]
    pub shard_bytes_per_s_max: u64,
    #[serde(default = "d_records_per_call")]
    pub records_per_call_max: u32,
    #[serde(default = "d_stream_calls")]
    pub stream_calls_per_s_max: u32,
    #[serde(default = "d_idle_ms")]
    pub idle_ms: u64,
    #[serde(default = "d_prefetch")]
    pub prefetch_max: u32,
    #[serde(default = "d_attempts")]
    pub attempts_max: u32,
    #[serde(default = "d_discovery")]
    pub discovery_interval_ms: u64,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum KinesisStart {
    /// The oldest record the stream keeps.
    #[default]
    TrimHorizon,
    /// Records that arrive after the first start (fixed then, as a timestamp, so a restart
    /// before the first checkpoint resumes at the same point).
    Latest,
    /// Records that arrived at or after `start_timestamp`.
    AtTimestamp,
}

fn d_shard_calls() -> u32 {
    DEFAULT_KINESIS_SHARD_CALLS_PER_S_MAX
}
fn d_shard_bytes() -> u64 {
    DEFAULT_KINESIS_SHARD_BYTES_PER_S_MAX
}
fn d_records_per_call() -> u32 {
    DEFAULT_KINESIS_RECORDS_PER_CALL_MAX
}
fn d_stream_calls() -> u32 {
    DEFAULT_KINESIS_STREAM_CALLS_PER_S_MAX
}
fn d_idle_ms() -> u64 {
    DEFAULT_KINESIS_IDLE_MS
}
fn d_prefetch() -> u32 {
    DEFAULT_KINESIS_PREFETCH_MAX
}
fn d_attempts() -> u32 {
    DEFAULT_KINESIS_ATTEMPTS_MAX
}
fn d_discovery() -> u64 {
    DEFAULT_KINESIS_DISCOVERY_INTERVAL_MS
}

pub(super) fn validate(k: &KinesisConfig, p: &str, v: &mut Validator) {
    let plain = |n: u64| n.to_string();
    if k.stream.is_empty() {
        v.error(format!("{p}.stream"), "must name a stream");
    }
    v.range_u64(
        &format!("{p}.shard_calls_per_s_max"),
        k.shard_calls_per_s_max.into(),
        1,
        DEFAULT_KINESIS_SHARD_CALLS_PER_S_MAX.into(),
        plain,
    );
    v.range_u64(
        &format!("{p}.shard_bytes_per_s_max"),
        k.shard_bytes_per_s_max,
        64 << 10,
        DEFAULT_KINESIS_SHARD_BYTES_PER_S_MAX,
        bytes_human,
    );
    v.range_u64(
        &format!("{p}.records_per_call_max"),
        k.records_per_call_max.into(),
        1,
        DEFAULT_KINESIS_RECORDS_PER_CALL_MAX.into(),
        plain,
    );
    v.range_u64(
        &format!("{p}.stream_calls_per_s_max"),
        k.stream_calls_per_s_max.into(),
        0,
        100_000,
        plain,
    );
    v.range_u64(&format!("{p}.idle_ms"), k.idle_ms, 10, 60_000, plain);
    v.range_u64(&format!("{p}.prefetch_max"), k.prefetch_max.into(), 1, 16, plain);
    v.range_u64(&format!("{p}.attempts_max"), k.attempts_max.into(), 1, 10, plain);
    v.range_u64(
        &format!("{p}.discovery_interval_ms"),
        k.discovery_interval_ms,
        100,
        3_600_000,
        plain,
    );
    match (k.start, &k.start_timestamp) {
        (KinesisStart::AtTimestamp, None) => v.error(
            format!("{p}.start_timestamp"),
            "must be set (an RFC 3339 time) with start = \"at_timestamp\"",
        ),
        (KinesisStart::AtTimestamp, Some(t)) => {
            if chrono::DateTime::parse_from_rfc3339(t).is_err() {
                v.error(
                    format!("{p}.start_timestamp"),
                    format!("must be an RFC 3339 time, got {t:?}"),
                );
            }
        }
        (_, Some(_)) => v.error(
            format!("{p}.start_timestamp"),
            "is only read with start = \"at_timestamp\"; remove it or set that start",
        ),
        (_, None) => {}
    }
}
