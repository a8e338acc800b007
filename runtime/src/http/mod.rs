//! HTTP execution for generated clients: building requests, credentials, classifying responses,
//! retrying.

pub(crate) mod auth;
mod client;
pub(crate) mod decode;
pub(crate) mod operation;
pub(crate) mod request;

pub use auth::{Credential, KeyLocation, SchemeKind, Secret, SecurityScheme};
pub use client::{CallOptions, HttpClient};
pub use request::{File, FileParts, FileRef, Multipart};

// What generated code calls is public only through `crate::__private`.
pub(crate) use operation::HttpOperation;
pub(crate) use request::RequestParts;
