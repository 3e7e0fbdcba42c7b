//! MD5 of many messages at once: the digests that guard KPL aggregates (`kpl`), computed sixteen
//! messages abreast in the 32-bit lanes of AVX-512 registers, or eight in AVX2, where the CPU
//! has them.
//!
//! Why: MD5 is a chain of dependent 32-bit steps, so one message runs at the latency of that
//! chain (the scalar `md-5` crate, ~5 cycles a byte) and a core sits mostly idle; the aggregates
//! of one GetRecords response are independent, so eight or sixteen of them share each step's
//! instructions. AVX-512 also does each round function in one instruction (ternary logic) and
//! each rotation in one.
//!
//! How: a lane takes a message, runs its blocks (the last one or two padded in a small buffer
//! of the lane's own), writes its digest and takes the next message; a lane with no message
//! left runs on zeros and its result is dropped. Messages are read in place, never copied
//! whole. AVX-512 is used for more than eight messages, AVX2 for two or more; otherwise (or
//! off x86-64) each digest is the `md-5` crate's.
//!
//! Bounds: at most sixteen lanes of state on the stack (each lane's block is transposed into
//! word vectors in registers); the output is one 16-byte digest per message.

use md5::{Digest, Md5};

/// One digest per message, in order.
pub fn digests(messages: &[&[u8]]) -> Vec<[u8; 16]> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if messages.len() > 8 && has!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above), all `compress16` needs.
            return unsafe { x86::lanes(messages, x86::compress16) };
        }
        if messages.len() > 1 && has!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above), all `compress8` needs.
            return unsafe { x86::lanes(messages, x86::compress8) };
        }
    }
    messages.iter().map(|m| scalar(m)).collect()
}

fn scalar(message: &[u8]) -> [u8; 16] {
    Md5::digest(message).into()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    /// The state every message starts from (RFC 1321, 3.3).
    const IV: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

    /// Per-step additive constants, `floor(abs(sin(i + 1)) × 2^32)` (RFC 1321, 3.4).
    #[rustfmt::skip]
    const K: [u32; 64] = [
        0xd76a_a478, 0xe8c7_b756, 0x2420_70db, 0xc1bd_ceee, 0xf57c_0faf, 0x4787_c62a, 0xa830_4613, 0xfd46_9501,
        0x6980_98d8, 0x8b44_f7af, 0xffff_5bb1, 0x895c_d7be, 0x6b90_1122, 0xfd98_7193, 0xa679_438e, 0x49b4_0821,
        0xf61e_2562, 0xc040_b340, 0x265e_5a51, 0xe9b6_c7aa, 0xd62f_105d, 0x0244_1453, 0xd8a1_e681, 0xe7d3_fbc8,
        0x21e1_cde6, 0xc337_07d6, 0xf4d5_0d87, 0x455a_14ed, 0xa9e3_e905, 0xfcef_a3f8, 0x676f_02d9, 0x8d2a_4c8a,
        0xfffa_3942, 0x8771_f681, 0x6d9d_6122, 0xfde5_380c, 0xa4be_ea44, 0x4bde_cfa9, 0xf6bb_4b60, 0xbebf_bc70,
        0x289b_7ec6, 0xeaa1_27fa, 0xd4ef_3085, 0x0488_1d05, 0xd9d4_d039, 0xe6db_99e5, 0x1fa2_7cf8, 0xc4ac_5665,
        0xf429_2244, 0x432a_ff97, 0xab94_23a7, 0xfc93_a039, 0x655b_59c3, 0x8f0c_cc92, 0xffef_f47d, 0x8584_5dd1,
        0x6fa8_7e4f, 0xfe2c_e6e0, 0xa301_4314, 0x4e08_11a1, 0xf753_7e82, 0xbd3a_f235, 0x2ad7_d2bb, 0xeb86_d391,
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

        fn block(&self, i: usize) -> &[u8; 64] {
            let block = if i < self.whole {
                &self.message[i * 64..(i + 1) * 64]
            } else {
                &self.tail[(i - self.whole) * 64..(i - self.whole + 1) * 64]
            };
            block.try_into().expect("64 bytes")
        }
    }

    /// A message in a lane: its index in the input, its blocks, the next block to run.
    struct Busy<'a> {
        index: usize,
        blocks: Blocks<'a>,
        next: usize,
    }

    /// One MD5 block in each of `N` lanes: `state` (a, b, c, d; lane-major) advanced by lane
    /// l's block `blocks[l]`.
    pub(super) type Compress<const N: usize> = unsafe fn(&mut [[u32; N]; 4], &[&[u8; 64]; N]);

    /// The block of a lane with no message.
    static IDLE: [u8; 64] = [0; 64];

    /// The digests of `messages`, `N` lanes abreast.
    ///
    /// # Safety
    /// The CPU must support what `compress` was compiled for.
    pub(super) unsafe fn lanes<const N: usize>(messages: &[&[u8]], compress: Compress<N>) -> Vec<[u8; 16]> {
        let mut out = vec![[0u8; 16]; messages.len()];
        let mut state = [[0u32; N]; 4];
        let mut lanes: [Option<Busy>; N] = std::array::from_fn(|_| None);
        let mut queue = messages.iter().enumerate();
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
            let blocks: [&[u8; 64]; N] = std::array::from_fn(|lane| match &lanes[lane] {
                Some(busy) => busy.blocks.block(busy.next),
                None => &IDLE,
            });
            // SAFETY: the caller vouches that the CPU supports `compress`.
            unsafe { compress(&mut state, &blocks) };
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

    /// The 64 steps of RFC 1321 over lanes, in terms of the instruction set's operations
    /// (`$ops`): `words` (the lanes' blocks transposed: word w of every lane in vector w), `add`,
    /// the round functions `f`, `g`, `h`, `i`, `rotl::<S>`, `splat`, `load`, `store`.
    macro_rules! compress {
        ($name:ident, $feature:literal, $n:literal, $ops:ident) => {
            /// # Safety
            /// The CPU must support the instruction set named in `target_feature`.
            #[target_feature(enable = $feature)]
            pub(super) unsafe fn $name(state: &mut [[u32; $n]; 4], blocks: &[&[u8; 64]; $n]) {
                use $ops::*;
                let m = words(blocks);
                let (mut a, mut b, mut c, mut d) = (load(&state[0]), load(&state[1]), load(&state[2]), load(&state[3]));
                let (a0, b0, c0, d0) = (a, b, c, d);
                // One step: a = b + ((a + fn(b, c, d) + K[i] + M[g]) <<< s), then the roles
                // rotate.
                macro_rules! step {
                    ($f:ident, $i:expr, $g:expr, $s:literal) => {{
                        let sum = add(add(a, $f(b, c, d)), add(splat(K[$i]), m[$g]));
                        (a, d, c, b) = (d, c, b, add(b, rotl::<$s>(sum)));
                    }};
                }
                for i in (0..16).step_by(4) {
                    step!(f, i, i, 7);
                    step!(f, i + 1, i + 1, 12);
                    step!(f, i + 2, i + 2, 17);
                    step!(f, i + 3, i + 3, 22);
                }
                for i in (16..32).step_by(4) {
                    step!(g, i, (5 * i + 1) % 16, 5);
                    step!(g, i + 1, (5 * i + 6) % 16, 9);
                    step!(g, i + 2, (5 * i + 11) % 16, 14);
                    step!(g, i + 3, (5 * i + 16) % 16, 20);
                }
                for i in (32..48).step_by(4) {
                    step!(h, i, (3 * i + 5) % 16, 4);
                    step!(h, i + 1, (3 * i + 8) % 16, 11);
                    step!(h, i + 2, (3 * i + 11) % 16, 16);
                    step!(h, i + 3, (3 * i + 14) % 16, 23);
                }
                for i in (48..64).step_by(4) {
                    step!(i_, i, (7 * i) % 16, 6);
                    step!(i_, i + 1, (7 * i + 7) % 16, 10);
                    step!(i_, i + 2, (7 * i + 14) % 16, 15);
                    step!(i_, i + 3, (7 * i + 21) % 16, 21);
                }
                store(&mut state[0], add(a, a0));
                store(&mut state[1], add(b, b0));
                store(&mut state[2], add(c, c0));
                store(&mut state[3], add(d, d0));
            }
        };
    }

    /// Eight lanes in AVX2: the round functions from and/or/xor, rotations from two shifts.
    mod avx2 {
        use std::arch::x86_64::*;
        pub type V = __m256i;
        #[inline]
        #[target_feature(enable = "avx2")]
        pub fn add(x: V, y: V) -> V {
            _mm256_add_epi32(x, y)
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        pub fn splat(k: u32) -> V {
            _mm256_set1_epi32(k as i32)
        }
        /// (b & c) | (!b & d)
        #[inline]
        #[target_feature(enable = "avx2")]
        pub fn f(b: V, c: V, d: V) -> V {
            _mm256_or_si256(_mm256_and_si256(b, c), _mm256_andnot_si256(b, d))
        }
        /// (b & d) | (c & !d)
        #[inline]
        #[target_feature(enable = "avx2")]
        pub fn g(b: V, c: V, d: V) -> V {
            _mm256_or_si256(_mm256_and_si256(b, d), _mm256_andnot_si256(d, c))
        }
        /// b ^ c ^ d
        #[inline]
        #[target_feature(enable = "avx2")]
        pub fn h(b: V, c: V, d: V) -> V {
            _mm256_xor_si256(_mm256_xor_si256(b, c), d)
        }
        /// c ^ (b | !d)
        #[inline]
        #[target_feature(enable = "avx2")]
        pub fn i_(b: V, c: V, d: V) -> V {
            _mm256_xor_si256(c, _mm256_or_si256(b, _mm256_xor_si256(d, _mm256_set1_epi32(-1))))
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        pub fn rotl<const S: i32>(x: V) -> V {
            _mm256_or_si256(
                _mm256_sllv_epi32(x, _mm256_set1_epi32(S)),
                _mm256_srlv_epi32(x, _mm256_set1_epi32(32 - S)),
            )
        }
        /// Word w of lane l's block into lane l of vector w: two 8 × 8 transposes in registers.
        #[inline]
        #[target_feature(enable = "avx2")]
        pub fn words(blocks: &[&[u8; 64]; 8]) -> [V; 16] {
            let mut out = [_mm256_setzero_si256(); 16];
            for half in 0..2 {
                let mut r = [_mm256_setzero_si256(); 8];
                for (row, block) in r.iter_mut().zip(blocks) {
                    // SAFETY: bytes 32 × half .. 32 × half + 32 of a 64-byte block are readable;
                    // the load is unaligned.
                    *row = unsafe { _mm256_loadu_si256(block.as_ptr().add(32 * half).cast()) };
                }
                // Pairs of rows interleaved by word, then by word pair: u[j] holds word j (low
                // 128 bits) and word 4 + j (high) of rows 0..4, u[4 + j] the same of rows 4..8.
                let t: [V; 8] = [
                    _mm256_unpacklo_epi32(r[0], r[1]),
                    _mm256_unpackhi_epi32(r[0], r[1]),
                    _mm256_unpacklo_epi32(r[2], r[3]),
                    _mm256_unpackhi_epi32(r[2], r[3]),
                    _mm256_unpacklo_epi32(r[4], r[5]),
                    _mm256_unpackhi_epi32(r[4], r[5]),
                    _mm256_unpacklo_epi32(r[6], r[7]),
                    _mm256_unpackhi_epi32(r[6], r[7]),
                ];
                let u: [V; 8] = [
                    _mm256_unpacklo_epi64(t[0], t[2]),
                    _mm256_unpackhi_epi64(t[0], t[2]),
                    _mm256_unpacklo_epi64(t[1], t[3]),
                    _mm256_unpackhi_epi64(t[1], t[3]),
                    _mm256_unpacklo_epi64(t[4], t[6]),
                    _mm256_unpackhi_epi64(t[4], t[6]),
                    _mm256_unpacklo_epi64(t[5], t[7]),
                    _mm256_unpackhi_epi64(t[5], t[7]),
                ];
                for j in 0..4 {
                    out[8 * half + j] = _mm256_permute2x128_si256::<0x20>(u[j], u[4 + j]);
                    out[8 * half + 4 + j] = _mm256_permute2x128_si256::<0x31>(u[j], u[4 + j]);
                }
            }
            out
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        pub fn load(v: &[u32; 8]) -> V {
            // SAFETY: `v` is 32 readable bytes; the load is unaligned.
            unsafe { _mm256_loadu_si256(v.as_ptr().cast()) }
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        pub fn store(v: &mut [u32; 8], x: V) {
            // SAFETY: `v` is 32 writable bytes; the store is unaligned.
            unsafe { _mm256_storeu_si256(v.as_mut_ptr().cast(), x) }
        }
    }

    /// Sixteen lanes in AVX-512: each round function one ternary-logic instruction, rotations
    /// one instruction.
    mod avx512 {
        use std::arch::x86_64::*;
        pub type V = __m512i;
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub fn add(x: V, y: V) -> V {
            _mm512_add_epi32(x, y)
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub fn splat(k: u32) -> V {
            _mm512_set1_epi32(k as i32)
        }
        // The truth tables, bit (b << 2 | c << 1 | d) of the immediate: f = b ? c : d,
        // g = d ? b : c, h = b ^ c ^ d, i = c ^ (b | !d).
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub fn f(b: V, c: V, d: V) -> V {
            _mm512_ternarylogic_epi32::<0xCA>(b, c, d)
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub fn g(b: V, c: V, d: V) -> V {
            _mm512_ternarylogic_epi32::<0xE4>(b, c, d)
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub fn h(b: V, c: V, d: V) -> V {
            _mm512_ternarylogic_epi32::<0x96>(b, c, d)
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub fn i_(b: V, c: V, d: V) -> V {
            _mm512_ternarylogic_epi32::<0x39>(b, c, d)
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub fn rotl<const S: i32>(x: V) -> V {
            _mm512_rol_epi32::<S>(x)
        }
        /// Word w of lane l's block into lane l of vector w: a 16 × 16 transpose in registers.
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub fn words(blocks: &[&[u8; 64]; 16]) -> [V; 16] {
            let zero = _mm512_setzero_si512();
            let mut r = [zero; 16];
            for (row, block) in r.iter_mut().zip(blocks) {
                // SAFETY: a block is 64 readable bytes; the load is unaligned.
                *row = unsafe { _mm512_loadu_si512(block.as_ptr().cast()) };
            }
            // Rows interleaved by word in pairs, then by word pair in fours: in each 128-bit
            // quarter q, u[4m + j] holds word 4q + j of rows 4m..4m + 4.
            let mut t = [zero; 16];
            for k in 0..8 {
                t[2 * k] = _mm512_unpacklo_epi32(r[2 * k], r[2 * k + 1]);
                t[2 * k + 1] = _mm512_unpackhi_epi32(r[2 * k], r[2 * k + 1]);
            }
            let mut u = [zero; 16];
            for m in 0..4 {
                u[4 * m] = _mm512_unpacklo_epi64(t[4 * m], t[4 * m + 2]);
                u[4 * m + 1] = _mm512_unpackhi_epi64(t[4 * m], t[4 * m + 2]);
                u[4 * m + 2] = _mm512_unpacklo_epi64(t[4 * m + 1], t[4 * m + 3]);
                u[4 * m + 3] = _mm512_unpackhi_epi64(t[4 * m + 1], t[4 * m + 3]);
            }
            // Then the quarters: word 4q + j gathers quarter q of u[j], u[4 + j], u[8 + j],
            // u[12 + j].
            let mut out = [zero; 16];
            for j in 0..4 {
                let lo = _mm512_shuffle_i32x4::<0x44>(u[j], u[4 + j]); // quarters 0, 1 of each
                let hi = _mm512_shuffle_i32x4::<0xEE>(u[j], u[4 + j]); // quarters 2, 3
                let lo2 = _mm512_shuffle_i32x4::<0x44>(u[8 + j], u[12 + j]);
                let hi2 = _mm512_shuffle_i32x4::<0xEE>(u[8 + j], u[12 + j]);
                out[j] = _mm512_shuffle_i32x4::<0x88>(lo, lo2);
                out[4 + j] = _mm512_shuffle_i32x4::<0xDD>(lo, lo2);
                out[8 + j] = _mm512_shuffle_i32x4::<0x88>(hi, hi2);
                out[12 + j] = _mm512_shuffle_i32x4::<0xDD>(hi, hi2);
            }
            out
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub fn load(v: &[u32; 16]) -> V {
            // SAFETY: `v` is 64 readable bytes; the load is unaligned.
            unsafe { _mm512_loadu_si512(v.as_ptr().cast()) }
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub fn store(v: &mut [u32; 16], x: V) {
            // SAFETY: `v` is 64 writable bytes; the store is unaligned.
            unsafe { _mm512_storeu_si512(v.as_mut_ptr().cast(), x) }
        }
    }

    compress!(compress8, "avx2", 8, avx2);
    compress!(compress16, "avx512f", 16, avx512);
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
    fn both_instruction_sets_match_the_reference() {
        // `digests` picks one; run each this CPU has on the same messages (lanes finishing at
        // different blocks and refilled mid-run), and say which could not run.
        let mut rng = Rng::new(0x1a7e5);
        let messages = random_messages(&mut rng, 40, 700);
        let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let want: Vec<[u8; 16]> = refs.iter().map(|m| scalar(m)).collect();
        let mut ran = 0;
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present (checked above).
            assert_eq!(unsafe { x86::lanes(&refs, x86::compress8) }, want, "AVX2");
            ran += 1;
        } else {
            eprintln!("no AVX2 on this CPU: its lanes are not exercised");
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F is present (checked above).
            assert_eq!(unsafe { x86::lanes(&refs, x86::compress16) }, want, "AVX-512");
            ran += 1;
        } else {
            eprintln!("no AVX-512F on this CPU: its lanes are not exercised");
        }
        eprintln!("{ran} of 2 instruction sets exercised");
    }
}
