//! A small seeded random number generator for synthetic data and retry jitter.
//!
//! Invariant: the stream for a seed never changes between releases ("the same seed gives the
//! same records" is a promise of the generator), which is why this is not a library RNG.

/// SplitMix64: tiny, fast, and stable forever (unlike a library RNG whose stream may change
/// between versions, which would change "the same seed gives the same records").
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The generator of one record.
    pub fn for_record(seed: u64, partition: u64, seq: u64) -> Rng {
        let mut r = Rng(seed ^ partition.wrapping_mul(0xA076_1D64_78BD_642F) ^ seq.wrapping_mul(0xE703_7ED1_A0B4_28DB));
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}
