//! Formatting generated Rust with rustfmt, so that `cargo fmt --check` passes on the crate.
//!
//! rustfmt is the only formatter whose output `cargo fmt --check` accepts, and it has no library
//! form on stable Rust, so it runs as a process: one per file, all at once. Its configuration is
//! passed explicitly, so no `rustfmt.toml` around the caller changes the output.

use std::io::Write;
use std::process::{Command, Stdio};
use std::thread;

use super::GeneratedFile;
use crate::Result;
use crate::error::Error;

/// The rustfmt settings of generated code; the same as the crate's own `rustfmt.toml`.
const CONFIG: &str = "edition=2024,style_edition=2024";

/// Formats every `.rs` file; other files are returned as they are.
pub(super) fn rustfmt_all(files: Vec<GeneratedFile>) -> Result<Vec<GeneratedFile>> {
    thread::scope(|scope| {
        let handles: Vec<_> = files
            .into_iter()
            .map(|file| {
                scope.spawn(move || {
                    if file.path.extension().is_some_and(|e| e == "rs") {
                        let contents = rustfmt(&file.path.to_string_lossy(), &file.contents)?;
                        Ok(GeneratedFile { contents, ..file })
                    } else {
                        Ok(file)
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(internal("?", "the formatting thread panicked".into())))
            })
            .collect()
    })
}

fn rustfmt(name: &str, source: &str) -> Result<String> {
    let program = std::env::var_os("RUSTFMT").unwrap_or_else(|| "rustfmt".into());
    let mut child = Command::new(&program)
        .args(["--emit", "stdout", "--quiet", "--edition", "2024", "--config", CONFIG])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| {
            internal(
                name,
                format!(
                    "cannot run `{}` ({err}); install it with `rustup component add rustfmt` or set RUSTFMT",
                    program.to_string_lossy()
                ),
            )
        })?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = source.to_owned();
    let writer = thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child
        .wait_with_output()
        .map_err(|err| internal(name, err.to_string()))?;
    let written = writer
        .join()
        .map_err(|_| internal(name, "writing to rustfmt panicked".into()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(internal(name, format!("rustfmt failed: {}", stderr.trim())));
    }
    written.map_err(|err| internal(name, format!("cannot write to rustfmt: {err}")))?;
    String::from_utf8(output.stdout).map_err(|err| internal(name, err.to_string()))
}

fn internal(file: &str, message: String) -> Error {
    Error::Internal {
        file: file.to_owned(),
        message,
    }
}
