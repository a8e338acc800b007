//! How long the crates generated from large API descriptions take to `cargo check`, beside the
//! simplest alternative: a crate with the same dependencies and no code, which is what any
//! generated crate costs at least.
//!
//! ```text
//! cargo bench --bench check                     # the largest documents of ../shared/corpus,
//!                                               # and two selections of GitHub's
//! cargo bench --bench check -- SPEC... [--runs N]
//! ```
//!
//! Dependencies are built once first; each measurement then re-checks only the generated crate
//! (its `lib.rs` touched), as after an edit or a regeneration.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let mut args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut runs = 3;
    if let Some(at) = args.iter().position(|a| a == "--runs") {
        runs = args
            .get(at + 1)
            .and_then(|r| r.parse().ok())
            .unwrap_or(runs);
        args.drain(at..(at + 2).min(args.len()));
    }
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
    let dir = root.join("target/bench-check");
    std::fs::create_dir_all(&dir).expect("create target/bench-check");
    let runtime = root.join("runtime");

    let mut members = vec!["baseline".to_owned()];
    let mut crates = Vec::new();
    for case in &cases {
        // The package name `codegen gen` gives the folder: words joined by single dashes.
        let words: Vec<String> = case
            .label
            .to_lowercase()
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect();
        let name = format!("check-{}", words.join("-"));
        let out = dir.join(&name);
        let status = Command::new(env!("CARGO_BIN_EXE_codegen"))
            .args(["gen", &case.spec.to_string_lossy(), "-o"])
            .arg(&out)
            .arg("--runtime-path")
            .arg(&runtime)
            .args(&case.flags)
            .status()
            .expect("run codegen");
        assert!(
            status.success(),
            "codegen gen {} failed",
            case.spec.display()
        );
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
        members.push(name.clone());
        crates.push((name, case.label.clone(), lines));
    }
    write_baseline(&dir.join("baseline"), &runtime);
    let list = members
        .iter()
        .map(|m| format!("{m:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        dir.join("Cargo.toml"),
        format!("[workspace]\nmembers = [{list}]\nresolver = \"3\"\n"),
    )
    .expect("write the workspace");

    eprintln!("building the dependencies once...");
    let status = Command::new("cargo")
        .args(["check", "--workspace", "--quiet"])
        .current_dir(&dir)
        .status()
        .expect("run cargo");
    assert!(
        status.success(),
        "cargo check of the generated crates failed"
    );

    println!("cargo check of one generated crate, dependencies built, {runs} runs (min / median)");
    let baseline = measure(&dir, "baseline", runs);
    println!(
        "{:<40} {:>9} lines {:>8.2} s {:>8.2} s",
        "no code, same dependencies (baseline)",
        0,
        baseline.0.as_secs_f64(),
        baseline.1.as_secs_f64()
    );
    for (name, label, lines) in &crates {
        let (min, median) = measure(&dir, name, runs);
        println!(
            "{:<40} {:>9} lines {:>8.2} s {:>8.2} s",
            label,
            lines,
            min.as_secs_f64(),
            median.as_secs_f64()
        );
    }
}

/// One crate to generate: a spec, what the table calls it, and the flags of `codegen gen`.
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

fn measure(dir: &Path, name: &str, runs: usize) -> (Duration, Duration) {
    let lib = dir.join(name).join("src/lib.rs");
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let text = std::fs::read(&lib).expect("read lib.rs");
            std::fs::write(&lib, text).expect("touch lib.rs");
            let start = Instant::now();
            let status = Command::new("cargo")
                .args(["check", "--quiet", "-p", name])
                .current_dir(dir)
                .status()
                .expect("run cargo");
            assert!(status.success(), "cargo check -p {name} failed");
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[0], times[times.len() / 2])
}
