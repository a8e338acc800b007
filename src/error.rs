//! Everything that can go wrong while generating, with where and what.

use std::io;
use std::path::PathBuf;

/// An error of the generator. Each names the file, and where in it when that is known.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec file cannot be read.
    #[error("{}: cannot read the file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is not well-formed JSON or YAML.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser found.
        message: String,
    },
    /// The file is JSON or YAML, but it does not say which OpenAPI version it is.
    #[error("{}: not an OpenAPI document: {reason}", path.display())]
    NotOpenApi {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The document does not follow the OpenAPI specification at some place.
    #[error("{}: {location}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// A JSON pointer, with line and column when known.
        location: String,
        /// What is wrong there.
        message: String,
    },
    /// The document uses something this version of the generator does not read yet.
    #[error("{}: {location}: {message}", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// A JSON pointer.
        location: String,
        /// What is not supported, and what to do.
        message: String,
    },
    /// A file of the generated crate cannot be written or read.
    #[error("{}: {source}", path.display())]
    Output {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The generator produced code that does not parse: a bug in the generator.
    #[error(
        "internal error: generated {file} does not parse ({message}); please report this with the spec"
    )]
    Internal {
        /// The generated file.
        file: String,
        /// The parser's message.
        message: String,
    },
}

impl Error {
    /// Whether the error is in the input (exit status 2) rather than in the environment or
    /// the generator (exit status 1).
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            Self::Read { .. }
                | Self::Syntax { .. }
                | Self::NotOpenApi { .. }
                | Self::Invalid { .. }
                | Self::Unsupported { .. }
        )
    }
}

/// The generator's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Escapes a key for a JSON pointer (RFC 6901).
pub(crate) fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}
