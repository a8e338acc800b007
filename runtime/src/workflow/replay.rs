//! The replay harness: a history saved to a file, replayed against the current code in a test.
//!
//! Export the history of a real instance (the client's `history` call gives it), save it with
//! [`RecordedHistory::save`], commit it next to your tests, and check in a unit test that the
//! code you are about to deploy can continue it:
//!
//! ```no_run
//! # use codegen_runtime::workflow::{Workflows, replay::RecordedHistory};
//! # let workflows = Workflows::new();
//! let history = RecordedHistory::load("tests/histories/billing-42.json").unwrap();
//! history.replay(&workflows).expect("the new code can continue instance billing-42");
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::engine::{Activation, Outcome, ParkReason, activate};
use super::{Event, HistoryEvent, Workflows};

/// The history of one instance, as saved to a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedHistory {
    /// The instance id (it seeds the instance's random numbers, so it matters for replay).
    pub instance_id: String,
    /// The events, oldest first.
    pub events: Vec<HistoryEvent>,
}

/// Why a recorded history cannot be continued by the current code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReplayError {
    /// The history's workflow and version are not registered.
    #[error("workflow `{name}` version {version} is not registered")]
    UnknownWorkflow {
        /// The workflow name.
        name: String,
        /// The version.
        version: u32,
    },
    /// The history does not start with `workflow_started`.
    #[error("the history does not start with the start of a workflow")]
    NoStart,
    /// The code cannot continue the history.
    #[error("{0}")]
    Parked(ParkReason),
    /// The file cannot be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

impl RecordedHistory {
    /// Reads a history file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ReplayError> {
        let path = path.as_ref();
        let file_error = |message: String| ReplayError::File {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| file_error(e.to_string()))
    }

    /// Writes the history as pretty JSON.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ReplayError> {
        let path = path.as_ref();
        let text = serde_json::to_string_pretty(self).expect("a history is always JSON");
        std::fs::write(path, text + "\n").map_err(|e| ReplayError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Replays the history against `workflows`: the activation that would come next, or why
    /// the code cannot continue it.
    pub fn replay(&self, workflows: &Workflows) -> Result<Activation, ReplayError> {
        let Some(Event::WorkflowStarted { name, version, .. }) =
            self.events.first().map(|e| &e.event)
        else {
            return Err(ReplayError::NoStart);
        };
        let workflow =
            workflows
                .get(name, *version)
                .ok_or_else(|| ReplayError::UnknownWorkflow {
                    name: name.clone(),
                    version: *version,
                })?;
        let activation = activate(workflow.as_ref(), &self.instance_id, &self.events);
        match activation.outcome {
            Outcome::Parked(reason) => Err(ReplayError::Parked(reason)),
            _ => Ok(activation),
        }
    }
}
