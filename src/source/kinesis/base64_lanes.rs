//! Base64 (standard alphabet, padded) decoding of Kinesis payloads, 64 characters at a time in
//! AVX-512 where the CPU has the VBMI byte permutes; `base64-simd` (AVX2) otherwise, and always
//! for the last block of a payload and for anything it would refuse.
//!
//! Why: after the records were packed, base64 decoding was the largest item of the fetch path
//! (9.8% of all CPU in its profile). The AVX-512 VBMI method (Muła and Lemire, "Base64 encoding
//! and decoding at almost the speed of a memory copy", 2019): one two-table byte permute maps
//! 64 characters to their 6-bit values (0x80 for a character outside the alphabet), two
//! multiply-adds join four values into three bytes per 32-bit lane, one permute packs the 48
//! bytes, one masked store writes them.
//!
//! Invariant: the output is exactly `base64-simd`'s, for every input — on valid input the same
//! bytes, on invalid input its error, with `out` as it was. A block holding anything but the 64
//! alphabet characters (padding included) is left, with everything after it, to `base64-simd`,
//! and so is the last block of every payload (where padding and the length check are).
//!
//! Bounds: no allocation but `out`'s growth, three quarters of the input at most.

/// Append the decoding of `src` to `out`; on error `out` is unchanged.
pub fn decode_append(src: &[u8], out: &mut Vec<u8>) -> Result<(), base64_simd::Error> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if src.len() > x86::BLOCK && has!("avx512f") && has!("avx512bw") && has!("avx512vbmi") {
            // SAFETY: the CPU has AVX-512 F, BW and VBMI (checked just above), all `blocks` needs.
            return unsafe { with_blocks(src, out, x86::blocks) };
        }
    }
    base64_simd::STANDARD.decode_append(src, out)
}

/// `decode_append` with the whole blocks before the last decoded by `blocks` (which returns how
/// many input bytes it took).
///
/// # Safety
/// The CPU must support what `blocks` was compiled for.
#[cfg(target_arch = "x86_64")]
unsafe fn with_blocks(
    src: &[u8],
    out: &mut Vec<u8>,
    blocks: unsafe fn(&[u8], &mut Vec<u8>) -> usize,
) -> Result<(), base64_simd::Error> {
    let before = out.len();
    out.reserve(src.len() / 4 * 3);
    // SAFETY: the caller vouches for the CPU.
    let taken = unsafe { blocks(src, out) };
    base64_simd::STANDARD
        .decode_append(&src[taken..], out)
        .inspect_err(|_| out.truncate(before))
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Characters per block; each block is 48 bytes decoded.
    pub const BLOCK: usize = 64;

    /// Each ASCII character's 6-bit value, 0x80 where it is not in the alphabet (padding too).
    const VALUES: [u8; 128] = {
        let mut t = [0x80u8; 128];
        let mut i = 0;
        while i < 26 {
            t[b'A' as usize + i] = i as u8;
            t[b'a' as usize + i] = 26 + i as u8;
            i += 1;
        }
        let mut d = 0;
        while d < 10 {
            t[b'0' as usize + d] = 52 + d as u8;
            d += 1;
        }
        t[b'+' as usize] = 62;
        t[b'/' as usize] = 63;
        t
    };

    /// Where each output byte is in the joined 32-bit lanes: lane i holds its three bytes as
    /// bits 23..16, 15..8, 7..0, i.e. bytes 2, 1, 0 of the little-endian lane.
    const PACK: [u8; 64] = {
        let mut p = [0u8; 64];
        let mut i = 0;
        while i < 16 {
            p[3 * i] = 4 * i as u8 + 2;
            p[3 * i + 1] = 4 * i as u8 + 1;
            p[3 * i + 2] = 4 * i as u8;
            i += 1;
        }
        p
    };

    /// Decode whole blocks of `src` onto `out` while at least one more character follows them;
    /// stop before a block with anything outside the alphabet. Returns the input bytes taken.
    /// `out` must have room for three quarters of `src` beyond its length.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F, BW and VBMI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    pub unsafe fn blocks(src: &[u8], out: &mut Vec<u8>) -> usize {
        assert!(out.capacity() - out.len() >= src.len() / 4 * 3, "room reserved");
        // SAFETY: the tables are 128 and 64 readable bytes; the loads are unaligned.
        let (low, high, pack) = unsafe {
            (
                _mm512_loadu_si512(VALUES.as_ptr().cast()),
                _mm512_loadu_si512(VALUES[64..].as_ptr().cast()),
                _mm512_loadu_si512(PACK.as_ptr().cast()),
            )
        };
        let (mut taken, mut len) = (0, out.len());
        while taken + BLOCK < src.len() {
            // SAFETY: `taken + 64 < src.len()`: 64 readable bytes.
            let chars = unsafe { _mm512_loadu_si512(src[taken..].as_ptr().cast()) };
            // Bit 6 of a character picks the table, bits 0..5 the entry; a character of 0x80 or
            // above (no table) shows in its own top bit, one outside the alphabet in its value's.
            let values = _mm512_permutex2var_epi8(low, chars, high);
            if _mm512_movepi8_mask(_mm512_or_si512(values, chars)) != 0 {
                break;
            }
            // Pairs of 6-bit values into 12 bits (a × 64 + b), pairs of those into 24.
            let twelve = _mm512_maddubs_epi16(values, _mm512_set1_epi32(0x0140_0140));
            let joined = _mm512_madd_epi16(twelve, _mm512_set1_epi32(0x0001_1000));
            let bytes = _mm512_permutexvar_epi8(pack, joined);
            // SAFETY: 48 bytes at `len` are within the capacity: every block taken so far and
            // this one add 48 bytes per 64 characters, at most three quarters of `src`, which
            // the assertion above found room for.
            unsafe { _mm512_mask_storeu_epi8(out.as_mut_ptr().add(len).cast(), (1 << 48) - 1, bytes) };
            len += 48;
            taken += BLOCK;
        }
        // SAFETY: bytes up to `len` were written just above (or were there before).
        unsafe { out.set_len(len) };
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn encode(bytes: &[u8]) -> Vec<u8> {
        base64_simd::STANDARD.encode_to_string(bytes).into_bytes()
    }

    /// `decode_append` against `base64-simd` on `src`, onto a vector already holding a prefix.
    fn check(src: &[u8]) {
        let mut want = b"prefix".to_vec();
        let want_ok = base64_simd::STANDARD.decode_append(src, &mut want).is_ok();
        let mut got = b"prefix".to_vec();
        let got_ok = decode_append(src, &mut got).is_ok();
        assert_eq!(got_ok, want_ok, "{:?}", String::from_utf8_lossy(src));
        if want_ok {
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(src));
        } else {
            assert_eq!(got, b"prefix", "unchanged on error");
        }
    }

    #[test]
    fn valid_payloads_of_every_length_decode_as_base64_simd_does() {
        let mut rng = Rng::new(0xba5e);
        for len in 0..=400 {
            let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            check(&encode(&bytes));
        }
        let big: Vec<u8> = (0..100_000).map(|_| rng.next_u64() as u8).collect();
        check(&encode(&big));
    }

    #[test]
    fn invalid_payloads_are_refused_as_base64_simd_refuses_them() {
        let mut rng = Rng::new(0xbad);
        let bytes: Vec<u8> = (0..300).map(|_| rng.next_u64() as u8).collect();
        let good = encode(&bytes); // 400 characters: six whole blocks and a tail
        for at in [0, 1, 63, 64, 100, 255, 256, 330, 383, 384, 396, 399] {
            for bad in [b'=', b'*', b' ', b'\n', 0x80, 0xff, 0] {
                let mut src = good.clone();
                src[at] = bad;
                check(&src);
            }
        }
        check(&good[..good.len() - 1]); // not a multiple of four
        check(&good[..good.len() - 3]);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx512_blocks_run_where_the_cpu_has_them() {
        // `decode_append` picks the blocks on such a CPU; say so when this one has none.
        use std::arch::is_x86_feature_detected as has;
        if !(has!("avx512f") && has!("avx512bw") && has!("avx512vbmi")) {
            eprintln!("no AVX-512 VBMI on this CPU: the block decoder is not exercised");
            return;
        }
        let src = encode(&[7u8; 480]); // 640 characters: nine blocks, then the last
        let mut out = Vec::with_capacity(480);
        // SAFETY: AVX-512 F, BW and VBMI are present (checked above).
        let taken = unsafe { x86::blocks(&src, &mut out) };
        assert_eq!((taken, out.len()), (576, 432));
        assert!(out.iter().all(|&b| b == 7));
    }
}
