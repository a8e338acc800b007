//! The workers' measurements, one function each, so every metric is recorded with the same
//! labels wherever it is recorded. Without a recorder installed each is a no-op.

use std::time::Duration;

use metrics::{counter, gauge, histogram};

use super::names;
use crate::backend::inspect::{QueueDepth, ServiceStats};
use crate::time::now_ms;

/// One task attempt and how it ended.
pub(crate) fn attempt(service: &str, task: &str, outcome: &'static str, took: Duration) {
    counter!(names::TASK_ATTEMPTS, "service" => service.to_owned(), "task" => task.to_owned(), "outcome" => outcome)
        .increment(1);
    histogram!(names::TASK_ATTEMPT_DURATION, "service" => service.to_owned(), "task" => task.to_owned())
        .record(took.as_secs_f64());
}

/// A task that went to the dead-letter list.
pub(crate) fn dead_letter(service: &str, task: &str) {
    counter!(names::TASK_DEAD_LETTERS, "service" => service.to_owned(), "task" => task.to_owned())
        .increment(1);
}

/// An attempt running, counted in `codegen_tasks_in_flight` until dropped (also when its task
/// is aborted at shutdown).
pub(crate) struct InFlight(metrics::Gauge);

impl InFlight {
    pub(crate) fn start(service: &str) -> Self {
        let gauge = gauge!(names::TASKS_IN_FLIGHT, "service" => service.to_owned());
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// The concurrency a service worker runs at.
pub(crate) fn concurrency(service: &str, concurrency: usize) {
    gauge!(names::TASK_CONCURRENCY, "service" => service.to_owned()).set(concurrency as f64);
}

/// An HTTP response of `status` (or none, for a call that got no response).
pub(crate) fn http_response(service: &'static str, operation: &'static str, status: Option<u16>) {
    let class = match status {
        Some(100..=199) => "1xx",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        Some(_) => "other",
        None => "none",
    };
    counter!(names::HTTP_RESPONSES, "service" => service, "operation" => operation, "status_class" => class)
        .increment(1);
}

/// The queues of each service, as a backend reports them (when it can tell).
pub(crate) fn queues(services: &[ServiceStats]) {
    for service in services {
        if let (Some(ready), Some(delayed)) = (service.ready, service.delayed) {
            let depth = QueueDepth {
                ready,
                delayed,
                oldest_ready_at: service.oldest_ready_at,
            };
            queue(&format!("tasks/{}", service.service), &depth);
        }
    }
}

/// The depth of one topic.
pub(crate) fn queue(topic: &str, depth: &QueueDepth) {
    let age = depth
        .oldest_ready_at
        .map_or(0.0, |at| (now_ms() - at).max(0) as f64 / 1000.0);
    gauge!(names::QUEUE_MESSAGES, "topic" => topic.to_owned(), "state" => "ready")
        .set(depth.ready as f64);
    gauge!(names::QUEUE_MESSAGES, "topic" => topic.to_owned(), "state" => "delayed")
        .set(depth.delayed as f64);
    gauge!(names::QUEUE_OLDEST_AGE, "topic" => topic.to_owned()).set(age);
}

/// One replay of an instance of `workflow` with a history of `events`.
pub(crate) fn activation(workflow: &str, took: Duration, events: usize) {
    counter!(names::WORKFLOW_ACTIVATIONS, "workflow" => workflow.to_owned()).increment(1);
    histogram!(names::WORKFLOW_REPLAY_DURATION, "workflow" => workflow.to_owned())
        .record(took.as_secs_f64());
    histogram!(names::WORKFLOW_HISTORY_EVENTS, "workflow" => workflow.to_owned())
        .record(events as f64);
}

/// An instance of `workflow` started.
pub(crate) fn started(workflow: &str) {
    counter!(names::WORKFLOW_STARTED, "workflow" => workflow.to_owned()).increment(1);
}

/// An instance of `workflow` ended, or was parked: `status` says which.
pub(crate) fn ended(workflow: &str, status: &'static str) {
    counter!(names::WORKFLOW_ENDED, "workflow" => workflow.to_owned(), "status" => status)
        .increment(1);
}

/// A round of changes committed (`commit` by the workflow worker, `settle` by a service
/// worker).
pub(crate) fn commit(operation: &'static str, took: Duration) {
    histogram!(names::BACKEND_COMMIT_DURATION, "operation" => operation).record(took.as_secs_f64());
}

/// A commit refused by a conflicting change.
pub(crate) fn conflict() {
    counter!(names::BACKEND_CONFLICTS).increment(1);
}

/// A round that found the backend unavailable.
pub(crate) fn unavailable(worker: &'static str) {
    counter!(names::BACKEND_UNAVAILABLE, "worker" => worker).increment(1);
}
