//! The fuzz harnesses: one function per decoder of untrusted bytes, each taking any input and
//! panicking only on a real finding (a crash in the decoder, or a differential mismatch with
//! the crate it stands in for). `fuzz_targets/<name>.rs` hands libFuzzer's inputs to
//! `<name>`; `tests/seeds.rs` runs every harness over its seed corpus (`corpus/<name>/`) and
//! seeded mutations of it on the stable toolchain, so the test command keeps them building and
//! running.
//!
//! Bounds: each harness caps what it lets an input make (decoded bytes, records, messages) so
//! that one input runs in well under libFuzzer's default 1 s timeout.

use sluicegate::extract::RECORD_BYTES_MAX;
use sluicegate::source::framing::{Frame, FrameReader};
use std::io::Cursor;

/// A harness: any input, a panic only on a finding.
pub type Harness = fn(&[u8]);

/// Every harness, by target name: what the seeds test and the README's table iterate.
pub const TARGETS: [(&str, Harness); 11] = [
    ("envelope", envelope),
    ("sgf1", sgf1),
    ("raw_lz4", raw_lz4),
    ("inbox", inbox),
    ("spill", spill),
    ("kpl", kpl),
    ("get_records", get_records),
    ("md5_lanes", md5_lanes),
    ("base64_lanes", base64_lanes),
    ("http_body", http_body),
    ("json_record", json_record),
];

/// Decoded bytes one input may make (a decompression bomb is refused past it).
const DECODED_BYTES_MAX: usize = 16 << 20;

/// The envelope: header parsing, key lookup and AES-GCM opening in place, with the demo key
/// and one more in the keyring.
pub fn envelope(data: &[u8]) {
    use sluicegate::extract::{envelope, keyring::Keyring};
    thread_local! {
        static KEYS: Keyring = {
            let mut k = Keyring::default();
            k.insert_demo().expect("the demo key");
            k.insert("k2", [7u8; 32]).expect("a key");
            k
        };
    }
    let _ = envelope::key_id(data);
    let mut buf = data.to_vec();
    KEYS.with(|k| {
        if let Ok(range) = envelope::open_in_place(k, &mut buf) {
            assert!(range.end <= data.len(), "the plaintext lies inside the envelope");
        }
    });
}

/// `SGF1` framing: the file source's frame reader and the HTTP receiver's body walk.
pub fn sgf1(data: &[u8]) {
    let mut cursor = Cursor::new(data);
    if matches!(FrameReader::read_magic(&mut cursor), Ok(true)) {
        read_frames(FrameReader::new(cursor, 4));
    }
    let mut total = 0;
    let _ = sluicegate::source::http::body::records(data, usize::MAX, |off, r| {
        assert!(off + r.len() <= data.len());
        total += r.len();
    });
    assert!(total <= data.len());
}

/// Read every frame until the end or the first corruption, each within the record limit.
fn read_frames<R: std::io::Read>(mut frames: FrameReader<R>) {
    let mut buf = Vec::new();
    let mut out = 0usize;
    loop {
        buf.clear();
        match frames.next(&mut buf) {
            Ok(Frame::Payload(n)) => {
                assert!(n <= RECORD_BYTES_MAX && n == buf.len());
                out += n;
                if out > DECODED_BYTES_MAX {
                    return;
                }
            }
            Ok(Frame::End) | Ok(Frame::Corrupt(_)) | Err(_) => return,
        }
    }
}

/// A RAW segment as the file source replays it: an LZ4 frame (lz4_flex, checked decoding)
/// holding an `SGF1` stream, read frame by frame.
pub fn raw_lz4(data: &[u8]) {
    use std::io::Read;
    let mut r = lz4_flex::frame::FrameDecoder::new(data).take(DECODED_BYTES_MAX as u64);
    if matches!(FrameReader::read_magic(&mut r), Ok(true)) {
        read_frames(FrameReader::new(r, 4));
    }
}

/// Inbox segment recovery: the scan that tells a torn tail from corruption, with the first
/// bytes choosing salvaged offsets and the checkpoint.
pub fn inbox(data: &[u8]) {
    use sluicegate::source::http::inbox::{scan, Tail};
    let (salvaged, delivered) = match data {
        [a, b, ..] => (vec![u64::from(*a) * 8], u64::from(*b) * 16),
        _ => (Vec::new(), 0),
    };
    if let Ok(s) = scan(data, &salvaged, delivered) {
        assert!(s.end as usize <= data.len().max(8), "the end lies in the file");
        if s.tail == Tail::Clean {
            assert_eq!(s.end as usize, data.len());
        }
    }
}

/// Spill frame recovery: walk the frames of a segment region as recovery does, each checked
/// (length, CRC32C, rkyv archive validation).
pub fn spill(data: &[u8]) {
    use sluicegate::buffer::row::{access_checked, frame_at};
    // rkyv's checked access needs the archive's alignment: copy into an aligned buffer.
    let mut region = rkyv::util::AlignedVec::<16>::with_capacity(data.len());
    region.extend_from_slice(data);
    let mut at = 0;
    while let Ok(Some((range, next))) = frame_at(&region, at) {
        assert!(range.end <= region.len() && next > at);
        if let Ok(row) = access_checked(&region[range], at) {
            let _ = row.head();
        }
        at = next;
    }
}

/// KPL de-aggregation: the digest check and the split of an aggregate into user records.
pub fn kpl(data: &[u8]) {
    use sluicegate::source::kinesis::kpl;
    let matches = kpl::digests_match(&[data]);
    let mut total = 0;
    kpl::split(data, matches[0], |r| total += r.len());
    assert!(total <= data.len(), "records are slices of the aggregate");
}

/// The GetRecords body decoder against the SDK's own deserializer: whatever ours accepts, the
/// SDK accepts too, with the same records and the same rest — for bodies that are valid JSON
/// (serde_json's strict reading). Ours reads member names, sequence numbers and payloads as
/// bytes and skips the members the pipeline does not use (`decode.rs`, for CPU), so it takes a
/// body that is not quite JSON in a part it does not read (invalid UTF-8, a raw control
/// character or a lone surrogate escape in a member name) where the SDK refuses the whole
/// body; Kinesis sends JSON, so only the absence of a crash is checked there.
pub fn get_records(data: &[u8]) {
    use sluicegate::source::kinesis::decode::decode;
    use sluicegate::source::kinesis::records::Records;
    let Ok((ours, records)) = decode(data, Records::default()) else {
        return; // refused: the SDK's deserializer reads it instead, so nothing to compare
    };
    if serde_json::from_slice::<serde_json::Value>(data).is_err() {
        return;
    }
    let sdk = sdk::decode(data).unwrap_or_else(|e| {
        panic!(
            "ours decoded a body the SDK refuses: {e}\n{}",
            String::from_utf8_lossy(data)
        )
    });
    assert_eq!(records, Records::from_sdk(sdk.records()), "the records");
    let mut rest = sdk;
    rest.records.clear();
    assert_eq!(
        ours,
        rest,
        "the rest of the output of {}",
        String::from_utf8_lossy(data)
    );
}

/// The SDK's GetRecords deserializer, reached without a call: the operation's own
/// configuration layer holds it, and the client protocol it reads is the one the Kinesis
/// client installs (AWS JSON 1.1).
mod sdk {
    use aws_sdk_kinesis::config::RuntimePlugin;
    use aws_sdk_kinesis::operation::get_records::{GetRecords, GetRecordsOutput};
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::client::ser_de::{DeserializeResponse, SharedResponseDeserializer};
    use aws_smithy_types::config_bag::{ConfigBag, FrozenLayer, Layer};
    use std::sync::LazyLock;

    static OPERATION: LazyLock<FrozenLayer> =
        LazyLock::new(|| GetRecords::new().config().expect("the operation's layer"));

    pub fn decode(body: &[u8]) -> Result<GetRecordsOutput, String> {
        let deserializer = OPERATION
            .load::<SharedResponseDeserializer>()
            .ok_or("no response deserializer in the operation's layer")?;
        let mut protocol = Layer::new("protocol");
        protocol.store_put(aws_smithy_schema::protocol::SharedClientProtocol::new(
            aws_smithy_json::protocol::aws_json_rpc::AwsJsonRpcProtocol::aws_json_1_1()
                .with_default_namespace("com.amazonaws.kinesis"),
        ));
        let mut cfg = ConfigBag::of_layers(vec![protocol]);
        cfg.push_shared_layer(OPERATION.clone());
        let response = HttpResponse::new(
            200u16.try_into().expect("a status"),
            aws_smithy_types::body::SdkBody::from(body.to_vec()),
        );
        let out = deserializer
            .deserialize_nonstreaming_with_config(&response, &cfg)
            .map_err(|e| format!("{e:?}"))?;
        out.downcast::<GetRecordsOutput>()
            .map_err(|_| "another output type".to_string())
    }
}

/// Split `data` into up to 40 messages: each starts with a length byte (0..=255, scaled so
/// the MD5 padding edges at 55/56/64 come up often).
fn messages(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some((&n, tail)) = rest.split_first() {
        let n = (n as usize).min(tail.len());
        out.push(&tail[..n]);
        rest = &tail[n..];
        if out.len() == 40 {
            break;
        }
    }
    out
}

/// The MD5 lanes (AVX2/AVX-512 when the CPU has them) against `md-5`, message by message.
pub fn md5_lanes(data: &[u8]) {
    use md5::Digest;
    let msgs = messages(data);
    let lanes = sluicegate::source::kinesis::md5_lanes::digests(&msgs);
    assert_eq!(lanes.len(), msgs.len());
    for (m, got) in msgs.iter().zip(lanes) {
        let want: [u8; 16] = md5::Md5::digest(m).into();
        assert_eq!(got, want, "MD5 of a {}-byte message", m.len());
    }
}

/// The base64 lanes (AVX-512 VBMI blocks when the CPU has them) against `base64-simd`: the
/// same output, or an error from both.
pub fn base64_lanes(data: &[u8]) {
    let mut got = vec![0xAA]; // decode_append appends: what was there stays
    let ours = sluicegate::source::kinesis::base64_lanes::decode_append(data, &mut got);
    let theirs = base64_simd::STANDARD.decode_to_vec(data);
    match (ours, theirs) {
        (Ok(()), Ok(want)) => assert_eq!(&got[1..], want.as_slice()),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("the lanes say {a:?}, base64-simd says {:?}", b.map(|v| v.len())),
    }
}

/// HTTP body decoding: the first byte picks the encoding (none, gzip, zstd); the rest is
/// decoded under a 1 MiB bound and a budget that refuses past 2 MiB granted, then walked
/// into records.
pub fn http_body(data: &[u8]) {
    use sluicegate::source::http::body::{decode, records, Encoding};
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let encoding = [Encoding::Identity, Encoding::Gzip, Encoding::Zstd][pick as usize % 3];
    let max = 1 << 20;
    let mut granted = 0usize;
    let mut grow = |n: usize| {
        granted += n;
        if granted > 2 << 20 {
            Err(sluicegate::source::http::body::Refusal::new(503, "over budget"))
        } else {
            Ok(())
        }
    };
    if let Ok(decoded) = decode(encoding, body, max, &mut grow) {
        assert!(decoded.len() <= max, "the bound holds");
        let _ = records(&decoded, 100_000, |_, _| {});
    }
}

/// The JSON → flatten → schema → transform → buffer path of a plaintext source with the
/// built-in events schema: one record per input, through the pipeline as a core runs it.
pub fn json_record(data: &[u8]) {
    use sluicegate::pipeline::Pipeline;
    use sluicegate::source::FetchBatch;
    use std::cell::RefCell;
    use std::sync::Arc;
    /// Inputs before the pipeline is made anew (its buffers and bookkeeping stay bounded).
    const RECORDS_PER_PIPELINE: u64 = 512;
    struct State {
        plan: Arc<sluicegate::pipeline::Plan>,
        pipe: Option<Pipeline>,
        n: u64,
    }
    thread_local! {
        static STATE: RefCell<State> = RefCell::new({
            let mut cfg = sluicegate::config::Config::embedded_default(1, std::path::Path::new("/unused"));
            cfg.sources[0].encryption = sluicegate::config::Encryption::None;
            // The path under test is the record's, not the zones': no RAW segments, small
            // buffers (a pipeline is made anew every RECORDS_PER_PIPELINE inputs).
            cfg.raw.enabled = false;
            cfg.buffer.memory_bytes_max = 16 << 20;
            let plan = sluicegate::engine::plan_for_test(&cfg).expect("the embedded plan");
            State { plan: Arc::new(plan), pipe: None, n: 0 }
        });
    }
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        if s.pipe.is_none() || s.n.is_multiple_of(RECORDS_PER_PIPELINE) {
            let clock = Arc::new(sluicegate::clock::ManualClock::new(1_764_151_200_000_000));
            let mut pipe = Pipeline::new(s.plan.clone(), 0, clock);
            pipe.add_partition(0, "0", Default::default());
            s.pipe = Some(pipe);
        }
        s.n += 1;
        let position = s.n;
        let pipe = s.pipe.as_mut().expect("made above");
        let mut batch = FetchBatch::default();
        batch.push(data, position, None);
        batch.next_position = position + 1;
        let mut out = Vec::new();
        pipe.process_batch(0, &batch, 0, &mut out);
    });
}
