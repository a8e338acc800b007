//! `billing-demo run --console`: the console serves the demo's workflows during the run and
//! after it, at the address it prints.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Kills the demo when the test ends, failed or not.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.1 GET; the whole response.
fn get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn the_demo_serves_its_workflows_in_the_console_after_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_billing-demo"))
        .args(["run", "--users", "3", "--months", "2", "--month-ms", "300"])
        .args(["--error-rate", "0.2", "--console", "--console-minutes", "1"])
        .args(["--console-listen", &addr])
        .arg("--db")
        .arg(dir.path().join("billing.db"))
        .env_remove("CODEGEN_CONSOLE_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _demo = Killed(child);
    let (lines, seen) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut printed = Vec::new();
    while !printed
        .iter()
        .any(|l: &String| l.starts_with("the console stays up"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match seen.recv_timeout(left) {
            Ok(line) => printed.push(line),
            Err(_) => panic!("the demo did not finish its run in time: {printed:#?}"),
        }
    }
    assert!(
        printed
            .iter()
            .any(|l| l == &format!("console: http://{addr}/")),
        "the URL is printed: {printed:#?}"
    );
    assert!(
        printed.iter().any(|l| l.starts_with("token (generated")),
        "the token to act with is printed: {printed:#?}"
    );
    assert!(
        printed.iter().any(|l| l == "workflows completed:   3 of 3"),
        "{printed:#?}"
    );
    let page = get(&addr, "/instances");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    for user in 0..3 {
        assert!(page.contains(&format!("billing-user-{user}")), "{page}");
    }
    assert!(page.contains("completed"), "{page}");
    let instance = get(&addr, "/instance?id=billing-user-0");
    assert!(instance.starts_with("HTTP/1.1 200"), "{instance}");
    assert!(
        instance.contains("<svg"),
        "the timeline is drawn: {instance}"
    );
}
