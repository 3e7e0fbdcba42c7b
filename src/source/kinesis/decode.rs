//! GetRecords responses decoded by serde_json and base64-simd instead of the SDK's own
//! deserializer.
//!
//! Why: in a profile of the fetch path (`cargo bench --bench kinesis`), 29.5% of all CPU was the
//! SDK's JSON string reader going through every record's base64 `Data` byte by byte, and 2.5%
//! more its UTF-8 checks; a GetRecords body is ~1.3 bytes of base64 per byte of record. Here
//! serde_json borrows each string from the body when it holds no escape (a base64 payload has
//! none unless the sender escapes `/`), reading a payload as bytes (its end found by
//! `memchr2`, no UTF-8 check), and base64-simd decodes it: the fetch path costs 0.56–0.73× the
//! CPU per record it did with the SDK's (BENCHMARKS.md, session 8). simd-json was tried first:
//! it copies every string into its scratch and back, and was no cheaper.
//!
//! How: [`DecodeGetRecords`] is an interceptor put on every GetRecords call. Before the call
//! runs it stores, in the call's config bag, a response deserializer that wraps the SDK's own
//! (taken from the operation's configuration layer, `GetRecords::new().config()`, as the SDK
//! builds it for every call): a 2xx body is decoded here into the SDK's own `GetRecordsOutput`,
//! so nothing downstream changes. Everything else goes to the SDK's deserializer: error
//! responses (their codes and messages stay exactly the SDK's), and a body this decoder refuses
//! (logged), which the SDK then decodes or refuses as it always did. Signing, timeouts,
//! connection handling and errors stay the SDK's.
//!
//! Invariant: for every body, the output is what the SDK's deserializer gives (tested on a
//! recorded body with KPL aggregates, escapes, unknown members, child shards, and a closed
//! shard's null iterator).
//!
//! Bounds: no copy of the body here (the SDK has already gathered it into one buffer); a
//! record's strings are copied once, into the SDK's types, and
//! its payload decoded once.

use aws_sdk_kinesis::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_kinesis::config::{ConfigBag, FrozenLayer, Intercept};
use aws_sdk_kinesis::operation::get_records::{GetRecords, GetRecordsOutput};
use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::{ChildShard, EncryptionType, HashKeyRange, Record};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{Error, Output};
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, OrchestratorError};
use aws_smithy_runtime_api::client::runtime_plugin::RuntimePlugin;
use aws_smithy_runtime_api::client::ser_de::{DeserializeResponse, SharedResponseDeserializer};
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

/// The interceptor: put it on a GetRecords call
/// (`customize().interceptor(DecodeGetRecords::default())`).
#[derive(Debug, Default, Clone)]
pub struct DecodeGetRecords {
    /// Bodies this call decoded here (not left to the SDK).
    decoded: Arc<AtomicU64>,
}

impl DecodeGetRecords {
    /// Bodies decoded here so far by the calls this interceptor (or a clone) was put on.
    pub fn decoded(&self) -> u64 {
        self.decoded.load(Ordering::Relaxed)
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
        // The interceptor layer is the top of the bag, so this is the deserializer the call loads.
        cfg.interceptor_state()
            .store_put(SharedResponseDeserializer::new(Deserializer {
                decoded: self.decoded.clone(),
            }));
        Ok(())
    }
}

#[derive(Debug)]
struct Deserializer {
    decoded: Arc<AtomicU64>,
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
                match decode(body) {
                    Ok(out) => {
                        self.decoded.fetch_add(1, Ordering::Relaxed);
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

/// A GetRecords body as JSON: strings borrowed from the body where they hold no escapes (the
/// base64 payloads, unless the sender escapes `/`), absent and `null` members `None`, unknown
/// members skipped — as the SDK reads it.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Body<'a> {
    #[serde(borrow)]
    records: Option<Vec<RecordJson<'a>>>,
    #[serde(borrow)]
    next_shard_iterator: Option<Text<'a>>,
    millis_behind_latest: Option<i64>,
    #[serde(borrow)]
    child_shards: Option<Vec<ChildShardJson<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RecordJson<'a> {
    #[serde(borrow)]
    sequence_number: Option<Text<'a>>,
    approximate_arrival_timestamp: Option<f64>,
    #[serde(borrow)]
    data: Option<Base64<'a>>,
    #[serde(borrow)]
    partition_key: Option<Text<'a>>,
    #[serde(borrow)]
    encryption_type: Option<Text<'a>>,
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

/// A base64 payload, its JSON string read as bytes: serde_json then finds its end with
/// `memchr2` instead of eight bytes at a time and skips the UTF-8 check (base64 decoding
/// refuses anything that is not base64). Escapes are still decoded; borrowed when there are
/// none.
struct Base64<'a>(Cow<'a, [u8]>);

impl<'de: 'a, 'a> Deserialize<'de> for Base64<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Base64<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a base64 string")
            }
            fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<Base64<'de>, E> {
                Ok(Base64(Cow::Borrowed(v)))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Base64<'de>, E> {
                Ok(Base64(Cow::Owned(v.to_vec())))
            }
        }
        d.deserialize_bytes(Visitor)
    }
}

/// Decode a GetRecords response body (JSON 1.1 protocol).
pub fn decode(body: &[u8]) -> Result<GetRecordsOutput, String> {
    // serde would also take a struct from a JSON array of its members; the SDK would not.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err("the body is not a JSON object".into());
    }
    let body: Body = serde_json::from_slice(body).map_err(|e| format!("not a GetRecords body: {e}"))?;
    GetRecordsOutput::builder()
        .set_records(each(body.records, "Records", record)?)
        .set_next_shard_iterator(body.next_shard_iterator.map(Text::into_owned))
        .set_millis_behind_latest(body.millis_behind_latest)
        .set_child_shards(each(body.child_shards, "ChildShards", child_shard)?)
        .build()
        .map_err(|e| e.to_string())
}

/// `f` over the items of an optional array member, an error naming the item that failed.
fn each<J, T>(
    items: Option<Vec<J>>,
    member: &str,
    f: impl Fn(J) -> Result<T, String>,
) -> Result<Option<Vec<T>>, String> {
    items
        .map(|items| {
            // Sized up front: collecting `Result`s cannot know the length, and growing the
            // vector by doubling copied every record about twice.
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                out.push(f(item).map_err(|e| format!("{member}[{i}]: {e}"))?);
            }
            Ok(out)
        })
        .transpose()
}

fn record(r: RecordJson) -> Result<Record, String> {
    let data = match r.data {
        Some(b64) => Some(Blob::new(
            base64_simd::STANDARD
                .decode_to_vec(&b64.0)
                .map_err(|e| format!("Data: not base64 ({e})"))?,
        )),
        None => None,
    };
    Record::builder()
        .set_sequence_number(r.sequence_number.map(Text::into_owned))
        .set_approximate_arrival_timestamp(r.approximate_arrival_timestamp.map(DateTime::from_secs_f64))
        .set_data(data)
        .set_partition_key(r.partition_key.map(Text::into_owned))
        .set_encryption_type(r.encryption_type.as_ref().map(|t| EncryptionType::from(t.0.as_ref())))
        .build()
        .map_err(|e| e.to_string())
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
    fn decodes_every_body_as_the_sdk_does() {
        let bodies = [full_body(), CLOSED_BODY.to_string()];
        let served = bodies.clone();
        let replay = Replay::start(move |call, _| {
            let i: usize = call.body.contains("\"it-1\"").into();
            (200, served[i].clone().into())
        });
        let src = source(&replay);
        for (i, body) in bodies.iter().enumerate() {
            let sdk = src
                .rt
                .block_on(src.client.get_records().shard_iterator(format!("it-{i}")).send())
                .unwrap();
            let ours = decode(body.as_bytes()).unwrap();
            assert_eq!(ours, sdk, "body {i}");
            // Through the interceptor, on the SDK's own call: decoded here, same output.
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
            assert_eq!(via, sdk, "body {i} through the interceptor");
            assert_eq!(
                interceptor.decoded(),
                1,
                "body {i} was decoded by the interceptor's deserializer"
            );
        }
        let full = decode(bodies[0].as_bytes()).unwrap();
        assert_eq!(full.records()[0].partition_key(), Some("p\"k\u{e9}\\n/"));
        assert_eq!(
            full.records()[1].data().as_ref()[..4],
            crate::source::kinesis::kpl::KPL_MAGIC
        );
        assert_eq!(
            full.records()[3].data().as_ref(),
            [0xff; 3],
            "an escaped payload decodes too"
        );
        assert_eq!(full.child_shards().len(), 1);
        assert!(decode(CLOSED_BODY.as_bytes()).unwrap().next_shard_iterator().is_none());
    }

    #[test]
    fn strings_without_escapes_are_borrowed_from_the_body() {
        let body = br#"{"Records":[{"SequenceNumber":"1","Data":"AAEC","PartitionKey":"a\/b"}]}"#;
        let parsed: Body = serde_json::from_slice(body).unwrap();
        let r = &parsed.records.as_ref().unwrap()[0];
        assert!(matches!(r.data.as_ref().unwrap().0, Cow::Borrowed(b"AAEC")));
        assert!(matches!(&r.partition_key.as_ref().unwrap().0, Cow::Owned(k) if k == "a/b"));
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
        assert_eq!(interceptor.decoded(), 0);

        let e = decode(br#"{"Records":[{"SequenceNumber":"1","Data":"***","PartitionKey":"p"}]}"#).unwrap_err();
        assert!(e.starts_with("Records[0]: Data: not base64"), "{e}");
        let e = decode(br#"{"Records":[{"SequenceNumber":1,"Data":"","PartitionKey":"p"}]}"#).unwrap_err();
        assert!(
            e.starts_with("not a GetRecords body: invalid type: integer `1`, expected a string"),
            "{e}"
        );
        // A payload read as bytes is still only taken from a JSON string.
        let e = decode(br#"{"Records":[{"SequenceNumber":"1","Data":[65,65],"PartitionKey":"p"}]}"#).unwrap_err();
        assert!(e.contains("expected a base64 string"), "{e}");
        let e = decode(br#"{"Records":[{"Data":"","PartitionKey":"p"}]}"#).unwrap_err();
        assert!(e.starts_with("Records[0]: ") && e.contains("sequence_number"), "{e}");
        assert!(decode(b"{\"Records\":[")
            .unwrap_err()
            .starts_with("not a GetRecords body: EOF"));
        assert_eq!(decode(b" []").unwrap_err(), "the body is not a JSON object");
    }
}
