//! Writing a generated crate, and comparing one on disk with what would be generated now.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::Generated;
use crate::Result;
use crate::error::Error;

/// Writes every file under `dir`, creating folders as needed. A file whose contents are already
/// right is not touched, so its modification time stays.
pub fn write(generated: &Generated, dir: &Path) -> Result<()> {
    for file in &generated.files {
        let path = dir.join(&file.path);
        if fs::read(&path).is_ok_and(|old| old == file.contents.as_bytes()) {
            continue;
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|source| Error::Output {
                path: parent.to_owned(),
                source,
            })?;
        }
        fs::write(&path, &file.contents).map_err(|source| Error::Output { path, source })?;
    }
    Ok(())
}

/// A generated file whose copy on disk is not what `gen` would write now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// The file is missing.
    Missing(PathBuf),
    /// The file differs; the first differing line (1-based) is given.
    Differs {
        /// The file.
        path: PathBuf,
        /// The first line that differs.
        line: usize,
    },
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing(path) => write!(f, "{}: missing", path.display()),
            Self::Differs { path, line } => write!(
                f,
                "{}:{line}: differs from what `codegen gen` writes",
                path.display()
            ),
        }
    }
}

/// The files under `dir` that are missing or differ from `generated`; empty when up to date.
pub fn check(generated: &Generated, dir: &Path) -> Result<Vec<Drift>> {
    let mut drift = Vec::new();
    for file in &generated.files {
        let path = dir.join(&file.path);
        match fs::read(&path) {
            Ok(old) if old == file.contents.as_bytes() => {}
            Ok(old) => {
                let old = String::from_utf8_lossy(&old);
                let line = old
                    .lines()
                    .zip(file.contents.lines())
                    .position(|(a, b)| a != b)
                    .unwrap_or_else(|| old.lines().count().min(file.contents.lines().count()))
                    + 1;
                drift.push(Drift::Differs { path, line });
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => drift.push(Drift::Missing(path)),
            Err(source) => return Err(Error::Output { path, source }),
        }
    }
    Ok(drift)
}
