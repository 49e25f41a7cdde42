//! NHS numbers from the `999` test range, with a valid Modulus 11 check digit.

use crate::rng::Rng;

/// How many nine-digit bases the `999` range holds (`999000000..=999999999`).
const SPACE: u64 = 1_000_000;

/// The Modulus 11 check digit of nine digits, or `None` when the remainder
/// gives 10 (such bases are never issued as NHS numbers).
pub(crate) fn check_digit(base: u64) -> Option<u64> {
    let digits = format!("{base:09}");
    let sum: u64 = digits
        .bytes()
        .zip((2..=10u64).rev())
        .map(|(b, w)| u64::from(b - b'0') * w)
        .sum();
    match 11 - sum % 11 {
        11 => Some(0),
        10 => None,
        d => Some(d),
    }
}

/// Hands out unique, valid NHS numbers in a seeded, shuffled order.
///
/// The shuffle is the affine map `k = (a * j + b) mod 10^6` with `a` coprime
/// to `10^6`: a bijection, so numbers never repeat and no set of used numbers
/// has to be kept in memory.
#[derive(Debug)]
pub(crate) struct NhsNumbers {
    /// Multiplier, odd and not a multiple of 5.
    a: u64,
    /// Offset.
    b: u64,
    /// How many candidates have been tried.
    j: u64,
}

impl NhsNumbers {
    /// The most people the range can serve (about 9% of bases are invalid).
    pub(crate) const MAX_PEOPLE: u64 = 900_000;

    /// A shuffled allocator derived from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        let mut rng = Rng::derive(seed, 0x4E48_5331);
        let mut a = rng.below(SPACE) | 1;
        while a.is_multiple_of(5) {
            a += 2;
        }
        let b = rng.below(SPACE);
        Self {
            a: a % SPACE,
            b,
            j: 0,
        }
    }

    /// The next unused valid NHS number, or `None` when the range is spent.
    pub(crate) fn next_number(&mut self) -> Option<String> {
        while self.j < SPACE {
            let k = (self.a * self.j + self.b) % SPACE;
            self.j += 1;
            let base = 999_000_000 + k;
            if let Some(check) = check_digit(base) {
                return Some(format!("{base}{check}"));
            }
        }
        None
    }
}

/// True when a ten-digit string is a valid NHS number.
pub(crate) fn is_valid(nhs: &str) -> bool {
    if nhs.len() != 10 || !nhs.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let (base, check) = nhs.split_at(9);
    match (base.parse::<u64>(), check.parse::<u64>()) {
        (Ok(base), Ok(check)) => check_digit(base) == Some(check),
        _ => false,
    }
}
