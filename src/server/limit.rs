//! The rate limit for callers without a valid token.
//!
//! Every `/fhir` request is audited, answered or refused, so a caller without a token could
//! otherwise fill the log. Per client address, at most `unauthenticated_per_minute` requests
//! without a valid token are answered (401, or the CapabilityStatement) and recorded one by
//! one in each window; beyond that they are answered 429 and only counted. At the end of each
//! window, one audit record per client says how many were turned away. Callers with a valid
//! token are never limited here.
//!
//! Memory is bounded: at most [`MAX_CLIENTS`] addresses are tracked in a window; addresses
//! beyond that share one count (and one limit), so a flood from many addresses cannot grow
//! the table.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Most client addresses tracked in one window.
pub const MAX_CLIENTS: usize = 65_536;

/// Requests without a valid token, per client, in the current window.
#[derive(Debug)]
pub struct Limiter {
    per_window: u32,
    window: Mutex<HashMap<Option<IpAddr>, Count>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Count {
    answered: u32,
    refused: u64,
}

/// What the limiter says of one request without a valid token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Answer it (and record it).
    Answer,
    /// Turn it away with 429 (counted, not recorded on its own).
    Refuse,
}

/// Requests turned away from one client in a window that has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusals {
    /// The client address (`None`: every address beyond [`MAX_CLIENTS`], or unknown).
    pub client: Option<IpAddr>,
    /// How many.
    pub count: u64,
}

impl Limiter {
    /// A limiter that answers `per_window` requests per client per window; 0 turns the limit
    /// off.
    pub fn new(per_window: u32) -> Limiter {
        Limiter {
            per_window,
            window: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request without a valid token from `client`.
    pub fn check(&self, client: Option<IpAddr>) -> Verdict {
        if self.per_window == 0 {
            return Verdict::Answer;
        }
        let Ok(mut window) = self.window.lock() else {
            // A poisoned lock means a panic elsewhere; refusing is the safe answer.
            return Verdict::Refuse;
        };
        let key = if window.contains_key(&client) || window.len() < MAX_CLIENTS {
            client
        } else {
            None
        };
        let count = window.entry(key).or_default();
        if count.answered < self.per_window {
            count.answered += 1;
            Verdict::Answer
        } else {
            count.refused += 1;
            Verdict::Refuse
        }
    }

    /// Ends the window: every client starts again, and what was turned away is handed back.
    pub fn roll(&self) -> Vec<Refusals> {
        let Ok(mut window) = self.window.lock() else {
            return Vec::new();
        };
        std::mem::take(&mut *window)
            .into_iter()
            .filter(|(_, c)| c.refused > 0)
            .map(|(client, c)| Refusals {
                client,
                count: c.refused,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_gets_its_allowance_and_the_rest_is_counted() {
        let limiter = Limiter::new(3);
        let a = Some(IpAddr::from([127, 0, 0, 2]));
        let b = Some(IpAddr::from([127, 0, 0, 3]));
        let verdicts: Vec<_> = (0..5).map(|_| limiter.check(a)).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Answer,
                Verdict::Answer,
                Verdict::Answer,
                Verdict::Refuse,
                Verdict::Refuse
            ]
        );
        assert_eq!(limiter.check(b), Verdict::Answer, "others are not affected");
        let refusals = limiter.roll();
        assert_eq!(
            refusals,
            [Refusals {
                client: a,
                count: 2
            }]
        );
        assert_eq!(limiter.check(a), Verdict::Answer, "a new window");
        assert!(Limiter::new(0).check(a) == Verdict::Answer, "0 is off");
    }

    #[test]
    fn the_table_is_bounded() {
        let limiter = Limiter::new(1);
        for i in 0..(MAX_CLIENTS as u32 + 10) {
            let _ = limiter.check(Some(IpAddr::from(i.to_be_bytes())));
        }
        // The ten beyond the table shared one allowance: nine were turned away.
        let refusals = limiter.roll();
        assert_eq!(
            refusals,
            [Refusals {
                client: None,
                count: 9
            }]
        );
    }
}
