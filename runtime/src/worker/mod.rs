//! Workers: the processes that run workflows and tasks on a backend.

mod binary;
pub(crate) mod ids;
mod service;
mod workflows;

pub use binary::{BackendUrl, ServiceBinary, run_service_worker, shutdown_signal};
pub use service::{Handlers, ServiceWorker, ServiceWorkerOptions, TaskContext};
pub use workflows::{WorkflowWorker, WorkflowWorkerOptions};
