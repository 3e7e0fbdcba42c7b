//! Request bodies: content decoding (gzip, zstd) under a size bound, and framing.
//!
//! A body is either NDJSON (one record per line, `\r\n` accepted, blank lines skipped, as the
//! `file` source reads) or an `SGF1` stream (`source::framing`: the magic, then length-prefixed
//! frames), told apart by the magic, as the `file` source's `auto` framing does. Envelopes are
//! binary, so encrypted records come `SGF1`-framed.
//!
//! [`records`] is the one walk over a body: the receiver runs it before it accepts a request
//! (a framing error is a 400 naming the line or frame), and the inbox reader runs it again to
//! cut the accepted body into records. A record's offset is where it starts in the body: its
//! line's first byte, or its frame's length prefix.
//!
//! Bounds: a decoded body is at most the configured `body_bytes_max` (a small compressed body
//! cannot unpack into more), and every step of its growth is granted by the core's body memory
//! budget first; a record is at most [`RECORD_BYTES_MAX`]; a body holds at most `records_max`
//! records (a body of `{}` lines would otherwise make millions of quarantine rows).

use crate::extract::RECORD_BYTES_MAX;
use crate::source::framing::MAGIC;
use std::borrow::Cow;
use std::io::Read;

/// Why a body was refused, with the HTTP status that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: String,
}

impl Refusal {
    pub fn new(status: u16, reason: impl Into<String>) -> Refusal {
        Refusal {
            status,
            reason: reason.into(),
        }
    }
}

/// A request's `Content-Encoding`, read from its headers before any of its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Zstd,
}

impl Encoding {
    /// The encoding a `Content-Encoding` header names (none, `identity`, `gzip`, `x-gzip`,
    /// `zstd`; any case and surrounding space), or 415.
    pub fn from_header(value: Option<&[u8]>) -> Result<Encoding, Refusal> {
        let name = value.map(|v| String::from_utf8_lossy(v).trim().to_ascii_lowercase());
        match name.as_deref() {
            None | Some("") | Some("identity") => Ok(Encoding::Identity),
            Some("gzip") | Some("x-gzip") => Ok(Encoding::Gzip),
            Some("zstd") => Ok(Encoding::Zstd),
            Some(other) => Err(Refusal::new(
                415,
                format!("Content-Encoding {other:?} is not supported (use gzip, zstd or none)"),
            )),
        }
    }
}

/// First capacity of a decoded body; it then doubles (up to `max`) as the decoder fills it.
const DECODED_CAPACITY_FIRST: usize = 64 << 10;

/// Undo the request's `Content-Encoding`, refusing a result longer than `max` bytes. The output
/// grows by doubling, and `grow(bytes)` is asked before each step (the caller's memory budget:
/// an error from it ends the decoding with that error).
pub fn decode<'a>(
    encoding: Encoding,
    body: &'a [u8],
    max: usize,
    grow: &mut dyn FnMut(usize) -> Result<(), Refusal>,
) -> Result<Cow<'a, [u8]>, Refusal> {
    let bad = |e: std::io::Error, name: &str| Refusal::new(400, format!("the body is not valid {name} data: {e}"));
    let out = match encoding {
        Encoding::Identity => return Ok(Cow::Borrowed(body)),
        Encoding::Gzip => {
            read_bounded(flate2::read::MultiGzDecoder::new(body), max, grow).map_err(|e| e.or(|e| bad(e, "gzip")))?
        }
        Encoding::Zstd => {
            let d = zstd::stream::read::Decoder::with_buffer(body).map_err(|e| bad(e, "zstd"))?;
            read_bounded(d, max, grow).map_err(|e| e.or(|e| bad(e, "zstd")))?
        }
    };
    match out {
        Some(v) => Ok(Cow::Owned(v)),
        None => Err(Refusal::new(
            413,
            format!("the body decodes to more than the {max}-byte limit (body_bytes_max)"),
        )),
    }
}

/// Why [`read_bounded`] stopped: the reader failed, or the budget said no.
enum ReadError {
    Io(std::io::Error),
    Refused(Refusal),
}

impl ReadError {
    fn or(self, io: impl FnOnce(std::io::Error) -> Refusal) -> Refusal {
        match self {
            ReadError::Io(e) => io(e),
            ReadError::Refused(r) => r,
        }
    }
}

/// Read all of `r`, or `None` once it passes `max` bytes; the buffer doubles, each step
/// granted by `grow` first.
fn read_bounded(
    r: impl Read,
    max: usize,
    grow: &mut dyn FnMut(usize) -> Result<(), Refusal>,
) -> Result<Option<Vec<u8>>, ReadError> {
    let limit = max + 1;
    let mut r = r.take(limit as u64);
    // `out` is zeroed as it grows (once per step), `len` bytes of it filled.
    let mut out: Vec<u8> = Vec::new();
    let mut len = 0;
    loop {
        if len == out.len() {
            let want = out.len().max(DECODED_CAPACITY_FIRST).min(limit - len);
            if want == 0 {
                break;
            }
            grow(want).map_err(ReadError::Refused)?;
            out.reserve_exact(want);
            out.resize(len + want, 0);
        }
        match r.read(&mut out[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    out.truncate(len);
    Ok((out.len() <= max).then_some(out))
}

/// Walk the records of a (decoded) body: `emit(offset, record)` for each, in order. Returns
/// how many there were, or a 400 naming the first framing error (then nothing after it counts:
/// the caller refuses the whole body), or a 413 once there are more than `records_max`.
pub fn records(body: &[u8], records_max: usize, mut emit: impl FnMut(usize, &[u8])) -> Result<usize, Refusal> {
    let bad = |reason: String| Refusal::new(400, reason);
    let too_many = || {
        Refusal::new(
            413,
            format!("the body holds more than {records_max} records (records_max)"),
        )
    };
    let mut n = 0;
    if let Some(mut rest) = body.strip_prefix(MAGIC.as_slice()) {
        let mut off = MAGIC.len();
        while !rest.is_empty() {
            let frame = n + 1;
            let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                return Err(bad(format!(
                    "SGF1 body ends inside the length of frame {frame} (byte {off})"
                )));
            };
            let len = u32::from_le_bytes(*len) as usize;
            if len > RECORD_BYTES_MAX {
                return Err(bad(format!(
                    "SGF1 frame {frame} (byte {off}) is {len} bytes, longer than the {RECORD_BYTES_MAX}-byte record limit"
                )));
            }
            if tail.len() < len {
                return Err(bad(format!(
                    "SGF1 body ends inside frame {frame} (byte {off}): {len} bytes announced, {} present",
                    tail.len()
                )));
            }
            if n == records_max {
                return Err(too_many());
            }
            emit(off, &tail[..len]);
            n += 1;
            off += 4 + len;
            rest = &tail[len..];
        }
    } else {
        let mut off = 0;
        for (i, raw) in body.split_inclusive(|&b| b == b'\n').enumerate() {
            let line = raw.strip_suffix(b"\n").unwrap_or(raw);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > RECORD_BYTES_MAX {
                return Err(bad(format!(
                    "line {} (byte {off}) is {} bytes, longer than the {RECORD_BYTES_MAX}-byte record limit",
                    i + 1,
                    line.len()
                )));
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                if n == records_max {
                    return Err(too_many());
                }
                emit(off, line);
                n += 1;
            }
            off += raw.len();
        }
    }
    if n == 0 {
        return Err(bad("the body holds no records".into()));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn collect(body: &[u8]) -> Result<Vec<(usize, Vec<u8>)>, Refusal> {
        let mut out = Vec::new();
        records(body, usize::MAX, |off, r| out.push((off, r.to_vec())))?;
        Ok(out)
    }

    #[test]
    fn ndjson_lines_with_offsets() {
        let got = collect(b"{\"a\":1}\r\n\n  \n{\"b\":2}").unwrap();
        assert_eq!(got, vec![(0, b"{\"a\":1}".to_vec()), (13, b"{\"b\":2}".to_vec())]);
        assert_eq!(collect(b"\n \r\n").unwrap_err().reason, "the body holds no records");
        let long = vec![b'x'; RECORD_BYTES_MAX + 1];
        let body = [b"{}\n".as_slice(), &long].concat();
        assert_eq!(
            collect(&body).unwrap_err().reason,
            format!(
                "line 2 (byte 3) is {} bytes, longer than the 1048576-byte record limit",
                RECORD_BYTES_MAX + 1
            )
        );
    }

    #[test]
    fn a_body_with_more_records_than_the_bound_is_refused() {
        let body = b"{}\n".repeat(5);
        assert_eq!(records(&body, 5, |_, _| {}).unwrap(), 5);
        let e = records(&body, 4, |_, _| {}).unwrap_err();
        assert_eq!(
            (e.status, e.reason.as_str()),
            (413, "the body holds more than 4 records (records_max)")
        );
        let mut framed = MAGIC.to_vec();
        for _ in 0..3 {
            crate::source::framing::write_frame(&mut framed, b"{}").unwrap();
        }
        assert_eq!(records(&framed, 2, |_, _| {}).unwrap_err().status, 413);
    }

    #[test]
    fn sgf1_frames_and_their_errors() {
        let mut body = MAGIC.to_vec();
        for p in [b"one".as_slice(), b"", b"three"] {
            crate::source::framing::write_frame(&mut body, p).unwrap();
        }
        let got = collect(&body).unwrap();
        assert_eq!(got, vec![(4, b"one".to_vec()), (11, vec![]), (15, b"three".to_vec())]);
        let cut = &body[..body.len() - 2];
        assert_eq!(
            collect(cut).unwrap_err().reason,
            "SGF1 body ends inside frame 3 (byte 15): 5 bytes announced, 3 present"
        );
        assert_eq!(
            collect(&body[..13]).unwrap_err().reason,
            "SGF1 body ends inside the length of frame 2 (byte 11)"
        );
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(collect(&huge)
            .unwrap_err()
            .reason
            .contains("longer than the 1048576-byte record limit"));
        assert_eq!(collect(MAGIC).unwrap_err().status, 400);
    }

    #[test]
    fn gzip_and_zstd_bodies_decode_within_the_bound() {
        let plain = b"{\"a\":1}\n".repeat(1000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::encode_all(plain.as_slice(), 1).unwrap();
        let enc = |name: &str| Encoding::from_header(Some(name.as_bytes())).unwrap();
        let mut granted = 0;
        let mut grow = |n: usize| {
            granted += n;
            Ok(())
        };
        assert_eq!(
            decode(enc("gzip"), &gz, 1 << 20, &mut grow).unwrap().as_ref(),
            plain.as_slice()
        );
        assert_eq!(
            decode(enc(" ZSTD "), &zs, 1 << 20, &mut grow).unwrap().as_ref(),
            plain.as_slice()
        );
        assert!(
            matches!(
                decode(Encoding::Identity, &plain, 10, &mut grow).unwrap(),
                Cow::Borrowed(_)
            ),
            "identity is not copied"
        );
        // A bomb: a small body that unpacks past the bound is refused, not unpacked.
        let bomb = zstd::encode_all(vec![b' '; 64 << 20].as_slice(), 3).unwrap();
        assert!(bomb.len() < 64 << 10);
        assert_eq!(decode(enc("zstd"), &bomb, 1 << 20, &mut grow).unwrap_err().status, 413);
        assert_eq!(Encoding::from_header(Some(b"br")).unwrap_err().status, 415);
        assert_eq!(Encoding::from_header(None).unwrap(), Encoding::Identity);
        let e = decode(Encoding::Gzip, b"not gzip", 1 << 20, &mut grow).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.reason.starts_with("the body is not valid gzip data"), "{}", e.reason);
        // Every byte the decoder holds was granted first (two 8,000-byte bodies, the bomb's
        // 1 MiB + 1, the bad gzip's first step), and a refusal by the budget ends it.
        assert!(granted >= 2 * 8000 + (1 << 20), "granted {granted}");
        let refused = decode(enc("zstd"), &bomb, 1 << 20, &mut |n| {
            if n > 64 << 10 {
                Err(Refusal::new(503, "over budget"))
            } else {
                Ok(())
            }
        });
        assert_eq!(refused.unwrap_err().reason, "over budget");
    }
}
