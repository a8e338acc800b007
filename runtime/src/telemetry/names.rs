//! The metrics every worker exports, by Prometheus's conventions: base units (`_seconds`),
//! counters ending in `_total`, and labels of bounded cardinality. A label holds a service, a
//! task or operation name, a workflow name, a topic or an outcome; never an instance id, a task
//! id or a URL.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `codegen_task_attempts_total` | counter | `service`, `task`, `outcome` |
//! | `codegen_task_attempt_duration_seconds` | histogram | `service`, `task` |
//! | `codegen_task_dead_letters_total` | counter | `service`, `task` |
//! | `codegen_tasks_in_flight` | gauge | `service` |
//! | `codegen_task_concurrency` | gauge | `service` |
//! | `codegen_http_responses_total` | counter | `service`, `operation`, `status_class` |
//! | `codegen_queue_messages` | gauge | `topic`, `state` (`ready`, `delayed`) |
//! | `codegen_queue_oldest_message_age_seconds` | gauge | `topic` |
//! | `codegen_workflow_activations_total` | counter | `workflow` |
//! | `codegen_workflow_replay_duration_seconds` | histogram | `workflow` |
//! | `codegen_workflow_history_events` | histogram | `workflow` |
//! | `codegen_workflow_instances_started_total` | counter | `workflow` |
//! | `codegen_workflow_instances_ended_total` | counter | `workflow`, `status` (`completed`, `failed`, `cancelled`, `parked`) |
//! | `codegen_backend_commit_duration_seconds` | histogram | `operation` (`commit`, `settle`) |
//! | `codegen_backend_conflicts_total` | counter | |
//! | `codegen_backend_unavailable_total` | counter | `worker` (`workflow`, `service`) |
//!
//! A `topic` is `workflows` or `tasks/<service>`. An attempt's `outcome` is `ok`, `retryable_error` (it runs again), `timed_out` (it runs
//! again), `permanent_error` (its task dies) or `dead` (a retryable failure with no attempt
//! left, or a task the worker has no handler for). Every task that dies also counts once in
//! `codegen_task_dead_letters_total`.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Attempts of tasks, by outcome.
pub const TASK_ATTEMPTS: &str = "codegen_task_attempts_total";
/// How long attempts took, from the handler's start to its result.
pub const TASK_ATTEMPT_DURATION: &str = "codegen_task_attempt_duration_seconds";
/// Tasks that went to the dead-letter list.
pub const TASK_DEAD_LETTERS: &str = "codegen_task_dead_letters_total";
/// Attempts running now.
pub const TASKS_IN_FLIGHT: &str = "codegen_tasks_in_flight";
/// The most attempts a service worker runs at once.
pub const TASK_CONCURRENCY: &str = "codegen_task_concurrency";
/// HTTP responses by status class (`2xx`...`5xx`, or `none` when no response came).
pub const HTTP_RESPONSES: &str = "codegen_http_responses_total";
/// Messages waiting in a topic.
pub const QUEUE_MESSAGES: &str = "codegen_queue_messages";
/// How long the oldest due message of a topic has waited.
pub const QUEUE_OLDEST_AGE: &str = "codegen_queue_oldest_message_age_seconds";
/// Replays of workflow instances.
pub const WORKFLOW_ACTIVATIONS: &str = "codegen_workflow_activations_total";
/// How long a replay took.
pub const WORKFLOW_REPLAY_DURATION: &str = "codegen_workflow_replay_duration_seconds";
/// The length of the histories replayed.
pub const WORKFLOW_HISTORY_EVENTS: &str = "codegen_workflow_history_events";
/// Instances started.
pub const WORKFLOW_STARTED: &str = "codegen_workflow_instances_started_total";
/// Instances that ended (or were parked), by status.
pub const WORKFLOW_ENDED: &str = "codegen_workflow_instances_ended_total";
/// How long the backend took to commit a round of changes.
pub const BACKEND_COMMIT_DURATION: &str = "codegen_backend_commit_duration_seconds";
/// Commits refused because another worker changed the instance first.
pub const BACKEND_CONFLICTS: &str = "codegen_backend_conflicts_total";
/// Rounds that found the backend unavailable.
pub const BACKEND_UNAVAILABLE: &str = "codegen_backend_unavailable_total";

/// Every metric above.
pub const ALL: &[&str] = &[
    TASK_ATTEMPTS,
    TASK_ATTEMPT_DURATION,
    TASK_DEAD_LETTERS,
    TASKS_IN_FLIGHT,
    TASK_CONCURRENCY,
    HTTP_RESPONSES,
    QUEUE_MESSAGES,
    QUEUE_OLDEST_AGE,
    WORKFLOW_ACTIVATIONS,
    WORKFLOW_REPLAY_DURATION,
    WORKFLOW_HISTORY_EVENTS,
    WORKFLOW_STARTED,
    WORKFLOW_ENDED,
    BACKEND_COMMIT_DURATION,
    BACKEND_CONFLICTS,
    BACKEND_UNAVAILABLE,
];

/// The buckets of every histogram in seconds: 1 ms to 2 minutes.
pub(crate) const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// The buckets of history lengths.
pub(crate) const EVENTS_BUCKETS: &[f64] = &[
    2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// Gives every metric its `# HELP` text and unit.
pub(crate) fn describe() {
    describe_counter!(
        TASK_ATTEMPTS,
        Unit::Count,
        "Task attempts, by outcome: ok, retryable_error, timed_out, permanent_error, dead"
    );
    describe_histogram!(
        TASK_ATTEMPT_DURATION,
        Unit::Seconds,
        "How long task attempts took"
    );
    describe_counter!(
        TASK_DEAD_LETTERS,
        Unit::Count,
        "Tasks that failed for good and went to the dead-letter list"
    );
    describe_gauge!(TASKS_IN_FLIGHT, Unit::Count, "Task attempts running now");
    describe_gauge!(
        TASK_CONCURRENCY,
        Unit::Count,
        "The most task attempts the service worker runs at once"
    );
    describe_counter!(
        HTTP_RESPONSES,
        Unit::Count,
        "HTTP responses by status class; `none` when the call got no response"
    );
    describe_gauge!(
        QUEUE_MESSAGES,
        Unit::Count,
        "Messages waiting in a topic: ready (due) or delayed (retries not due yet)"
    );
    describe_gauge!(
        QUEUE_OLDEST_AGE,
        Unit::Seconds,
        "How long the oldest due message of a topic has waited; 0 when none waits"
    );
    describe_counter!(
        WORKFLOW_ACTIVATIONS,
        Unit::Count,
        "Replays of workflow instances"
    );
    describe_histogram!(
        WORKFLOW_REPLAY_DURATION,
        Unit::Seconds,
        "How long replaying an instance took"
    );
    describe_histogram!(
        WORKFLOW_HISTORY_EVENTS,
        Unit::Count,
        "The number of events of the histories replayed"
    );
    describe_counter!(WORKFLOW_STARTED, Unit::Count, "Workflow instances started");
    describe_counter!(
        WORKFLOW_ENDED,
        Unit::Count,
        "Workflow instances that completed, failed, were cancelled or were parked"
    );
    describe_histogram!(
        BACKEND_COMMIT_DURATION,
        Unit::Seconds,
        "How long the backend took to commit a round of changes"
    );
    describe_counter!(
        BACKEND_CONFLICTS,
        Unit::Count,
        "Commits refused because another worker changed the instance first"
    );
    describe_counter!(
        BACKEND_UNAVAILABLE,
        Unit::Count,
        "Rounds that found the backend unavailable"
    );
}
