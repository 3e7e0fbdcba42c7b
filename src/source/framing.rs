//! `SGF1`, the framed record stream: envelope files and the RAW zone's segments.
//!
//! ```text
//! stream := "SGF1" frame*
//! frame  := length: u32 little-endian, 0..=1 MiB | payload: length bytes
//! ```
//! A RAW segment is an `SGF1` stream inside a standard LZ4 frame (content checksum on), so
//! `lz4 -d` opens it and the `file` source reads it back (`framing = "auto"` or `"framed"`).
//! Payloads are exactly as received (envelopes stay encrypted). Frames carry no checksum of
//! their own: envelopes are authenticated by GCM, and RAW segments by LZ4's content checksum.
//!
//! A frame whose length exceeds [`RECORD_BYTES_MAX`], or a stream that ends inside a frame,
//! is corrupt: nothing after it can be found again, so the reader reports it and stops.

use crate::extract::RECORD_BYTES_MAX;
use std::io::{self, Read, Write};

pub const MAGIC: &[u8; 4] = b"SGF1";
/// First four bytes of an LZ4 frame (magic number 0x184D2204, little-endian).
pub const LZ4_MAGIC: [u8; 4] = [0x04, 0x22, 0x4D, 0x18];

/// Append one frame to `out`.
pub fn write_frame(out: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    debug_assert!(payload.len() <= RECORD_BYTES_MAX);
    out.write_all(&(payload.len() as u32).to_le_bytes())?;
    out.write_all(payload)
}

/// What reading one frame found.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A payload of this many bytes was appended to the buffer.
    Payload(usize),
    /// Clean end of stream.
    End,
    /// The stream is corrupt here; the message says how.
    Corrupt(String),
}

/// Reads frames from a stream positioned just after the magic.
pub struct FrameReader<R> {
    inner: R,
    /// Offset of the next frame, counted from the start of the stream (magic included).
    pub offset: u64,
}

impl<R: Read> FrameReader<R> {
    pub fn new(inner: R, offset: u64) -> FrameReader<R> {
        FrameReader { inner, offset }
    }

    /// Check the magic of a stream at its start.
    pub fn read_magic(inner: &mut R) -> io::Result<bool> {
        let mut m = [0u8; 4];
        match inner.read_exact(&mut m) {
            Ok(()) => Ok(&m == MAGIC),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Append the next payload to `buf`.
    pub fn next(&mut self, buf: &mut Vec<u8>) -> io::Result<Frame> {
        let mut len = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            let n = self.inner.read(&mut len[got..])?;
            if n == 0 {
                return Ok(if got == 0 {
                    Frame::End
                } else {
                    Frame::Corrupt(format!(
                        "stream ends inside the length of the frame at offset {}",
                        self.offset
                    ))
                });
            }
            got += n;
        }
        let n = u32::from_le_bytes(len) as usize;
        if n > RECORD_BYTES_MAX {
            return Ok(Frame::Corrupt(format!(
                "frame at offset {} claims {n} bytes, more than the {RECORD_BYTES_MAX}-byte limit",
                self.offset
            )));
        }
        let start = buf.len();
        let read = (&mut self.inner).take(n as u64).read_to_end(buf)?;
        if read < n {
            buf.truncate(start);
            return Ok(Frame::Corrupt(format!(
                "frame at offset {} claims {n} bytes but the stream ends after {read}",
                self.offset
            )));
        }
        self.offset += 4 + n as u64;
        Ok(Frame::Payload(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(payloads: &[&[u8]]) -> Vec<u8> {
        let mut s = MAGIC.to_vec();
        for p in payloads {
            write_frame(&mut s, p).unwrap();
        }
        s
    }

    #[test]
    fn round_trip() {
        let s = stream(&[b"a", b"", b"hello"]);
        let mut r = &s[..];
        assert!(FrameReader::read_magic(&mut r).unwrap());
        let mut fr = FrameReader::new(r, 4);
        let mut buf = Vec::new();
        assert_eq!(fr.next(&mut buf).unwrap(), Frame::Payload(1));
        assert_eq!(fr.offset, 9);
        assert_eq!(fr.next(&mut buf).unwrap(), Frame::Payload(0));
        assert_eq!(fr.next(&mut buf).unwrap(), Frame::Payload(5));
        assert_eq!(fr.next(&mut buf).unwrap(), Frame::End);
        assert_eq!(buf, b"ahello");
    }

    #[test]
    fn corruption_is_reported_with_its_offset() {
        let mut s = stream(&[b"abc"]);
        s.truncate(s.len() - 1);
        let mut fr = FrameReader::new(&s[4..], 4);
        let mut buf = Vec::new();
        assert_eq!(
            fr.next(&mut buf).unwrap(),
            Frame::Corrupt("frame at offset 4 claims 3 bytes but the stream ends after 2".into())
        );
        assert!(buf.is_empty());
        let huge = (u32::MAX).to_le_bytes();
        let mut fr = FrameReader::new(&huge[..], 4);
        assert!(matches!(fr.next(&mut buf).unwrap(), Frame::Corrupt(m) if m.contains("limit")));
        let mut fr = FrameReader::new(&[1u8, 0][..], 4);
        assert!(matches!(fr.next(&mut buf).unwrap(), Frame::Corrupt(m) if m.contains("inside the length")));
    }
}
