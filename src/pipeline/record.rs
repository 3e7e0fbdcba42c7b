//! One record through extract and transform into its buffer: the per-record hot path.
//!
//! Steps, each a possible [`Reject`]:
//! 1. copy the payload into the core's working buffer (the batch keeps the original bytes for
//!    RAW and quarantine; one `memcpy`, no allocation) with simd-json's padding after it;
//! 2. decrypt the envelope in place (`decrypt`);
//! 3. parse in place into the reused tape with `fill_tape_padded` (`parse`), no copy of the
//!    input into simd-json's own buffer;
//! 4. route to a table (`route`), flatten by the table's trie and check every column
//!    (`schema`);
//! 5. apply the table's transforms (`transform`);
//! 6. pick the hour partition from event time and check its bounds (`partition`);
//! 7. append the output row to its partition buffer.
//!
//! The tape borrows the working buffer for the record's duration only: it is taken out of
//! [`Work`], refilled, and put back (`Tape::reset`) so its allocation lives on.

use super::{Plan, Rows, SourcePlan, TablePlan, Work};
use crate::buffer::{Appended, BufferSet, PartitionKey};
use crate::clock::Clock;
use crate::config::Encryption;
use crate::extract::envelope;
use crate::extract::flatten::flatten;
use crate::extract::shown::{Reveal, Shown, VALUE};
use crate::extract::timestamp::{hour_bucket, rfc3339, MICROS_PER_SECOND};
use crate::extract::value::{RecordRefs, Val};
use crate::extract::{Reject, Rule, Stage};
use crate::lineage::Origin;
use crate::telemetry::{StageHistograms, StageId};
use crate::transform::MetaValues;

/// Where a record came from and when.
pub struct Arrival<'a> {
    pub source: u16,
    pub slot: usize,
    pub partition_id: &'a str,
    pub position: u64,
    /// The record's index in its partition's stream (see `lineage::Provenance`).
    pub ordinal: u64,
    pub batch_id: u64,
    pub ingest_us: i64,
    pub now_ns: u64,
}

pub enum Outcome {
    Buffered(Appended),
    /// Routed to nowhere by an `unmatched = "drop"` route.
    Dropped,
}

/// Times one sampled record stage by stage.
pub struct Timer<'c> {
    clock: &'c dyn Clock,
    last_ns: u64,
}

impl<'c> Timer<'c> {
    pub fn start(clock: &'c dyn Clock) -> Timer<'c> {
        Timer {
            last_ns: clock.monotonic_ns(),
            clock,
        }
    }

    #[inline]
    fn lap(t: &mut Option<Timer>, hist: &mut StageHistograms, stage: StageId) {
        if let Some(t) = t {
            let now = t.clock.monotonic_ns();
            hist.record(stage, now - t.last_ns);
            t.last_ns = now;
        }
    }
}

/// Process one record. On rejection, also says which table it was routed to, if it got that far.
pub fn process(
    plan: &Plan,
    work: &mut Work,
    buffers: &mut BufferSet,
    ctx: &Arrival,
    mut timer: Option<Timer>,
    hist: &mut StageHistograms,
    payload: &[u8],
) -> Result<Outcome, (Option<usize>, Reject)> {
    let source = &plan.sources[ctx.source as usize];
    work.buf.clear();
    work.buf.extend_from_slice(payload);
    work.buf.extend_from_slice(&[0u8; simd_json::INPUT_PADDING]);
    let (doc_start, doc_len) = match source.encryption {
        Encryption::Envelope => {
            let r = envelope::open_in_place(&plan.keyring, &mut work.buf[..payload.len()]).map_err(|e| (None, e))?;
            (r.start, r.len())
        }
        Encryption::None => (0, payload.len()),
    };
    Timer::lap(&mut timer, hist, StageId::Decrypt);

    let mut tape = std::mem::replace(&mut work.tape, simd_json::tape::Tape(Vec::new())).reset();
    let result = parse_and_buffer(
        plan,
        source,
        &mut work.buf[doc_start..],
        doc_len,
        &mut work.json,
        &mut tape,
        &mut work.rows,
        buffers,
        ctx,
        &mut timer,
        hist,
    );
    work.tape = tape.reset();
    // The one place a reject's value meets its source's policy (`extract::shown`).
    let reveal = match source.encryption {
        Encryption::Envelope => Reveal::Withheld,
        Encryption::None => Reveal::Truncated,
    };
    result.map_err(|(t, e)| (t, e.reveal(reveal)))
}

/// Steps 3–7, with the tape borrowing the decrypted document for `'d`.
#[allow(clippy::too_many_arguments)]
fn parse_and_buffer<'d>(
    plan: &Plan,
    source: &SourcePlan,
    doc: &'d mut [u8],
    doc_len: usize,
    json: &mut simd_json::Buffers,
    tape: &mut simd_json::tape::Tape<'d>,
    rows: &mut Rows,
    buffers: &mut BufferSet,
    ctx: &Arrival,
    timer: &mut Option<Timer>,
    hist: &mut StageHistograms,
) -> Result<Outcome, (Option<usize>, Reject)> {
    simd_json::fill_tape_padded(doc, doc_len, json, tape).map_err(|e| {
        (
            None,
            // The error's kind and byte offset, never the character it found there.
            Reject::new(
                Stage::Parse,
                Rule::MalformedJson,
                format!("not valid JSON: {:?} at byte {}", e.error(), e.index()),
            ),
        )
    })?;
    Timer::lap(timer, hist, StageId::Parse);
    let nodes = &tape.0[..];

    let Some(t) = source.router.route(nodes).map_err(|e| (None, e))? else {
        return Ok(Outcome::Dropped);
    };
    let table = &plan.tables[t];
    to_columns(table, nodes, rows).map_err(|e| (Some(t), e))?;
    Timer::lap(timer, hist, StageId::Schema);

    let meta = MetaValues {
        ingest_time_us: ctx.ingest_us,
        source: &source.name,
        partition: ctx.partition_id,
        position: ctx.position,
    };
    table
        .transforms
        .apply(&rows.inputs, nodes, &mut rows.scratch, &meta, &mut rows.outputs)
        .map_err(|e| (Some(t), e))?;
    Timer::lap(timer, hist, StageId::Transform);

    let event_us = event_time(plan, table, &rows.inputs, ctx.ingest_us).map_err(|e| (Some(t), e))?;

    let key = PartitionKey {
        source: ctx.source,
        table: t as u16,
        hour: hour_bucket(event_us),
    };
    let refs = RecordRefs {
        nodes,
        scratch: &rows.scratch,
    };
    let origin = Origin {
        batch_id: ctx.batch_id,
        slot: ctx.slot,
        position: ctx.position,
        ordinal: ctx.ordinal,
    };
    let appended = buffers.append(key, &rows.outputs, &refs, event_us, origin, ctx.now_ns);
    Timer::lap(timer, hist, StageId::Buffer);
    Ok(Outcome::Buffered(appended))
}

/// Flatten the record by the table's schema trie and convert each column's value (the
/// schema's rules checked here), into `rows.inputs`.
#[inline]
fn to_columns(table: &TablePlan, nodes: &[simd_json::Node<'_>], rows: &mut Rows) -> Result<(), Reject> {
    let columns = &table.schema.columns;
    let slots = &mut rows.slots[..columns.len()];
    flatten(nodes, &table.schema.trie, slots)?;
    rows.scratch.clear();
    rows.inputs.clear();
    for (c, slot) in columns.iter().zip(slots.iter()) {
        let v = c.convert(nodes, slot.map(|i| i as usize), &mut rows.scratch)?;
        rows.inputs.push(v);
    }
    Ok(())
}

/// The record's event time (its `event_time` column, else its ingest time), within the
/// plan's lateness and future bounds.
#[inline]
fn event_time(plan: &Plan, table: &TablePlan, inputs: &[Val], ingest_us: i64) -> Result<i64, Reject> {
    let event_us = match table.event_time.map(|c| inputs[c]) {
        Some(Val::Ts(us)) => us,
        _ => ingest_us,
    };
    let field = table.event_time.map(|c| table.schema.columns[c].name.as_str());
    check_bounds(plan, field, event_us, ingest_us)?;
    Ok(event_us)
}

fn check_bounds(plan: &Plan, field: Option<&str>, event_us: i64, ingest_us: i64) -> Result<(), Reject> {
    let field = field.unwrap_or("_ingest_time");
    if event_us < ingest_us - plan.event_time_late_max_us {
        return Err(Reject::field_value(
            Stage::Partition,
            Rule::EventTimeLate,
            field,
            Shown::timestamp(rfc3339(event_us)),
            format!(
                "event time {VALUE} is more than {} s before ingest time {} (partitioning.event_time_late_max_s)",
                plan.event_time_late_max_us / MICROS_PER_SECOND,
                rfc3339(ingest_us)
            ),
        ));
    }
    if event_us > ingest_us + plan.event_time_future_max_us {
        return Err(Reject::field_value(
            Stage::Partition,
            Rule::EventTimeFuture,
            field,
            Shown::timestamp(rfc3339(event_us)),
            format!(
                "event time {VALUE} is more than {} s after ingest time {} (partitioning.event_time_future_max_s)",
                plan.event_time_future_max_us / MICROS_PER_SECOND,
                rfc3339(ingest_us)
            ),
        ));
    }
    Ok(())
}
