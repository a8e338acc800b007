//! Chaos test of the distributed backend: the billing workflows of 200 users for 3 months on
//! PostgreSQL and Pulsar, set up as managed services are (TLS, a SCRAM password, a broker
//! token), with the same injected 5xx and timeouts as the SQLite chaos test, while worker
//! processes are SIGKILLed, the broker is killed and started again, and PostgreSQL is shut down
//! immediately and started again, several times each, at moments chosen by a seeded generator.
//!
//! Every workflow completes with one payment, invoice and email per user and month, no task
//! is dead, and the workers, never restarted but for the kills, say in their logs that the
//! backend went away and carry on by themselves.
//!
//! The test starts its own PostgreSQL and broker with the project's scripts, on ports of its
//! own, and stops them when it ends, also when it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use codegen_runtime::Client;
use codegen_runtime::backend::{Backend, BackendError};
use common::{MONTHS, Rng, USERS, Workers};

/// A PostgreSQL server and a Pulsar broker of the scripts, in a folder and on ports of their
/// own, stopped when dropped.
struct Services {
    root: PathBuf,
    env: Vec<(&'static str, String)>,
    started: Vec<&'static str>,
    _dir: Folder,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Services {
    /// Starts both; `keep` keeps their folder (data and logs) after the test.
    fn start(keep: bool) -> Result<Self, String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dir = Folder::new(keep);
        let env = vec![
            ("PG_PORT", free_port().to_string()),
            ("PG_DIR", dir.path().join("postgres").display().to_string()),
            ("PULSAR_PORT", free_port().to_string()),
            ("PULSAR_TLS_PORT", free_port().to_string()),
            ("PULSAR_WEB_PORT", free_port().to_string()),
            ("PULSAR_BOOKIE_PORT", free_port().to_string()),
            (
                "PULSAR_DIR",
                dir.path().join("pulsar").display().to_string(),
            ),
            // One copy of the broker's jars, where `scripts/pulsar.sh start` puts them.
            (
                "PULSAR_LIB",
                root.join("target/services/pulsar/lib")
                    .display()
                    .to_string(),
            ),
        ];
        let mut services = Self {
            root,
            env,
            started: Vec::new(),
            _dir: dir,
        };
        for service in ["postgres", "pulsar"] {
            services.run(service, "start")?;
            services.started.push(service);
        }
        Ok(services)
    }

    fn var(&self, name: &str) -> &str {
        &self.env.iter().find(|(n, _)| *n == name).unwrap().1
    }

    fn run(&self, service: &str, command: &str) -> Result<(), String> {
        let output = Command::new(self.root.join(format!("scripts/{service}.sh")))
            .arg(command)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .map_err(|e| format!("scripts/{service}.sh {command}: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "scripts/{service}.sh {command} failed:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// The backend URL, as production uses it: TLS checked, tokens and passwords in files.
    fn url(&self) -> String {
        let ca = self.root.join("target/services/tls/ca.crt");
        format!(
            "postgres://codegen:codegen@127.0.0.1:{}/codegen?sslmode=verify-full&sslrootcert={ca}&pulsar=pulsar+ssl://127.0.0.1:{}&pulsar_tls_trust_certs={ca}&pulsar_token_file={}/conf/token&pulsar_admin=http://127.0.0.1:{}&pool=4",
            self.var("PG_PORT"),
            self.var("PULSAR_TLS_PORT"),
            self.var("PULSAR_DIR"),
            self.var("PULSAR_WEB_PORT"),
            ca = ca.display(),
        )
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        for service in self.started.iter().rev() {
            let _ = self.run(service, "stop");
        }
    }
}

/// A folder of the test (the workers' logs, the services' data and logs): deleted at the end,
/// or kept.
enum Folder {
    Temporary(tempfile::TempDir),
    Kept(PathBuf),
}

impl Folder {
    /// A new temporary folder, kept (and its path printed) if `keep`.
    fn new(keep: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        if keep {
            let kept = dir.keep();
            println!("kept: {}", kept.display());
            Self::Kept(kept)
        } else {
            Self::Temporary(dir)
        }
    }

    fn path(&self) -> &Path {
        match self {
            Self::Temporary(dir) => dir.path(),
            Self::Kept(path) => path,
        }
    }
}

/// What the chaos does at one moment.
#[derive(Debug, Clone, Copy)]
enum Fault {
    KillWorkers,
    RestartPostgres,
    RestartBroker,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_month_is_billed_once_through_worker_kills_and_broker_and_database_restarts() {
    let test = "every_month_is_billed_once_through_worker_kills_and_broker_and_database_restarts";
    // The broker's jars, fetched once into the scripts' default folder.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let installed = Command::new(root.join("scripts/pulsar.sh"))
        .arg("install")
        .status()
        .is_ok_and(|s| s.success());
    // CODEGEN_CHAOS_KEEP_LOGS keeps the workers' logs and the services' folders for a look
    // afterwards.
    let keep = std::env::var_os("CODEGEN_CHAOS_KEEP_LOGS").is_some();
    let services = match Services::start(keep) {
        Ok(services) if installed => services,
        Ok(_) | Err(_) if std::env::var_os("CI").is_some() => {
            panic!(
                "{test}: the test services did not start (scripts/postgres.sh, scripts/pulsar.sh)"
            )
        }
        Ok(_) | Err(_) => {
            eprintln!(
                "skipped {test}: PostgreSQL or Pulsar could not be started by the scripts (they need Debian's postgresql, Java 17 and Maven)"
            );
            return;
        }
    };
    let url = services.url();
    let backend = match Backend::open(&url).await {
        Ok(backend) => Arc::new(backend),
        Err(BackendError::Invalid(message)) if message.contains("lacks") => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: built without the pulsar feature under CI: {message}"
            );
            eprintln!("skipped {test}: {message}");
            return;
        }
        Err(err) => panic!("{test}: the backend does not open: {err}"),
    };
    let client = Client::new(backend);
    let server = common::faulty_server().await;
    common::subscribe_all(&client).await;

    let logs = Folder::new(keep);
    let mut workers = Workers::start(&url, &server, 6_000, Some(logs.path()));
    let mut rng = Rng::seeded();
    // Each fault several times, in an order the seed gives.
    let mut plan = vec![
        Fault::KillWorkers,
        Fault::KillWorkers,
        Fault::KillWorkers,
        Fault::RestartPostgres,
        Fault::RestartPostgres,
        Fault::RestartBroker,
        Fault::RestartBroker,
    ];
    for i in (1..plan.len()).rev() {
        plan.swap(i, rng.below(i as u64 + 1) as usize);
    }
    // The faults start once billing has: they hit the months under way, not the start-up.
    let waiting = Instant::now();
    while server.ledger().payments.is_empty() {
        assert!(
            waiting.elapsed() < Duration::from_secs(120),
            "no payment within 120 s of the workers' start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    let mut kills = 0;
    for fault in &plan {
        tokio::time::sleep(Duration::from_millis(500 + rng.below(2_000))).await;
        let at = started.elapsed();
        match fault {
            Fault::KillWorkers => kills += workers.kill_random_half(&mut rng),
            Fault::RestartPostgres => services.run("postgres", "restart").unwrap(),
            Fault::RestartBroker => services.run("pulsar", "restart").unwrap(),
        }
        println!(
            "{at:.1?}: {fault:?} ({:.1?}); {} of {} payments made",
            started.elapsed() - at,
            server.ledger().payments.len(),
            USERS * MONTHS as usize
        );
    }
    println!("{kills} workers killed");

    if let Err(stuck) = common::try_all_completed(&client, Duration::from_secs(300)).await {
        // What the workers and the broker said last is what a stall is found from.
        for which in 0..=common::SERVICES.len() {
            let name = Workers::name(which);
            print_tail(&logs.path().join(format!("{name}.log")), 20, |_| true);
        }
        print_tail(
            &Path::new(services.var("PULSAR_DIR")).join("broker.log"),
            40,
            |line| line.contains(" WARN ") || line.contains(" ERROR "),
        );
        panic!("{stuck}");
    }
    let exited = workers.all_running();
    assert!(
        exited.is_empty(),
        "workers exited by themselves (they should wait for the backend): {exited:?}"
    );
    drop(workers);
    common::billed_once(&client, &server).await;

    // The workers saw the outages and said so.
    let (mut said, mut recovered) = (0, 0);
    for which in 0..=common::SERVICES.len() {
        let name = Workers::name(which);
        let log =
            std::fs::read_to_string(logs.path().join(format!("{name}.log"))).unwrap_or_default();
        said += usize::from(log.contains("backend unavailable; trying again"));
        recovered += usize::from(log.contains("backend available again"));
    }
    assert!(
        said > 0,
        "no worker logged that the backend was unavailable"
    );
    assert!(
        recovered > 0,
        "no worker logged that the backend was available again"
    );
    println!(
        "{said} of {} worker logs say the backend was unavailable",
        common::SERVICES.len() + 1
    );
}

/// Prints the last `lines` lines of `path` that `keep` keeps.
fn print_tail(path: &Path, lines: usize, keep: impl Fn(&str) -> bool) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let kept: Vec<&str> = text.lines().filter(|line| keep(line)).collect();
    println!("--- {} (last {lines} lines shown)", path.display());
    for line in &kept[kept.len().saturating_sub(lines)..] {
        println!("{line}");
    }
}
