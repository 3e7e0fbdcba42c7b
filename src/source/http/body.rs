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
//! cannot unpack into more); a record is at most [`RECORD_BYTES_MAX`].

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

/// Undo the request's `Content-Encoding` (none, `identity`, `gzip`, `zstd`), refusing a result
/// longer than `max` bytes.
pub fn decode<'a>(encoding: Option<&str>, body: &'a [u8], max: usize) -> Result<Cow<'a, [u8]>, Refusal> {
    let encoding = encoding.map(|e| e.trim().to_ascii_lowercase());
    let bad = |e: std::io::Error, name: &str| Refusal::new(400, format!("the body is not valid {name} data: {e}"));
    let out = match encoding.as_deref() {
        None | Some("") | Some("identity") => return Ok(Cow::Borrowed(body)),
        Some("gzip") | Some("x-gzip") => {
            read_bounded(flate2::read::MultiGzDecoder::new(body), max).map_err(|e| bad(e, "gzip"))?
        }
        Some("zstd") => {
            let d = zstd::stream::read::Decoder::with_buffer(body).map_err(|e| bad(e, "zstd"))?;
            read_bounded(d, max).map_err(|e| bad(e, "zstd"))?
        }
        Some(other) => {
            return Err(Refusal::new(
                415,
                format!("Content-Encoding {other:?} is not supported (use gzip, zstd or none)"),
            ))
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

/// Read all of `r`, or `None` once it passes `max` bytes.
fn read_bounded(r: impl Read, max: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    r.take(max as u64 + 1).read_to_end(&mut out)?;
    Ok((out.len() <= max).then_some(out))
}

/// Walk the records of a (decoded) body: `emit(offset, record)` for each, in order. Returns
/// how many there were, or a 400 naming the first framing error (then nothing after it counts:
/// the caller refuses the whole body).
pub fn records(body: &[u8], mut emit: impl FnMut(usize, &[u8])) -> Result<usize, Refusal> {
    let bad = |reason: String| Refusal::new(400, reason);
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
        records(body, |off, r| out.push((off, r.to_vec())))?;
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
        assert_eq!(decode(Some("gzip"), &gz, 1 << 20).unwrap().as_ref(), plain.as_slice());
        assert_eq!(decode(Some(" ZSTD "), &zs, 1 << 20).unwrap().as_ref(), plain.as_slice());
        assert!(
            matches!(decode(None, &plain, 10).unwrap(), Cow::Borrowed(_)),
            "identity is not copied"
        );
        // A bomb: a small body that unpacks past the bound is refused, not unpacked.
        let bomb = zstd::encode_all(vec![b' '; 64 << 20].as_slice(), 3).unwrap();
        assert!(bomb.len() < 64 << 10);
        assert_eq!(decode(Some("zstd"), &bomb, 1 << 20).unwrap_err().status, 413);
        assert_eq!(decode(Some("br"), &plain, 1 << 20).unwrap_err().status, 415);
        let e = decode(Some("gzip"), b"not gzip", 1 << 20).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.reason.starts_with("the body is not valid gzip data"), "{}", e.reason);
    }
}
