//! A standard LZ4 frame writer that stores incompressible blocks as they are.
//!
//! RAW segments carry payloads exactly as received, and for envelope sources that is
//! ciphertext, which no codec shrinks. A general encoder tries to compress every block anyway
//! (on this path, ~10% of a core's time for nothing). This writer compresses a block, and when
//! the result saves less than [`MIN_SAVING_PERCENT`], stores the next [`PROBE_INTERVAL_BLOCKS`]
//! blocks uncompressed before it probes again. Plain JSON compresses on every probe, so it keeps
//! being compressed.
//!
//! The output is an ordinary LZ4 frame (version 1, independent 256 KiB blocks, content
//! checksum on), readable by `lz4 -d` and by any LZ4 library; uncompressed blocks are part of the
//! format (high bit of the block size).

use std::hash::Hasher as _;
use twox_hash::XxHash32;

/// Block size (LZ4 frame "block maximum size" 256 KiB, BD code 5).
pub const BLOCK_BYTES: usize = 256 * 1024;
const BD_256K: u8 = 5 << 4;
/// A compressed block must be at least this much smaller than its input to count as a saving.
pub const MIN_SAVING_PERCENT: usize = 3;
/// Blocks stored without trying after a probe that did not save.
pub const PROBE_INTERVAL_BLOCKS: u32 = 16;

const MAGIC: [u8; 4] = [0x04, 0x22, 0x4D, 0x18];
const UNCOMPRESSED_FLAG: u32 = 1 << 31;
/// Magic, FLG, BD and header checksum.
const FRAME_HEADER_BYTES: usize = 7;

pub struct Lz4FrameWriter {
    /// The frame so far. The open block's bytes sit at its end, after a 4-byte placeholder for
    /// the block size at `block_at`: a stored block is never copied a second time.
    out: Vec<u8>,
    block_at: usize,
    scratch: Vec<u8>,
    content: XxHash32,
    /// Blocks left to store before the next compression probe.
    skip: u32,
}

impl Lz4FrameWriter {
    /// A writer whose output starts with `capacity` bytes reserved.
    pub fn with_capacity(capacity: usize) -> Lz4FrameWriter {
        Lz4FrameWriter::with_buffer(Vec::with_capacity(capacity))
    }

    /// A writer that writes into `out` (cleared first), e.g. a buffer reused from a pool.
    pub fn with_buffer(mut out: Vec<u8>) -> Lz4FrameWriter {
        out.clear();
        out.extend_from_slice(&MAGIC);
        // FLG: version 01, block independence, content checksum. BD: 256 KiB blocks.
        let descriptor = [0b0110_0100, BD_256K];
        out.extend_from_slice(&descriptor);
        out.push((XxHash32::oneshot(0, &descriptor) >> 8) as u8);
        let block_at = out.len();
        out.extend_from_slice(&[0; 4]);
        Lz4FrameWriter {
            out,
            block_at,
            scratch: Vec::new(),
            content: XxHash32::with_seed(0),
            skip: 0,
        }
    }

    /// Bytes of output so far, the open block included as if stored.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.out.len() == FRAME_HEADER_BYTES + 4
    }

    fn block_len(&self) -> usize {
        self.out.len() - self.block_at - 4
    }

    pub fn write(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let n = (BLOCK_BYTES - self.block_len()).min(data.len());
            self.out.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.block_len() == BLOCK_BYTES {
                self.flush_block();
                self.block_at = self.out.len();
                self.out.extend_from_slice(&[0; 4]);
            }
        }
    }

    /// Close the open block: compress it in place when that saves, else mark it stored.
    /// Leaves no open block (the caller opens the next one).
    fn flush_block(&mut self) {
        let start = self.block_at + 4;
        let len = self.block_len();
        if len == 0 {
            self.out.truncate(self.block_at);
            return;
        }
        self.content.write(&self.out[start..]);
        if self.skip > 0 {
            self.skip -= 1;
        } else {
            let max = lz4_flex::block::get_maximum_output_size(len);
            self.scratch.resize(max, 0);
            let n = lz4_flex::block::compress_into(&self.out[start..], &mut self.scratch)
                .expect("the scratch buffer has the maximum output size");
            if n * 100 <= len * (100 - MIN_SAVING_PERCENT) {
                self.out.truncate(self.block_at);
                self.out.extend_from_slice(&(n as u32).to_le_bytes());
                self.out.extend_from_slice(&self.scratch[..n]);
                return;
            }
            self.skip = PROBE_INTERVAL_BLOCKS;
        }
        self.out[self.block_at..start].copy_from_slice(&(len as u32 | UNCOMPRESSED_FLAG).to_le_bytes());
    }

    /// End the frame: the last block, the end mark, the content checksum.
    pub fn finish(mut self) -> Vec<u8> {
        self.flush_block();
        self.out.extend_from_slice(&0u32.to_le_bytes());
        self.out.extend_from_slice(&self.content.finish_32().to_le_bytes());
        self.out
    }
}

impl std::io::Write for Lz4FrameWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Lz4FrameWriter::write(self, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn decode(frame: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        lz4_flex::frame::FrameDecoder::new(frame).read_to_end(&mut out).unwrap();
        out
    }

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut r = crate::rng::Rng::new(seed);
        (0..n).map(|_| r.next_u64() as u8).collect()
    }

    #[test]
    fn compressible_data_is_compressed_and_round_trips() {
        let text: Vec<u8> = b"{\"event\":\"page_view\",\"country\":\"DE\"}\n".repeat(30_000);
        let mut w = Lz4FrameWriter::with_capacity(0);
        for chunk in text.chunks(777) {
            w.write(chunk);
        }
        let frame = w.finish();
        assert!(frame.len() < text.len() / 10, "{} of {}", frame.len(), text.len());
        assert_eq!(decode(&frame), text);
    }

    #[test]
    fn incompressible_data_is_stored_and_round_trips() {
        let data = noise(3 * BLOCK_BYTES + 1234, 7);
        let mut w = Lz4FrameWriter::with_capacity(0);
        w.write(&data);
        let frame = w.finish();
        assert!(frame.len() <= data.len() + 7 + 4 * 5 + 8, "{}", frame.len());
        assert_eq!(decode(&frame), data);
    }

    #[test]
    fn mixed_data_probes_again_after_the_interval() {
        let mut data = noise(2 * BLOCK_BYTES, 1);
        data.extend(std::iter::repeat_n(
            b'a',
            3 * PROBE_INTERVAL_BLOCKS as usize * BLOCK_BYTES,
        ));
        let mut w = Lz4FrameWriter::with_capacity(0);
        w.write(&data);
        let frame = w.finish();
        assert!(
            frame.len() < data.len() / 2,
            "later compressible blocks were compressed"
        );
        assert_eq!(decode(&frame), data);
        let empty = Lz4FrameWriter::with_capacity(0).finish();
        assert!(decode(&empty).is_empty());
    }

    #[test]
    fn whole_blocks_and_reused_buffers_round_trip() {
        let data = noise(2 * BLOCK_BYTES, 9);
        let mut w = Lz4FrameWriter::with_buffer(vec![0xAB; 100]);
        assert!(w.is_empty());
        w.write(&data);
        assert!(!w.is_empty());
        let frame = w.finish();
        // Two stored blocks, no empty third block: header, 2 × (size + data), end mark, checksum.
        assert_eq!(frame.len(), FRAME_HEADER_BYTES + 2 * (4 + BLOCK_BYTES) + 4 + 4);
        assert_eq!(decode(&frame), data);
    }

    #[test]
    fn a_corrupted_frame_fails_its_checksum() {
        let data = noise(1000, 3);
        let mut w = Lz4FrameWriter::with_capacity(0);
        w.write(&data);
        let mut frame = w.finish();
        frame[20] ^= 1;
        let mut out = Vec::new();
        assert!(lz4_flex::frame::FrameDecoder::new(&frame[..])
            .read_to_end(&mut out)
            .is_err());
    }
}
