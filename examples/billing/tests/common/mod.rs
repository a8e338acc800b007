//! What the chaos tests share: the worker processes (stopped by a guard, also when a test
//! fails), the subscriptions, and the checks of the ledger.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use billing_demo::server::{DemoServer, Effect, Faults, Ledger};
use billing_demo::workflow::{self, Subscription};
use codegen_runtime::Client;
use codegen_runtime::backend::{Inspect, MessageQueue, StateStore, Status};

pub const USERS: usize = 200;
pub const MONTHS: u32 = 3;
pub const SERVICES: [&str; 4] = ["consumption", "payment", "invoice", "email"];

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The demo's services on a loopback port, failing as the chaos tests want: a fifth of the
/// calls answer 5xx, one in twenty hangs for 800 ms (past the workers' 300 ms timeout), and every
/// call takes 2 ms.
pub async fn faulty_server() -> DemoServer {
    let faults = Faults {
        error_rate: 0.2,
        timeout_rate: 0.05,
        hang: Duration::from_millis(800),
        latency: Duration::from_millis(2),
    };
    DemoServer::start(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), faults)
        .await
        .unwrap()
}

/// The worker processes: one per service, and the workflow worker last. Each is killed when
/// the guard is dropped. With a log folder, each process appends its log to `NAME.log` there.
pub struct Workers {
    pub children: Vec<Child>,
    backend: String,
    urls: Vec<String>,
    clock_origin: i64,
    month_ms: u64,
    logs: Option<PathBuf>,
}

impl Workers {
    /// Starts the workers on `backend`; a month of workflow time lasts `month_ms`.
    pub fn start(backend: &str, server: &DemoServer, month_ms: u64, logs: Option<&Path>) -> Self {
        let mut workers = Self {
            children: Vec::new(),
            backend: backend.to_owned(),
            urls: SERVICES.iter().map(|s| server.url(s)).collect(),
            clock_origin: now_ms(),
            month_ms,
            logs: logs.map(Path::to_path_buf),
        };
        for which in 0..=SERVICES.len() {
            let child = workers.spawn(which);
            workers.children.push(child);
        }
        workers
    }

    /// The name of a worker process.
    pub fn name(which: usize) -> &'static str {
        SERVICES.get(which).copied().unwrap_or("workflows")
    }

    fn spawn(&self, which: usize) -> Child {
        let mut command = Command::new(env!("CARGO_BIN_EXE_billing-demo"));
        match SERVICES.get(which) {
            Some(service) => command.args([
                "worker",
                "--service",
                service,
                "--timeout-ms",
                "300",
                "--base-url",
                &self.urls[which],
            ]),
            None => command.args([
                "workflows",
                "--month-ms",
                &self.month_ms.to_string(),
                "--clock-origin",
                &self.clock_origin.to_string(),
            ]),
        };
        command
            .arg("--backend")
            .arg(&self.backend)
            .stdout(Stdio::null());
        match &self.logs {
            Some(dir) => {
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(format!("{}.log", Self::name(which))))
                    .unwrap();
                command
                    .stderr(log)
                    .env("RUST_LOG", "warn,codegen_runtime=info");
            }
            None => {
                command.stderr(Stdio::null());
            }
        }
        command.spawn().expect("billing-demo starts")
    }

    /// SIGKILLs worker `which` and starts it again.
    pub fn kill_and_restart(&mut self, which: usize) {
        let child = &mut self.children[which];
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        self.children[which] = self.spawn(which);
    }

    /// SIGKILLs a random half of the workers (at least one) and starts them again; returns how
    /// many it killed.
    pub fn kill_random_half(&mut self, rng: &mut Rng) -> usize {
        let count = self.children.len();
        let first = rng.below(count as u64) as usize;
        let mut kills = 0;
        for w in 0..count {
            if w == first || rng.below(2) == 0 {
                self.kill_and_restart(w);
                kills += 1;
            }
        }
        kills
    }

    /// Whether every worker still runs (none exited by itself).
    pub fn all_running(&mut self) -> Vec<(&'static str, std::process::ExitStatus)> {
        self.children
            .iter_mut()
            .enumerate()
            .filter_map(|(w, c)| c.try_wait().unwrap().map(|status| (Self::name(w), status)))
            .collect()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A small deterministic generator, seeded from `CODEGEN_CHAOS_SEED` or the clock, printed.
pub struct Rng(u64);

impl Rng {
    pub fn seeded() -> Self {
        let seed = std::env::var("CODEGEN_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| now_ms() as u64);
        println!("chaos seed: {seed} (set CODEGEN_CHAOS_SEED to repeat)");
        Self(seed)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// Starts the billing workflow of every user.
pub async fn subscribe_all<B: StateStore + MessageQueue + Inspect + 'static>(client: &Client<B>) {
    for user in 0..USERS {
        let subscription = Subscription {
            user_id: format!("user-{user}"),
            email: format!("user-{user}@example.com"),
            months: Some(MONTHS),
            billed: 0,
        };
        client
            .start(
                workflow::NAME,
                Some(&format!("billing-user-{user}")),
                &subscription,
            )
            .await
            .unwrap();
    }
}

/// Waits until no workflow runs; every one must have completed. Backend errors while the
/// backend restarts are waited out.
pub async fn all_completed<B: StateStore + MessageQueue + Inspect + 'static>(
    client: &Client<B>,
    within: Duration,
) {
    if let Err(stuck) = try_all_completed(client, within).await {
        panic!("{stuck}");
    }
}

/// As [`all_completed`], but a stall is returned, for the caller to say more before it fails.
pub async fn try_all_completed<B: StateStore + MessageQueue + Inspect + 'static>(
    client: &Client<B>,
    within: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        let running = match client.list(Some(workflow::NAME), None, USERS * 2).await {
            Ok(instances) if instances.iter().all(|i| i.status != Status::Running) => {
                let unfinished: Vec<_> = instances
                    .iter()
                    .filter(|i| i.status != Status::Completed)
                    .map(|i| (&i.id, i.status, &i.error))
                    .collect();
                assert!(unfinished.is_empty(), "not completed: {unfinished:?}");
                return Ok(());
            }
            Ok(instances) => instances
                .iter()
                .filter(|i| i.status == Status::Running)
                .count()
                .to_string(),
            Err(err) => format!("? ({err})"),
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "stuck: {running} of {USERS} workflows still running"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn once_per_user_month(what: &str, book: &BTreeMap<String, Effect>) {
    let mut counts: BTreeMap<(&str, &str), u32> = BTreeMap::new();
    for effect in book.values() {
        *counts.entry((&effect.user_id, &effect.month)).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{what} made twice: {twice:?}");
    assert_eq!(
        counts.len(),
        USERS * MONTHS as usize,
        "{what}: one per user and month"
    );
}

/// Every user billed for every month, each payment, invoice and email made once, no dead task.
pub async fn billed_once<B: StateStore + MessageQueue + Inspect + 'static>(
    client: &Client<B>,
    server: &DemoServer,
) {
    for user in 0..USERS {
        let info = client
            .status(&format!("billing-user-{user}"))
            .await
            .unwrap();
        let billed: workflow::Billed = serde_json::from_value(info.output.unwrap()).unwrap();
        assert_eq!(
            (billed.months, billed.ended_by.as_str()),
            (MONTHS, "done"),
            "user-{user}"
        );
    }
    let Ledger {
        payments,
        invoices,
        emails,
        requests,
        injected_errors,
        injected_timeouts,
        ..
    } = server.ledger();
    once_per_user_month("payments", &payments);
    once_per_user_month("invoices", &invoices);
    once_per_user_month("emails", &emails);
    let dead = client.dead_tasks().await.unwrap();
    assert!(dead.is_empty(), "dead tasks: {dead:?}");
    println!(
        "{requests} requests; {injected_errors} 5xx and {injected_timeouts} timeouts injected"
    );
}
