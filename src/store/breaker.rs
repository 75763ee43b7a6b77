//! A circuit breaker for the Redis link: after a failure, answer at once (fail-open) instead of
//! spending the full timeout on every request, and let one probe through about once a second.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    /// Failing fast until the instant, then one probe goes through.
    Open(Instant),
    /// One probe is in flight since the instant; if it never reports back (its task was
    /// dropped), another probe is allowed after `probe_timeout`.
    Probing(Instant),
}

#[derive(Debug)]
pub struct Breaker {
    state: State,
    retry_after: Duration,
    probe_timeout: Duration,
}

impl Breaker {
    pub fn new(retry_after: Duration, probe_timeout: Duration) -> Self {
        Self { state: State::Closed, retry_after, probe_timeout }
    }

    /// Whether a request may try Redis now.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state {
            State::Closed => true,
            State::Open(until) if now >= until => {
                self.state = State::Probing(now);
                true
            }
            State::Probing(since) if now >= since + self.probe_timeout => {
                self.state = State::Probing(now);
                true
            }
            State::Open(_) | State::Probing(_) => false,
        }
    }

    /// Whether calls are going through (no recent link fault).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Returns true when this success closed an open circuit (worth one log line).
    pub fn success(&mut self) -> bool {
        let was_open = self.state != State::Closed;
        self.state = State::Closed;
        was_open
    }

    /// Returns true when this failure opened a closed circuit (worth one log line).
    pub fn failure(&mut self, now: Instant) -> bool {
        let was_closed = self.state == State::Closed;
        self.state = State::Open(now + self.retry_after);
        was_closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn fails_fast_then_probes_once_a_second() {
        let t0 = Instant::now();
        let mut b = Breaker::new(SEC, SEC / 2);
        assert!(b.allow(t0));
        assert!(b.failure(t0));
        assert!(!b.allow(t0 + SEC / 2), "open: fail fast");
        assert!(b.allow(t0 + SEC), "one probe after a second");
        assert!(!b.allow(t0 + SEC), "only one probe at a time");
        assert!(!b.failure(t0 + SEC), "a failed probe is not a new outage");
        assert!(!b.allow(t0 + SEC + SEC / 2));
        assert!(b.allow(t0 + 2 * SEC));
        assert!(b.success());
        assert!(!b.success());
        assert!(b.allow(t0 + 2 * SEC) && b.allow(t0 + 2 * SEC));
    }

    #[test]
    fn a_lost_probe_does_not_wedge_the_circuit() {
        let t0 = Instant::now();
        let mut b = Breaker::new(SEC, SEC / 2);
        b.failure(t0);
        assert!(b.allow(t0 + SEC));
        assert!(!b.allow(t0 + SEC + SEC / 4));
        assert!(b.allow(t0 + SEC + SEC / 2), "probe presumed lost");
    }
}
