//! `[sources.http]`: the HTTP edge receiver (see `source::http`).
//!
//! Owns: the receiver's keys, their `DEFAULT_*` constants and their validation. Every limit a
//! client can push against (body size, connections, unread inbox bytes, idle time) is a key
//! here with a bound, so no client can make a core hold more than the configuration allows:
//! request bodies in memory ≤ `body_memory_bytes_max` per core, and each open connection
//! (≤ `connections_max`) a header buffer of at most `source::http::HEADER_BUFFER_BYTES`.

use super::validator::{bytes_human, Validator};
use super::MIB;
use serde::{Deserialize, Serialize};

/// Bytes of one request body, on the wire and again after gzip/zstd decoding (a small
/// compressed body cannot unpack into more). 8 MiB holds a 1 MiB batch with room to spare.
pub const DEFAULT_HTTP_BODY_BYTES_MAX: u64 = 8 * MIB;
/// Accepted, not yet read bytes in one core's inbox before requests are answered 429: about
/// ten seconds of a core's input at 100k records/s of 1 KiB.
pub const DEFAULT_HTTP_INBOX_BYTES_MAX: u64 = 1024 * MIB;
/// Inbox segment file size: a segment is deleted once every record in it is checkpointed.
pub const DEFAULT_HTTP_SEGMENT_BYTES: u64 = 64 * MIB;
/// Open connections per core; past it, new connections wait in the listen backlog.
pub const DEFAULT_HTTP_CONNECTIONS_MAX: u32 = 1024;
/// A connection that sends nothing for this long is closed (slow or stuck clients), and a
/// kept-alive connection waits this long for its next request.
pub const DEFAULT_HTTP_IDLE_TIMEOUT_MS: u64 = 30_000;
/// From a request's first byte to the end of its headers. Real clients send headers in one
/// packet; a client that trickles them (slowloris) is closed after this long, whatever it sends.
pub const DEFAULT_HTTP_HEADER_TIMEOUT_MS: u64 = 10_000;
/// From a request's first byte to its body read in full: an 8 MiB body at 1 Mbit/s takes ~67 s,
/// so 120 s lets slow links through while a client that trickles a body is closed.
pub const DEFAULT_HTTP_REQUEST_TIMEOUT_MS: u64 = 120_000;
/// Bytes of request bodies held in memory at once on one core: on the wire and decoded, from
/// the moment a request is admitted until it is answered. A request that does not fit is
/// answered 503 with `Retry-After` before a byte of its body is read. 64 MiB takes four largest
/// compressed bodies (wire and decoded) or hundreds of typical ones.
pub const DEFAULT_HTTP_BODY_MEMORY_BYTES_MAX: u64 = 64 * MIB;
/// Records in one request body (413 past it): a body of 8 MiB of `{}` lines is 2.8 million
/// records, each a quarantine row. 100,000 holds an 8 MiB body of 80-byte records.
pub const DEFAULT_HTTP_RECORDS_MAX: u32 = 100_000;
/// `Retry-After` of a 429 or 503 answer, in seconds.
pub const DEFAULT_HTTP_RETRY_AFTER_S: u32 = 1;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address every core listens on (SO_REUSEPORT: the kernel spreads connections).
    pub listen: String,
    /// Name of the environment variable holding the bearer token; unset: no auth.
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default = "d_body")]
    pub body_bytes_max: u64,
    #[serde(default = "d_records")]
    pub records_max: u32,
    #[serde(default = "d_inbox")]
    pub inbox_bytes_max: u64,
    #[serde(default = "d_segment")]
    pub segment_bytes: u64,
    #[serde(default = "d_connections")]
    pub connections_max: u32,
    #[serde(default = "d_idle")]
    pub idle_timeout_ms: u64,
    #[serde(default = "d_header_timeout")]
    pub header_timeout_ms: u64,
    #[serde(default = "d_request_timeout")]
    pub request_timeout_ms: u64,
    #[serde(default = "d_body_memory")]
    pub body_memory_bytes_max: u64,
    #[serde(default = "d_retry")]
    pub retry_after_s: u32,
    /// Serve HTTPS with this certificate and key (reloaded on SIGHUP); absent: plain HTTP.
    #[serde(default)]
    pub tls: Option<crate::tls::TlsConfig>,
}

fn d_body() -> u64 {
    DEFAULT_HTTP_BODY_BYTES_MAX
}
fn d_records() -> u32 {
    DEFAULT_HTTP_RECORDS_MAX
}
fn d_inbox() -> u64 {
    DEFAULT_HTTP_INBOX_BYTES_MAX
}
fn d_segment() -> u64 {
    DEFAULT_HTTP_SEGMENT_BYTES
}
fn d_connections() -> u32 {
    DEFAULT_HTTP_CONNECTIONS_MAX
}
fn d_idle() -> u64 {
    DEFAULT_HTTP_IDLE_TIMEOUT_MS
}
fn d_header_timeout() -> u64 {
    DEFAULT_HTTP_HEADER_TIMEOUT_MS
}
fn d_request_timeout() -> u64 {
    DEFAULT_HTTP_REQUEST_TIMEOUT_MS
}
fn d_body_memory() -> u64 {
    DEFAULT_HTTP_BODY_MEMORY_BYTES_MAX
}
fn d_retry() -> u32 {
    DEFAULT_HTTP_RETRY_AFTER_S
}

pub(super) fn validate(h: &HttpConfig, p: &str, v: &mut Validator) {
    let plain = |n: u64| n.to_string();
    if h.listen.parse::<std::net::SocketAddr>().is_err() {
        v.error(
            format!("{p}.listen"),
            format!(
                "must be an IP address and port, e.g. \"127.0.0.1:8080\", got {:?}",
                h.listen
            ),
        );
    }
    if h.token_env.as_deref() == Some("") {
        v.error(
            format!("{p}.token_env"),
            "must name an environment variable (or be left out: no auth)",
        );
    }
    // A body must hold at least one whole record (1 MiB) and fit a u32 frame length.
    v.range_u64(
        &format!("{p}.body_bytes_max"),
        h.body_bytes_max,
        MIB,
        256 * MIB,
        bytes_human,
    );
    v.range_u64(&format!("{p}.records_max"), h.records_max.into(), 1, 10_000_000, plain);
    // Sizes that must hold a body (or, for the memory budget, one compressed body: its wire
    // and decoded bytes) are checked against a valid body_bytes_max only, so one bad value
    // gives one error.
    if (MIB..=256 * MIB).contains(&h.body_bytes_max) {
        let body = h.body_bytes_max;
        let at_least = |key: &str, value: u64, min: u64, what: &str, v: &mut Validator| {
            if value < min {
                v.error(
                    format!("{p}.{key}"),
                    format!("must be at least {what} ({}), got {value}", bytes_human(min)),
                );
            }
        };
        at_least("segment_bytes", h.segment_bytes, body, "body_bytes_max", v);
        at_least("inbox_bytes_max", h.inbox_bytes_max, body, "body_bytes_max", v);
        at_least(
            "body_memory_bytes_max",
            h.body_memory_bytes_max,
            2 * body,
            "twice body_bytes_max",
            v,
        );
    }
    v.range_u64(
        &format!("{p}.segment_bytes"),
        h.segment_bytes,
        MIB,
        4096 * MIB,
        bytes_human,
    );
    v.range_u64(
        &format!("{p}.inbox_bytes_max"),
        h.inbox_bytes_max,
        MIB,
        1 << 50,
        bytes_human,
    );
    v.range_u64(
        &format!("{p}.body_memory_bytes_max"),
        h.body_memory_bytes_max,
        2 * MIB,
        1 << 40,
        bytes_human,
    );
    v.range_u64(
        &format!("{p}.connections_max"),
        h.connections_max.into(),
        1,
        65_536,
        plain,
    );
    v.range_u64(
        &format!("{p}.idle_timeout_ms"),
        h.idle_timeout_ms,
        100,
        3_600_000,
        plain,
    );
    v.range_u64(
        &format!("{p}.header_timeout_ms"),
        h.header_timeout_ms,
        100,
        h.request_timeout_ms.max(100),
        plain,
    );
    v.range_u64(
        &format!("{p}.request_timeout_ms"),
        h.request_timeout_ms,
        100,
        3_600_000,
        plain,
    );
    v.range_u64(&format!("{p}.retry_after_s"), h.retry_after_s.into(), 1, 3_600, plain);
}
