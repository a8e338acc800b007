//! Turning the body of a successful response into the operation's output.

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::TaskError;

/// A JSON body.
pub fn json<T: DeserializeOwned>(body: Bytes) -> Result<T, TaskError> {
    serde_json::from_slice(&body).map_err(|err| {
        TaskError::permanent(format!(
            "the response body does not match the API description: {err}"
        ))
    })
}

/// A text body.
pub fn text(body: Bytes) -> Result<String, TaskError> {
    String::from_utf8(body.to_vec())
        .map_err(|err| TaskError::permanent(format!("the response body is not UTF-8 text: {err}")))
}

/// A body kept as bytes.
pub fn bytes(body: Bytes) -> Result<Vec<u8>, TaskError> {
    Ok(body.to_vec())
}

/// A response whose body, if any, carries nothing the API describes.
pub fn empty(_body: Bytes) -> Result<(), TaskError> {
    Ok(())
}

/// A 2xx status the description does not list for the operation.
pub fn unexpected_status<T>(status: u16) -> Result<T, TaskError> {
    Err(TaskError::permanent(format!(
        "the API answered {status}, which its description does not list for this operation"
    )))
}
