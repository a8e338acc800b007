//! Telemetry as a deployment sees it: the generated `petstore-worker` binary in a process of its
//! own and a workflow worker in the test's process, one SQLite file between them, each serving
//! `--metrics-listen`. A real Prometheus server (Debian's `prometheus`, on 127.0.0.1) scrapes
//! both during the run, and the counters read back through its query API match the tasks the
//! workflows ran. Both processes export their spans over OTLP to a receiver in this test, which
//! decodes the protobuf: each workflow is one trace across the two processes, with the
//! `workflow` → `workflow.activation` → `task.attempt` structure, the called API receives each
//! attempt's `traceparent`, and no credential appears in any span.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use codegen_runtime::Client;
use codegen_runtime::backend::sqlite::{SqliteBackend, SqliteOptions};
use codegen_runtime::telemetry;
use codegen_runtime::worker::{WorkflowWorker, WorkflowWorkerOptions};
use codegen_runtime::workflow::Workflows;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use support::petstore::{PET, adopt};
use support::server::{Reply, Server};
use support::{Killed, free_port};
use tokio::sync::watch;

const INSTANCES: usize = 5;
/// The worker's bearer token: it must reach the API and nothing else.
const SECRET: &str = "TOKEN-SECRET";

/// Builds `petstore-worker`, with the `otel` feature.
fn worker_binary() -> PathBuf {
    support::petstore::build_worker("petstore")
}

/// A span as the receiver decoded it.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace: String,
    id: String,
    parent: String,
    attributes: Vec<(String, String)>,
}

impl Span {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// An OTLP/HTTP receiver on 127.0.0.1: every span posted to `/v1/traces`, and every body as
/// received (to search for secrets).
async fn otlp_receiver() -> (SocketAddr, Arc<Mutex<Vec<Span>>>, Arc<Mutex<Vec<u8>>>) {
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::StatusCode;

    type Shared = (Arc<Mutex<Vec<Span>>>, Arc<Mutex<Vec<u8>>>);
    async fn traces(State((spans, raw)): State<Shared>, body: Bytes) -> StatusCode {
        raw.lock().unwrap().extend_from_slice(&body);
        let Ok(request) = ExportTraceServiceRequest::decode(body) else {
            return StatusCode::BAD_REQUEST;
        };
        let mut spans = spans.lock().unwrap();
        for resource in request.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .map(|a| text(a.value.as_ref()))
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.push(Span {
                        service: service.clone(),
                        name: span.name.clone(),
                        trace: hex(&span.trace_id),
                        id: hex(&span.span_id),
                        parent: hex(&span.parent_span_id),
                        attributes: span
                            .attributes
                            .iter()
                            .map(|a| (a.key.clone(), text(a.value.as_ref())))
                            .collect(),
                    });
                }
            }
        }
        StatusCode::OK
    }
    let spans = Arc::new(Mutex::new(Vec::new()));
    let raw = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(traces))
        .with_state((spans.clone(), raw.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, spans, raw)
}

/// Starts Prometheus on 127.0.0.1, scraping `targets` (job name, address) every second.
fn start_prometheus(dir: &Path, port: u16, targets: &[(&str, SocketAddr)]) -> Killed {
    let mut config =
        String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
    for (job, addr) in targets {
        config.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: ['{addr}']\n"
        ));
    }
    let file = dir.join("prometheus.yml");
    std::fs::write(&file, config).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", file.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start prometheus ({e}): install Debian's `prometheus` package (scripts/test.sh does)")
        });
    Killed(child)
}

async fn get(url: &str) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
        Err(err) => (0, err.to_string()),
    }
}

/// The value of a PromQL expression that yields one sample; none while it yields none.
async fn query(prometheus: u16, expr: &str) -> Option<f64> {
    let url = format!(
        "http://127.0.0.1:{prometheus}/api/v1/query?query={}",
        percent_encode(expr)
    );
    let (status, body) = get(&url).await;
    assert_eq!(status, 200, "{expr}: {body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let result = json["data"]["result"].as_array()?;
    let value = result.first()?["value"][1].as_str()?;
    value.parse().ok()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Waits until `expr` is `expected`, as Prometheus has scraped it.
async fn until_scraped(prometheus: u16, expr: &str, expected: f64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = query(prometheus, expr).await;
        if found == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus reads {found:?} for `{expr}`, not {expected}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_workers_and_each_workflow_is_one_trace_across_processes() {
    let binary = tokio::task::spawn_blocking(worker_binary).await.unwrap();
    let (otlp, spans, raw) = otlp_receiver().await;
    let endpoint = format!("http://{otlp}");
    let traces = telemetry::trace::init_exporting_to("telemetry-test", &endpoint).unwrap();
    assert!(traces.exporting());

    // One attempt is refused with a 503 and retried.
    let mut script = vec![Reply::new(503, "busy")];
    script.extend((0..2 * INSTANCES).map(|_| Reply::new(200, PET)));
    let server = Server::start(script).await;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let backend = Arc::new(
        SqliteBackend::open_with(&db, SqliteOptions::default().with_process_wakeups(true)).unwrap(),
    );
    let service_metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let workflow_metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let worker = Killed(
        Command::new(&binary)
            .arg("--backend")
            .arg(format!("sqlite://{}", db.display()))
            .args(["--base-url", &server.url()])
            .args(["--metrics-listen", &service_metrics.to_string()])
            .env("PETSTORE_BEARER_TOKEN", SECRET)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("petstore-worker starts"),
    );

    let (stop, stopped) = watch::channel(false);
    let mut workflows = Workflows::new();
    workflows.register("adopt", 1, adopt);
    let options = WorkflowWorkerOptions {
        metrics_listen: Some(workflow_metrics),
        ..WorkflowWorkerOptions::default()
    };
    let engine = WorkflowWorker::new(backend.clone(), workflows, options);
    let engine = tokio::spawn(async move { engine.run(stopped).await });

    let prometheus_port = free_port();
    let _prometheus = start_prometheus(
        dir.path(),
        prometheus_port,
        &[("service", service_metrics), ("workflow", workflow_metrics)],
    );

    // Both listeners answer the probes once their workers took work.
    for addr in [service_metrics, workflow_metrics] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = get(&format!("http://{addr}/readyz")).await;
            if status == 200 {
                assert!(body.contains("ready"), "{body}");
                break;
            }
            assert!(Instant::now() < deadline, "{addr}/readyz: {status} {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(get(&format!("http://{addr}/healthz")).await.0, 200);
    }

    let client = Client::new(backend.clone());
    let mut ids = Vec::new();
    for n in 0..INSTANCES {
        ids.push(
            client
                .start("adopt", Some(&format!("adopt-{n}")), &format!("Rex {n}"))
                .await
                .unwrap(),
        );
    }
    for id in &ids {
        let result: String = client.result(id, Duration::from_secs(60)).await.unwrap();
        assert_eq!(result, "Rex #7");
    }

    // The metrics, as Prometheus scraped them from each process.
    let page = get(&format!("http://{service_metrics}/metrics")).await.1;
    for line in [
        "# TYPE codegen_task_attempts_total counter",
        "# TYPE codegen_task_attempt_duration_seconds histogram",
        "codegen_task_concurrency{service=\"petstore\"} 64",
        "codegen_queue_messages{topic=\"tasks/petstore\",state=\"ready\"} 0",
    ] {
        assert!(page.contains(line), "{line} is not in\n{page}");
    }
    assert!(
        !page.contains("adopt-0"),
        "an instance id is in a label:\n{page}"
    );
    let tasks = (2 * INSTANCES) as f64;
    until_scraped(prometheus_port, "up{job=\"service\"}", 1.0).await;
    until_scraped(prometheus_port, "up{job=\"workflow\"}", 1.0).await;
    until_scraped(
        prometheus_port,
        "sum(codegen_task_attempts_total{job=\"service\",service=\"petstore\",outcome=\"ok\"})",
        tasks,
    )
    .await;
    until_scraped(
        prometheus_port,
        "sum(codegen_task_attempts_total{job=\"service\",outcome=\"retryable_error\"})",
        1.0,
    )
    .await;
    until_scraped(
        prometheus_port,
        "sum(codegen_task_attempts_total{job=\"service\",task=\"createPet\"})",
        INSTANCES as f64 + 1.0,
    )
    .await;
    until_scraped(
        prometheus_port,
        "sum(codegen_http_responses_total{job=\"service\",status_class=\"2xx\"})",
        tasks,
    )
    .await;
    until_scraped(
        prometheus_port,
        "sum(codegen_http_responses_total{job=\"service\",status_class=\"5xx\"})",
        1.0,
    )
    .await;
    until_scraped(
        prometheus_port,
        "sum(codegen_task_attempt_duration_seconds_count{job=\"service\"})",
        tasks + 1.0,
    )
    .await;
    until_scraped(
        prometheus_port,
        "sum(codegen_workflow_instances_started_total{job=\"workflow\",workflow=\"adopt\"})",
        INSTANCES as f64,
    )
    .await;
    until_scraped(
        prometheus_port,
        "sum(codegen_workflow_instances_ended_total{job=\"workflow\",workflow=\"adopt\",status=\"completed\"})",
        INSTANCES as f64,
    )
    .await;
    // Started, after the first task, after the second: three replays each.
    until_scraped(
        prometheus_port,
        "sum(codegen_workflow_activations_total{job=\"workflow\"})",
        3.0 * INSTANCES as f64,
    )
    .await;
    assert_eq!(
        query(prometheus_port, "sum(codegen_task_dead_letters_total)").await,
        None,
        "no task died"
    );

    // Every query of the Grafana dashboard is valid PromQL over these metrics, and those of
    // the panels the run fed have data.
    for expr in dashboard_queries() {
        let concrete = expr
            .replace("$__rate_interval", "1m")
            .replace("$service", ".*")
            .replace("$workflow", ".*");
        let url = format!(
            "http://127.0.0.1:{prometheus_port}/api/v1/query?query={}",
            percent_encode(&concrete)
        );
        let (status, body) = get(&url).await;
        assert_eq!(status, 200, "the dashboard's `{expr}`: {body}");
    }
    for fed in [
        "codegen_task_attempts_total",
        "codegen_workflow_activations_total",
    ] {
        let expr = format!("sum({fed})");
        assert!(query(prometheus_port, &expr).await.is_some(), "{expr}");
    }

    // The worker stops on SIGTERM and sends its last spans; so does this process.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(worker.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut worker = worker;
    let deadline = Instant::now() + Duration::from_secs(30);
    while worker.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the worker did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = get(&format!("http://{service_metrics}/readyz")).await;
    assert_ne!(status, 200, "a stopped worker is not ready");
    stop.send(true).unwrap();
    engine.await.unwrap().unwrap();
    tokio::task::spawn_blocking(move || drop(traces))
        .await
        .unwrap();
    let mut log = String::new();
    use std::io::Read as _;
    if let Some(mut stderr) = worker.0.stderr.take() {
        let _ = stderr.read_to_string(&mut log);
    }
    assert!(
        !log.contains(SECRET),
        "the token is in the worker's log:\n{log}"
    );

    let spans = spans.lock().unwrap().clone();
    let of = |name: &str| -> Vec<&Span> { spans.iter().filter(|s| s.name == name).collect() };
    let roots = of("workflow");
    assert_eq!(roots.len(), INSTANCES, "workflow spans: {roots:#?}");
    let activations = of("workflow.activation");
    let attempts = of("task.attempt");
    assert_eq!(attempts.len(), 2 * INSTANCES + 1, "{attempts:#?}");
    let mut traces_seen: Vec<&str> = roots.iter().map(|s| s.trace.as_str()).collect();
    traces_seen.sort_unstable();
    traces_seen.dedup();
    assert_eq!(traces_seen.len(), INSTANCES, "one trace per workflow");
    for root in &roots {
        assert!(
            root.parent.is_empty(),
            "the workflow span is the root: {root:?}"
        );
        assert_eq!(root.service, "telemetry-test");
        let instance = root.attribute("instance").expect("the instance id");
        let mine: Vec<_> = activations
            .iter()
            .filter(|a| a.trace == root.trace)
            .collect();
        assert_eq!(mine.len(), 3, "activations of {instance}: {mine:#?}");
        for activation in &mine {
            assert_eq!(activation.parent, root.id, "{activation:?}");
            assert_eq!(activation.attribute("instance"), Some(instance));
        }
        let tasks: Vec<_> = attempts.iter().filter(|a| a.trace == root.trace).collect();
        assert!(
            (2..=3).contains(&tasks.len()),
            "attempts of {instance}: {tasks:#?}"
        );
        for attempt in tasks {
            // Served by the other process, a child of the activation that scheduled it.
            assert_eq!(attempt.service, "petstore-worker");
            assert!(
                mine.iter().any(|a| a.id == attempt.parent),
                "{attempt:?} is not a child of an activation of {instance}"
            );
            assert_eq!(attempt.attribute("service"), Some("petstore"));
            assert_eq!(attempt.attribute("instance"), Some(instance));
            let outcome = attempt.attribute("outcome").expect("an outcome");
            let status = attempt
                .attribute("http.response.status_code")
                .expect("the HTTP status");
            assert!(
                (outcome, status) == ("ok", "200")
                    || (outcome, status) == ("retryable_error", "503"),
                "{attempt:?}"
            );
        }
    }

    // The API received each attempt's span as its parent.
    let calls = server.received();
    assert_eq!(calls.len(), 2 * INSTANCES + 1);
    for call in &calls {
        let parent = call.header("traceparent").expect("a traceparent header");
        let parts: Vec<&str> = parent.split('-').collect();
        assert_eq!(parts.len(), 4, "{parent}");
        assert!(
            attempts
                .iter()
                .any(|a| a.trace == parts[1] && a.id == parts[2]),
            "{parent} names no attempt span"
        );
        assert_eq!(
            call.header("authorization"),
            Some(&*format!("Bearer {SECRET}"))
        );
    }

    // No credential in any span: not in an attribute, not anywhere in what was exported.
    for span in &spans {
        for (key, value) in &span.attributes {
            assert!(!value.contains(SECRET), "{key} of {span:?}");
        }
    }
    let raw = raw.lock().unwrap();
    assert!(
        !raw.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
        "the token was exported"
    );
}

/// The PromQL of every panel of docs/grafana-dashboard.json.
fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(support::root().join("docs/grafana-dashboard.json"))
        .expect("docs/grafana-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push(target["expr"].as_str().expect("an expression").to_owned());
        }
    }
    queries
}

#[test]
fn the_grafana_dashboard_shows_every_metric_and_only_those_the_workers_export() {
    let queries = dashboard_queries();
    assert!(queries.len() >= 16, "{queries:#?}");
    let mut used = Vec::new();
    for expr in &queries {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("codegen_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name)
                .to_owned();
            assert!(
                telemetry::names::ALL.contains(&base.as_str()),
                "the dashboard queries `{name}`, which no worker exports: {expr}"
            );
            used.push(base);
        }
    }
    for name in telemetry::names::ALL {
        assert!(
            used.iter().any(|u| u == name),
            "no panel of the dashboard shows `{name}`"
        );
    }
}
