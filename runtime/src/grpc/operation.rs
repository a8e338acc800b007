//! The contract a generated request struct implements for gRPC.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Task, TaskError};

/// Which side of a gRPC method sends a stream. Bidirectional methods are not tasks: a durable
/// task has one input and one output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcKind {
    /// One request message, one response message.
    Unary,
    /// One request message; the response messages are collected in order, and the task's
    /// output is their list.
    ServerStreaming,
    /// The request messages (a list) are sent in order as the stream; one response message.
    ClientStreaming,
}

/// How a generated request struct becomes a gRPC call. Implemented by generated code only.
pub trait GrpcOperation: Task + Serialize
where
    Self::Output: DeserializeOwned,
{
    /// `/<package>.<Service>/<Method>`.
    const PATH: &'static str;
    /// The full name of the request message.
    const INPUT: &'static str;
    /// The full name of the response message.
    const OUTPUT: &'static str;
    /// Which side sends a stream. For [`GrpcKind::ServerStreaming`], `Output` is read from the
    /// JSON array of the response messages.
    const KIND: GrpcKind = GrpcKind::Unary;

    /// The request as proto3 JSON: the message, or for [`GrpcKind::ClientStreaming`] an array
    /// of the messages in the order they are sent.
    fn message(&self) -> Result<serde_json::Value, TaskError>;
}
