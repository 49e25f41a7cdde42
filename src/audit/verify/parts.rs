//! How `audit verify` splits a long chain into parts walked at once.

/// How `audit verify` splits a long chain into parts, each walked at once with a reader of
/// its own (on SQLite its own connection), so that a walk keeps every core it is given
/// busy. The parts' seams are checked as any two records are: the first record of a part
/// must follow the last record of the part before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    /// The most parts one chain is split into.
    most: usize,
    /// The fewest positions a part covers: a chain with fewer than twice as many is walked
    /// whole.
    least: u64,
}

impl Parts {
    /// At most `most` parts (1 to 64) of at least `least` positions each (at least 1).
    pub const fn new(most: usize, least: u64) -> Parts {
        Parts {
            most: if most == 0 {
                1
            } else if most > MOST_PARTS_EVER {
                MOST_PARTS_EVER
            } else {
                most
            },
            least: if least == 0 { 1 } else { least },
        }
    }

    /// Two parts for each core, up to eight: `concord audit verify`, which has the machine to
    /// itself. A part waits between the steps of each batch (its read, its check, its
    /// projection's read); a second part on each core fills those waits (on 2 cores a
    /// million records took a median of 3.96 s in four parts, 4.27 s in two:
    /// `benches/README.md`).
    pub fn all_cores() -> Parts {
        Parts {
            most: cores().saturating_mul(2).min(MOST_PARTS),
            least: LEAST_PART,
        }
    }

    /// One part for each two cores, up to four: the IG console's verify, which runs inside a
    /// gateway that goes on answering requests.
    pub fn beside_requests() -> Parts {
        Parts {
            most: (cores() / 2).clamp(1, MOST_PARTS / 2),
            least: LEAST_PART,
        }
    }

    /// Store connections a walk in these parts keeps busy at once: each part reads its
    /// records on one while its search projection is read on another.
    pub fn connections(self) -> u32 {
        u32::try_from(self.most.saturating_mul(2)).unwrap_or(u32::MAX)
    }

    /// The parts of a chain whose records lie at positions `span` (its first and last), in
    /// order: together they cover every position, so that rows of the search projection
    /// anywhere in the chain fall in one of them.
    pub(super) fn of(self, span: Option<(i64, i64)>) -> Vec<Part> {
        let whole = Part {
            from: i64::MIN,
            to: i64::MAX,
            starts: true,
            ends: true,
        };
        let Some((first, last)) = span else {
            return vec![whole];
        };
        let positions = i128::from(last) - i128::from(first) + 1;
        let least = i128::from(self.least.max(1));
        let most = self.most.clamp(1, MOST_PARTS_EVER);
        // INVARIANT: `most` is at most MOST_PARTS_EVER, so it fits, and `positions * j`
        // (under 2^64 times that) does not overflow.
        let n = (positions / least).clamp(1, i128::try_from(most).unwrap_or(1));
        // INVARIANT: each bound lies between `first` and `last`, so it fits an i64.
        let bound = |j: i128| i64::try_from(i128::from(first) + positions * j / n).unwrap_or(last);
        let starts: Vec<i64> = std::iter::once(i64::MIN).chain((1..n).map(bound)).collect();
        starts
            .iter()
            .enumerate()
            .map(|(j, &from)| {
                let next = starts.get(j + 1).copied();
                Part {
                    from,
                    // INVARIANT: a later part starts past `first`, so past i64::MIN.
                    to: next.map_or(i64::MAX, |next| next - 1),
                    starts: j == 0,
                    ends: next.is_none(),
                }
            })
            .collect()
    }
}

/// Cores this process may use.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// More parts than this gain little: each holds two batches in memory and a connection.
const MOST_PARTS: usize = 8;

/// No split makes more parts than this (tests split short chains finely).
const MOST_PARTS_EVER: usize = 64;

/// A part covers at least this many positions (four batches), so that splitting pays for
/// its readers.
const LEAST_PART: u64 = 4 * super::CHECK_BATCH as u64;

/// One part of a chain: positions `[from, to]`; whether it starts the chain (its first
/// record must be position 0) and whether it ends it (search rows past its last record name
/// no record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Part {
    pub(super) from: i64,
    pub(super) to: i64,
    pub(super) starts: bool,
    pub(super) ends: bool,
}
