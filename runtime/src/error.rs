//! The error a task reports: retryable or permanent.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Whether a failed task may succeed if it is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A transient failure: connection refused, timeout, 408, 429, 5xx. Try again later.
    Retryable,
    /// The request itself is wrong (most 4xx) or cannot be sent: trying again cannot help.
    Permanent,
}

/// Why a task failed, as the workflow and the operator see it.
///
/// It is serializable because it is recorded in workflow histories and dead-letter lists. It
/// carries the HTTP status and response body when there was a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskError {
    kind: ErrorKind,
    message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "millis")]
    retry_after: Option<Duration>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    timed_out: bool,
}

impl TaskError {
    /// A transient failure that may succeed when tried again.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Retryable, message)
    }

    /// A failure that will not go away by trying again.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Permanent, message)
    }

    /// An attempt that took too long: retryable, and counted apart in the metrics.
    pub fn timed_out(message: impl Into<String>) -> Self {
        Self {
            timed_out: true,
            ..Self::retryable(message)
        }
    }

    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            status: None,
            body: None,
            retry_after: None,
            timed_out: false,
        }
    }

    /// Whether the attempt failed by taking too long.
    pub fn is_timeout(&self) -> bool {
        self.timed_out
    }

    /// Records the HTTP status and the response body that caused the error.
    pub fn with_response(mut self, status: u16, body: impl Into<String>) -> Self {
        self.status = Some(status);
        self.body = Some(body.into());
        self
    }

    /// Records how long the server asked the client to wait (`Retry-After`).
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// Whether the failure is transient.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// `true` when trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Retryable
    }

    /// What went wrong, in words.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status of the response, if there was one.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The body of the response, if there was one.
    pub fn body(&self) -> Option<&str> {
        self.body.as_deref()
    }

    /// The body of the response read as the JSON type `T`: the error type the description gives
    /// for the status (see the operation's documentation). `None` without a body or when it
    /// does not match.
    pub fn body_as<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_str(self.body.as_deref()?).ok()
    }

    /// The delay the server asked for before the next attempt.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ErrorKind::Retryable => "retryable",
            ErrorKind::Permanent => "permanent",
        };
        write!(f, "{kind} error: {}", self.message)?;
        if let Some(body) = self.body.as_deref().filter(|b| !b.is_empty()) {
            const LIMIT: usize = 512;
            match body.char_indices().nth(LIMIT) {
                Some((cut, _)) => write!(f, ": {}…", &body[..cut])?,
                None => write!(f, ": {body}")?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for TaskError {}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json_with_every_detail() {
        let err = TaskError::retryable("503 Service Unavailable")
            .with_response(503, "try later")
            .with_retry_after(Duration::from_secs(2));
        let json = serde_json::to_string(&err).unwrap();
        assert_eq!(serde_json::from_str::<TaskError>(&json).unwrap(), err);
        assert!(json.contains("\"retry_after\":2000"), "{json}");
    }

    #[test]
    fn display_names_the_kind_and_cuts_long_bodies() {
        let body = "x".repeat(2000);
        let shown = TaskError::permanent("400 Bad Request")
            .with_response(400, body)
            .to_string();
        assert!(shown.starts_with("permanent error: 400 Bad Request: xxx"));
        assert!(shown.chars().count() < 600, "{}", shown.len());
    }
}
