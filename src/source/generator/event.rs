//! Realistic synthetic events, and the bad records the generator mixes in.
//!
//! A record is a pure function of `(seed, partition, sequence)`: the same triple always gives
//! the same bytes, so tests regenerate what they expect, and a restarted generator resumes
//! with the very records it would have produced. Events are nested JSON of 500–900 bytes:
//! ids, timestamps (RFC 3339 and epoch milliseconds), user, geo, device, metrics, tags, payload.
//!
//! Bad records come in every kind the pipeline must catch ([`BadKind`]); each carries the stage,
//! rule and field it must be quarantined with ([`Expected`]).

use crate::extract::timestamp::{format_rfc3339, MICROS_PER_DAY, MICROS_PER_SECOND};
use crate::extract::{Rule, Stage};
pub use crate::rng::Rng;
use std::fmt::Write;

/// The schema of generated events, registered as table `events` by the embedded default.
pub const BUILTIN_SCHEMA_JSON: &str = include_str!("events.schema.json");

/// Every kind of bad record the generator makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BadKind {
    /// A flipped ciphertext bit.
    BadCiphertext,
    /// Encrypted under a key id the keyring does not hold.
    UnknownKeyId,
    /// JSON cut off in the middle.
    MalformedJson,
    /// `user.id` left out.
    MissingRequired,
    /// One of: negative latency, unknown country, malformed app version, overlong session id.
    Constraint,
    /// `ts` in a format the schema does not accept.
    UnparseableTimestamp,
    /// `ts` 30 days in the past or 2 days in the future.
    OutOfBoundsTimestamp,
}

impl BadKind {
    pub const ALL: [BadKind; 7] = [
        BadKind::BadCiphertext,
        BadKind::UnknownKeyId,
        BadKind::MalformedJson,
        BadKind::MissingRequired,
        BadKind::Constraint,
        BadKind::UnparseableTimestamp,
        BadKind::OutOfBoundsTimestamp,
    ];

    /// Kinds that exist without encryption.
    pub const PLAIN: [BadKind; 5] = [
        BadKind::MalformedJson,
        BadKind::MissingRequired,
        BadKind::Constraint,
        BadKind::UnparseableTimestamp,
        BadKind::OutOfBoundsTimestamp,
    ];
}

/// How a record must come out of the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    Good,
    Rejected {
        kind: BadKind,
        stage: Stage,
        rule: Rule,
        field: Option<&'static str>,
    },
}

const EVENT_TYPES: [&str; 7] = [
    "page_view",
    "click",
    "add_to_cart",
    "purchase",
    "search",
    "login",
    "logout",
];
const TIERS: [&str; 4] = ["free", "plus", "pro", "enterprise"];
const PLACES: [(&str, &str, &str, f64, f64); 12] = [
    ("DE", "Berlin", "Berlin", 52.52, 13.40),
    ("DE", "Bavaria", "Munich", 48.14, 11.58),
    ("FR", "Ile-de-France", "Paris", 48.86, 2.35),
    ("GB", "England", "London", 51.51, -0.13),
    ("US", "California", "San Francisco", 37.77, -122.42),
    ("US", "New York", "New York", 40.71, -74.01),
    ("BR", "Sao Paulo", "Sao Paulo", -23.55, -46.63),
    ("IN", "Karnataka", "Bengaluru", 12.97, 77.59),
    ("JP", "Tokyo", "Tokyo", 35.68, 139.69),
    ("AU", "New South Wales", "Sydney", -33.87, 151.21),
    ("NG", "Lagos", "Lagos", 6.52, 3.38),
    ("CA", "Ontario", "Toronto", 43.65, -79.38),
];
const OSES: [(&str, &[&str], &[&str]); 4] = [
    ("android", &["13", "14", "15"], &["Pixel 8", "Galaxy S24", "Moto G84"]),
    ("ios", &["17.5", "18.1"], &["iPhone 15", "iPhone 16 Pro"]),
    ("windows", &["10", "11"], &["Surface Laptop", "ThinkPad X1"]),
    ("macos", &["14.6", "15.1"], &["MacBook Air", "MacBook Pro"]),
];
const NAMES: [&str; 10] = [
    "ada", "grace", "alan", "edsger", "barbara", "ken", "dennis", "radia", "leslie", "tony",
];
const TAGS: [&str; 10] = [
    "new",
    "returning",
    "promo",
    "mobile",
    "beta",
    "vip",
    "organic",
    "paid",
    "email",
    "push",
];
const PAGES: [&str; 6] = ["/", "/products", "/products/item", "/cart", "/checkout", "/search"];
const REFERRERS: [&str; 4] = [
    "https://www.google.com/",
    "https://news.example.org/",
    "",
    "https://t.co/x",
];
const WORDS: [&str; 16] = [
    "river",
    "sluice",
    "gate",
    "stream",
    "lake",
    "parquet",
    "batch",
    "record",
    "shard",
    "core",
    "spill",
    "ring",
    "zstd",
    "audit",
    "quarantine",
    "backfill",
];

/// `v` with exactly `decimals` digits after the point, by integer arithmetic (float
/// formatting with a precision is ~10x slower and this runs per record).
fn push_fixed(s: &mut String, v: f64, decimals: u32) {
    let scale = 10i64.pow(decimals);
    let scaled = (v * scale as f64).round() as i64;
    if scaled < 0 {
        s.push('-');
    }
    let a = scaled.unsigned_abs();
    let _ = write!(
        s,
        "{}.{:0w$}",
        a / scale as u64,
        a % scale as u64,
        w = decimals as usize
    );
}

/// What the JSON writer should break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flaw {
    None,
    MissingUserId,
    NegativeLatency,
    UnknownCountry,
    BadAppVersion,
    LongSession,
    TsFormat,
    TsLate,
    TsFuture,
}

/// Write one event's JSON. Returns how it must come out of the pipeline (for JSON-level flaws).
pub fn write_event(rng: &mut Rng, kind: Option<BadKind>, start_us: i64, spread_s: u64, s: &mut String) -> Expected {
    let flaw = match kind {
        Some(BadKind::MissingRequired) => Flaw::MissingUserId,
        Some(BadKind::Constraint) => *rng.pick(&[
            Flaw::NegativeLatency,
            Flaw::UnknownCountry,
            Flaw::BadAppVersion,
            Flaw::LongSession,
        ]),
        Some(BadKind::UnparseableTimestamp) => Flaw::TsFormat,
        Some(BadKind::OutOfBoundsTimestamp) => *rng.pick(&[Flaw::TsLate, Flaw::TsFuture]),
        _ => Flaw::None,
    };
    let spread_us = spread_s as i64 * MICROS_PER_SECOND;
    let mut ts = start_us - rng.below(spread_us.max(1) as u64) as i64;
    match flaw {
        Flaw::TsLate => ts = start_us - 30 * MICROS_PER_DAY,
        Flaw::TsFuture => ts = start_us + 2 * MICROS_PER_DAY,
        _ => {}
    }
    s.clear();
    let a = rng.next_u64();
    let b = rng.next_u64();
    // A UUID v4 from 122 random bits.
    let _ = write!(
        s,
        r#"{{"event_id":"{:08x}-{:04x}-4{:03x}-{:x}{:03x}-{:012x}","event_type":"{}","ts":""#,
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        8 + (b >> 62),
        (b >> 48) & 0xfff,
        b & 0xffff_ffff_ffff,
        rng.pick(&EVENT_TYPES),
    );
    if flaw == Flaw::TsFormat {
        let _ = write!(s, "26/11/2026 10:{:02}", rng.below(60));
    } else {
        format_rfc3339(ts, s);
    }
    let received_ms = ts / 1000 + 5 + rng.below(2000) as i64;
    let session = if flaw == Flaw::LongSession {
        "s".repeat(80)
    } else {
        format!("s-{:016x}", rng.next_u64())
    };
    let _ = write!(s, r#"","received_at":{received_ms},"session_id":"{session}","user":{{"#);
    let name = rng.pick(&NAMES);
    if flaw != Flaw::MissingUserId {
        let _ = write!(s, r#""id":{},"#, 1 + rng.below(50_000_000));
    }
    let signup = ts - rng.below(1000) as i64 * MICROS_PER_DAY;
    let _ = write!(
        s,
        r#""name":"{name}","email":"{name}.{}@example.com","tier":"{}","signup_ts":""#,
        rng.below(10_000),
        rng.pick(&TIERS)
    );
    format_rfc3339(signup - signup % MICROS_PER_SECOND, s);
    let (country, region, city, lat, lon) = *rng.pick(&PLACES);
    let country = if flaw == Flaw::UnknownCountry { "XX" } else { country };
    let _ = write!(
        s,
        r#""}},"geo":{{"country":"{country}","region":"{region}","city":"{city}","lat":"#
    );
    push_fixed(s, lat + (rng.unit() - 0.5) / 10.0, 4);
    s.push_str(r#","lon":"#);
    push_fixed(s, lon + (rng.unit() - 0.5) / 10.0, 4);
    s.push_str("},");
    let (os, versions, models) = *rng.pick(&OSES);
    let app = if flaw == Flaw::BadAppVersion {
        "v5".to_string()
    } else {
        format!("{}.{}.{}", 1 + rng.below(9), rng.below(20), rng.below(100))
    };
    let _ = write!(
        s,
        r#""device":{{"os":"{os}","os_version":"{}","model":"{}","app_version":"{app}","ip":"10.{}.{}.{}"}},"#,
        rng.pick(versions),
        rng.pick(models),
        rng.below(256),
        rng.below(256),
        rng.below(256)
    );
    let latency = if flaw == Flaw::NegativeLatency {
        -1.0 - rng.below(100) as f64
    } else {
        rng.unit() * 2000.0
    };
    s.push_str(r#""metrics":{"latency_ms":"#);
    push_fixed(s, latency, 3);
    let _ = write!(s, r#","bytes":{},"items":{}"#, rng.below(2_000_000), rng.below(20));
    // amount_cents is optional: absent half the time, so the schema default fills it.
    if rng.below(2) == 0 {
        let _ = write!(s, r#","amount_cents":{}"#, rng.below(100_000));
    }
    s.push_str(r#"},"tags":["#);
    for i in 0..rng.below(4) {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, r#""{}""#, rng.pick(&TAGS));
    }
    let _ = write!(
        s,
        r#"],"payload":{{"page":"{}","referrer":"{}","ab_bucket":"{}","text":""#,
        rng.pick(&PAGES),
        rng.pick(&REFERRERS),
        rng.pick(&["A", "B", "C"])
    );
    // Free text brings the event to a length drawn from 500–900 bytes.
    let target = 500 + rng.below(401) as usize - 3;
    while s.len() + 11 < target {
        let word: &&str = rng.pick(&WORDS);
        s.push_str(word);
        s.push(' ');
    }
    while s.len() < target {
        s.push('.');
    }
    s.push_str(r#""}}"#);

    let rejected = |kind, stage, rule, field| Expected::Rejected {
        kind,
        stage,
        rule,
        field,
    };
    match (kind, flaw) {
        (None, _) => Expected::Good,
        (Some(k), Flaw::MissingUserId) => rejected(k, Stage::Schema, Rule::Required, Some("user.id")),
        (Some(k), Flaw::NegativeLatency) => rejected(k, Stage::Schema, Rule::Min, Some("metrics.latency_ms")),
        (Some(k), Flaw::UnknownCountry) => rejected(k, Stage::Schema, Rule::Enum, Some("geo.country")),
        (Some(k), Flaw::BadAppVersion) => rejected(k, Stage::Schema, Rule::Pattern, Some("device.app_version")),
        (Some(k), Flaw::LongSession) => rejected(k, Stage::Schema, Rule::MaxLength, Some("session_id")),
        (Some(k), Flaw::TsFormat) => rejected(k, Stage::Schema, Rule::TimestampFormat, Some("ts")),
        (Some(k), Flaw::TsLate) => rejected(k, Stage::Partition, Rule::EventTimeLate, Some("ts")),
        (Some(k), Flaw::TsFuture) => rejected(k, Stage::Partition, Rule::EventTimeFuture, Some("ts")),
        (Some(k), Flaw::None) => match k {
            BadKind::BadCiphertext => rejected(k, Stage::Decrypt, Rule::Authentication, None),
            BadKind::UnknownKeyId => rejected(k, Stage::Decrypt, Rule::UnknownKeyId, None),
            BadKind::MalformedJson => rejected(k, Stage::Parse, Rule::MalformedJson, None),
            other => unreachable!("{other:?} always has a JSON flaw"),
        },
    }
}
