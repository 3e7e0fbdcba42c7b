//! GetRecords responses decoded by serde_json and base64-simd instead of the SDK's own
//! deserializer.
//!
//! Why: in a profile of the fetch path (`cargo bench --bench kinesis`), 29.5% of all CPU was the
//! SDK's JSON string reader going through every record's base64 `Data` byte by byte, and 2.5%
//! more its UTF-8 checks; a GetRecords body is ~1.3 bytes of base64 per byte of record. Here
//! serde_json borrows each string from the body when it holds no escape (a base64 payload has
//! none unless the sender escapes `/`), reads a record's payload, sequence number and member
//! names as bytes (their ends found by `memchr2`, no UTF-8 check but the sequence number's),
//! skips the members the pipeline does not read, and `base64_lanes` decodes the payload: the
//! fetch path costs 0.56–0.73× the CPU per record it did with the SDK's (docs/benchmarks-history.md,
//! 2026-11-27 08:4x UTC), and packing the records cut it to 0.75× again (2026-11-27).
//! simd-json was tried first: it copies every string into its scratch and back, and was no
//! cheaper.
//!
//! How: [`DecodeGetRecords`] is an interceptor put on every GetRecords call. Before the call
//! runs it stores, in the call's config bag, a response deserializer that wraps the SDK's own
//! (taken from the operation's configuration layer, `GetRecords::new().config()`, as the SDK
//! builds it for every call). A 2xx body is decoded here: its records packed into [`Records`]
//! as they are read (no per-record allocation), which the deserializer leaves in the
//! interceptor for the caller to [`take`](DecodeGetRecords::take), and the rest of the response
//! into the SDK's own `GetRecordsOutput`, whose `records` stay empty. Everything else goes to the
//! SDK's deserializer: error responses (their codes and messages stay exactly the SDK's), and a
//! body this decoder refuses (logged), which the SDK then decodes — its records in the output,
//! nothing to take — or refuses as it always did. Signing, timeouts, connection handling and
//! errors stay the SDK's.
//!
//! Invariants: for every body this decoder reads, the packed records are the SDK's records
//! packed (`Records::from_sdk`) and the rest of the output is the SDK's (tested on a recorded
//! body with KPL aggregates, escapes, unknown members, child shards, and a closed shard's null
//! iterator); a body it refuses, the SDK refuses too or reads itself. What a call leaves to take
//! is its own response's: the interceptor empties its slot before every call, and a task makes
//! one call at a time.
//!
//! Bounds: no copy of the body here (the SDK has already gathered it into one buffer); each
//! payload decoded once, into a buffer sized once from the body's length (three quarters of it
//! bounds the decoded payloads) — an earlier response's, when the core has given one back —
//! and a record's other members skipped, never copied.

use super::records::Records;
use aws_sdk_kinesis::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_kinesis::config::{ConfigBag, FrozenLayer, Intercept};
use aws_sdk_kinesis::operation::get_records::{GetRecords, GetRecordsOutput};
use aws_sdk_kinesis::types::{ChildShard, HashKeyRange};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{Error, Output};
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, OrchestratorError};
use aws_smithy_runtime_api::client::runtime_plugin::RuntimePlugin;
use aws_smithy_runtime_api::client::ser_de::{DeserializeResponse, SharedResponseDeserializer};
use crossbeam_channel::Receiver;
use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::{Arc, LazyLock, Mutex};

/// The interceptor: put it on a GetRecords call
/// (`customize().interceptor(decode.clone())`), then [`take`](Self::take) the records.
#[derive(Debug, Clone)]
pub struct DecodeGetRecords {
    /// The records of the last response decoded here (clones share it).
    slot: Arc<Mutex<Option<Records>>>,
    /// Buffers of responses the core has handed out, to decode a later response into.
    recycled: Receiver<Records>,
}

impl Default for DecodeGetRecords {
    /// A decoder that allocates every response's buffers.
    fn default() -> DecodeGetRecords {
        DecodeGetRecords::new(crossbeam_channel::never())
    }
}

impl DecodeGetRecords {
    /// A decoder that decodes into the buffers `recycled` gives back, when it has one.
    pub fn new(recycled: Receiver<Records>) -> DecodeGetRecords {
        DecodeGetRecords {
            slot: Arc::default(),
            recycled,
        }
    }

    /// The records of the last call's response, if this decoder read it; `None` if the SDK's
    /// deserializer did (its output holds them then).
    pub fn take(&self) -> Option<Records> {
        self.slot.lock().expect("never poisoned: no panic while held").take()
    }
}

impl Intercept for DecodeGetRecords {
    fn name(&self) -> &'static str {
        "sluicegate::DecodeGetRecords"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Nothing of an earlier call (one that failed after its body was decoded) is taken.
        self.take();
        // The interceptor layer is the top of the bag, so this is the deserializer the call loads.
        cfg.interceptor_state()
            .store_put(SharedResponseDeserializer::new(Deserializer {
                slot: self.slot.clone(),
                recycled: self.recycled.clone(),
            }));
        Ok(())
    }
}

#[derive(Debug)]
struct Deserializer {
    slot: Arc<Mutex<Option<Records>>>,
    recycled: Receiver<Records>,
}

/// The GetRecords operation's configuration layer as the SDK makes it for each call; it holds
/// the SDK's own response deserializer.
static SDK_OPERATION: LazyLock<Option<FrozenLayer>> = LazyLock::new(|| GetRecords::new().config());

impl DeserializeResponse for Deserializer {
    fn deserialize_nonstreaming_with_config(
        &self,
        response: &HttpResponse,
        cfg: &ConfigBag,
    ) -> Result<Output, OrchestratorError<Error>> {
        if response.status().is_success() {
            if let Some(body) = response.body().bytes() {
                match decode(body, self.recycled.try_recv().unwrap_or_default()) {
                    Ok((out, records)) => {
                        *self.slot.lock().expect("never poisoned: no panic while held") = Some(records);
                        return Ok(Output::erase(out));
                    }
                    Err(e) => tracing::warn!(error = %e, "GetRecords: body left to the SDK's deserializer"),
                }
            }
        }
        // Always there in this SDK (the tests go through it); a later SDK that moved it fails
        // the call, which the shard loop reports, rather than the task.
        match SDK_OPERATION
            .as_ref()
            .and_then(|layer| layer.load::<SharedResponseDeserializer>())
        {
            Some(sdk) => sdk.deserialize_nonstreaming_with_config(response, cfg),
            None => Err(OrchestratorError::other(
                "GetRecords: the SDK's response deserializer is not in the operation's configuration",
            )),
        }
    }
}

/// A GetRecords body (JSON 1.1): records packed as they are read, strings borrowed from the
/// body where they hold no escapes, absent and `null` members `None`, unknown members skipped,
/// a repeated member's last value kept — as the SDK reads it.
struct Body<'a> {
    records: Option<Records>,
    next_shard_iterator: Option<Text<'a>>,
    millis_behind_latest: Option<i64>,
    child_shards: Option<Vec<ChildShardJson<'a>>>,
}

/// Reads a [`Body`], its records into `records` (emptied, with room for every payload).
struct BodySeed {
    records: Records,
}

impl<'de> DeserializeSeed<'de> for BodySeed {
    type Value = Body<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Body<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BodySeed {
    type Value = Body<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a GetRecords response object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Body<'de>, A::Error> {
        let mut spare = self.records;
        let mut body = Body {
            records: None,
            next_shard_iterator: None,
            millis_behind_latest: None,
            child_shards: None,
        };
        while let Some(key) = map.next_key::<Bytes>()? {
            // A repeated member (never sent) keeps its last value, and a `null` leaves an
            // earlier value alone, as the SDK's deserializer does (found by fuzzing against it).
            match key.0.as_ref() {
                // A repeated member starts over in a fresh buffer.
                b"Records" => keep(
                    &mut body.records,
                    map.next_value_seed(RecordsSeed(std::mem::take(&mut spare)))?,
                ),
                b"NextShardIterator" => keep(&mut body.next_shard_iterator, map.next_value()?),
                b"MillisBehindLatest" => keep(&mut body.millis_behind_latest, map.next_value()?),
                b"ChildShards" => keep(&mut body.child_shards, map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(body)
    }
}

/// Reads the `Records` member (`null` or an array) into its [`Records`], record by record.
struct RecordsSeed(Records);

impl<'de> DeserializeSeed<'de> for RecordsSeed {
    type Value = Option<Records>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<Records>, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed {
    type Value = Option<Records>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of records")
    }
    fn visit_none<E>(self) -> Result<Option<Records>, E> {
        Ok(None)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<Records>, D::Error> {
        d.deserialize_seq(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<Records>, A::Error> {
        let mut out = self.0;
        while let Some(r) = seq.next_element::<RecordJson>()? {
            r.pack(&mut out)
                .map_err(|e| A::Error::custom(format_args!("Records[{}]: {e}", out.len())))?;
        }
        Ok(Some(out))
    }
}

/// One record as it is packed: its payload and sequence number, their strings read as bytes
/// (and so its member names). The members the pipeline does not read (partition key, arrival
/// time, encryption type) are skipped unread, as unknown ones are.
struct RecordJson<'a> {
    sequence_number: Option<Bytes<'a>>,
    data: Option<Bytes<'a>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for RecordJson<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RecordVisitor;
        impl<'de> Visitor<'de> for RecordVisitor {
            type Value = RecordJson<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a record object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RecordJson<'de>, A::Error> {
                let mut record = RecordJson {
                    sequence_number: None,
                    data: None,
                };
                while let Some(key) = map.next_key::<Bytes>()? {
                    match key.0.as_ref() {
                        b"SequenceNumber" => keep(&mut record.sequence_number, map.next_value()?),
                        b"Data" => {
                            // A repeated `Data` keeps its last value, but the SDK decodes every
                            // one and fails on any bad one: so does this (found by fuzzing).
                            let next = map.next_value()?;
                            if let (Some(earlier), Some(_)) = (&record.data, &next) {
                                base64_simd::STANDARD
                                    .check(&earlier.0)
                                    .map_err(|e| A::Error::custom(format!("Data: not base64 ({e})")))?;
                            }
                            keep(&mut record.data, next)
                        }
                        // Not read by the pipeline, but of a type the SDK checks: a body with
                        // another type there is refused, as the SDK refuses it (found by
                        // fuzzing). Read as cheaply as skipping: a string's end, a number.
                        b"PartitionKey" | b"EncryptionType" => {
                            map.next_value::<Option<Bytes>>()?;
                        }
                        b"ApproximateArrivalTimestamp" => {
                            map.next_value::<Option<f64>>()?;
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(record)
            }
        }
        d.deserialize_map(RecordVisitor)
    }
}

/// A member's value: a later one replaces it, a `null` (`None`) does not.
fn keep<T>(slot: &mut Option<T>, value: Option<T>) {
    if value.is_some() {
        *slot = value;
    }
}

impl RecordJson<'_> {
    /// Append to `out`, or say which member is missing or bad.
    fn pack(self, out: &mut Records) -> Result<(), String> {
        let sequence = self.sequence_number.ok_or("no SequenceNumber")?;
        let sequence = std::str::from_utf8(&sequence.0).map_err(|_| "SequenceNumber: not UTF-8")?;
        let data = self.data.ok_or("no Data")?;
        out.push_base64(&data.0, sequence)
            .map_err(|e| format!("Data: not base64 ({e})"))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ChildShardJson<'a> {
    #[serde(borrow)]
    shard_id: Option<Text<'a>>,
    #[serde(borrow)]
    parent_shards: Option<Vec<Text<'a>>>,
    #[serde(borrow)]
    hash_key_range: Option<HashKeyRangeJson<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HashKeyRangeJson<'a> {
    #[serde(borrow)]
    starting_hash_key: Option<Text<'a>>,
    #[serde(borrow)]
    ending_hash_key: Option<Text<'a>>,
}

/// A JSON string, borrowed from the body when it holds no escape. (serde's own `Cow<str>`
/// always copies, and inside an `Option` its `borrow` attribute does not reach it.)
struct Text<'a>(Cow<'a, str>);

impl Text<'_> {
    fn into_owned(self) -> String {
        self.0.into_owned()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// A JSON string read as bytes: serde_json then finds its end with `memchr2` instead of eight
/// bytes at a time and skips the UTF-8 check (base64 decoding refuses anything that is not
/// base64; a sequence number is checked when packed). Escapes are still decoded; borrowed when
/// there are none.
struct Bytes<'a>(Cow<'a, [u8]>);

impl<'de: 'a, 'a> Deserialize<'de> for Bytes<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Bytes<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<Bytes<'de>, E> {
                Ok(Bytes(Cow::Borrowed(v)))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Bytes<'de>, E> {
                Ok(Bytes(Cow::Owned(v.to_vec())))
            }
        }
        d.deserialize_bytes(Visitor)
    }
}

/// Decode a GetRecords response body (JSON 1.1 protocol): the SDK's output without its
/// records, and the records packed into `buffers` (any earlier content dropped).
pub fn decode(body: &[u8], buffers: Records) -> Result<(GetRecordsOutput, Records), String> {
    // Three quarters of the body bound its decoded payloads.
    let seed = BodySeed {
        records: buffers.reuse(body.len() / 4 * 3),
    };
    let mut json = serde_json::Deserializer::from_slice(body);
    let body = seed
        .deserialize(&mut json)
        .and_then(|b| json.end().map(|()| b))
        .map_err(|e| format!("not a GetRecords body: {e}"))?;
    let child_shards = match body.child_shards {
        None => None,
        Some(shards) => Some(
            shards
                .into_iter()
                .enumerate()
                .map(|(i, c)| child_shard(c).map_err(|e| format!("ChildShards[{i}]: {e}")))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let out = GetRecordsOutput::builder()
        .set_records(Some(Vec::new()))
        .set_next_shard_iterator(body.next_shard_iterator.map(Text::into_owned))
        .set_millis_behind_latest(body.millis_behind_latest)
        .set_child_shards(child_shards)
        .build()
        .map_err(|e| e.to_string())?;
    Ok((out, body.records.unwrap_or_default()))
}

fn child_shard(c: ChildShardJson) -> Result<ChildShard, String> {
    let range = match c.hash_key_range {
        None => None,
        Some(h) => Some(
            HashKeyRange::builder()
                .set_starting_hash_key(h.starting_hash_key.map(Text::into_owned))
                .set_ending_hash_key(h.ending_hash_key.map(Text::into_owned))
                .build()
                .map_err(|e| format!("HashKeyRange: {e}"))?,
        ),
    };
    ChildShard::builder()
        .set_shard_id(c.shard_id.map(Text::into_owned))
        .set_parent_shards(c.parent_shards.map(|p| p.into_iter().map(Text::into_owned).collect()))
        .set_hash_key_range(range)
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KinesisConfig;
    use crate::source::kinesis::replay::{self, Replay};
    use crate::source::kinesis::KinesisSource;
    use aws_sdk_kinesis::error::ProvideErrorMetadata;

    /// A body with every member the SDK reads: escapes in strings (a payload's too), a KPL
    /// aggregate, an integer and a fractional arrival time, an empty `Data`, an unknown member,
    /// KMS, child shards.
    fn full_body() -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let agg = crate::source::kinesis::kpl::aggregate("pk", &[b"{\"a\":1}".as_slice(), b"{\"a\":2}"]);
        format!(
            r#"{{"Records":[
              {{"SequenceNumber":"49590338271490256608559692538361571095921575989136588898","ApproximateArrivalTimestamp":1764500000.125,"Data":"{}","PartitionKey":"p\"k\u00e9\\n\/","EncryptionType":"KMS"}},
              {{"SequenceNumber":"2","ApproximateArrivalTimestamp":1764500001,"Data":"{}","PartitionKey":"pk","EncryptionType":"NONE"}},
              {{"SequenceNumber":"3","Data":"","PartitionKey":"pk","SomethingNew":{{"x":[1,2.5,null]}}}},
              {{"SequenceNumber":"4","Data":"\/\/\/\/","PartitionKey":"pk"}}
            ],
            "NextShardIterator":"AAAAAAAAAAH+/=","MillisBehindLatest":0,
            "ChildShards":[{{"ShardId":"shardId-000000000002","ParentShards":["shardId-000000000000","shardId-000000000001"],
              "HashKeyRange":{{"StartingHashKey":"0","EndingHashKey":"340282366920938463463374607431768211455"}}}}]}}"#,
            b64.encode(r#"{"event_id":"e1","text":"caf\u00e9 ☕"}"#),
            b64.encode(agg),
        )
    }

    /// The last records of a closed shard: no iterator, no records.
    const CLOSED_BODY: &str = r#"{"Records":[],"NextShardIterator":null,"MillisBehindLatest":12}"#;

    fn source(replay: &Replay) -> KinesisSource {
        let cfg: KinesisConfig = toml::from_str(&format!(
            "stream = \"s\"\nregion = \"us-east-1\"\nendpoint = \"{}\"",
            replay.endpoint()
        ))
        .unwrap();
        KinesisSource::try_new("t", &cfg, None, Some(("a", "b"))).unwrap()
    }

    #[test]
    fn repeated_members_and_nulls_are_read_as_the_sdk_reads_them() {
        let body = |first: &str| format!(r#"{{"Records":[{{"SequenceNumber":"1","Data":"{first}","Data":"YQ=="}}]}}"#);
        assert!(decode(body("a").as_bytes(), Records::default()).is_err());
        let (_, records) = decode(body("Yg==").as_bytes(), Records::default()).unwrap();
        assert_eq!(records.get(0), (b"a".as_slice(), "1"));
        // A member the pipeline does not read, of another type than the SDK's: refused.
        for bad in [
            r#""PartitionKey":["a"]"#,
            r#""EncryptionType":7"#,
            r#""ApproximateArrivalTimestamp":"x""#,
        ] {
            let body = format!(r#"{{"Records":[{{"SequenceNumber":"1","Data":"YQ==",{bad}}}]}}"#);
            assert!(decode(body.as_bytes(), Records::default()).is_err(), "{bad}");
        }
        let fine = r#"{"Records":[{"SequenceNumber":"1","Data":"YQ==","PartitionKey":null,"ApproximateArrivalTimestamp":1764500000}]}"#;
        assert!(decode(fine.as_bytes(), Records::default()).is_ok());
        // A null leaves an earlier value alone (the SDK's reading).
        let (out, _) = decode(
            br#"{"NextShardIterator":"x","NextShardIterator":null}"#,
            Records::default(),
        )
        .unwrap();
        assert_eq!(out.next_shard_iterator(), Some("x"));
    }

    #[test]
    fn decodes_every_body_as_the_sdk_does() {
        // The SDK keeps a repeated member's last value; so must this decoder.
        let repeated = r#"{"Records":[],"NextShardIterator":"a","NextShardIterator":"b"}"#;
        let bodies = [full_body(), CLOSED_BODY.to_string(), repeated.to_string()];
        let served = bodies.clone();
        let replay = Replay::start(move |call, _| {
            let i = (0..served.len())
                .find(|i| call.body.contains(&format!("\"it-{i}\"")))
                .unwrap();
            (200, served[i].clone().into())
        });
        let src = source(&replay);
        for (i, body) in bodies.iter().enumerate() {
            let sdk = src
                .rt
                .block_on(src.client.get_records().shard_iterator(format!("it-{i}")).send())
                .unwrap();
            let mut sdk_without_records = sdk.clone();
            sdk_without_records.records.clear();
            let (out, records) = decode(body.as_bytes(), Records::default()).unwrap();
            assert_eq!(records, Records::from_sdk(sdk.records()), "body {i}: the records");
            assert_eq!(out, sdk_without_records, "body {i}: the rest");
            let mut used = Records::default();
            used.push(b"old", "9");
            assert_eq!(
                decode(body.as_bytes(), used).unwrap().1,
                records,
                "body {i}: a reused buffer's old records are gone"
            );
            // Through the interceptor, on the SDK's own call: decoded here, the records left
            // to take.
            let interceptor = DecodeGetRecords::default();
            let via = src
                .rt
                .block_on(
                    src.client
                        .get_records()
                        .shard_iterator(format!("it-{i}"))
                        .customize()
                        .interceptor(interceptor.clone())
                        .send(),
                )
                .unwrap();
            assert_eq!(via, sdk_without_records, "body {i} through the interceptor");
            assert_eq!(
                interceptor.take(),
                Some(records),
                "body {i}: decoded by the interceptor"
            );
            assert_eq!(interceptor.take(), None, "taken once");
        }
        let (full, records) = decode(bodies[0].as_bytes(), Records::default()).unwrap();
        assert_eq!(records.len(), 4);
        assert_eq!(
            records.get(0).1,
            "49590338271490256608559692538361571095921575989136588898"
        );
        assert_eq!(records.get(1).0[..4], crate::source::kinesis::kpl::KPL_MAGIC);
        assert_eq!(records.get(2).0, b"", "an empty payload");
        assert_eq!(records.get(3).0, [0xff; 3], "an escaped payload decodes too");
        assert_eq!(full.child_shards().len(), 1);
        let (closed, records) = decode(CLOSED_BODY.as_bytes(), Records::default()).unwrap();
        assert!(closed.next_shard_iterator().is_none() && records.is_empty());
        assert_eq!(
            decode(repeated.as_bytes(), Records::default())
                .unwrap()
                .0
                .next_shard_iterator(),
            Some("b")
        );
    }

    #[test]
    fn a_buffer_given_back_is_decoded_into() {
        let body = full_body();
        let served = body.clone();
        let replay = Replay::start(move |_, _| (200, served.clone().into()));
        let src = source(&replay);
        let (give_back, given) = crossbeam_channel::bounded(1);
        // Large enough to keep (under twice what the body needs), holding an old response.
        let mut spare = Records::with_capacity(body.len());
        spare.push(b"old", "1");
        let at = spare.data_ptr();
        give_back.send(spare).unwrap();
        let interceptor = DecodeGetRecords::new(given);
        src.rt
            .block_on(
                src.client
                    .get_records()
                    .shard_iterator("it")
                    .customize()
                    .interceptor(interceptor.clone())
                    .send(),
            )
            .unwrap();
        let got = interceptor.take().unwrap();
        assert_eq!(got.data_ptr(), at, "decoded into the buffer given back");
        assert_eq!(got, decode(body.as_bytes(), Records::default()).unwrap().1);
    }

    #[test]
    fn strings_without_escapes_are_borrowed_from_the_body() {
        let record = br#"{"SequenceNumber":"1","D\u0061ta":"AA\/C","PartitionKey":"p"}"#;
        let r: RecordJson = serde_json::from_slice(record).unwrap();
        assert!(matches!(r.sequence_number.as_ref().unwrap().0, Cow::Borrowed(b"1")));
        assert!(
            matches!(&r.data.as_ref().unwrap().0, Cow::Owned(d) if d == b"AA/C"),
            "escapes decoded, in member names too"
        );
    }

    #[test]
    fn errors_stay_the_sdks_and_bad_bodies_are_refused_with_the_member() {
        let replay = Replay::start(|call, _| {
            if call.body.contains("expired") {
                replay::error(400, "ExpiredIteratorException")
            } else {
                (
                    200,
                    r#"{"Records":[{"SequenceNumber":"1","Data":"***","PartitionKey":"p"}]}"#.into(),
                )
            }
        });
        let src = source(&replay);
        // The error's code, if the call failed.
        let call = |it: &str, interceptor: &DecodeGetRecords| {
            src.rt
                .block_on(
                    src.client
                        .get_records()
                        .shard_iterator(it)
                        .customize()
                        .interceptor(interceptor.clone())
                        .send(),
                )
                .err()
                .map(|e| e.code().unwrap_or("(no code)").to_string())
        };
        let interceptor = DecodeGetRecords::default();
        assert_eq!(
            call("expired", &interceptor).as_deref(),
            Some("ExpiredIteratorException")
        );
        // A body this decoder refuses goes to the SDK, which refuses it too.
        assert!(call("bad", &interceptor).is_some());
        assert_eq!(interceptor.take(), None);

        let e = decode(br#"{"Records":[{"SequenceNumber":"1","Data":"","PartitionKey":"p"},{"SequenceNumber":"2","Data":"***","PartitionKey":"p"}]}"#, Records::default()).unwrap_err();
        assert!(e.contains("Records[1]: Data: not base64"), "{e}");
        let e = decode(
            br#"{"Records":[{"SequenceNumber":1,"Data":"","PartitionKey":"p"}]}"#,
            Records::default(),
        )
        .unwrap_err();
        assert!(
            e.starts_with("not a GetRecords body: invalid type: integer `1`, expected a string"),
            "{e}"
        );
        // A payload read as bytes is still only taken from a JSON string.
        let e = decode(
            br#"{"Records":[{"SequenceNumber":"1","Data":[65,65],"PartitionKey":"p"}]}"#,
            Records::default(),
        )
        .unwrap_err();
        assert!(e.contains("invalid type: sequence, expected a string"), "{e}");
        for (member, body) in [
            ("SequenceNumber", r#"{"Data":"","PartitionKey":"p"}"#),
            ("Data", r#"{"SequenceNumber":"1","PartitionKey":"p"}"#),
        ] {
            let e = decode(format!(r#"{{"Records":[{body}]}}"#).as_bytes(), Records::default()).unwrap_err();
            assert!(e.contains(&format!("Records[0]: no {member}")), "{e}");
        }
        let e = decode(
            b"{\"Records\":[{\"SequenceNumber\":\"\xff\",\"Data\":\"\"}]}",
            Records::default(),
        )
        .unwrap_err();
        assert!(e.contains("Records[0]: SequenceNumber: not UTF-8"), "{e}");
        assert!(decode(b"{\"Records\":[", Records::default())
            .unwrap_err()
            .starts_with("not a GetRecords body: EOF"));
        let e = decode(b" []", Records::default()).unwrap_err();
        assert!(e.contains("expected a GetRecords response object"), "{e}");
        let e = decode(br#"{"Records":null} {}"#, Records::default()).unwrap_err();
        assert!(e.contains("trailing characters"), "{e}");
        assert!(decode(br#"{"Records":null}"#, Records::default()).unwrap().1.is_empty());
    }
}
