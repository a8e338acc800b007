//! Deterministic message ids: a message sent twice for one change has one id, so the second is
//! dropped.

/// The id of the task of command `seq`: also its idempotency key.
pub(crate) fn task_id(instance: &str, seq: u32) -> String {
    format!("{instance}/task/{seq}")
}

/// The message carrying the result of command `seq`, the first time its task ran
/// (`redrive` 0) or after the `redrive`-th retry of it from the dead-letter list.
pub(crate) fn result_id(instance: &str, seq: u32, redrive: u32) -> String {
    match redrive {
        0 => format!("{instance}/result/{seq}"),
        n => format!("{instance}/result/{seq}/retry/{n}"),
    }
}

/// Whether a result message comes from a task an operator retried from the dead-letter list.
pub(crate) fn is_retry(message_id: &str) -> bool {
    message_id.contains("/retry/")
}

/// The message that fires timer `seq`.
pub(crate) fn timer_id(instance: &str, seq: u32) -> String {
    format!("{instance}/timer/{seq}")
}

/// The message that reports the end of child `seq` to its parent.
pub(crate) fn child_result_id(parent: &str, seq: u32) -> String {
    format!("{parent}/child/{seq}")
}

/// The message that starts an instance.
pub(crate) fn start_id(instance: &str) -> String {
    format!("{instance}/start")
}

/// The message that cancels an instance.
pub(crate) fn cancel_id(instance: &str) -> String {
    format!("{instance}/cancel")
}

/// The message that ends run `run` of an instance when its run timeout runs out.
pub(crate) fn run_timeout_id(instance: &str, run: u32) -> String {
    format!("{instance}/run-timeout/{run}")
}

/// The message that tells the workflow worker a client committed news to the history.
pub(crate) fn news_id(instance: &str, what: &str) -> String {
    format!("{instance}/news/{what}")
}
