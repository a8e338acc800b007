//! Workers: the processes that run workflows and tasks on a backend.

mod binary;
pub(crate) mod ids;
mod outage;
mod replayer;
mod service;
mod workflows;

#[cfg(feature = "grpc")]
pub(crate) use binary::env_prefix;
pub use binary::{BackendUrl, GrpcSettings, ServiceBinary, run_service_worker, shutdown_signal};
pub(crate) use outage::Outage;
pub use service::{Handlers, ServiceWorker, ServiceWorkerOptions, TaskContext};
pub use workflows::{Retention, WorkflowWorker, WorkflowWorkerOptions};
