//! The unit of work that generated crates define and workflows call.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::RetryPolicy;

/// A unit of work: a serializable request with a serializable result.
///
/// Every operation of a generated crate has a request struct that implements `Task`. The
/// runtime stores the request, hands it to the service worker of [`Task::SERVICE`], and gives
/// the workflow the [`Task::Output`] back, or a [`TaskError`](crate::TaskError) once retries are
/// exhausted or the error is permanent.
pub trait Task: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// What a successful execution returns.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// The service that executes this task; one service worker runs each service.
    const SERVICE: &'static str;

    /// The operation name, unique within [`Task::SERVICE`] and stable across releases: it is
    /// recorded in workflow histories.
    const NAME: &'static str;

    /// Whether executing the task twice has the effect of executing it once without any help
    /// (HTTP GET, PUT, DELETE...). A task that is not idempotent is only retried with an
    /// idempotency key that stays the same across attempts.
    const IDEMPOTENT: bool;

    /// The retry policy of this task type; a call may override it.
    fn retry_policy() -> RetryPolicy {
        RetryPolicy::default()
    }
}
