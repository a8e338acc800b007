//! Restate with its Rust SDK on the two workloads of the runtime benchmark (`benches/runtime.rs`),
//! against its HTTP server, printed in its format:
//!
//! ```text
//! cargo run --release --manifest-path runtime/benches/peers/restate/Cargo.toml -- \
//!     http://127.0.0.1:PORT http://127.0.0.1:ADMIN http://127.0.0.1:INGRESS
//! ```
//!
//! The benchmark starts a Restate server (single node, the defaults of its development profile:
//! its log written with fsync) and runs this program with the URL of its HTTP server (`GET
//! /ping/{n}` answered with `n`) and of the server's admin and ingress endpoints. The program
//! serves a Restate service on a port of loopback, registers it with the server, and measures,
//! through the ingress:
//! - durable task executions per second, as Restate fans out: 40 invocations of `fan_out`, each
//!   calling `step` 250 times and awaiting the calls together, each `step` one HTTP call in
//!   `ctx.run`; all started, then all awaited;
//! - the same, each of the 40 invocations making its 250 HTTP calls one after another in
//!   `ctx.run` (Restate asks that a `run` be awaited at once, so one invocation's steps do not
//!   overlap);
//! - the latency of an invocation of three sequential `ctx.run` HTTP calls, from the ingress
//!   request to its response (p50, p99), one at a time.

use std::time::{Duration, Instant};

use restate_sdk::hyper::HyperEndpoint;
use restate_sdk::prelude::Endpoint;

mod service;
use service::Bench;

/// The label the results are printed under.
const LABEL: &str = "Restate 1.7.12 + Rust SDK 0.13 (single node, log fsync on)";

/// Invocations of the fan-out workload and steps of each.
const FAN_OUT: (u64, u64) = (40, 250);

/// Three-step runs.
const RUNS: u64 = 300;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, admin, ingress] = args.as_slice() else {
        eprintln!("usage: restate-peer <benchmark server URL> <admin URL> <ingress URL>");
        std::process::exit(2);
    };
    let trim = |u: &String| u.trim_end_matches('/').to_owned();
    if let Err(err) = run(trim(url), trim(admin), trim(ingress)).await {
        eprintln!("restate peer failed: {err}");
        std::process::exit(1);
    }
}

async fn run(url: String, admin: String, ingress: String) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen on loopback: {e}"))?;
    let service = listener
        .local_addr()
        .map_err(|e| format!("cannot read the service's address: {e}"))?;
    let endpoint = HyperEndpoint::new(Endpoint::builder().bind(Bench::new(url)).build());
    tokio::spawn(serve(listener, endpoint));

    let client = reqwest::Client::new();
    ready(&client, &format!("{admin}/health")).await?;
    let registered = client
        .post(format!("{admin}/deployments"))
        .json(&serde_json::json!({ "uri": format!("http://{service}") }))
        .send()
        .await
        .map_err(|e| format!("registering the service: {e}"))?;
    if !registered.status().is_success() {
        return Err(format!(
            "registering the service: {}: {}",
            registered.status(),
            registered.text().await.unwrap_or_default()
        ));
    }
    // The ingress learns of the service shortly after the admin API took it.
    let call = |handler: &'static str, n: u64| {
        let client = client.clone();
        let url = format!("{ingress}/Bench/{handler}");
        async move {
            let response = client
                .post(&url)
                .json(&n)
                .send()
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            let status = response.status();
            let body = response.text().await.map_err(|e| format!("{url}: {e}"))?;
            if !status.is_success() {
                return Err(format!("{url}: {status}: {body}"));
            }
            body.trim()
                .parse::<u64>()
                .map_err(|e| format!("{url}: `{body}`: {e}"))
        }
    };
    let started = Instant::now();
    while let Err(err) = call("step", 0).await {
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!(
                "the service is not reachable through the ingress: {err}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    println!("{LABEL}");
    for (handler, what) in [
        ("fan_out", "tasks awaited together, a call each"),
        ("sequential", "tasks one after another, in one invocation"),
    ] {
        let (instances, steps) = FAN_OUT;
        let started = Instant::now();
        let calls: Vec<_> = (0..instances)
            .map(|_| tokio::spawn(call(handler, steps)))
            .collect();
        for done in calls {
            let done = done
                .await
                .map_err(|e| format!("a {handler} call failed: {e}"))??;
            if done != steps {
                return Err(format!("{handler} made {done} of {steps} steps"));
            }
        }
        let per_second = (instances * steps) as f64 / started.elapsed().as_secs_f64();
        println!(
            "  {:<56} {:>10.0}/s",
            format!("durable task executions ({instances} x {steps}, {what})"),
            per_second
        );
    }
    let mut latencies = Vec::with_capacity(RUNS as usize);
    for i in 0..RUNS {
        let started = Instant::now();
        let out = call("three_steps", i).await?;
        if out != i + 2 {
            return Err(format!("three_steps({i}) gave {out}"));
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let at = |p: f64| {
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[index].as_secs_f64() * 1e3
    };
    println!(
        "  {:<56} p50 {:>6.2} ms   p99 {:>6.2} ms",
        format!("three-step workflow, start to result ({RUNS} runs)"),
        at(0.50),
        at(0.99)
    );
    Ok(())
}

/// Serves the service over HTTP/2 on `listener`, with `TCP_NODELAY` on every connection.
async fn serve(listener: tokio::net::TcpListener, endpoint: HyperEndpoint) {
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let served = hyper::server::conn::http2::Builder::new(
                hyper_util::rt::TokioExecutor::new(),
            )
            .serve_connection(hyper_util::rt::TokioIo::new(stream), endpoint)
            .await;
            if let Err(err) = served {
                eprintln!("restate peer: a connection of the server failed: {err}");
            }
        });
    }
}

/// Waits until `url` answers 200, for a minute at most.
async fn ready(client: &reqwest::Client, url: &str) -> Result<(), String> {
    let started = Instant::now();
    loop {
        match client.get(url).send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) if started.elapsed() > Duration::from_secs(60) => {
                return Err(format!("{url} answers {}", response.status()));
            }
            Err(err) if started.elapsed() > Duration::from_secs(60) => {
                return Err(format!("{url}: {err}"));
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
