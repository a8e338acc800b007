//! Workers: the processes that run workflows and tasks on a backend.

pub(crate) mod ids;
mod service;
mod workflows;

pub use service::{Handlers, ServiceWorker, ServiceWorkerOptions, TaskContext};
pub use workflows::{WorkflowWorker, WorkflowWorkerOptions};
