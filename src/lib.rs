//! `codegen`: generates a Rust crate of durable tasks, an HTTP client and a service worker from
//! an OpenAPI description.
//!
//! The pipeline is `spec` (read and resolve) -> `ir` (one named, ordered model) -> `emit` (askama
//! templates, formatting, files). The same input gives the same bytes on every run.

pub mod console;
pub mod emit;
mod error;
pub mod flows;
pub mod ir;
pub mod proto;
pub mod recipe;
pub mod spec;

pub use emit::{Generated, check, generate, write};
pub use error::{Error, Result};
pub use recipe::Recipe;
pub use spec::ReadOptions;
