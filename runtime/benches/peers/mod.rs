//! The peers the runtime benchmark measures beside the runtime, on the same workloads against
//! the same HTTP server: each a program in a workspace of its own in a folder here, built and
//! run by `cargo run`, printing its figures in the benchmark's format.
//!
//! - `duroxide/`: duroxide 0.1.32 with its SQLite provider (its `sqlx` links another SQLite than
//!   the runtime's `rusqlite`; the build needs OpenSSL's headers, `libssl-dev`);
//! - `restate/`: Restate 1.7.12 with its Rust SDK 0.13. The server ships in an npm package,
//!   which the benchmark installs into the target directory (`npm install`, once) and starts on
//!   loopback ports of its own, with a fresh data folder, for the run.
//!
//! A peer that cannot be built, installed or run is reported in a line and the benchmark goes
//! on.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The label of the duroxide peer's results, as `duroxide/` prints it.
pub(crate) const DUROXIDE: &str = "duroxide 0.1.32 (SQLite provider), its documented tuning";

/// The label of the Restate peer's results, as `restate/` prints it.
pub(crate) const RESTATE: &str = "Restate 1.7.12 + Rust SDK 0.13 (single node, log fsync on)";

/// The version of Restate's server package.
const RESTATE_VERSION: &str = "1.7.12";

/// duroxide on the workloads against the server at `url`.
pub(crate) fn duroxide(url: &str) {
    run_peer("duroxide", &[url]);
}

/// Restate on the workloads against the server at `url`: its server installed if need be and
/// started for the run, then the peer program.
pub(crate) fn restate(url: &str) {
    let server = match restate_server() {
        Ok(server) => server,
        Err(err) => {
            println!("Restate peer not measured: {err}");
            return;
        }
    };
    let data = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(err) => {
            println!("Restate peer not measured: no folder for its data ({err})");
            return;
        }
    };
    let [fabric, ingress, admin] = free_ports();
    let log = data.path().join("server.log");
    let spawned = std::fs::File::create(&log).and_then(|out| {
        Command::new(&server)
            .arg("--no-logo")
            .env("RESTATE_BASE_DIR", data.path().join("restate"))
            .env("RESTATE_BIND_IP", "127.0.0.1")
            .env("RESTATE_LISTEN_MODE", "tcp")
            .env("RESTATE_BIND_PORT", fabric.to_string())
            .env("RESTATE_INGRESS__BIND_PORT", ingress.to_string())
            .env("RESTATE_ADMIN__BIND_PORT", admin.to_string())
            // Nothing but loopback: no usage reports.
            .env("RESTATE_DISABLE_TELEMETRY", "true")
            .env("RESTATE_LOG_FILTER", "warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
    });
    let _server = match spawned {
        Ok(child) => PeerProcess(child),
        Err(err) => {
            println!(
                "Restate peer not measured: {} could not be started ({err})",
                server.display()
            );
            return;
        }
    };
    let admin = format!("http://127.0.0.1:{admin}");
    let ingress = format!("http://127.0.0.1:{ingress}");
    if !run_peer("restate", &[url, &admin, &ingress]) {
        let mut text = String::new();
        let _ = std::fs::File::open(&log).and_then(|mut f| f.read_to_string(&mut text));
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        eprintln!("the Restate server's log ended with:");
        for line in tail.into_iter().rev() {
            eprintln!("  {line}");
        }
    }
}

/// Restate's server binary, installed from its npm package into the target directory when it
/// is not there yet.
fn restate_server() -> Result<PathBuf, String> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        other => return Err(format!("its server is not packaged for {other}")),
    };
    if std::env::consts::OS != "linux" {
        return Err("the benchmark starts its Linux server only".to_owned());
    }
    let dir = target_dir().join("peers/restate-server");
    let binary = dir.join(format!(
        "node_modules/@restatedev/restate-server-linux-{arch}/bin/restate-server"
    ));
    if binary.exists() {
        return Ok(binary);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    eprintln!(
        "installing restate-server {RESTATE_VERSION} from npm into {}...",
        dir.display()
    );
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&dir)
        .arg(format!("@restatedev/restate-server@{RESTATE_VERSION}"))
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("npm could not be run ({e}): install Node.js and npm"))?;
    if !status.success() || !binary.exists() {
        return Err(format!(
            "`npm install @restatedev/restate-server@{RESTATE_VERSION}` ended with {status}"
        ));
    }
    Ok(binary)
}

/// Three free ports of loopback.
fn free_ports() -> [u16; 3] {
    let listeners: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port of loopback"))
        .collect();
    let port = |i: usize| listeners[i].local_addr().expect("a bound port").port();
    [port(0), port(1), port(2)]
}

/// The target directory of this build.
fn target_dir() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir.join("../target"))
}

/// Builds and runs the peer program in the folder `name` with `args`, printing its output line
/// by line; whether it succeeded. A failure is reported in a line (its errors are on stderr).
fn run_peer(name: &str, args: &[&str]) -> bool {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let spawned = Command::new(cargo)
        .args(["run", "--release", "--quiet", "--manifest-path"])
        .arg(manifest_dir.join(format!("benches/peers/{name}/Cargo.toml")))
        .arg("--target-dir")
        .arg(target_dir().join("peers"))
        .arg("--")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn();
    let mut peer = match spawned {
        Ok(child) => PeerProcess(child),
        Err(err) => {
            println!("{name} peer not measured: cargo could not be run ({err})");
            return false;
        }
    };
    if let Some(stdout) = peer.0.stdout.take() {
        for line in std::io::BufReader::new(stdout).lines() {
            match line {
                Ok(line) => println!("{line}"),
                Err(_) => break,
            }
        }
    }
    match peer.0.wait() {
        Ok(status) if status.success() => true,
        Ok(status) => {
            println!(
                "{name} peer not measured: `cargo run` of benches/peers/{name} ended with {status}"
            );
            false
        }
        Err(err) => {
            println!("{name} peer not measured: waiting for it failed ({err})");
            false
        }
    }
}

/// A peer's process (`cargo run`, which becomes the program, or a server), killed when dropped,
/// on a panic too; Ctrl-C reaches it with the benchmark, in the same process group.
struct PeerProcess(Child);

impl Drop for PeerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
