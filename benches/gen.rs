//! How fast `codegen gen` is on a large API description, beside the simplest alternative: only
//! parsing the document (`serde_json::Value`), which any generator must do at least.
//!
//! ```text
//! cargo bench --bench gen                       # GitHub's REST API, 13 MB, 1,223 operations
//! cargo bench --bench gen -- SPEC [RUNS]
//! ```
//!
//! It runs the release `codegen` binary as a user would, and reports wall time (min and median)
//! and the peak resident memory of the largest process involved (codegen or one of the rustfmt
//! processes it starts).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let spec = args
        .first()
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/corpus/openapi/github-api.github.com.json"));
    let runs: usize = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(5);
    if !spec.is_file() {
        eprintln!(
            "error: {} is not a file; pass the spec to measure: cargo bench --bench gen -- SPEC",
            spec.display()
        );
        std::process::exit(2);
    }
    let size = std::fs::metadata(&spec)
        .map(|m| m.len())
        .unwrap_or_default();
    let out = tempfile::tempdir().expect("temporary folder");
    println!(
        "codegen gen on {} ({:.1} MB), {runs} runs, release build",
        spec.display(),
        size as f64 / 1e6
    );

    let parse = measure(runs, || {
        let bytes = std::fs::read(&spec).expect("read spec");
        let value: serde_json::Value = serde_json::from_slice(&bytes).expect("the spec is JSON");
        std::hint::black_box(value);
    });
    let read = measure(runs, || {
        let options = codegen::ReadOptions {
            crate_name: "bench".into(),
            includes: Vec::new(),
            strict: false,
            allowed_ref_dirs: Vec::new(),
        };
        std::hint::black_box(codegen::spec::read(&spec, &options).expect("the spec reads"));
    });
    let generate = measure(runs, || gen_process(&spec, out.path()));
    let peak_kb = getrusage(UsageWho::RUSAGE_CHILDREN)
        .map(|u| u.max_rss())
        .unwrap_or(0);

    println!("{:<48} {:>9} {:>9}", "", "min", "median");
    report("parse the JSON only (serde_json::Value)", &parse);
    report("read into the IR (in process)", &read);
    report("`codegen gen` (whole command, rustfmt included)", &generate);
    println!(
        "peak memory of `codegen gen`: {:.0} MB (largest process)",
        peak_kb as f64 / 1024.0
    );
    let lines: usize = [
        "src/types.rs",
        "src/operations.rs",
        "src/client.rs",
        "src/lib.rs",
    ]
    .iter()
    .map(|f| {
        std::fs::read_to_string(out.path().join(f))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    })
    .sum();
    println!("generated: {lines} lines of Rust");
}

fn gen_process(spec: &Path, out: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_codegen"))
        .args([
            "gen",
            &spec.to_string_lossy(),
            "-o",
            &out.to_string_lossy(),
            "--name",
            "bench",
        ])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("codegen runs");
    assert!(status.success(), "codegen gen failed on {}", spec.display());
}

fn measure(runs: usize, mut f: impl FnMut()) -> Vec<Duration> {
    let mut times: Vec<Duration> = (0..runs.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times
}

fn report(what: &str, times: &[Duration]) {
    let median = times[times.len() / 2];
    println!(
        "{what:<48} {:>8.3}s {:>8.3}s",
        times[0].as_secs_f64(),
        median.as_secs_f64()
    );
}
