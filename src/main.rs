//! The `codegen` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use codegen::emit::{Options, RuntimeDependency};

/// Generates Rust crates of durable tasks, HTTP and gRPC clients and service workers from
/// OpenAPI descriptions and protobuf services.
#[derive(Debug, Parser)]
#[command(name = "codegen", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a crate from an API description.
    ///
    /// Writes Cargo.toml, rustfmt.toml and src/ under DIR; other files there are left alone.
    Gen {
        /// The API description: an OpenAPI 3.x or Swagger 2.0 document (YAML or JSON), or a
        /// `.proto` file.
        spec: PathBuf,
        /// The folder of the crate to write.
        #[arg(short, long = "output", value_name = "DIR")]
        output: PathBuf,
        #[command(flatten)]
        crate_args: CrateArgs,
    },
    /// Check that a generated crate is what `gen` would write now.
    ///
    /// Exits with status 1 and names each file that differs or is missing; use it in CI to
    /// catch a crate that was not regenerated after its spec changed.
    Check {
        /// The API description: an OpenAPI 3.x or Swagger 2.0 document (YAML or JSON), or a
        /// `.proto` file.
        spec: PathBuf,
        /// The folder of the generated crate.
        dir: PathBuf,
        #[command(flatten)]
        crate_args: CrateArgs,
    },
}

/// Settings that shape the generated crate; `check` needs the same ones as `gen`.
#[derive(Debug, Args)]
struct CrateArgs {
    /// The package name of the crate [default: the name of the output folder].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Depend on codegen-runtime at this path (relative to the current directory) instead of by
    /// version.
    #[arg(long, value_name = "PATH", conflicts_with = "runtime_version")]
    runtime_path: Option<PathBuf>,
    /// The version requirement of codegen-runtime to depend on.
    #[arg(long, value_name = "VERSION", default_value = concat!("=", env!("CARGO_PKG_VERSION")))]
    runtime_version: String,
    /// A folder where the imports of a `.proto` file are looked up (repeat for more) [default:
    /// the file's folder]. The google/protobuf and google/api files need none.
    #[arg(short = 'I', long = "include", value_name = "DIR")]
    includes: Vec<PathBuf>,
    /// A folder whose files `$ref`s may read besides the spec's own folder and its subfolders
    /// (repeat for more). References that lead elsewhere, symlinks included, are refused.
    #[arg(long = "allow-ref-dir", value_name = "DIR")]
    allowed_ref_dirs: Vec<PathBuf>,
}

impl CrateArgs {
    fn options(&self, dir: &Path) -> anyhow::Result<Options> {
        let crate_name = match &self.name {
            Some(name) => name.clone(),
            None => {
                let absolute = std::path::absolute(dir)
                    .with_context(|| format!("cannot resolve {}", dir.display()))?;
                let folder = absolute
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .with_context(|| {
                        format!("{} has no folder name: pass --name", dir.display())
                    })?;
                package_name(&folder)
            }
        };
        validate_package_name(&crate_name)?;
        let runtime = match &self.runtime_path {
            Some(path) => RuntimeDependency::path_from(dir, path)?,
            None => RuntimeDependency::Version(self.runtime_version.clone()),
        };
        Ok(Options {
            crate_name,
            runtime,
            includes: self.includes.clone(),
            allowed_ref_dirs: self.allowed_ref_dirs.clone(),
        })
    }
}

/// A Cargo package name from a folder name: lower case, words joined by `-`.
fn package_name(folder: &str) -> String {
    let mut name = String::new();
    for c in folder.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c.to_ascii_lowercase());
        } else if !name.is_empty() && !name.ends_with('-') {
            name.push('-');
        }
    }
    name.trim_end_matches('-').to_owned()
}

fn validate_package_name(name: &str) -> anyhow::Result<()> {
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    anyhow::ensure!(
        valid,
        "`{name}` is not a valid package name: use ASCII letters, digits, `-` and `_`, starting with a letter (pass --name)"
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            let input = err
                .downcast_ref::<codegen::Error>()
                .is_none_or(codegen::Error::is_input_error);
            ExitCode::from(if input { 2 } else { 1 })
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Gen {
            spec,
            output,
            crate_args,
        } => {
            let options = crate_args.options(&output)?;
            let generated = codegen::generate(&spec, &options)?;
            for note in &generated.notes {
                eprintln!("note: {}: {note}", spec.display());
            }
            codegen::write(&generated, &output)?;
            eprintln!(
                "wrote crate `{}` ({} files) to {}",
                options.crate_name,
                generated.files.len(),
                output.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            spec,
            dir,
            crate_args,
        } => {
            let options = crate_args.options(&dir)?;
            let generated = codegen::generate(&spec, &options)?;
            let drift = codegen::check(&generated, &dir)?;
            if drift.is_empty() {
                eprintln!("{} is up to date with {}", dir.display(), spec.display());
                return Ok(ExitCode::SUCCESS);
            }
            for d in &drift {
                eprintln!("{d}");
            }
            eprintln!(
                "{} of {} generated files are stale: run `codegen gen {} -o {}` and commit the result",
                drift.len(),
                generated.files.len(),
                spec.display(),
                dir.display()
            );
            Ok(ExitCode::from(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_come_from_folder_names() {
        assert_eq!(package_name("Payments API"), "payments-api");
        assert_eq!(package_name("petstore"), "petstore");
        assert_eq!(package_name("__x__"), "x");
    }
}
