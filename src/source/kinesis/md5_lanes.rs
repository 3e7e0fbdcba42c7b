//! MD5 of many messages at once: the digests that guard KPL aggregates (`kpl`), computed eight
//! messages abreast in the 32-bit lanes of AVX2 registers where the CPU has them.
//!
//! Why: MD5 is a chain of dependent 32-bit steps, so one message runs at the latency of that
//! chain (the scalar `md-5` crate, ~5 cycles a byte) and a core sits mostly idle; the aggregates
//! of one GetRecords response are independent, so eight of them share each step's instructions.
//!
//! How: a lane takes a message, runs its blocks (the last one or two padded in a small buffer
//! of the lane's own), writes its digest and takes the next message; a lane with no message
//! left runs on zeros and its result is dropped. Messages are read in place, never copied
//! whole. Without AVX2 (or for a single message) each digest is the `md-5` crate's.
//!
//! Bounds: eight lanes of state and one transposed block (16 × 8 words) on the stack; the
//! output is one 16-byte digest per message.

use md5::{Digest, Md5};

/// One digest per message, in order.
pub fn digests(messages: &[&[u8]]) -> Vec<[u8; 16]> {
    #[cfg(target_arch = "x86_64")]
    if messages.len() > 1 && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above), the one requirement of `lanes8`.
        return unsafe { avx2::lanes8(messages) };
    }
    messages.iter().map(|m| scalar(m)).collect()
}

fn scalar(message: &[u8]) -> [u8; 16] {
    Md5::digest(message).into()
}

/// The state every message starts from (RFC 1321, 3.3).
const IV: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// Per-step additive constants, `floor(abs(sin(i + 1)) × 2^32)` (RFC 1321, 3.4).
const K: [u32; 64] = [
    0xd76a_a478,
    0xe8c7_b756,
    0x2420_70db,
    0xc1bd_ceee,
    0xf57c_0faf,
    0x4787_c62a,
    0xa830_4613,
    0xfd46_9501,
    0x6980_98d8,
    0x8b44_f7af,
    0xffff_5bb1,
    0x895c_d7be,
    0x6b90_1122,
    0xfd98_7193,
    0xa679_438e,
    0x49b4_0821,
    0xf61e_2562,
    0xc040_b340,
    0x265e_5a51,
    0xe9b6_c7aa,
    0xd62f_105d,
    0x0244_1453,
    0xd8a1_e681,
    0xe7d3_fbc8,
    0x21e1_cde6,
    0xc337_07d6,
    0xf4d5_0d87,
    0x455a_14ed,
    0xa9e3_e905,
    0xfcef_a3f8,
    0x676f_02d9,
    0x8d2a_4c8a,
    0xfffa_3942,
    0x8771_f681,
    0x6d9d_6122,
    0xfde5_380c,
    0xa4be_ea44,
    0x4bde_cfa9,
    0xf6bb_4b60,
    0xbebf_bc70,
    0x289b_7ec6,
    0xeaa1_27fa,
    0xd4ef_3085,
    0x0488_1d05,
    0xd9d4_d039,
    0xe6db_99e5,
    0x1fa2_7cf8,
    0xc4ac_5665,
    0xf429_2244,
    0x432a_ff97,
    0xab94_23a7,
    0xfc93_a039,
    0x655b_59c3,
    0x8f0c_cc92,
    0xffef_f47d,
    0x8584_5dd1,
    0x6fa8_7e4f,
    0xfe2c_e6e0,
    0xa301_4314,
    0x4e08_11a1,
    0xf753_7e82,
    0xbd3a_f235,
    0x2ad7_d2bb,
    0xeb86_d391,
];

/// A message's blocks as a lane reads them: whole blocks in place, then the padded tail.
struct Blocks<'a> {
    message: &'a [u8],
    /// Blocks read in place from the message.
    whole: usize,
    /// The message's last partial block, the `0x80` marker and the bit length: 1 or 2 blocks.
    tail: [u8; 128],
    total: usize,
}

impl<'a> Blocks<'a> {
    fn new(message: &'a [u8]) -> Self {
        let whole = message.len() / 64;
        let rest = &message[whole * 64..];
        let mut tail = [0u8; 128];
        tail[..rest.len()].copy_from_slice(rest);
        tail[rest.len()] = 0x80;
        let tail_blocks = if rest.len() < 56 { 1 } else { 2 };
        let bits = (message.len() as u64).wrapping_mul(8);
        tail[tail_blocks * 64 - 8..tail_blocks * 64].copy_from_slice(&bits.to_le_bytes());
        Blocks {
            message,
            whole,
            tail,
            total: whole + tail_blocks,
        }
    }

    fn block(&self, i: usize) -> &[u8] {
        if i < self.whole {
            &self.message[i * 64..(i + 1) * 64]
        } else {
            &self.tail[(i - self.whole) * 64..(i - self.whole + 1) * 64]
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Blocks, IV, K};
    use std::arch::x86_64::*;

    const LANES: usize = 8;

    /// A message in a lane: its index in the input, its blocks, the next block to run.
    struct Busy<'a> {
        index: usize,
        blocks: Blocks<'a>,
        next: usize,
    }

    /// The digests of `messages`, eight lanes abreast.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn lanes8(messages: &[&[u8]]) -> Vec<[u8; 16]> {
        let mut out = vec![[0u8; 16]; messages.len()];
        let mut state = [[0u32; LANES]; 4];
        let mut lanes: [Option<Busy>; LANES] = Default::default();
        let mut queue = messages.iter().enumerate();
        let mut words = [[0u32; LANES]; 16];
        loop {
            // Idle lanes take the next messages, starting from the IV.
            for (lane, slot) in lanes.iter_mut().enumerate() {
                if slot.is_none() {
                    if let Some((index, m)) = queue.next() {
                        *slot = Some(Busy {
                            index,
                            blocks: Blocks::new(m),
                            next: 0,
                        });
                        for (s, iv) in state.iter_mut().zip(IV) {
                            s[lane] = iv;
                        }
                    }
                }
            }
            if lanes.iter().all(Option::is_none) {
                return out;
            }
            // Transpose: word w of every lane's current block into words[w].
            for (lane, slot) in lanes.iter().enumerate() {
                match slot {
                    Some(busy) => {
                        let block = busy.blocks.block(busy.next);
                        for (w, word) in words.iter_mut().enumerate() {
                            word[lane] = u32::from_le_bytes(block[w * 4..w * 4 + 4].try_into().expect("4 bytes"));
                        }
                    }
                    None => words.iter_mut().for_each(|word| word[lane] = 0),
                }
            }
            // SAFETY: AVX2 is enabled for this function, as `compress` requires.
            unsafe { compress(&mut state, &words) };
            for (lane, slot) in lanes.iter_mut().enumerate() {
                let Some(busy) = slot else { continue };
                busy.next += 1;
                if busy.next == busy.blocks.total {
                    let digest = &mut out[busy.index];
                    for (i, s) in state.iter().enumerate() {
                        digest[i * 4..i * 4 + 4].copy_from_slice(&s[lane].to_le_bytes());
                    }
                    *slot = None;
                }
            }
        }
    }

    /// One MD5 block in each of eight lanes: `state` (a, b, c, d; lane-major) advanced by the
    /// block whose word w, lane by lane, is `words[w]`.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    unsafe fn compress(state: &mut [[u32; LANES]; 4], words: &[[u32; LANES]; 16]) {
        // SAFETY (every load and store below): each `[u32; 8]` is 32 readable, writable bytes,
        // and the unaligned forms are used.
        let load = |v: &[u32; LANES]| unsafe { _mm256_loadu_si256(v.as_ptr().cast()) };
        let m: [__m256i; 16] = std::array::from_fn(|w| load(&words[w]));
        let (mut a, mut b, mut c, mut d) = (load(&state[0]), load(&state[1]), load(&state[2]), load(&state[3]));
        let (a0, b0, c0, d0) = (a, b, c, d);

        // One step: a = b + ((a + f(b, c, d) + K[i] + M[g]) <<< s), then the roles rotate.
        macro_rules! step {
            ($f:expr, $i:expr, $g:expr, $s:literal) => {{
                let sum = _mm256_add_epi32(
                    _mm256_add_epi32(a, $f),
                    _mm256_add_epi32(_mm256_set1_epi32(K[$i] as i32), m[$g]),
                );
                let rot = _mm256_or_si256(
                    _mm256_slli_epi32::<$s>(sum),
                    _mm256_srli_epi32::<{ 32 - $s }>(sum),
                );
                let next_b = _mm256_add_epi32(b, rot);
                (a, d, c, b) = (d, c, b, next_b);
            }};
        }
        let ones = _mm256_set1_epi32(-1);
        for r in 0..4 {
            let i = r * 4;
            // F = (b & c) | (!b & d)
            step!(
                _mm256_or_si256(_mm256_and_si256(b, c), _mm256_andnot_si256(b, d)),
                i,
                i,
                7
            );
            step!(
                _mm256_or_si256(_mm256_and_si256(b, c), _mm256_andnot_si256(b, d)),
                i + 1,
                i + 1,
                12
            );
            step!(
                _mm256_or_si256(_mm256_and_si256(b, c), _mm256_andnot_si256(b, d)),
                i + 2,
                i + 2,
                17
            );
            step!(
                _mm256_or_si256(_mm256_and_si256(b, c), _mm256_andnot_si256(b, d)),
                i + 3,
                i + 3,
                22
            );
        }
        for r in 0..4 {
            let i = 16 + r * 4;
            // G = (b & d) | (c & !d)
            step!(
                _mm256_or_si256(_mm256_and_si256(b, d), _mm256_andnot_si256(d, c)),
                i,
                (5 * i + 1) % 16,
                5
            );
            step!(
                _mm256_or_si256(_mm256_and_si256(b, d), _mm256_andnot_si256(d, c)),
                i + 1,
                (5 * i + 6) % 16,
                9
            );
            step!(
                _mm256_or_si256(_mm256_and_si256(b, d), _mm256_andnot_si256(d, c)),
                i + 2,
                (5 * i + 11) % 16,
                14
            );
            step!(
                _mm256_or_si256(_mm256_and_si256(b, d), _mm256_andnot_si256(d, c)),
                i + 3,
                (5 * i + 16) % 16,
                20
            );
        }
        for r in 0..4 {
            let i = 32 + r * 4;
            // H = b ^ c ^ d
            step!(_mm256_xor_si256(_mm256_xor_si256(b, c), d), i, (3 * i + 5) % 16, 4);
            step!(_mm256_xor_si256(_mm256_xor_si256(b, c), d), i + 1, (3 * i + 8) % 16, 11);
            step!(
                _mm256_xor_si256(_mm256_xor_si256(b, c), d),
                i + 2,
                (3 * i + 11) % 16,
                16
            );
            step!(
                _mm256_xor_si256(_mm256_xor_si256(b, c), d),
                i + 3,
                (3 * i + 14) % 16,
                23
            );
        }
        for r in 0..4 {
            let i = 48 + r * 4;
            // I = c ^ (b | !d)
            step!(
                _mm256_xor_si256(c, _mm256_or_si256(b, _mm256_xor_si256(d, ones))),
                i,
                (7 * i) % 16,
                6
            );
            step!(
                _mm256_xor_si256(c, _mm256_or_si256(b, _mm256_xor_si256(d, ones))),
                i + 1,
                (7 * i + 7) % 16,
                10
            );
            step!(
                _mm256_xor_si256(c, _mm256_or_si256(b, _mm256_xor_si256(d, ones))),
                i + 2,
                (7 * i + 14) % 16,
                15
            );
            step!(
                _mm256_xor_si256(c, _mm256_or_si256(b, _mm256_xor_si256(d, ones))),
                i + 3,
                (7 * i + 21) % 16,
                21
            );
        }

        let store = |v: &mut [u32; LANES], x: __m256i| unsafe { _mm256_storeu_si256(v.as_mut_ptr().cast(), x) };
        store(&mut state[0], _mm256_add_epi32(a, a0));
        store(&mut state[1], _mm256_add_epi32(b, b0));
        store(&mut state[2], _mm256_add_epi32(c, c0));
        store(&mut state[3], _mm256_add_epi32(d, d0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn random_messages(rng: &mut Rng, count: usize, max_len: usize) -> Vec<Vec<u8>> {
        (0..count)
            .map(|_| {
                let len = rng.below(max_len as u64 + 1) as usize;
                (0..len).map(|_| rng.next_u64() as u8).collect()
            })
            .collect()
    }

    fn check(messages: &[Vec<u8>]) {
        let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let got = digests(&refs);
        assert_eq!(got.len(), messages.len());
        for (i, (m, d)) in messages.iter().zip(got).enumerate() {
            assert_eq!(d, scalar(m), "message {i} of {} ({} bytes)", messages.len(), m.len());
        }
    }

    #[test]
    fn every_length_around_the_padding_edges_matches_the_reference() {
        // 0..=200 bytes: one or two tail blocks, 55/56/63/64/119/120 included; all in one call,
        // so lanes finish at different blocks and take the next message mid-run.
        let messages: Vec<Vec<u8>> = (0..=200).map(|n| (0..n).map(|i| (i * 7 + n) as u8).collect()).collect();
        check(&messages);
    }

    #[test]
    fn random_batches_of_every_size_match_the_reference() {
        let mut rng = Rng::new(0x5eed);
        for count in 0..=20 {
            check(&random_messages(&mut rng, count, 3000));
        }
        check(&random_messages(&mut rng, 100, 20_000));
    }

    #[test]
    fn the_rfc_test_suite() {
        let suite: [(&[u8], &str); 4] = [
            (b"", "d41d8cd98f00b204e9800998ecf8427e"),
            (b"abc", "900150983cd24fb0d6963f7d28e17f72"),
            (b"message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ];
        let got = digests(&suite.map(|(m, _)| m));
        for ((m, want), d) in suite.iter().zip(got) {
            let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(&hex, want, "{:?}", String::from_utf8_lossy(m));
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_lanes_ran() {
        // The tests above go through the AVX2 lanes only where the CPU has AVX2; say so when not.
        if !std::arch::is_x86_feature_detected!("avx2") {
            eprintln!("no AVX2 on this CPU: the lanes are not exercised, only the fallback");
            return;
        }
        let a: &[u8] = b"abc";
        // SAFETY: AVX2 is present (checked above).
        let got = unsafe { avx2::lanes8(&[a, a, b""]) };
        assert_eq!(got, vec![scalar(a), scalar(a), scalar(b"")]);
    }
}
