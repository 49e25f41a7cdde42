//! A hand-written SplitMix64 pseudo-random number generator.
//!
//! The demo data must be byte-identical for the same seed across crate
//! versions and platforms, so the generator does not use the `rand` crate
//! (whose algorithms and sampling methods may change between releases).
//! SplitMix64 is tiny, fast, well studied, and fully specified here.

/// The SplitMix64 increment (the golden ratio in 64-bit fixed point).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function: a bijection on `u64` that scrambles bits.
///
/// Because it is a bijection, distinct inputs always give distinct outputs,
/// which the generator uses to build collision-free identifiers.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A SplitMix64 stream.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    /// The internal state, advanced by [`GOLDEN`] on every draw.
    state: u64,
}

impl Rng {
    /// A stream seeded with `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// An independent stream derived from a parent seed and a stream label.
    ///
    /// Each person and each provider section gets its own stream, so adding a
    /// resource to one provider does not shift the data of another.
    pub(crate) fn derive(seed: u64, label: u64) -> Self {
        Self::new(mix(seed ^ mix(label.wrapping_add(GOLDEN))))
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix(self.state)
    }

    /// A uniform integer in `0..n` (`n` must be positive; 0 gives 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Lemire's multiply-shift; the tiny bias is irrelevant for demo data.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A uniform integer in the inclusive range `lo..=hi`.
    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let span = hi.abs_diff(lo) + 1;
        lo.wrapping_add_unsigned(self.below(span))
    }

    /// A uniform float in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A uniformly chosen element of a non-empty slice.
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let i = self.below(items.len() as u64) as usize;
        &items[i.min(items.len().saturating_sub(1))]
    }

    /// A version-4-shaped UUID whose first half is `mix(counter)`.
    ///
    /// `mix` is a bijection, so two different counters never give the same
    /// UUID: ids are unique by construction, not by luck.
    pub(crate) fn uuid(&mut self, counter: u64) -> String {
        let hi = mix(counter ^ 0x5EED_CAFE_F00D_D00D);
        let lo = self.next_u64();
        // All 64 bits of `hi` appear: 32 + 16 + 12 in the first three groups,
        // the remaining 4 (bits 12..16) inside the variant group.
        let variant = 0x8000 | (((hi >> 12) & 0xF) << 10) | ((lo >> 54) & 0x3FF);
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xFFFF,
            hi & 0x0FFF,
            variant,
            lo & 0xFFFF_FFFF_FFFF
        )
    }
}
