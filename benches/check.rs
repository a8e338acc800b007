//! How long the crates generated from large API descriptions take to `cargo check`, beside the
//! simplest alternative: a crate with the same dependencies and no code, which is what any
//! generated crate costs at least.
//!
//! ```text
//! cargo bench --bench check                     # the largest documents of ../shared/corpus,
//!                                               # and two selections of GitHub's
//! cargo bench --bench check -- SPEC... [--runs N] [--before CHECKOUT]
//! ```
//!
//! Dependencies are built once first; each measurement then re-checks only the generated crate
//! (its `lib.rs` touched), as after an edit or a regeneration.
//!
//! `--before CHECKOUT` compares with the generator of an earlier revision of this repository, in
//! the same run: `git worktree add --detach target/before REV`, then `--before target/before`.
//! That checkout's `codegen` is built (release) and generates every whole description again
//! against its own runtime, in a workspace of its own; the runs of the two crates of a description
//! alternate, so a machine that speeds up or slows down during the run weighs on both alike.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let mut args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let runs = take_option(&mut args, "--runs")
        .map(|r| r.parse().expect("--runs takes a number"))
        .unwrap_or(3);
    let before = take_option(&mut args, "--before")
        .map(|b| std::path::absolute(&b).unwrap_or_else(|e| panic!("--before {b}: {e}")));
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let corpus = root.join("../shared/corpus/openapi");
    let github = corpus.join("github-api.github.com.json");
    let cases: Vec<Case> = if args.is_empty() {
        let mut cases: Vec<Case> = [
            "github-api.github.com.json",
            "kubernetes-swagger.json",
            "twilio_api_v2010.json",
            "box-openapi.json",
            "slack_web_openapi_v2.json",
        ]
        .iter()
        .map(|f| Case::whole(corpus.join(f)))
        .collect();
        // What a service that calls part of GitHub generates: one tag, and five operations.
        cases.push(Case {
            spec: github.clone(),
            label: "github --tag repos".into(),
            flags: vec!["--tag".into(), "repos".into()],
        });
        cases.push(Case {
            spec: github,
            label: "github, 5 operations".into(),
            flags: [
                "repos/get",
                "repos/list-for-org",
                "issues/create",
                "pulls/get",
                "users/get-authenticated",
            ]
            .iter()
            .flat_map(|id| ["--operation".to_owned(), (*id).to_owned()])
            .collect(),
        });
        cases
    } else {
        args.iter().map(|a| Case::whole(PathBuf::from(a))).collect()
    };

    let now = Workspace::generate(
        root.join("target/bench-check"),
        Path::new(env!("CARGO_BIN_EXE_codegen")),
        &root.join("runtime"),
        &cases,
    );
    // The earlier generator has no selections to compare with: only whole descriptions.
    let earlier = before.map(|checkout| {
        eprintln!("building the codegen of {}...", checkout.display());
        let status = Command::new("cargo")
            .args(["build", "--release", "--quiet", "--bin", "codegen"])
            .current_dir(&checkout)
            .status()
            .expect("run cargo");
        assert!(
            status.success(),
            "building {}'s codegen failed",
            checkout.display()
        );
        let whole: Vec<Case> = cases
            .iter()
            .filter(|c| c.flags.is_empty())
            .cloned()
            .collect();
        Workspace::generate(
            root.join("target/bench-check-before"),
            &checkout.join("target/release/codegen"),
            &checkout.join("runtime"),
            &whole,
        )
    });
    now.build();
    if let Some(earlier) = &earlier {
        earlier.build();
    }

    println!("cargo check of one generated crate, dependencies built, {runs} runs (min / median)");
    let baseline = now.measure("baseline", runs);
    let blank = "";
    println!("{:<36} {:>9} {:>8} {:>8}", blank, "lines", "min", "median");
    println!(
        "{:<36} {:>9} {:>7.2}s {:>7.2}s",
        "no code, same dependencies",
        0,
        baseline.0.as_secs_f64(),
        baseline.1.as_secs_f64()
    );
    for (at, generated) in now.crates.iter().enumerate() {
        let earlier = earlier
            .as_ref()
            .and_then(|e| e.crates.iter().position(|c| c.label == generated.label))
            .map(|i| (earlier.as_ref().expect("an earlier workspace"), i));
        let mut times = Vec::new();
        let mut times_before = Vec::new();
        for _ in 0..runs {
            times.push(now.check(&now.crates[at].name));
            if let Some((workspace, i)) = earlier {
                times_before.push(workspace.check(&workspace.crates[i].name));
            }
        }
        let (min, median) = summary(times);
        if let Some((workspace, i)) = earlier {
            let (min_before, median_before) = summary(times_before);
            println!(
                "{:<36} {:>9} {:>7.2}s {:>7.2}s",
                format!("{}, before", generated.label),
                workspace.crates[i].lines,
                min_before.as_secs_f64(),
                median_before.as_secs_f64()
            );
        }
        println!(
            "{:<36} {:>9} {:>7.2}s {:>7.2}s",
            generated.label,
            generated.lines,
            min.as_secs_f64(),
            median.as_secs_f64()
        );
    }
}

/// Removes `--name VALUE` from `args` and returns the value.
fn take_option(args: &mut Vec<String>, name: &str) -> Option<String> {
    let at = args.iter().position(|a| a == name)?;
    let value = args
        .get(at + 1)
        .unwrap_or_else(|| panic!("{name} takes a value"))
        .clone();
    args.drain(at..at + 2);
    Some(value)
}

/// One crate to generate: a spec, what the table calls it, and the flags of `codegen gen`.
#[derive(Clone)]
struct Case {
    spec: PathBuf,
    label: String,
    flags: Vec<String>,
}

impl Case {
    /// The whole of `spec`, named after its file.
    fn whole(spec: PathBuf) -> Self {
        let label = spec
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        Self {
            spec,
            label,
            flags: Vec::new(),
        }
    }
}

/// A crate the benchmark generated.
struct Generated {
    /// Its package name.
    name: String,
    /// The case's label.
    label: String,
    /// Lines of Rust in its `src/`.
    lines: usize,
}

/// A Cargo workspace of crates generated by one `codegen` against one runtime, beside the
/// baseline crate.
struct Workspace {
    dir: PathBuf,
    crates: Vec<Generated>,
}

impl Workspace {
    /// Generates every case into `dir` with the `codegen` binary `codegen`.
    fn generate(dir: PathBuf, codegen: &Path, runtime: &Path, cases: &[Case]) -> Self {
        std::fs::create_dir_all(&dir).expect("create the benchmark's workspace");
        // The package name `codegen gen` gives each folder: words joined by single dashes.
        let names: Vec<String> = cases
            .iter()
            .map(|case| {
                let words: Vec<String> = case
                    .label
                    .to_lowercase()
                    .split(|c: char| !c.is_ascii_alphanumeric())
                    .filter(|w| !w.is_empty())
                    .map(str::to_owned)
                    .collect();
                format!("check-{}", words.join("-"))
            })
            .collect();
        let list = std::iter::once("baseline")
            .chain(names.iter().map(String::as_str))
            .map(|m| format!("{m:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        std::fs::write(
            dir.join("Cargo.toml"),
            format!("[workspace]\nmembers = [{list}]\nresolver = \"3\"\n"),
        )
        .expect("write the workspace");
        write_baseline(&dir.join("baseline"), runtime);
        let mut crates = Vec::new();
        for (case, name) in cases.iter().zip(names) {
            let out = dir.join(&name);
            let output = Command::new(codegen)
                .args(["gen", &case.spec.to_string_lossy(), "-o"])
                .arg(&out)
                .arg("--runtime-path")
                .arg(runtime)
                .args(&case.flags)
                .output()
                .expect("run codegen");
            let said = String::from_utf8_lossy(&output.stderr);
            assert!(
                output.status.success(),
                "{} gen {} failed:\n{said}",
                codegen.display(),
                case.spec.display()
            );
            // What it wrote and how to build it are not the benchmark's output; its notes are.
            for line in said.lines().filter(|l| l.starts_with("note:")) {
                eprintln!("{line}");
            }
            let lines = [
                "types.rs",
                "operations.rs",
                "client.rs",
                "lib.rs",
                "main.rs",
            ]
            .iter()
            .filter_map(|f| std::fs::read_to_string(out.join("src").join(f)).ok())
            .map(|t| t.lines().count())
            .sum::<usize>();
            crates.push(Generated {
                name,
                label: case.label.clone(),
                lines,
            });
        }
        Self { dir, crates }
    }

    /// Checks every crate once, building the dependencies.
    fn build(&self) {
        eprintln!(
            "checking {} once, dependencies included...",
            self.dir.display()
        );
        let status = Command::new("cargo")
            .args(["check", "--workspace", "--quiet"])
            .current_dir(&self.dir)
            .status()
            .expect("run cargo");
        assert!(
            status.success(),
            "cargo check of the generated crates in {} failed",
            self.dir.display()
        );
    }

    /// The min and median of `runs` re-checks of the crate `name`.
    fn measure(&self, name: &str, runs: usize) -> (Duration, Duration) {
        summary((0..runs).map(|_| self.check(name)).collect())
    }

    /// How long `cargo check` of the crate `name` takes after its `lib.rs` is touched.
    fn check(&self, name: &str) -> Duration {
        let lib = self.dir.join(name).join("src/lib.rs");
        let text = std::fs::read(&lib).expect("read lib.rs");
        std::fs::write(&lib, text).expect("touch lib.rs");
        let start = Instant::now();
        let status = Command::new("cargo")
            .args(["check", "--quiet", "-p", name])
            .current_dir(&self.dir)
            .status()
            .expect("run cargo");
        assert!(status.success(), "cargo check -p {name} failed");
        start.elapsed()
    }
}

/// The min and the median.
fn summary(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    (times[0], times[times.len() / 2])
}

/// A library with the dependencies every generated crate has, and no code.
fn write_baseline(dir: &Path, runtime: &Path) {
    std::fs::create_dir_all(dir.join("src")).expect("create the baseline crate");
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"baseline\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n[dependencies]\ncodegen-runtime = {{ path = {:?} }}\nserde = {{ version = \"1\", features = [\"derive\"] }}\nserde_json = \"1\"\nchrono = {{ version = \"0.4\", default-features = false, features = [\"serde\", \"std\"] }}\nuuid = {{ version = \"1\", features = [\"serde\"] }}\n",
            runtime.display().to_string()
        ),
    )
    .expect("write the baseline manifest");
    std::fs::write(dir.join("src/lib.rs"), "//! Nothing.\n").expect("write the baseline lib");
}
