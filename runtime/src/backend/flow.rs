//! Flow control: limits on a service's tasks that hold across every worker sharing a backend.
//!
//! Each backend keeps, per service, a token bucket and a back-off time (one row), and the
//! permits each worker holds (one row per worker, leased: a worker that dies gives its permits
//! back when the lease ends). A worker asks for permits before it takes tasks, and gives them
//! back as the tasks end; tasks over the limit stay in the queue, in order.

use serde::{Deserialize, Serialize};

/// Limits on a service's tasks, across every worker sharing the backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowLimits {
    /// Tasks of the service under way at once.
    pub max_in_flight: Option<u32>,
    /// Tasks started per second.
    pub rate_per_second: Option<f64>,
    /// Tasks that may start at once after a quiet spell (the bucket's size); by default one
    /// second's worth of the rate, at least 1.
    pub burst: Option<u32>,
}

impl FlowLimits {
    /// Whether any limit is set.
    pub fn is_set(&self) -> bool {
        self.max_in_flight.is_some() || self.rate_per_second.is_some()
    }

    /// The bucket's size.
    pub(crate) fn bucket(&self) -> f64 {
        match (self.burst, self.rate_per_second) {
            (Some(burst), _) => f64::from(burst.max(1)),
            (None, Some(rate)) => rate.max(1.0),
            (None, None) => f64::INFINITY,
        }
    }
}

/// What a worker got when it asked for permits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Permits granted: tasks it may take now.
    pub granted: u32,
    /// When asking again can give more (a token comes, a back-off ends), in milliseconds since
    /// the Unix epoch; `None` when only another worker's released permit can (it is woken).
    pub retry_at: Option<i64>,
}

/// A service's shared state, as stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bucket {
    /// Tokens in the bucket when last refilled.
    pub tokens: f64,
    /// When it was last refilled.
    pub refilled_at: i64,
    /// No task starts before this time.
    pub paused_until: i64,
}

impl Bucket {
    /// A full bucket.
    pub(crate) fn full(limits: &FlowLimits, now: i64) -> Self {
        Self {
            tokens: limits.bucket().min(1e12),
            refilled_at: now,
            paused_until: 0,
        }
    }
}

/// How many of `want` permits to grant, given the permits other workers hold (`others`) and
/// this one holds (`mine`); the bucket after it, and when to ask again.
pub(crate) fn decide(
    limits: &FlowLimits,
    bucket: Bucket,
    others: u32,
    mine: u32,
    want: u32,
    now: i64,
) -> (u32, Bucket, Option<i64>) {
    if bucket.paused_until > now {
        return (0, bucket, Some(bucket.paused_until));
    }
    let mut bucket = bucket;
    let mut grant = want;
    let mut retry_at = None;
    if let Some(max) = limits.max_in_flight {
        grant = grant.min(max.saturating_sub(others.saturating_add(mine)));
    }
    if let Some(rate) = limits.rate_per_second.filter(|r| *r > 0.0) {
        let elapsed = (now - bucket.refilled_at).max(0) as f64 / 1000.0;
        let tokens = (bucket.tokens + elapsed * rate).min(limits.bucket());
        let whole = tokens.floor().max(0.0);
        let by_rate = if whole >= f64::from(u32::MAX) {
            u32::MAX
        } else {
            whole as u32
        };
        if by_rate < grant {
            grant = by_rate;
            // The next whole token.
            let wait_ms = ((1.0 - (tokens - whole)) / rate * 1000.0).ceil().max(1.0);
            retry_at = Some(now + wait_ms as i64);
        }
        bucket.tokens = tokens - f64::from(grant);
        bucket.refilled_at = now;
    }
    (grant, bucket, retry_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_in_flight_limit_counts_every_worker() {
        let limits = FlowLimits {
            max_in_flight: Some(5),
            ..Default::default()
        };
        let bucket = Bucket::full(&limits, 0);
        assert_eq!(decide(&limits, bucket, 3, 1, 10, 0).0, 1);
        assert_eq!(decide(&limits, bucket, 3, 2, 10, 0).0, 0);
        assert_eq!(decide(&limits, bucket, 0, 0, 2, 0).0, 2);
    }

    #[test]
    fn the_rate_is_a_token_bucket_that_says_when_the_next_token_comes() {
        let limits = FlowLimits {
            rate_per_second: Some(10.0),
            burst: Some(3),
            ..Default::default()
        };
        let bucket = Bucket::full(&limits, 0);
        let (granted, bucket, retry) = decide(&limits, bucket, 0, 0, 10, 0);
        assert_eq!(
            (granted, retry),
            (3, Some(100)),
            "the burst, then a token per 100 ms"
        );
        let (granted, bucket, _) = decide(&limits, bucket, 0, 0, 10, 50);
        assert_eq!(granted, 0);
        let (granted, _, _) = decide(&limits, bucket, 0, 0, 10, 250);
        assert_eq!(granted, 2, "2.5 tokens by 250 ms");
    }

    #[test]
    fn a_back_off_stops_every_start_until_it_ends() {
        let limits = FlowLimits::default();
        let bucket = Bucket {
            paused_until: 1_000,
            ..Bucket::full(&limits, 0)
        };
        assert_eq!(
            decide(&limits, bucket, 0, 0, 4, 500),
            (0, bucket, Some(1_000))
        );
        assert_eq!(decide(&limits, bucket, 0, 0, 4, 1_000).0, 4);
    }
}
