//! The fuzzer of the spec readers for as long as asked, in release mode:
//!
//! ```text
//! cargo bench --bench fuzz -- --seconds 3600 --seed 7
//! cargo bench --bench fuzz -- --seed 7 --only 1234     # replay one input
//! ```
//!
//! Options: `--seconds N` (60), `--seed N` (1), `--only INDEX`, `--max-seed-bytes N` (2 MB: the
//! corpus documents up to that size are seeds), `--timeout SECONDS` (5), `--max-rss-mb N`
//! (2048), `--no-render`. It prints progress every 10 seconds, then the inputs tried, the rate,
//! the slowest input and every failure; failing inputs are saved under
//! `target/fuzz/failures/`. The exit status is 1 when something failed.

#[path = "../tests/fuzzer/mod.rs"]
mod fuzzer;

use std::path::PathBuf;
use std::time::Duration;

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let mut seconds = 60u64;
    let mut seed = 1u64;
    let mut only = None;
    let mut max_seed_bytes = 2_000_000u64;
    let mut timeout = 5u64;
    let mut max_rss_mb = 2048u64;
    let mut render = true;
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> u64 {
            let value = args.next().unwrap_or_default();
            value.parse().unwrap_or_else(|_| {
                eprintln!("error: {name} takes a number, not `{value}`");
                std::process::exit(2)
            })
        };
        match arg.as_str() {
            "--seconds" => seconds = number("--seconds"),
            "--seed" => seed = number("--seed"),
            "--only" => only = Some(number("--only")),
            "--max-seed-bytes" => max_seed_bytes = number("--max-seed-bytes"),
            "--timeout" => timeout = number("--timeout"),
            "--max-rss-mb" => max_rss_mb = number("--max-rss-mb"),
            "--no-render" => render = false,
            other => {
                eprintln!(
                    "error: unknown argument `{other}` (--seconds N, --seed N, --only INDEX, --max-seed-bytes N, --timeout SECONDS, --max-rss-mb N, --no-render)"
                );
                std::process::exit(2);
            }
        }
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let corpus = root.join("../shared/corpus");
    if !corpus.is_dir() {
        eprintln!(
            "error: the corpus is missing at {}: it is read from ../shared/corpus beside the repository",
            corpus.display()
        );
        std::process::exit(2);
    }
    let seeds = fuzzer::seeds(&root, &corpus, max_seed_bytes);
    let config = fuzzer::Config {
        seed,
        duration: Duration::from_secs(seconds),
        only,
        timeout: Duration::from_secs(timeout),
        max_rss_kb: max_rss_mb * 1024,
        render,
        work: root.join("target/fuzz/bench"),
        progress: Some(Duration::from_secs(10)),
    };
    println!(
        "fuzzing {} seeds (documents up to {max_seed_bytes} bytes), seed {seed}, {}",
        seeds.len(),
        match only {
            Some(index) => format!("input {index} only"),
            None => format!("{seconds} s"),
        }
    );
    let report = fuzzer::run(&config, &seeds);
    print!("{report}");
    if !report.failures.is_empty() {
        std::process::exit(1);
    }
}
