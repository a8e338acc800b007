//! The fuzzer for a bounded time: mutated corpus documents and fixtures must never make the
//! reader or the renderer panic, hang, grow memory without bound or read outside the spec's
//! folder (see `tests/fuzzer/mod.rs`; `cargo bench --bench fuzz` runs it for longer).
//!
//! `FUZZ_SEED` and `FUZZ_SECONDS` change the seed (1) and the time (40 s); `FUZZ_ONLY=N` runs
//! input N alone.

mod fuzzer;
mod support;

use std::time::Duration;

#[test]
fn mutated_specs_never_panic_hang_or_read_outside_their_folder() {
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let seconds = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    // Small documents only: tests run unoptimised, and the large ones take seconds each there.
    let seeds = fuzzer::seeds(&support::root(), &support::corpus(), 40_000);
    assert!(seeds.len() > 20, "{} seeds", seeds.len());
    let work = support::root().join("target/fuzz/test");
    let config = fuzzer::Config {
        seed,
        duration: Duration::from_secs(seconds),
        only: std::env::var("FUZZ_ONLY").ok().and_then(|s| s.parse().ok()),
        // Unoptimised code is about ten times slower than the release build's few seconds.
        timeout: Duration::from_secs(30),
        max_rss_kb: 2 << 20,
        render: true,
        work,
        progress: None,
    };
    let report = fuzzer::run(&config, &seeds);
    eprint!("fuzz (seed {seed}): {report}");
    assert!(report.failures.is_empty(), "{report}");
    if config.only.is_some() {
        return;
    }
    assert!(report.tried >= 50, "too few inputs: {report}");
    assert!(
        report.read > 0 && report.refused > 0,
        "the mutations should leave some documents readable and break others: {report}"
    );
}
