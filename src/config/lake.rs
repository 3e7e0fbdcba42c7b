//! `[lake]` and `[state]`: where the lake is (a local directory or an S3 bucket) and where a
//! run keeps its own state (checkpoints, upload intents, HTTP inboxes).
//!
//! Owns: those keys, their `DEFAULT_*` constants and their validation.

use super::validator::Validator;
use super::MIB;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where the embedded default writes when neither `--lake` nor `lake.dir` is given.
pub const DEFAULT_LAKE_DIR: &str = "./lake";
/// The object store the zones are written to: a local directory (the embedded default), or
/// S3 (any S3-compatible endpoint) when `[lake.s3]` is present.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// The local directory (ignored with `[lake.s3]`).
    pub dir: PathBuf,
    /// Key prefix inside the store, without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// Local directory: fsync every file and its directory before reporting it durable.
    pub fsync: bool,
    /// Files written at once, over all cores (the I/O edge's workers).
    pub uploads_max: u32,
    /// How long a file keeps being retried on retryable errors (throttling, 5xx, timeouts,
    /// connection refused) before the run fails; meanwhile the buffers spill and the sources
    /// slow down.
    pub retry_for_ms: u64,
    pub s3: Option<S3Config>,
}

/// Files written at once over all cores.
pub const DEFAULT_UPLOADS_MAX: u32 = 8;
/// Retry a failing file for up to one hour (Firehose retries for up to 24 h; a store down for an
/// hour is an incident someone should see as a failed run, with nothing lost).
pub const DEFAULT_RETRY_FOR_MS: u64 = 3_600_000;

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            dir: PathBuf::from(DEFAULT_LAKE_DIR),
            prefix: String::new(),
            fsync: true,
            uploads_max: DEFAULT_UPLOADS_MAX,
            retry_for_ms: DEFAULT_RETRY_FOR_MS,
            s3: None,
        }
    }
}

/// S3 or an S3-compatible store. Credentials come from the standard AWS provider chain
/// (environment, shared profile, web identity, ECS/EC2 instance role).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    pub bucket: String,
    /// Region; empty: from the provider chain (`AWS_REGION`, profile), else `us-east-1`.
    pub region: String,
    /// Endpoint override, e.g. `http://127.0.0.1:8014` for a local S3-compatible server.
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most local servers need.
    pub path_style: bool,
    /// Server-side encryption: `none`, `s3` (SSE-S3, AES256) or `kms` (SSE-KMS).
    pub sse: Sse,
    /// KMS key id or ARN for `sse = "kms"` (empty: the bucket's AWS-managed key).
    pub kms_key_id: String,
    /// Files at least this big go up as multipart uploads; smaller ones as one PUT.
    pub multipart_threshold_bytes: u64,
    /// Size of each part but the last (S3 allows 5 MiB to 5 GiB).
    pub part_bytes: u64,
    /// Parts of one file uploaded at once.
    pub parts_in_flight_max: u32,
    /// Attempts per request inside the SDK (standard retry mode: exponential backoff with
    /// jitter on throttling, 5xx and timeouts); the edge retries the whole file after that.
    pub attempts_max: u32,
    /// Per attempt: connect plus response within this time, else it is a retryable timeout.
    pub attempt_timeout_ms: u64,
    /// Whether uploads carry the SHA-256 of their body in their SigV4 signature.
    pub payload_signing: PayloadSigning,
}

/// SigV4 payload signing of uploads (PutObject, UploadPart). The body's SHA-256 costs a pass
/// over every byte on both ends (a third of all CPU of the embedded default against a local
/// S3-compatible server without SHA instructions); every upload also carries a CRC32C that S3
/// checks, so integrity holds either way, and over TLS so does authenticity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadSigning {
    /// Sign over plain HTTP only, not over HTTPS: what the AWS CLI and boto3 do.
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sse {
    None,
    S3,
    Kms,
}

pub const DEFAULT_S3_MULTIPART_THRESHOLD_BYTES: u64 = 16 * MIB;
pub const DEFAULT_S3_PART_BYTES: u64 = 8 * MIB;
pub const DEFAULT_S3_PARTS_IN_FLIGHT_MAX: u32 = 4;
pub const DEFAULT_S3_ATTEMPTS_MAX: u32 = 3;
pub const DEFAULT_S3_ATTEMPT_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_S3_PAYLOAD_SIGNING: PayloadSigning = PayloadSigning::Auto;
/// S3's smallest part (all but the last).
pub const S3_PART_BYTES_MIN: u64 = 5 * MIB;

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            bucket: String::new(),
            region: String::new(),
            endpoint: None,
            path_style: false,
            sse: Sse::None,
            kms_key_id: String::new(),
            multipart_threshold_bytes: DEFAULT_S3_MULTIPART_THRESHOLD_BYTES,
            part_bytes: DEFAULT_S3_PART_BYTES,
            parts_in_flight_max: DEFAULT_S3_PARTS_IN_FLIGHT_MAX,
            attempts_max: DEFAULT_S3_ATTEMPTS_MAX,
            attempt_timeout_ms: DEFAULT_S3_ATTEMPT_TIMEOUT_MS,
            payload_signing: DEFAULT_S3_PAYLOAD_SIGNING,
        }
    }
}

/// Local state: source checkpoints. Without `dir`, no checkpoint is read or written and every
/// source starts from its beginning (the embedded default, which generates fresh data each run).
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    pub dir: Option<PathBuf>,
}

pub(super) fn validate(l: &LakeConfig, v: &mut Validator) {
    if l.dir.as_os_str().is_empty() {
        v.error("lake.dir", "must not be empty");
    }
    if l.prefix.starts_with('/') || l.prefix.ends_with('/') {
        v.error(
            "lake.prefix",
            format!("must not start or end with '/', got {:?}", l.prefix),
        );
    } else if !l.prefix.is_empty() && l.prefix.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        // The stores refuse such keys when they write: say so before the run.
        v.error(
            "lake.prefix",
            format!("must not hold an empty, '.' or '..' segment, got {:?}", l.prefix),
        );
    }
    if !(1..=256).contains(&l.uploads_max) {
        v.error("lake.uploads_max", format!("must be 1 to 256, got {}", l.uploads_max));
    }
    if l.retry_for_ms < 1000 {
        v.error(
            "lake.retry_for_ms",
            format!("must be at least 1000, got {}", l.retry_for_ms),
        );
    }
    if let Some(s3) = &l.s3 {
        lake_s3(s3, v);
    }
}

fn lake_s3(s: &crate::config::S3Config, v: &mut Validator) {
    use crate::config::{Sse, S3_PART_BYTES_MIN};
    let bucket_ok = (3..=63).contains(&s.bucket.len())
        && s.bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !bucket_ok {
        v.error(
            "lake.s3.bucket",
            format!(
                "must be an S3 bucket name (3 to 63 characters of [a-z0-9.-]), got {:?}",
                s.bucket
            ),
        );
    }
    if let Some(e) = &s.endpoint {
        if !(e.starts_with("http://") || e.starts_with("https://")) {
            v.error(
                "lake.s3.endpoint",
                format!("must start with http:// or https://, got {e:?}"),
            );
        }
    }
    if s.part_bytes < S3_PART_BYTES_MIN || s.part_bytes > 5 * 1024 * MIB {
        v.error(
            "lake.s3.part_bytes",
            format!("must be 5 MiB to 5 GiB (S3's part size limits), got {}", s.part_bytes),
        );
    }
    if s.multipart_threshold_bytes < s.part_bytes {
        v.error(
            "lake.s3.multipart_threshold_bytes",
            format!(
                "must be at least lake.s3.part_bytes ({}), got {}",
                s.part_bytes, s.multipart_threshold_bytes
            ),
        );
    }
    if !(1..=64).contains(&s.parts_in_flight_max) {
        v.error(
            "lake.s3.parts_in_flight_max",
            format!("must be 1 to 64, got {}", s.parts_in_flight_max),
        );
    }
    if !(1..=10).contains(&s.attempts_max) {
        v.error(
            "lake.s3.attempts_max",
            format!("must be 1 to 10, got {}", s.attempts_max),
        );
    }
    if s.attempt_timeout_ms < 100 {
        v.error(
            "lake.s3.attempt_timeout_ms",
            format!("must be at least 100, got {}", s.attempt_timeout_ms),
        );
    }
    if s.sse != Sse::Kms && !s.kms_key_id.is_empty() {
        v.error("lake.s3.kms_key_id", "is only used with sse = \"kms\"");
    }
}
