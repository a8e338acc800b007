//! Durable workflows: plain async functions replayed from their history.
//!
//! ```
//! use std::time::Duration;
//! use codegen_runtime::workflow::{WorkflowContext, WorkflowError, Workflows};
//!
//! async fn reminder(ctx: WorkflowContext, days: u64) -> Result<String, WorkflowError> {
//!     ctx.sleep(Duration::from_secs(days * 86_400)).await;
//!     let done: bool = ctx.signal("done").await?;
//!     Ok(if done { "done".into() } else { "not done".into() })
//! }
//!
//! let mut workflows = Workflows::new();
//! workflows.register("reminder", 1, reminder);
//! ```

mod clock;
mod context;
pub mod engine;
mod history;
mod registry;
pub mod replay;

pub use clock::Clock;
pub(crate) use context::parse_completion_token;
pub use context::{
    ChildFuture, CompletionFuture, ContinueAsNew, Either, Either3, SignalFuture, TaskFuture,
    TimedOut, Timeout, TimerFuture, WorkflowContext, join_all, join2, select, select2, select3,
};
pub use history::{Event, HistoryEvent, NonDeterminism, WorkflowError};
pub use registry::Workflows;

#[cfg(test)]
mod incremental_tests;
#[cfg(test)]
mod tests;
