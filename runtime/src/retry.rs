//! How often and how soon a failed task is tried again.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::TaskError;

/// Exponential backoff with jitter and a bounded number of attempts.
///
/// The delay before attempt `n + 1` is `initial_delay * multiplier^(n - 1)`, capped at
/// `max_delay`, then scaled by a random factor in `[1 - jitter, 1]` so that many clients that
/// failed together do not retry together. A `Retry-After` from the server replaces the computed
/// delay when it is longer (still capped at `max_delay`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included. `1` means never retry.
    pub max_attempts: u32,
    /// Delay after the first failure.
    #[serde(with = "millis")]
    pub initial_delay: Duration,
    /// Factor applied to the delay after each further failure.
    pub multiplier: f64,
    /// The longest delay between two attempts.
    #[serde(with = "millis")]
    pub max_delay: Duration,
    /// Fraction of the delay that is randomised, from 0 (none) to 1.
    pub jitter: f64,
    /// The longest the call may take with all its attempts and the waits between them, from
    /// when the workflow scheduled it (schedule-to-close). No attempt starts after it, one
    /// under way is stopped at it, and the call then fails as timed out. `None`: only
    /// `max_attempts` bounds it.
    #[serde(
        default,
        with = "optional_millis",
        skip_serializing_if = "Option::is_none"
    )]
    pub schedule_to_close: Option<Duration>,
}

impl Default for RetryPolicy {
    /// Five attempts, 100 ms doubling up to 30 s, 20 % jitter.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_delay: Duration::from_millis(100),
            multiplier: 2.0,
            max_delay: Duration::from_secs(30),
            jitter: 0.2,
            schedule_to_close: None,
        }
    }
}

impl RetryPolicy {
    /// A policy that tries once and never again.
    pub fn never() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The same policy with another number of attempts.
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// The same policy with another first delay.
    pub fn with_initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// The same policy with another longest delay.
    pub fn with_max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// The same policy, bounding all attempts of a call together by `bound`.
    pub fn with_schedule_to_close(mut self, bound: Duration) -> Self {
        self.schedule_to_close = Some(bound);
        self
    }

    /// How long to wait before the next attempt after `attempt` (1-based) failed with `error`,
    /// or `None` when the task must not be tried again.
    pub fn next_delay(&self, attempt: u32, error: &TaskError) -> Option<Duration> {
        if !error.is_retryable() || attempt >= self.max_attempts {
            return None;
        }
        let backoff = self.backoff(attempt);
        let jittered = self.apply_jitter(backoff, rand::rng().random::<f64>());
        let delay = match error.retry_after() {
            Some(asked) if asked > jittered => asked.min(self.max_delay),
            _ => jittered,
        };
        Some(delay)
    }

    /// The delay after `attempt` failures, before jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let factor = self.multiplier.max(1.0).powi(exponent);
        let secs = self.initial_delay.as_secs_f64() * factor;
        if !secs.is_finite() || secs >= self.max_delay.as_secs_f64() {
            self.max_delay
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    /// Scales `delay` by `1 - jitter * random`, `random` in `[0, 1)`.
    fn apply_jitter(&self, delay: Duration, random: f64) -> Duration {
        let jitter = self.jitter.clamp(0.0, 1.0);
        delay.mul_f64(1.0 - jitter * random.clamp(0.0, 1.0))
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

mod optional_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => super::millis::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = RetryPolicy::default().with_max_delay(Duration::from_millis(500));
        assert_eq!(policy.backoff(1), Duration::from_millis(100));
        assert_eq!(policy.backoff(2), Duration::from_millis(200));
        assert_eq!(policy.backoff(3), Duration::from_millis(400));
        assert_eq!(policy.backoff(4), Duration::from_millis(500));
        assert_eq!(policy.backoff(60), Duration::from_millis(500));
    }

    #[test]
    fn jitter_only_shortens_within_its_fraction() {
        let policy = RetryPolicy::default();
        let base = Duration::from_millis(1000);
        assert_eq!(policy.apply_jitter(base, 0.0), base);
        assert_eq!(policy.apply_jitter(base, 0.5), Duration::from_millis(900));
        for _ in 0..100 {
            let err = TaskError::retryable("503");
            let d = policy.next_delay(1, &err).unwrap();
            assert!(
                d <= Duration::from_millis(100) && d >= Duration::from_millis(80),
                "{d:?}"
            );
        }
    }

    #[test]
    fn permanent_errors_and_the_last_attempt_stop_retries() {
        let policy = RetryPolicy::default().with_max_attempts(3);
        assert!(policy.next_delay(1, &TaskError::permanent("400")).is_none());
        assert!(policy.next_delay(2, &TaskError::retryable("503")).is_some());
        assert!(policy.next_delay(3, &TaskError::retryable("503")).is_none());
    }

    #[test]
    fn retry_after_wins_when_longer_but_stays_capped() {
        let policy = RetryPolicy::default().with_max_delay(Duration::from_secs(5));
        let err = TaskError::retryable("429").with_retry_after(Duration::from_secs(3));
        assert_eq!(policy.next_delay(1, &err), Some(Duration::from_secs(3)));
        let err = TaskError::retryable("429").with_retry_after(Duration::from_secs(60));
        assert_eq!(policy.next_delay(1, &err), Some(Duration::from_secs(5)));
    }
}
