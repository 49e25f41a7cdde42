//! A circuit breaker: a source that keeps failing is skipped for a cool-down, then tried once
//! (half-open) before it is trusted again.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// What the breaker lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// One trial call is allowed; its result decides.
    HalfOpen,
    /// Calls are refused until the cool-down ends.
    Open,
}

impl BreakerState {
    /// Name for `/readyz`.
    pub fn name(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half-open",
            BreakerState::Open => "open",
        }
    }

    /// Value of the `concord_source_breaker_state` gauge.
    pub fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }
}

#[derive(Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { trial_started: Instant },
}

/// The breaker of one source.
#[derive(Debug)]
pub struct Breaker {
    inner: Mutex<Inner>,
    threshold: u32,
    cool_down: Duration,
}

impl Breaker {
    /// Opens after `threshold` consecutive failures, for `cool_down`.
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner::Closed { failures: 0 }),
            threshold: threshold.max(1),
            cool_down,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the state half-written (each update is
        // one assignment), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a call may go ahead now. After the cool-down, one trial call is let through; if
    /// that trial never reports back (its caller gave up), another is allowed a cool-down later.
    pub fn allow(&self) -> bool {
        let now = Instant::now();
        let mut inner = self.lock();
        match *inner {
            Inner::Closed { .. } => true,
            Inner::Open { until } if now >= until => {
                *inner = Inner::HalfOpen { trial_started: now };
                true
            }
            Inner::Open { .. } => false,
            Inner::HalfOpen { trial_started }
                if now.duration_since(trial_started) >= self.cool_down =>
            {
                *inner = Inner::HalfOpen { trial_started: now };
                true
            }
            Inner::HalfOpen { .. } => false,
        }
    }

    /// A call succeeded.
    pub fn success(&self) {
        *self.lock() = Inner::Closed { failures: 0 };
    }

    /// A call failed.
    pub fn failure(&self) {
        let mut inner = self.lock();
        let until = Instant::now() + self.cool_down;
        *inner = match *inner {
            Inner::Closed { failures } if failures + 1 < self.threshold => Inner::Closed {
                failures: failures + 1,
            },
            Inner::Closed { .. } | Inner::HalfOpen { .. } => Inner::Open { until },
            Inner::Open { until } => Inner::Open { until },
        };
    }

    /// The current state (an open breaker past its cool-down reads as half-open).
    pub fn state(&self) -> BreakerState {
        match *self.lock() {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until } if Instant::now() >= until => BreakerState::HalfOpen,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_and_recovers_through_one_trial() {
        let b = Breaker::new(3, Duration::from_secs(10));
        for _ in 0..2 {
            assert!(b.allow());
            b.failure();
        }
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow());
        b.failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow(), "open breaker refuses");

        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(b.allow(), "one trial after the cool-down");
        assert!(!b.allow(), "only one trial at a time");
        b.failure();
        assert_eq!(b.state(), BreakerState::Open, "failed trial reopens");

        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(b.allow());
        b.success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow());
    }

    #[tokio::test(start_paused = true)]
    async fn success_resets_the_failure_count() {
        let b = Breaker::new(2, Duration::from_secs(1));
        b.failure();
        b.success();
        b.failure();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_trial_does_not_wedge_the_breaker() {
        let b = Breaker::new(1, Duration::from_secs(5));
        b.failure();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(b.allow());
        // The trial's caller gave up and never reported back.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(b.allow());
    }
}
