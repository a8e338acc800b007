//! Waiting out a backend that went away: the database restarting, the broker failing over.
//!
//! A worker that cannot reach its backend tries again after 200 ms, then twice as long each
//! time up to 5 s, so a hundred workers do not hammer a database that is coming back. It says
//! so when the outage starts, every eighth try while it lasts, and when the backend answers
//! again, with how long it was away.

use std::time::{Duration, Instant};

const FIRST: Duration = Duration::from_millis(200);
const LONGEST: Duration = Duration::from_secs(5);

/// The state of one worker loop's outage, if any.
#[derive(Debug, Default)]
pub(crate) struct Outage {
    since: Option<Instant>,
    tries: u32,
}

impl Outage {
    /// The delay before try `tries` (1 for the first retry).
    fn delay(tries: u32) -> Duration {
        FIRST
            .saturating_mul(1 << tries.saturating_sub(1).min(8))
            .min(LONGEST)
    }

    /// Records a failed try by the `role` worker and waits before the next.
    pub(crate) async fn wait(&mut self, role: &str, message: &str) {
        let since = *self.since.get_or_insert_with(Instant::now);
        self.tries += 1;
        let delay = Self::delay(self.tries);
        if self.tries == 1 || self.tries.is_multiple_of(8) {
            tracing::warn!(
                role,
                %message,
                tries = self.tries,
                away_ms = since.elapsed().as_millis() as u64,
                next_try_ms = delay.as_millis() as u64,
                "backend unavailable; trying again"
            );
        }
        tokio::time::sleep(delay).await;
    }

    /// Records a try that reached the backend, ending an outage if there was one.
    pub(crate) fn reached(&mut self, role: &str) {
        if let Some(since) = self.since.take() {
            tracing::info!(
                role,
                tries = self.tries,
                away_ms = since.elapsed().as_millis() as u64,
                "backend available again"
            );
            self.tries = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_from_200_ms_to_at_most_5_s() {
        let delays: Vec<u64> = (1..=8)
            .map(|t| Outage::delay(t).as_millis() as u64)
            .collect();
        assert_eq!(delays, [200, 400, 800, 1_600, 3_200, 5_000, 5_000, 5_000]);
        assert_eq!(Outage::delay(u32::MAX), LONGEST);
    }

    #[tokio::test]
    async fn an_outage_ends_when_the_backend_is_reached_and_the_next_starts_short() {
        let mut outage = Outage::default();
        let started = Instant::now();
        outage.wait("service", "down").await;
        assert!(started.elapsed() >= FIRST);
        assert_eq!((outage.tries, outage.since.is_some()), (1, true));
        outage.reached("service");
        assert_eq!((outage.tries, outage.since.is_some()), (0, false));
        assert_eq!(Outage::delay(outage.tries + 1), FIRST);
    }
}
