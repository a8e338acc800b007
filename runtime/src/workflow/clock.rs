//! Workflow time: real time, or real time sped up (so a demo or a test can let months pass in
//! seconds without changing a workflow).

use serde::{Deserialize, Serialize};

/// How the time a workflow sees ([`WorkflowContext::now`](super::WorkflowContext::now), its
/// timers) relates to real time.
///
/// An instance records its clock when it starts and keeps it, as it keeps its version: replays
/// see the same times whatever the worker is configured with later.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Clock {
    /// Workflow time is real time.
    #[default]
    Real,
    /// From `origin` (milliseconds since the Unix epoch, where both times agree), workflow time
    /// runs `factor` times faster than real time.
    Scaled {
        /// Where workflow time and real time agree.
        origin: i64,
        /// Workflow milliseconds per real millisecond.
        factor: f64,
    },
}

impl Clock {
    /// Workflow time runs `factor` times faster than real time from now on.
    pub fn scaled_from_now(factor: f64) -> Self {
        Self::Scaled {
            origin: crate::time::now_ms(),
            factor,
        }
    }

    /// Whether this is real time.
    pub fn is_real(&self) -> bool {
        matches!(self, Self::Real)
    }

    /// The workflow time at real time `real` (milliseconds since the Unix epoch).
    pub fn to_workflow(&self, real: i64) -> i64 {
        match *self {
            Self::Real => real,
            Self::Scaled { origin, factor } => {
                origin.saturating_add(((real - origin) as f64 * factor) as i64)
            }
        }
    }

    /// The real time at which workflow time reaches `workflow` (rounded up).
    pub fn to_real(&self, workflow: i64) -> i64 {
        match *self {
            Self::Real => workflow,
            Self::Scaled { origin, factor } if factor > 0.0 => {
                origin.saturating_add(((workflow - origin) as f64 / factor).ceil() as i64)
            }
            Self::Scaled { .. } => i64::MAX,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_time_runs_faster_from_its_origin_and_converts_back() {
        let clock = Clock::Scaled {
            origin: 1_000,
            factor: 1_000.0,
        };
        assert_eq!(clock.to_workflow(1_000), 1_000);
        assert_eq!(clock.to_workflow(1_002), 3_000);
        assert_eq!(clock.to_real(3_000), 1_002);
        assert_eq!(clock.to_real(3_001), 1_003, "rounded up: never early");
        assert_eq!(Clock::Real.to_workflow(42), 42);
        assert_eq!(Clock::Real.to_real(42), 42);
    }
}
