//! Extract: envelope decrypt → JSON parse in place → flatten → schema (types, required,
//! defaults, constraints).
//!
//! Owns: the per-record work that turns a payload as received into a row of typed values, and
//! the [`Reject`] that says precisely why a record could not be turned into one.
//!
//! Invariants:
//! - No allocation per good record: the payload is copied once into the core's working buffer
//!   (the batch keeps the original bytes for the RAW zone and for quarantine), decrypted in
//!   place there, parsed in place by simd-json into a reused tape, and typed values refer to the
//!   tape by index ([`Val`](value::Val)), never by copy.
//! - A record either yields a complete row or a [`Reject`]; there is no partial row.
//!
//! Bounds: a payload is at most [`RECORD_BYTES_MAX`]; flatten depth is bounded by the schema
//! (input nested deeper than any column is skipped without recursion).

pub mod envelope;
pub mod flatten;
pub mod infer;
pub mod keyring;
pub mod schema;
pub mod shown;
pub mod timestamp;
pub mod value;

use shown::{Reveal, Shown, VALUE};
use std::fmt;

/// Largest payload accepted (Kinesis's record limit). Larger records are quarantined.
pub const RECORD_BYTES_MAX: usize = 1 << 20;

/// The pipeline stage that rejected a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Reading the source: framing, size limits.
    Fetch,
    Decrypt,
    Parse,
    Route,
    Schema,
    Transform,
    Partition,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Fetch => "fetch",
            Stage::Decrypt => "decrypt",
            Stage::Parse => "parse",
            Stage::Route => "route",
            Stage::Schema => "schema",
            Stage::Transform => "transform",
            Stage::Partition => "partition",
        }
    }
}

/// The rule a record broke. Stable strings: they are columns in the quarantine zone and labels
/// in metrics, so renaming one is a breaking change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// A frame or line exceeds [`RECORD_BYTES_MAX`] or the framing is corrupt.
    Framing,
    /// Envelope too short, or an unknown version / key-id length.
    EnvelopeFormat,
    /// The envelope names a key id the keyring does not hold.
    UnknownKeyId,
    /// AES-GCM authentication failed: ciphertext, tag, nonce or header altered, or wrong key.
    Authentication,
    /// Not valid JSON (or not UTF-8).
    MalformedJson,
    /// Valid JSON, but the top level is not an object.
    NotAnObject,
    /// The route field is missing or its value maps to no table.
    UnmatchedRoute,
    /// A required field is missing or null, and the schema gives no default.
    Required,
    /// A value of the wrong JSON type for its column.
    Type,
    Min,
    Max,
    Enum,
    Pattern,
    MaxLength,
    /// A timestamp string or number that matches none of the column's formats.
    TimestampFormat,
    /// A cast transform could not convert the value.
    Cast,
    /// Event time earlier than ingest time minus `event_time_late_max_s`.
    EventTimeLate,
    /// Event time later than ingest time plus `event_time_future_max_s`.
    EventTimeFuture,
}

impl Rule {
    pub const ALL: [Rule; 18] = [
        Rule::Framing,
        Rule::EnvelopeFormat,
        Rule::UnknownKeyId,
        Rule::Authentication,
        Rule::MalformedJson,
        Rule::NotAnObject,
        Rule::UnmatchedRoute,
        Rule::Required,
        Rule::Type,
        Rule::Min,
        Rule::Max,
        Rule::Enum,
        Rule::Pattern,
        Rule::MaxLength,
        Rule::TimestampFormat,
        Rule::Cast,
        Rule::EventTimeLate,
        Rule::EventTimeFuture,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Framing => "framing",
            Rule::EnvelopeFormat => "envelope_format",
            Rule::UnknownKeyId => "unknown_key_id",
            Rule::Authentication => "authentication",
            Rule::MalformedJson => "malformed_json",
            Rule::NotAnObject => "not_an_object",
            Rule::UnmatchedRoute => "unmatched_route",
            Rule::Required => "required",
            Rule::Type => "type",
            Rule::Min => "min",
            Rule::Max => "max",
            Rule::Enum => "enum",
            Rule::Pattern => "pattern",
            Rule::MaxLength => "max_length",
            Rule::TimestampFormat => "timestamp_format",
            Rule::Cast => "cast",
            Rule::EventTimeLate => "event_time_late",
            Rule::EventTimeFuture => "event_time_future",
        }
    }

    /// Index into per-rule counters.
    pub fn index(self) -> usize {
        Rule::ALL
            .iter()
            .position(|r| *r == self)
            .expect("every rule is in Rule::ALL")
    }
}

/// Why one record was rejected: the stage, the rule, the field (when one is to blame) and a
/// message a person can act on. Built only on the bad-record path, so it may allocate.
///
/// A message about a value holds the [`VALUE`] placeholder, and the value waits beside it
/// until [`Reject::reveal`] fills it in as the record's source allows (`shown.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub stage: Stage,
    pub rule: Rule,
    pub field: Option<String>,
    pub message: String,
    /// The value the message is about, until revealed.
    pub value: Option<Shown>,
}

impl Reject {
    pub fn new(stage: Stage, rule: Rule, message: impl Into<String>) -> Reject {
        Reject {
            stage,
            rule,
            field: None,
            message: message.into(),
            value: None,
        }
    }

    pub fn field(stage: Stage, rule: Rule, field: &str, message: impl Into<String>) -> Reject {
        Reject {
            field: Some(field.to_string()),
            ..Reject::new(stage, rule, message)
        }
    }

    /// A reject about `value`, which the message names by the [`VALUE`] placeholder (before any
    /// text taken from the configuration, so the first placeholder is always the value's).
    pub fn field_value(stage: Stage, rule: Rule, field: &str, value: Shown, message: impl Into<String>) -> Reject {
        let message = message.into();
        debug_assert!(message.contains(VALUE), "a message about a value names it: {message}");
        Reject {
            value: Some(value),
            ..Reject::field(stage, rule, field, message)
        }
    }

    /// Fill the value into the message as `how` allows, and forget the value.
    pub fn reveal(mut self, how: Reveal) -> Reject {
        if let Some(v) = self.value.take() {
            self.message = self.message.replacen(VALUE, &v.render(how), 1);
        }
        self
    }
}

/// An unrevealed reject displays its value withheld.
impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.stage.as_str(), self.rule.as_str())?;
        if let Some(field) = &self.field {
            write!(f, " `{field}`")?;
        }
        match &self.value {
            Some(v) => write!(f, ": {}", self.message.replacen(VALUE, &v.render(Reveal::Withheld), 1)),
            None => write!(f, ": {}", self.message),
        }
    }
}
