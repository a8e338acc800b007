//! The generated `petstore-worker` binary, as a deployment runs it: configured by flags, it
//! runs the tasks of the petstore service, and on SIGTERM it lets the call under way finish and
//! records its result before it exits. The `wire-worker` binary takes the credentials of its
//! security schemes from the environment and never logs them.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use codegen_runtime::backend::sqlite::SqliteBackend;
use codegen_runtime::worker::{WorkflowWorker, WorkflowWorkerOptions};
use codegen_runtime::workflow::{Event, WorkflowContext, WorkflowError, Workflows};
use codegen_runtime::{Client, RetryPolicy};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::petstore::{PET, adopt, build_worker};
use support::server::{Reply, Server};
use tokio::sync::watch;

/// Builds the binary into the target directory the generated-crate tests share.
fn worker_binary() -> PathBuf {
    build_worker("petstore")
}

fn spawn(binary: &PathBuf, db: &str, url: &str) -> Child {
    Command::new(binary)
        .args([
            "--backend",
            &format!("sqlite://{db}"),
            "--base-url",
            url,
            "--grace",
            "10",
            "--concurrency",
            "4",
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("petstore-worker starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_binary_runs_tasks_and_finishes_the_call_under_way_on_sigterm() {
    let binary = tokio::task::spawn_blocking(worker_binary).await.unwrap();
    let help = Command::new(&binary).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("PETSTORE_BASE_URL") && help.contains("--concurrency"),
        "{help}"
    );

    // The POST takes 1.5 s: the worker is told to stop while it is under way.
    let server = Server::start(vec![
        Reply::new(201, PET).after(Duration::from_millis(1500)),
        Reply::new(200, PET),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db").to_string_lossy().into_owned();
    let backend = Arc::new(SqliteBackend::open(&db).unwrap());
    let (stop, rx) = watch::channel(false);
    let mut workflows = Workflows::new();
    workflows.register("adopt", 1, adopt);
    let engine = WorkflowWorker::new(backend.clone(), workflows, WorkflowWorkerOptions::default());
    tokio::spawn(async move { engine.run(rx).await.unwrap() });
    let client = Client::new(backend);
    let id = client.start("adopt", Some("bin-1"), &"Rex").await.unwrap();

    let worker = spawn(&binary, &db, &server.url());
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.received().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the worker never called the server"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kill(Pid::from_raw(worker.id() as i32), Signal::SIGTERM).unwrap();
    let output = tokio::task::spawn_blocking(move || worker.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit {:?}\n{log}", output.status);
    assert!(log.contains("stopping") && log.contains("stopped"), "{log}");

    // The call under way was finished and recorded; nothing was sent twice.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let history = client.history(&id).await.unwrap();
        if history
            .events
            .iter()
            .any(|e| matches!(e.event, Event::TaskCompleted { seq: 0, .. }))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the result of the call under way was not recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.received().len(), 1);

    // A new worker takes up the next task.
    let mut worker = spawn(&binary, &db, &server.url());
    assert_eq!(
        client
            .result::<String>(&id, Duration::from_secs(30))
            .await
            .unwrap(),
        "Rex #7"
    );
    kill(Pid::from_raw(worker.id() as i32), Signal::SIGTERM).unwrap();
    assert!(worker.wait().unwrap().success());
    stop.send(true).unwrap();
}

async fn secured(ctx: WorkflowContext, _input: ()) -> Result<(), WorkflowError> {
    let policy = RetryPolicy::default().with_initial_delay(Duration::from_millis(10));
    ctx.call_with(&wire::operations::SecureHeader {}, policy.clone())
        .await?;
    ctx.call_with(&wire::operations::SecureOauth {}, policy)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_binary_takes_credentials_from_the_environment_and_never_logs_them() {
    let binary = tokio::task::spawn_blocking(|| build_worker("wire"))
        .await
        .unwrap();
    let help = Command::new(&binary).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for var in [
        "WIRE_HEADERKEY_KEY",
        "WIRE_BASIC_USER",
        "WIRE_BASIC_PASSWORD",
        "WIRE_BEARER_TOKEN",
        "WIRE_OAUTH_CLIENT_ID",
        "WIRE_OAUTH_CLIENT_SECRET",
    ] {
        assert!(help.contains(var), "{var} is not in --help:\n{help}");
    }

    // Half a credential is refused at start, naming the variable and not the value.
    let half = Command::new(&binary)
        .args([
            "--backend",
            "sqlite:///nonexistent/dir/x.db",
            "--base-url",
            "http://127.0.0.1:1",
        ])
        .env("WIRE_OAUTH_CLIENT_ID", "client-HALF")
        .env_remove("WIRE_OAUTH_CLIENT_SECRET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&half.stderr);
    assert_eq!(half.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("WIRE_OAUTH_CLIENT_SECRET"), "{stderr}");
    assert!(!stderr.contains("client-HALF"), "{stderr}");

    let tokens = Server::start(vec![Reply::new(
        200,
        r#"{"access_token":"TOKEN-SECRET","expires_in":3600}"#,
    )])
    .await;
    let api = Server::start(vec![Reply::new(204, ""), Reply::new(204, "")]).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db").to_string_lossy().into_owned();
    let backend = Arc::new(SqliteBackend::open(&db).unwrap());
    let (stop, rx) = watch::channel(false);
    let mut workflows = Workflows::new();
    workflows.register("secured", 1, secured);
    let engine = WorkflowWorker::new(backend.clone(), workflows, WorkflowWorkerOptions::default());
    tokio::spawn(async move { engine.run(rx).await.unwrap() });
    let client = Client::new(backend);
    let id = client.start("secured", Some("sec-1"), &()).await.unwrap();

    let worker = Command::new(&binary)
        .args([
            "--backend",
            &format!("sqlite://{db}"),
            "--base-url",
            &api.url(),
        ])
        .env("RUST_LOG", "trace")
        .env("WIRE_HEADERKEY_KEY", "KEY-SECRET")
        .env("WIRE_OAUTH_CLIENT_ID", "wire-app")
        .env("WIRE_OAUTH_CLIENT_SECRET", "CLIENT-SECRET")
        .env("WIRE_OAUTH_TOKEN_URL", format!("{}/token", tokens.url()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wire-worker starts");
    let finished = client.result::<()>(&id, Duration::from_secs(30)).await;
    kill(Pid::from_raw(worker.id() as i32), Signal::SIGTERM).unwrap();
    let output = tokio::task::spawn_blocking(move || worker.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    finished.unwrap_or_else(|e| panic!("{e}\n{log}"));
    let calls = api.received();
    assert_eq!(calls[0].header("X-API-Key"), Some("KEY-SECRET"));
    assert_eq!(
        calls[1].header("Authorization"),
        Some("Bearer TOKEN-SECRET")
    );
    assert_eq!(tokens.received().len(), 1);
    assert!(log.contains("headerKey") && log.contains("oauth"), "{log}");
    for secret in ["KEY-SECRET", "CLIENT-SECRET", "TOKEN-SECRET"] {
        assert!(
            !log.contains(secret),
            "`{secret}` in the worker's log:\n{log}"
        );
    }
    stop.send(true).unwrap();
}

/// Runs `command` with `env` to its end (killed after 60 s) and returns whether it succeeded and
/// everything it printed.
fn printed(mut command: Command, env: &[(&str, &str)]) -> (bool, String) {
    let child = command
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the program starts");
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
    let (sent, received) = std::sync::mpsc::channel();
    // Read by another thread, so a full pipe cannot hold the program up.
    std::thread::spawn(move || sent.send(child.wait_with_output()));
    let Ok(output) = received.recv_timeout(Duration::from_secs(60)) else {
        let _ = kill(pid, Signal::SIGKILL);
        panic!("{command:?} did not end within 60 s");
    };
    let output = output.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// A backend URL with passwords, a broker token and an API token in the environment: neither `--help`, nor the
/// log, nor the error of a worker or of `codegen flows` that cannot reach the backend shows
/// them.
#[test]
fn secrets_in_the_environment_reach_no_help_log_or_error() {
    const SECRETS: [&str; 4] = [
        "pg-S3cret",
        "query-S3cret",
        "bearer-S3cret",
        "pulsar-S3cret",
    ];
    let env = [
        (
            "CODEGEN_BACKEND",
            "postgres://app:pg-S3cret@127.0.0.1:1/flows?password=query-S3cret&pulsar=pulsar://127.0.0.1:1&pulsar_token_env=BROKER_TOKEN",
        ),
        ("BROKER_TOKEN", "pulsar-S3cret"),
        ("PETSTORE_BEARER_TOKEN", "bearer-S3cret"),
        ("RUST_LOG", "debug"),
    ];
    let binary = worker_binary();
    let check = |what: &str, text: &str| {
        for secret in SECRETS {
            assert!(!text.contains(secret), "`{secret}` in {what}:\n{text}");
        }
    };

    let mut help = Command::new(&binary);
    help.arg("--help");
    let (ok, text) = printed(help, &env);
    assert!(ok && text.contains("CODEGEN_BACKEND"), "{text}");
    check("the worker's --help", &text);

    let mut worker = Command::new(&binary);
    worker.args(["--base-url", "http://127.0.0.1:1"]);
    let (ok, text) = printed(worker, &env);
    assert!(!ok, "the worker cannot reach its backend:\n{text}");
    assert!(!text.trim().is_empty(), "the worker says why it stopped");
    check("the worker's log and error", &text);

    for args in [&["flows", "--help"][..], &["flows", "list"][..]] {
        let mut flows = Command::new(env!("CARGO_BIN_EXE_codegen"));
        flows.args(args);
        let (_, text) = printed(flows, &env);
        assert!(!text.trim().is_empty(), "codegen {args:?} prints nothing");
        check(&format!("`codegen {}`", args.join(" ")), &text);
    }
}
