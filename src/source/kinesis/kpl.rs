//! De-aggregation of Kinesis Producer Library (KPL) aggregated records.
//!
//! Owns: recognising an aggregated record and splitting it into its user records, without
//! copying (each user record is a slice of the Kinesis record's data). Two steps: the digests
//! of a whole response are checked together when it arrives ([`digests_match`], on the fetch
//! runtime, several abreast in SIMD lanes), and each record is split on the owning core
//! ([`split`]).
//!
//! The format (the KPL's `aggregation-format.md`): 4 magic bytes `F3 89 9A C2`, a protobuf
//! `AggregatedRecord`, and the MD5 digest of that protobuf (16 bytes):
//!
//! ```text
//! message AggregatedRecord {
//!   repeated string partition_key_table     = 1;
//!   repeated string explicit_hash_key_table = 2;
//!   repeated Record records                 = 3;
//! }
//! message Record {
//!   required uint64 partition_key_index     = 1;
//!   optional uint64 explicit_hash_key_index = 2;
//!   required bytes  data                    = 3;
//!   repeated Tag    tags                    = 4;
//! }
//! ```
//!
//! Like the KCL, a record that starts with the magic bytes but whose digest does not match, or
//! whose protobuf does not parse, is taken as one ordinary record: a producer may send any
//! bytes, and a user record must never be lost to a guess. The user records of one Kinesis
//! record share its sequence number; the n-th has sub-sequence number n.
//!
//! Bounds: a Kinesis record is at most 10 MiB (the service's limit), so every length fits `usize`
//! on the platforms we build for; the parser never allocates; the digest check allocates a
//! few vectors per response (one entry per record).

use super::md5_lanes;
use md5::{Digest, Md5};

/// The magic prefix of a KPL aggregated record.
pub const KPL_MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST_BYTES: usize = 16;

/// For each record's data, whether it is a KPL aggregate whose digest matches. The digests of a
/// whole response are computed together, several abreast (`md5_lanes`): one at a time, MD5 was
/// the largest cost of the fetch path.
pub fn digests_match(records: &[&[u8]]) -> Vec<bool> {
    let framed: Vec<(usize, &[u8], &[u8])> = records
        .iter()
        .enumerate()
        .filter_map(|(i, data)| frame(data).map(|(body, digest)| (i, body, digest)))
        .collect();
    let bodies: Vec<&[u8]> = framed.iter().map(|&(_, body, _)| body).collect();
    let mut matches = vec![false; records.len()];
    for ((i, _, want), got) in framed.iter().zip(md5_lanes::digests(&bodies)) {
        matches[*i] = got[..] == **want;
    }
    matches
}

/// Hand each user record of `data` to `emit`, in order (`data` itself if it is not a whole
/// aggregated record); `digest_matches` is what [`digests_match`] said of it. An aggregate is
/// parsed twice — checked, then emitted — so a malformed one emits nothing of itself before it
/// is taken as one ordinary record.
pub fn split(data: &[u8], digest_matches: bool, mut emit: impl FnMut(&[u8])) {
    if let Some((body, _)) = frame(data).filter(|_| digest_matches) {
        let mut n = 0usize;
        if parse_records(body, &mut |_| n += 1).is_some() && n > 0 {
            parse_records(body, &mut emit).expect("parsed once already");
            return;
        }
    }
    emit(data);
}

/// The protobuf body and the digest of what looks like an aggregated record (magic, room for a
/// digest).
fn frame(data: &[u8]) -> Option<(&[u8], &[u8])> {
    if data.len() < KPL_MAGIC.len() + DIGEST_BYTES || data[..4] != KPL_MAGIC {
        return None;
    }
    Some(data[4..].split_at(data.len() - 4 - DIGEST_BYTES))
}

/// Parse `AggregatedRecord`, handing each `Record.data` to `emit`; `None` if malformed.
fn parse_records(mut body: &[u8], emit: &mut impl FnMut(&[u8])) -> Option<()> {
    while !body.is_empty() {
        let (field, wire) = field_key(&mut body)?;
        match (field, wire) {
            (3, WIRE_LEN) => {
                let record = take_len(&mut body)?;
                emit(record_data(record)?);
            }
            _ => skip(&mut body, wire)?,
        }
    }
    Some(())
}

/// `Record.data` of one `Record` message (required: a record without it is malformed).
fn record_data(mut record: &[u8]) -> Option<&[u8]> {
    let mut data = None;
    while !record.is_empty() {
        let (field, wire) = field_key(&mut record)?;
        match (field, wire) {
            (3, WIRE_LEN) => data = Some(take_len(&mut record)?),
            _ => skip(&mut record, wire)?,
        }
    }
    data
}

const WIRE_VARINT: u8 = 0;
const WIRE_I64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_I32: u8 = 5;

fn field_key(buf: &mut &[u8]) -> Option<(u64, u8)> {
    let key = varint(buf)?;
    Some((key >> 3, (key & 7) as u8))
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for (i, &b) in buf.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Some(v);
        }
    }
    None
}

fn take_len<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let n = usize::try_from(varint(buf)?).ok()?;
    if n > buf.len() {
        return None;
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Some(head)
}

fn skip(buf: &mut &[u8], wire: u8) -> Option<()> {
    let n = match wire {
        WIRE_VARINT => return varint(buf).map(drop),
        WIRE_I64 => 8,
        WIRE_LEN => return take_len(buf).map(drop),
        WIRE_I32 => 4,
        _ => return None,
    };
    *buf = buf.get(n..)?;
    Some(())
}

/// An aggregated record of `records` (partition key index 0 each), as the KPL writes it: for
/// tests and benches.
pub fn aggregate(partition_key: &str, records: &[&[u8]]) -> Vec<u8> {
    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn put_len(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
        put_varint(out, field << 3 | u64::from(WIRE_LEN));
        put_varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
    let mut body = Vec::new();
    put_len(&mut body, 1, partition_key.as_bytes());
    for r in records {
        let mut rec = Vec::new();
        put_varint(&mut rec, 1 << 3 | u64::from(WIRE_VARINT));
        put_varint(&mut rec, 0);
        put_len(&mut rec, 3, r);
        put_len(&mut body, 3, &rec);
    }
    let mut out = KPL_MAGIC.to_vec();
    out.extend_from_slice(&body);
    out.extend_from_slice(&Md5::digest(&body));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The user records of `data`, its digest checked as the fetch path checks it.
    fn users_of(data: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        split(data, digests_match(&[data])[0], |u| out.push(u.to_vec()));
        out
    }

    #[test]
    fn digests_are_checked_per_record_across_a_response() {
        let good = aggregate("pk", &[b"one", b"two"]);
        let mut bad = good.clone();
        bad[5] ^= 1;
        let plain: &[u8] = b"{\"a\":1}";
        let records: Vec<&[u8]> = vec![&good, plain, &bad, &good, &KPL_MAGIC, &good];
        assert_eq!(digests_match(&records), [true, false, false, true, false, true]);
        // A matching digest is what lets `split` open the aggregate; a wrong claim does not
        // invent one for a plain record.
        let mut out = Vec::new();
        split(&good, false, |u| out.push(u.to_vec()));
        assert_eq!(out, vec![good.clone()]);
        out.clear();
        split(plain, true, |u| out.push(u.to_vec()));
        assert_eq!(out, vec![plain.to_vec()]);
    }

    #[test]
    fn an_aggregated_record_splits_into_its_user_records_in_order() {
        let users: Vec<Vec<u8>> = (0..300).map(|i| format!("{{\"n\":{i}}}").into_bytes()).collect();
        let refs: Vec<&[u8]> = users.iter().map(|u| u.as_slice()).collect();
        let agg = aggregate("pk", &refs);
        assert_eq!(users_of(&agg), users);
    }

    #[test]
    fn a_plain_record_is_one_user_record() {
        assert_eq!(users_of(b"{\"a\":1}"), vec![b"{\"a\":1}".to_vec()]);
        assert_eq!(users_of(b""), vec![Vec::<u8>::new()]);
    }

    #[test]
    fn a_bad_digest_or_body_is_taken_as_one_ordinary_record() {
        let mut agg = aggregate("pk", &[b"one", b"two"]);
        let last = agg.len() - 1;
        agg[last] ^= 1;
        assert_eq!(users_of(&agg), vec![agg.clone()], "digest mismatch");

        // A valid digest over a body that is not an AggregatedRecord (a length past the end).
        let body = [3 << 3 | 2, 0x7f, 1, 2];
        let mut bad = KPL_MAGIC.to_vec();
        bad.extend_from_slice(&body);
        bad.extend_from_slice(&Md5::digest(body));
        assert_eq!(users_of(&bad), vec![bad.clone()], "malformed protobuf");

        // Magic and digest only: no user records at all.
        let mut empty = KPL_MAGIC.to_vec();
        empty.extend_from_slice(&Md5::digest([]));
        assert_eq!(users_of(&empty), vec![empty.clone()], "no records");
    }

    #[test]
    fn unknown_fields_and_tags_are_skipped() {
        // Record { partition_key_index: 0, explicit_hash_key_index: 5, data: "x", tags: {…},
        // field 9 fixed64 } inside an AggregatedRecord with a field 7 fixed32 of its own.
        let mut rec = vec![1 << 3, 0, 2 << 3, 5, 3 << 3 | 2, 1, b'x', 4 << 3 | 2, 3, 10, 1, b'k'];
        rec.extend_from_slice(&[9 << 3 | 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        let mut body = vec![7 << 3 | 5, 1, 2, 3, 4, 3 << 3 | 2, rec.len() as u8];
        body.extend_from_slice(&rec);
        let mut agg = KPL_MAGIC.to_vec();
        agg.extend_from_slice(&body);
        agg.extend_from_slice(&Md5::digest(&body));
        assert_eq!(users_of(&agg), vec![b"x".to_vec()]);
    }
}
