//! The `codegen` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use codegen::Recipe;
use codegen::emit::{Options, RuntimeDependency, Selection};

/// Generates Rust crates of durable tasks, HTTP and gRPC clients and service workers from
/// OpenAPI descriptions and protobuf services.
#[derive(Debug, Parser)]
#[command(
    name = "codegen",
    version,
    propagate_version = true,
    after_help = "Exit status: 0 success; 1 a stale crate (check) or a file that cannot be written; 2 a bad spec, a bad flag or a broken record."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a crate from an API description.
    ///
    /// Writes Cargo.toml, rustfmt.toml and src/ under DIR; other files there are left alone.
    /// The options are recorded in the crate's Cargo.toml ([package.metadata.codegen]), so
    /// `codegen gen` without a SPEC, in the crate's folder (or with -o DIR), regenerates it
    /// exactly; options given then replace the recorded ones.
    Gen {
        /// The API description: an OpenAPI 3.x or Swagger 2.0 document (YAML or JSON), or a
        /// `.proto` file [default: the one recorded in DIR/Cargo.toml].
        spec: Option<PathBuf>,
        /// The folder of the crate to write [default: with SPEC, a folder named after the spec
        /// file (after its title when the file is named openapi, swagger, api...) in the current
        /// directory; without SPEC, the current directory].
        #[arg(short, long = "output", value_name = "DIR")]
        output: Option<PathBuf>,
        #[command(flatten)]
        crate_args: CrateArgs,
    },
    /// Check that generated crates are what `gen` would write now.
    ///
    /// Each CRATE_DIR is the folder of a generated crate, checked with the options recorded in
    /// its Cargo.toml; without one, every generated crate of the Cargo workspace around the
    /// current directory is checked. `codegen check SPEC DIR` checks DIR against SPEC. Exits
    /// with status 1 and names each file that differs or is missing; use it in CI to catch a
    /// crate that was not regenerated after its spec changed.
    Check {
        /// Folders of generated crates (or SPEC DIR) [default: every generated crate of the
        /// workspace].
        #[arg(value_name = "CRATE_DIR")]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        crate_args: CrateArgs,
    },
    /// See and steer workflow instances: list, show, history, start, signal, cancel, resume,
    /// dead tasks and their retry; `serve` runs the web console.
    ///
    /// Works on any backend, named by --backend or CODEGEN_BACKEND. Read commands take --json.
    Flows(codegen::flows::FlowsArgs),
}

/// Settings that shape the generated crate. Given to `gen` with a SPEC, they are recorded in the
/// crate; given without a SPEC (or to `check`), they replace the recorded ones.
#[derive(Debug, Args)]
struct CrateArgs {
    /// The package name of the crate [default: the name of the output folder].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Depend on codegen-runtime at this path (relative to the current directory) instead of by
    /// version [default: a codegen built from a checkout depends on that checkout's runtime].
    #[arg(long, value_name = "PATH", conflicts_with = "runtime_version")]
    runtime_path: Option<PathBuf>,
    /// The version requirement of codegen-runtime to depend on [default: this codegen's version,
    /// `=X.Y.Z`, unless built from a checkout].
    #[arg(long, value_name = "VERSION")]
    runtime_version: Option<String>,
    /// A folder where the imports of a `.proto` file are looked up (repeat for more) [default:
    /// the file's folder]. The google/protobuf and google/api files need none.
    #[arg(short = 'I', long = "include", value_name = "DIR")]
    includes: Vec<PathBuf>,
    /// Fail on any operation or schema that cannot be read, instead of skipping it with a
    /// warning.
    #[arg(long)]
    strict: bool,
    /// A folder whose files `$ref`s may read besides the spec's own folder and its subfolders
    /// (repeat for more). References that lead elsewhere, symlinks included, are refused.
    #[arg(long = "allow-ref-dir", value_name = "DIR")]
    allowed_ref_dirs: Vec<PathBuf>,
    /// Generate only the operations with a tag matching this glob pattern (`repos`, `pet*`;
    /// for protobuf, the service's full name), and the types they use. Repeat for more;
    /// combines with --operation.
    #[arg(long = "tag", value_name = "PATTERN")]
    tags: Vec<String>,
    /// Generate only the operations whose id (operationId, or `Service.Method` for protobuf)
    /// matches this glob pattern, and the types they use. Repeat for more.
    #[arg(long = "operation", value_name = "PATTERN")]
    operations: Vec<String>,
    /// Also generate the schemas that no generated operation uses (a description's webhook
    /// payloads, say), which are left out by default.
    #[arg(long)]
    all_schemas: bool,
}

/// What to generate: the spec and the options, resolved from the flags and the record.
struct Job {
    spec: PathBuf,
    dir: PathBuf,
    options: Options,
    /// Whether the record gave the options (so the plain `codegen gen -o DIR` reproduces them).
    recorded: bool,
}

impl CrateArgs {
    fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.runtime_path.is_none()
            && self.runtime_version.is_none()
            && self.includes.is_empty()
            && !self.strict
            && self.allowed_ref_dirs.is_empty()
            && self.tags.is_empty()
            && self.operations.is_empty()
            && !self.all_schemas
    }

    fn selection(&self) -> Selection {
        Selection {
            tags: self.tags.clone(),
            operations: self.operations.clone(),
            all_schemas: self.all_schemas,
        }
    }

    /// Options for a new crate at `dir`, from the flags alone.
    fn options(&self, dir: &Path) -> anyhow::Result<Options> {
        let crate_name = match &self.name {
            Some(name) => name.clone(),
            None => folder_package_name(dir)?,
        };
        validate_package_name(&crate_name)?;
        let runtime = match self.runtime(dir)? {
            Some(runtime) => runtime,
            None => default_runtime(dir)?,
        };
        Ok(Options {
            crate_name,
            runtime,
            includes: self.includes.clone(),
            strict: self.strict,
            allowed_ref_dirs: self.allowed_ref_dirs.clone(),
            selection: self.selection(),
        })
    }

    /// The recorded options of the crate at `dir`, with the flags given replacing them.
    fn override_recorded(&self, dir: &Path, recipe: &Recipe) -> anyhow::Result<Options> {
        let mut options = recipe.options(dir);
        if let Some(name) = &self.name {
            validate_package_name(name)?;
            options.crate_name = name.clone();
        }
        if let Some(runtime) = self.runtime(dir)? {
            options.runtime = runtime;
        }
        if !self.includes.is_empty() {
            options.includes = self.includes.clone();
        }
        options.strict |= self.strict;
        if !self.allowed_ref_dirs.is_empty() {
            options.allowed_ref_dirs = self.allowed_ref_dirs.clone();
        }
        // New patterns replace the recorded ones whole; `--all-schemas` adds to the record.
        if !self.tags.is_empty() || !self.operations.is_empty() {
            options.selection.tags = self.tags.clone();
            options.selection.operations = self.operations.clone();
        }
        options.selection.all_schemas |= self.all_schemas;
        Ok(options)
    }

    fn runtime(&self, dir: &Path) -> anyhow::Result<Option<RuntimeDependency>> {
        Ok(match (&self.runtime_path, &self.runtime_version) {
            (Some(path), _) => Some(
                RuntimeDependency::path_from(dir, path)
                    .with_context(|| format!("cannot resolve {}", path.display()))?,
            ),
            (None, Some(version)) => Some(RuntimeDependency::Version(version.clone())),
            (None, None) => None,
        })
    }
}

/// The runtime a new crate depends on: this checkout's when codegen was built from one that is
/// still there (`cargo install --path .`), the published one of the same version otherwise.
fn default_runtime(dir: &Path) -> anyhow::Result<RuntimeDependency> {
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime");
    if checkout.join("Cargo.toml").is_file() {
        return RuntimeDependency::path_from(dir, &checkout)
            .with_context(|| format!("cannot resolve {}", checkout.display()));
    }
    Ok(RuntimeDependency::Version(
        concat!("=", env!("CARGO_PKG_VERSION")).to_owned(),
    ))
}

/// The package name of a crate written to `dir`: the folder's name.
fn folder_package_name(dir: &Path) -> anyhow::Result<String> {
    let absolute =
        std::path::absolute(dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    let folder = absolute
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .with_context(|| format!("{} has no folder name: pass --name", dir.display()))?;
    Ok(package_name(&folder))
}

/// File stems that say nothing about the API: a crate from `openapi.yaml` is named after the
/// document's title instead.
const GENERIC_STEMS: &[&str] = &[
    "api", "apis", "index", "main", "oas", "openapi", "schema", "service", "spec", "swagger",
];

/// The folder a crate generated from `spec` goes to when no `-o` is given: `--name`, else the
/// spec file's stem, else (for a generic stem) the document's title.
fn default_output(spec: &Path, name: Option<&str>) -> anyhow::Result<PathBuf> {
    if let Some(name) = name {
        return Ok(PathBuf::from(name));
    }
    let stem = spec
        .file_stem()
        .map(|s| package_name(&s.to_string_lossy()))
        .unwrap_or_default();
    let generic = stem.is_empty()
        || GENERIC_STEMS.contains(&stem.as_str())
        || stem.starts_with(|c: char| c.is_ascii_digit());
    if generic && spec.extension().is_none_or(|e| e != "proto") {
        let read = codegen::ReadOptions {
            crate_name: "api".into(),
            includes: Vec::new(),
            strict: false,
            allowed_ref_dirs: Vec::new(),
        };
        let title = package_name(&codegen::spec::read(spec, &read)?.title);
        if validate_package_name(&title).is_ok() {
            return Ok(PathBuf::from(title));
        }
    }
    if validate_package_name(&stem).is_err() {
        bail!(
            "cannot name a crate after {}: pass -o DIR (and --name NAME)",
            spec.display()
        );
    }
    Ok(PathBuf::from(stem))
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
        Command::Flows(args) => Ok(codegen::flows::run(args)),
        Command::Gen {
            spec,
            output,
            crate_args,
        } => {
            let job = match spec {
                Some(spec) => {
                    let dir = match output {
                        Some(dir) => dir,
                        None => default_output(&spec, crate_args.name.as_deref())?,
                    };
                    let options = crate_args.options(&dir)?;
                    Job {
                        spec,
                        dir,
                        options,
                        recorded: false,
                    }
                }
                None => recorded_job(output.unwrap_or_else(|| PathBuf::from(".")), &crate_args)?,
            };
            gen_crate(&job)
        }
        Command::Check { paths, crate_args } => {
            let jobs = check_jobs(&paths, &crate_args)?;
            let mut stale = 0;
            for job in &jobs {
                if !check_crate(job)? {
                    stale += 1;
                }
            }
            if jobs.len() > 1 {
                eprintln!(
                    "{} of {} generated crates are up to date",
                    jobs.len() - stale,
                    jobs.len()
                );
            }
            Ok(if stale == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// The job of regenerating the crate at `dir` from its record.
fn recorded_job(dir: PathBuf, crate_args: &CrateArgs) -> anyhow::Result<Job> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        bail!(
            "{} is not there: name the API description (`codegen gen SPEC`), or the folder of a generated crate with -o DIR",
            manifest.display()
        );
    }
    let Some(recipe) = Recipe::read(&dir)? else {
        bail!(
            "{} records no generation options ([{}]): name the API description, `codegen gen SPEC -o {}`",
            manifest.display(),
            codegen::recipe::TABLE,
            dir.display()
        );
    };
    let options = crate_args.override_recorded(&dir, &recipe)?;
    Ok(Job {
        spec: display_path(&recipe.spec_path(&dir)),
        dir,
        options,
        recorded: true,
    })
}

/// What `check` checks: the crates named, or every generated crate of the workspace.
fn check_jobs(paths: &[PathBuf], crate_args: &CrateArgs) -> anyhow::Result<Vec<Job>> {
    if let [spec, dir] = paths
        && spec.is_file()
    {
        // `codegen check SPEC DIR`: the recorded options, when there are any, with the spec and
        // the flags given replacing them.
        let options = match Recipe::read(dir) {
            Ok(Some(recipe)) => crate_args.override_recorded(dir, &recipe)?,
            // No record (an older crate), or no crate yet: the flags say it all.
            Ok(None) | Err(codegen::Error::Read { .. }) => crate_args.options(dir)?,
            // A record that cannot be read is not ignored.
            Err(err) => return Err(err.into()),
        };
        return Ok(vec![Job {
            spec: spec.clone(),
            dir: dir.clone(),
            options,
            recorded: false,
        }]);
    }
    let dirs = if paths.is_empty() {
        workspace_crates()?
    } else {
        paths.to_vec()
    };
    if dirs.len() > 1 && !crate_args.is_empty() {
        bail!("options given to `check` apply to one crate: name one CRATE_DIR");
    }
    dirs.into_iter()
        .map(|dir| {
            if dir.is_file() {
                bail!(
                    "{} is a file, not the folder of a generated crate: give `codegen check SPEC DIR`, or the crate's folder alone",
                    dir.display()
                );
            }
            recorded_job(dir, crate_args)
        })
        .collect()
}

/// The folders of the packages of the Cargo workspace around the current directory that
/// record how they were generated.
fn workspace_crates() -> anyhow::Result<Vec<PathBuf>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = std::process::Command::new(&cargo)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .with_context(|| {
            format!(
                "cannot run `{} metadata` to find the workspace's generated crates: name the crates' folders",
                cargo.to_string_lossy()
            )
        })?;
    if !output.status.success() {
        let message = String::from_utf8_lossy(&output.stderr);
        bail!(
            "not in a Cargo workspace ({}): name the folders of the generated crates, `codegen check DIR...`",
            message.trim().trim_start_matches("error: ")
        );
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
        .context("`cargo metadata` printed something that is not JSON")?;
    let mut dirs: Vec<PathBuf> = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|package| !package["metadata"]["codegen"].is_null())
        .filter_map(|package| package["manifest_path"].as_str())
        .filter_map(|manifest| Path::new(manifest).parent())
        .map(display_path)
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        bail!(
            "no package of this workspace was generated by codegen (none has [{}] in its Cargo.toml): name the crates' folders, `codegen check DIR...`",
            codegen::recipe::TABLE
        );
    }
    Ok(dirs)
}

/// `path` relative to the current directory when it is inside it, for messages.
fn display_path(path: &Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(&cwd).ok().map(Path::to_path_buf))
        .map(|p| {
            if p.as_os_str().is_empty() {
                ".".into()
            } else {
                p
            }
        })
        .unwrap_or_else(|| path.to_path_buf())
}

/// Generates and records the crate of `job`, with a recipe of the job's options.
fn generate(job: &Job) -> anyhow::Result<codegen::Generated> {
    let mut generated = codegen::generate(&job.spec, &job.options)?;
    generated.record(&Recipe::new(&job.spec, &job.dir, &job.options)?);
    Ok(generated)
}

fn gen_crate(job: &Job) -> anyhow::Result<ExitCode> {
    let manifest = job.dir.join("Cargo.toml");
    if let Ok(text) = std::fs::read_to_string(&manifest)
        && !text.starts_with("# Generated by codegen")
    {
        bail!(
            "{} was not written by codegen: it is left alone; write the crate to another folder with -o DIR",
            manifest.display()
        );
    }
    let generated = generate(job)?;
    print_notes(&job.spec, &generated);
    codegen::write(&generated, &job.dir)?;
    let name = &job.options.crate_name;
    eprintln!(
        "wrote crate `{name}` ({} files) from {} to {}{}",
        generated.files.len(),
        job.spec.display(),
        job.dir.display(),
        skipped_summary(&generated)
    );
    if !job.recorded {
        if let RuntimeDependency::Path(path) = &job.options.runtime {
            eprintln!("it depends on codegen-runtime at {path} (relative to the crate)");
        }
        let dir = job.dir.display();
        if let Some(workspace) = enclosing_workspace(&job.dir) {
            eprintln!(
                "note: {dir} is inside the Cargo workspace of {} without being one of its members: add it to `workspace.members` there (or to `workspace.exclude` to build it on its own) before building",
                workspace.display()
            );
        }
        eprintln!("build it:           cd {dir} && cargo build");
        eprintln!("run its worker:     cargo run --bin {name}-worker -- --help");
        eprintln!("keep it fresh (CI): codegen check {dir}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The manifest of the Cargo workspace that contains the crate at `dir` without listing it, when
/// there is one: cargo refuses to build such a crate until the workspace lists or excludes it.
fn enclosing_workspace(dir: &Path) -> Option<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(dir)
        .output()
        .ok()?;
    let message = String::from_utf8_lossy(&output.stderr);
    if output.status.success() || !message.contains("believes it's in a workspace") {
        return None;
    }
    message
        .lines()
        .find_map(|line| line.strip_prefix("workspace:"))
        .map(|path| PathBuf::from(path.trim()))
}

/// Checks one crate; whether it is up to date.
fn check_crate(job: &Job) -> anyhow::Result<bool> {
    let generated = generate(job)?;
    print_notes(&job.spec, &generated);
    let drift = codegen::check(&generated, &job.dir)?;
    if drift.is_empty() {
        eprintln!(
            "{} is up to date with {}",
            job.dir.display(),
            job.spec.display()
        );
        return Ok(true);
    }
    for d in &drift {
        eprintln!("{d}");
    }
    let command = if job.recorded && !job.dir.as_os_str().is_empty() {
        format!("codegen gen -o {}", job.dir.display())
    } else {
        regenerate_command(job)
    };
    eprintln!(
        "{} of {} generated files of {} are stale: run `{command}` and commit the result",
        drift.len(),
        generated.files.len(),
        job.dir.display(),
    );
    Ok(false)
}

/// The full `codegen gen` command that writes the crate of `job`.
fn regenerate_command(job: &Job) -> String {
    let dir = job.dir.display();
    let mut command = format!(
        "codegen gen {} -o {dir} --name {}",
        job.spec.display(),
        job.options.crate_name
    );
    match &job.options.runtime {
        RuntimeDependency::Path(path) => {
            command.push_str(&format!(" --runtime-path {}", job.dir.join(path).display()))
        }
        RuntimeDependency::Version(version) => {
            command.push_str(&format!(" --runtime-version '{version}'"))
        }
    }
    for include in &job.options.includes {
        command.push_str(&format!(" -I {}", include.display()));
    }
    for dir in &job.options.allowed_ref_dirs {
        command.push_str(&format!(" --allow-ref-dir {}", dir.display()));
    }
    if job.options.strict {
        command.push_str(" --strict");
    }
    command
}

/// Prints what the reader changed (`note:`) and what it skipped (`warning:`).
fn print_notes(spec: &Path, generated: &codegen::Generated) {
    for note in &generated.notes {
        eprintln!("note: {}: {note}", spec.display());
    }
    for warning in &generated.warnings {
        eprintln!("warning: {}: {warning}", spec.display());
    }
}

/// `, skipping 2 parts ...` for the summary line when parts were skipped.
fn skipped_summary(generated: &codegen::Generated) -> String {
    match generated.warnings.len() {
        0 => String::new(),
        n => format!(
            ", skipping {n} part{} of the description that cannot be read (see the warnings; --strict makes them errors)",
            if n == 1 { "" } else { "s" }
        ),
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
