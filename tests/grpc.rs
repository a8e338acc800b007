//! The crate generated from `fixtures/proto/greeter.proto` (committed as
//! `generated-example/greeter`) run by a durable worker: its HTTP-annotated methods against a
//! local HTTP server, its plain gRPC method against a local tonic server. Both fail at first (503,
//! UNAVAILABLE) and the worker retries until they answer. Its streaming methods against the same
//! tonic server: a server stream is collected whole (and retried whole when it breaks off), up to
//! the client's bound; a client stream sends every request. The bidirectional one is a note.

mod support;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use codegen_runtime::backend::sqlite::SqliteBackend;
use codegen_runtime::grpc::{GrpcClient, RawCodec};
use codegen_runtime::http::HttpClient;
use codegen_runtime::schema::Int64;
use codegen_runtime::worker::{
    Handlers, ServiceWorker, ServiceWorkerOptions, WorkflowWorker, WorkflowWorkerOptions,
};
use codegen_runtime::workflow::{WorkflowContext, WorkflowError, Workflows};
use codegen_runtime::{Client, RetryPolicy};
use futures_util::Stream;
use greeter::operations::{CreateGreeting, GetGreeting, GreetAll, SayHello, SayHellos};
use greeter::types::{Greeting, HelloReply, HelloRequest, Mood};
use prost_reflect::{DescriptorPool, DynamicMessage, Value};
use support::server::{Reply, Server};
use tokio::sync::{oneshot, watch};
use tonic::{Code, Status};

fn quick() -> RetryPolicy {
    RetryPolicy::default()
        .with_initial_delay(Duration::from_millis(10))
        .with_max_attempts(5)
}

/// Reads a greeting over HTTP/JSON, creates one, then says hello over gRPC.
async fn greet(ctx: WorkflowContext, name: String) -> Result<String, WorkflowError> {
    let read = ctx
        .call_with(
            &GetGreeting {
                name: format!("greetings/{name}"),
                language_code: Some("en".into()),
            },
            quick(),
        )
        .await?;
    let created = ctx
        .call_with(
            &CreateGreeting {
                body: Greeting {
                    name: Some(name.clone()),
                    text: read.text.clone(),
                    tags: Some(vec!["warm".into()]),
                    counts: None,
                    person: Some(name.clone()),
                    team: None,
                    urgent: Some(true),
                    signature: Some(vec![1, 2, 255].into()),
                    mood: Some(Mood::Happy),
                },
                request_id: Some("r-1".into()),
            },
            quick(),
        )
        .await?;
    let reply = ctx
        .call_with(
            &SayHello {
                request: HelloRequest {
                    name: created.text.map(|_| name.clone()),
                    count: Some(Int64(41)),
                    mood: Some(Mood::Grumpy),
                },
            },
            quick(),
        )
        .await?;
    Ok(format!(
        "{} / {} / {}",
        read.text.unwrap_or_default(),
        reply.message.unwrap_or_default(),
        reply.count.map(|c| c.0).unwrap_or_default()
    ))
}

#[tokio::test]
async fn a_worker_retries_503_and_unavailable_until_both_servers_answer() {
    let greeting =
        r#"{"name": "greetings/ada", "text": "Hello", "tags": ["warm"], "mood": "HAPPY"}"#;
    let http = Server::start(vec![
        Reply::new(503, "busy"),
        Reply::new(200, greeting),
        Reply::new(503, "busy"),
        Reply::new(200, greeting),
    ])
    .await;
    let grpc = GreeterServer::start(2).await;

    let mut workflows = Workflows::new();
    workflows.register("greet", 1, greet);
    let workers = Workers::start(
        workflows,
        &HttpClient::new(http.url()),
        &GrpcClient::new(grpc.url(), greeter::DESCRIPTOR),
    );
    let client = workers.client();

    let id = client
        .start("greet", Some("greet-1"), &"ada")
        .await
        .unwrap();
    let result: String = client.result(&id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(result, "Hello / Hello, ada / 42");

    let received = http.received();
    let targets: Vec<_> = received
        .iter()
        .map(|r| format!("{} {}", r.method, r.target))
        .collect();
    assert_eq!(
        targets,
        [
            "GET /v1/greetings/ada?languageCode=en",
            "GET /v1/greetings/ada?languageCode=en",
            "POST /v1/greetings?requestId=r-1",
            "POST /v1/greetings?requestId=r-1",
        ],
        "the path variable keeps its `/`; the other fields go in the query"
    );
    let body: serde_json::Value = serde_json::from_slice(&received[3].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "name": "ada", "text": "Hello", "tags": ["warm"], "person": "ada",
            "urgent": true, "signature": "AQL/", "mood": "HAPPY"
        }),
        "the body is the `greeting` field in the proto3 JSON mapping"
    );

    let calls = grpc.calls();
    assert_eq!(calls.len(), 3, "two UNAVAILABLE answers, then the reply");
    for call in &calls {
        assert_eq!(call.path, "/greeter.v1.Greeter/SayHello");
        assert_eq!(call.name, "ada");
        assert_eq!(call.count, 41);
        assert_eq!(call.mood, 2, "GRUMPY, sent as its number on the wire");
    }
}

/// A W3C `traceparent`: version, trace id, span id, flags.
fn is_traceparent(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() == 4
        && parts[0] == "00"
        && parts[1].len() == 32
        && parts[2].len() == 16
        && parts
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traced_calls_carry_their_attempts_traceparent_as_grpc_metadata_and_http_header() {
    // Spans are made (and exported to a collector that is not there: nothing is received).
    let traces =
        codegen_runtime::telemetry::trace::init_exporting_to("grpc-test", "http://127.0.0.1:9")
            .unwrap();
    let greeting =
        r#"{"name": "greetings/ada", "text": "Hello", "tags": ["warm"], "mood": "HAPPY"}"#;
    let http = Server::start(vec![Reply::new(200, greeting), Reply::new(200, greeting)]).await;
    let grpc = GreeterServer::start(1).await;
    let mut workflows = Workflows::new();
    workflows.register("greet", 1, greet);
    let workers = Workers::start(
        workflows,
        &HttpClient::new(http.url()),
        &GrpcClient::new(grpc.url(), greeter::DESCRIPTOR),
    );
    let client = workers.client();
    let id = client.start("greet", Some("traced"), &"ada").await.unwrap();
    let _: String = client.result(&id, Duration::from_secs(30)).await.unwrap();

    // One per attempt of SayHello: the refused one and the answered one, each its own span.
    let grpc_parents = grpc.traceparents();
    assert_eq!(grpc_parents.len(), 2, "{grpc_parents:?}");
    assert!(
        grpc_parents.iter().all(|p| is_traceparent(p)),
        "{grpc_parents:?}"
    );
    assert_ne!(
        grpc_parents[0], grpc_parents[1],
        "each attempt is its own span"
    );
    let http_parents: Vec<String> = http
        .received()
        .iter()
        .filter_map(|r| r.header("traceparent").map(str::to_owned))
        .collect();
    assert_eq!(http_parents.len(), 2, "{http_parents:?}");
    // The instance is one trace: every call names the same trace id.
    let trace_id = |p: &str| p.split('-').nth(1).unwrap_or_default().to_owned();
    let first = trace_id(&grpc_parents[0]);
    assert!(
        grpc_parents
            .iter()
            .chain(&http_parents)
            .all(|p| trace_id(p) == first),
        "{grpc_parents:?} {http_parents:?}"
    );
    drop(workers);
    tokio::task::spawn_blocking(move || drop(traces))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_permanent_grpc_status_fails_the_call_at_once() {
    let grpc = GreeterServer::start_failing(Code::InvalidArgument).await;
    let client = greeter::Client::new("http://127.0.0.1:9")
        .with_grpc(GrpcClient::new(grpc.url(), greeter::DESCRIPTOR));
    let request = SayHello {
        request: HelloRequest {
            name: Some("x".into()),
            count: None,
            mood: None,
        },
    };
    let err = client.say_hello(&request).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains("InvalidArgument"), "{err}");
    assert_eq!(grpc.calls().len(), 1, "no retry of a permanent failure");
}

/// Asks for three hellos, over a stream.
async fn hellos(ctx: WorkflowContext, name: String) -> Result<Vec<String>, WorkflowError> {
    let replies = ctx
        .call_with(
            &SayHellos {
                request: HelloRequest {
                    name: Some(name),
                    count: Some(Int64(3)),
                    mood: None,
                },
            },
            quick(),
        )
        .await?;
    Ok(replies
        .into_iter()
        .map(|r| {
            format!(
                "{} #{}",
                r.message.unwrap_or_default(),
                r.count.map(|c| c.0).unwrap_or_default()
            )
        })
        .collect())
}

#[tokio::test]
async fn a_server_stream_is_collected_whole_after_a_refused_and_a_broken_attempt() {
    let grpc = GreeterServer::start(0).await;
    grpc.script_streams([Plan::Refuse, Plan::BreakAfter(2), Plan::Complete]);
    let mut workflows = Workflows::new();
    workflows.register("hellos", 1, hellos);
    let workers = Workers::start(
        workflows,
        &HttpClient::new("http://127.0.0.1:9"),
        &GrpcClient::new(grpc.url(), greeter::DESCRIPTOR),
    );
    let client = workers.client();

    let id = client
        .start("hellos", Some("hellos-1"), &"ada")
        .await
        .unwrap();
    let result: Vec<String> = client.result(&id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        result,
        ["Hello, ada #1", "Hello, ada #2", "Hello, ada #3"],
        "every message once, in order: the broken attempt's two are not kept"
    );
    let calls = grpc.calls();
    assert_eq!(
        calls.len(),
        3,
        "UNAVAILABLE at once, UNAVAILABLE after two messages, then the whole stream"
    );
    for call in &calls {
        assert_eq!(call.path, "/greeter.v1.Greeter/SayHellos");
        assert_eq!((call.name.as_str(), call.count), ("ada", 3));
    }

    // What the worker saw on the broken attempt: a retryable error that says where it broke.
    grpc.script_streams([Plan::BreakAfter(2)]);
    let request = SayHellos {
        request: HelloRequest {
            name: Some("ada".into()),
            count: Some(Int64(3)),
            mood: None,
        },
    };
    let err = GrpcClient::new(grpc.url(), greeter::DESCRIPTOR)
        .attempt(&request)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        err.to_string()
            .contains("/greeter.v1.Greeter/SayHellos (after 2 message(s)) failed with Unavailable"),
        "{err}"
    );
}

#[tokio::test]
async fn a_server_stream_longer_than_the_bound_fails_permanently_and_names_the_bound() {
    let grpc = GreeterServer::start(0).await;
    let client = greeter::Client::new("http://127.0.0.1:9")
        .with_grpc(GrpcClient::new(grpc.url(), greeter::DESCRIPTOR).with_max_stream_messages(3));
    let ask = |count: i64| SayHellos {
        request: HelloRequest {
            name: Some("bo".into()),
            count: Some(Int64(count)),
            mood: None,
        },
    };

    let replies = client.say_hellos(&ask(3)).await.unwrap();
    assert_eq!(replies.len(), 3, "a stream as long as the bound is read");

    let err = client.say_hellos(&ask(5)).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    let text = err.to_string();
    for part in [
        "/greeter.v1.Greeter/SayHellos",
        "more than 3 messages",
        "GrpcClient::with_max_stream_messages",
        "--grpc-max-stream-messages",
        "GREETER_GRPC_MAX_STREAM_MESSAGES",
    ] {
        assert!(text.contains(part), "{part:?} missing from: {text}");
    }
    assert_eq!(grpc.calls().len(), 2, "the long stream is not retried");
}

#[tokio::test]
async fn a_client_stream_sends_every_request_and_returns_the_reply() {
    let grpc = GreeterServer::start(0).await;
    let client = greeter::Client::new("http://127.0.0.1:9")
        .with_grpc(GrpcClient::new(grpc.url(), greeter::DESCRIPTOR));
    let request = GreetAll {
        requests: ["ada", "bo", "cy"]
            .iter()
            .enumerate()
            .map(|(i, name)| HelloRequest {
                name: Some((*name).into()),
                count: Some(Int64(i as i64 + 1)),
                mood: Some(Mood::Happy),
            })
            .collect(),
    };
    let reply: HelloReply = client.greet_all(&request).await.unwrap();
    assert_eq!(reply.message.as_deref(), Some("Hello, ada, bo, cy"));
    assert_eq!(reply.count, Some(Int64(6)), "the sum of the counts sent");
    let calls = grpc.calls();
    let sent: Vec<_> = calls
        .iter()
        .map(|c| (c.path.as_str(), c.name.as_str(), c.count, c.mood))
        .collect();
    assert_eq!(
        sent,
        [
            ("/greeter.v1.Greeter/GreetAll", "ada", 1, 1),
            ("/greeter.v1.Greeter/GreetAll", "bo", 2, 1),
            ("/greeter.v1.Greeter/GreetAll", "cy", 3, 1),
        ],
        "one message per element, in order, on one call"
    );

    let empty = client
        .greet_all(&GreetAll { requests: vec![] })
        .await
        .unwrap();
    assert_eq!(
        empty.message.as_deref(),
        Some("Hello, "),
        "an empty stream is a call too"
    );
}

#[test]
fn a_bidirectional_method_is_a_note_and_no_task() {
    let options = support::options("greeter", &support::root().join("target/unused"));
    let generated = codegen::generate(
        &support::root().join("fixtures/proto/greeter.proto"),
        &options,
    )
    .unwrap();
    assert!(
        generated.notes.iter().any(|n| n
            == "skipped bidirectional streaming method greeter.v1.Greeter/Chat: a durable task has one input and one output, and the two streams of a bidirectional call interleave"),
        "{:?}",
        generated.notes
    );
    let operations = &generated
        .files
        .iter()
        .find(|f| f.path.ends_with("operations.rs"))
        .unwrap()
        .contents;
    assert!(operations.contains("pub struct SayHellos "), "{operations}");
    assert!(operations.contains("pub struct GreetAll "), "{operations}");
    assert!(!operations.contains("pub struct Chat "), "{operations}");
}

#[test]
fn a_streaming_method_with_an_http_rule_is_a_note_and_no_task() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("watch.proto");
    std::fs::write(
        &spec,
        r#"syntax = "proto3";
package watch.v1;
import "google/api/annotations.proto";
service Watcher {
  rpc Watch(Req) returns (stream Event) {
    option (google.api.http) = { get: "/v1/events" };
  }
  rpc Get(Req) returns (Event) {
    option (google.api.http) = { get: "/v1/event" };
  }
}
message Req { string name = 1; }
message Event { string name = 1; }
"#,
    )
    .unwrap();
    let options = support::options("watch", &dir.path().join("out"));
    let generated = codegen::generate(&spec, &options).unwrap();
    assert!(
        generated.notes.iter().any(|n| n.starts_with(
            "skipped server streaming method watch.v1.Watcher/Watch: it has a google.api.http rule"
        )),
        "{:?}",
        generated.notes
    );
    let operations = &generated
        .files
        .iter()
        .find(|f| f.path.ends_with("operations.rs"))
        .unwrap()
        .contents;
    assert!(operations.contains("pub struct Get "), "{operations}");
    assert!(!operations.contains("pub struct Watch "), "{operations}");
}

/// The service and workflow workers of one test on a fresh SQLite backend; they stop when this
/// is dropped, test failure or not.
struct Workers {
    backend: Arc<SqliteBackend>,
    stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl Workers {
    fn start(workflows: Workflows, http: &HttpClient, grpc: &GrpcClient) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(SqliteBackend::open(dir.path().join("state.db")).unwrap());
        let (stop, rx) = watch::channel(false);
        let mut handlers = Handlers::new();
        greeter::operations::register_handlers(&mut handlers, http);
        greeter::operations::register_grpc_handlers(&mut handlers, grpc);
        let service = ServiceWorker::new(
            backend.clone(),
            greeter::SERVICE,
            handlers,
            ServiceWorkerOptions::default(),
        );
        let rx2 = rx.clone();
        tokio::spawn(async move { service.run(rx2).await.unwrap() });
        let engine =
            WorkflowWorker::new(backend.clone(), workflows, WorkflowWorkerOptions::default());
        tokio::spawn(async move { engine.run(rx).await.unwrap() });
        Self {
            backend,
            stop,
            _dir: dir,
        }
    }

    fn client(&self) -> Client<SqliteBackend> {
        Client::new(self.backend.clone())
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// What the gRPC server received: one entry per call of a unary or server-streaming method,
/// one per message of a client stream.
#[derive(Debug, Clone)]
struct Call {
    path: String,
    name: String,
    count: i64,
    mood: i32,
}

/// What one call of the server-streaming method does.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// UNAVAILABLE before any message.
    Refuse,
    /// This many messages, then UNAVAILABLE.
    BreakAfter(usize),
    /// `count` messages, then OK.
    Complete,
}

/// A tonic server for `greeter.v1.Greeter` on 127.0.0.1: `SayHello` answers UNAVAILABLE for the
/// first calls, then a reply counting one up; `SayHellos` streams one reply per `count`, as
/// scripted; `GreetAll` greets every name it was sent. It stops when dropped.
struct GreeterServer {
    port: u16,
    state: Arc<State>,
    shutdown: Option<oneshot::Sender<()>>,
}

struct State {
    pool: DescriptorPool,
    unavailable: AtomicUsize,
    always: Option<Code>,
    streams: Mutex<VecDeque<Plan>>,
    calls: Mutex<Vec<Call>>,
    /// The `traceparent` metadata of every call that had one.
    traceparents: Mutex<Vec<String>>,
}

impl GreeterServer {
    async fn start(unavailable: usize) -> Self {
        Self::serve(unavailable, None).await
    }

    async fn start_failing(code: Code) -> Self {
        Self::serve(0, Some(code)).await
    }

    async fn serve(unavailable: usize, always: Option<Code>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            pool: DescriptorPool::decode(greeter::DESCRIPTOR).unwrap(),
            unavailable: AtomicUsize::new(unavailable),
            always,
            streams: Mutex::new(VecDeque::new()),
            calls: Mutex::new(Vec::new()),
            traceparents: Mutex::new(Vec::new()),
        });
        let service = GreeterService(state.clone());
        let incoming = futures_util::stream::unfold(listener, |listener| async move {
            let accepted = listener.accept().await.map(|(stream, _)| stream);
            Some((accepted, listener))
        });
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            port,
            state,
            shutdown: Some(shutdown),
        }
    }

    /// What the next calls of `SayHellos` do, in order; `Complete` once the script is done.
    fn script_streams(&self, script: impl IntoIterator<Item = Plan>) {
        self.state.streams.lock().unwrap().extend(script);
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    fn traceparents(&self) -> Vec<String> {
        self.state.traceparents.lock().unwrap().clone()
    }
}

impl Drop for GreeterServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

#[derive(Clone)]
struct GreeterService(Arc<State>);

impl tonic::server::NamedService for GreeterService {
    const NAME: &'static str = "greeter.v1.Greeter";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = T> + Send>>;

impl tower::Service<http::Request<tonic::body::Body>> for GreeterService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let state = self.0.clone();
        let path = request.uri().path().to_owned();
        if let Some(parent) = request.headers().get("traceparent") {
            let parent = String::from_utf8_lossy(parent.as_bytes()).into_owned();
            state.traceparents.lock().unwrap().push(parent);
        }
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec);
            let handler = Handler { state, path };
            Ok(match handler.path.as_str() {
                "/greeter.v1.Greeter/SayHello" => grpc.unary(handler, request).await,
                "/greeter.v1.Greeter/SayHellos" => grpc.server_streaming(handler, request).await,
                "/greeter.v1.Greeter/GreetAll" => grpc.client_streaming(handler, request).await,
                _ => Status::unimplemented(handler.path).into_http(),
            })
        })
    }
}

/// The handler of one call.
struct Handler {
    state: Arc<State>,
    path: String,
}

impl Handler {
    /// Reads a `HelloRequest` and records it.
    fn read(&self, bytes: Bytes) -> Result<Call, Status> {
        let input = self
            .state
            .pool
            .get_message_by_name("greeter.v1.HelloRequest")
            .unwrap();
        let message = DynamicMessage::decode(input, bytes)
            .map_err(|err| Status::invalid_argument(err.to_string()))?;
        let field = |name: &str| message.get_field_by_name(name).unwrap().into_owned();
        let call = Call {
            path: self.path.clone(),
            name: field("name").as_str().unwrap_or_default().to_owned(),
            count: field("count").as_i64().unwrap_or_default(),
            mood: field("mood").as_enum_number().unwrap_or_default(),
        };
        self.state.calls.lock().unwrap().push(call.clone());
        Ok(call)
    }

    fn reply(&self, message: String, count: i64) -> Bytes {
        let output = self
            .state
            .pool
            .get_message_by_name("greeter.v1.HelloReply")
            .unwrap();
        let mut reply = DynamicMessage::new(output);
        reply.set_field_by_name("message", Value::String(message));
        reply.set_field_by_name("count", Value::I64(count));
        Bytes::from(prost::Message::encode_to_vec(&reply))
    }
}

impl tonic::server::UnaryService<Bytes> for Handler {
    type Response = Bytes;
    type Future = BoxFuture<Result<tonic::Response<Bytes>, Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let handler = Handler {
            state: self.state.clone(),
            path: self.path.clone(),
        };
        Box::pin(async move {
            let call = handler.read(request.into_inner())?;
            if let Some(code) = handler.state.always {
                return Err(Status::new(code, "refused"));
            }
            let left = handler.state.unavailable.load(Ordering::SeqCst);
            if left > 0 {
                handler.state.unavailable.store(left - 1, Ordering::SeqCst);
                return Err(Status::unavailable("starting up"));
            }
            Ok(tonic::Response::new(
                handler.reply(format!("Hello, {}", call.name), call.count + 1),
            ))
        })
    }
}

impl tonic::server::ServerStreamingService<Bytes> for Handler {
    type Response = Bytes;
    type ResponseStream = BoxStream<Result<Bytes, Status>>;
    type Future = BoxFuture<Result<tonic::Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let handler = Handler {
            state: self.state.clone(),
            path: self.path.clone(),
        };
        Box::pin(async move {
            let call = handler.read(request.into_inner())?;
            let plan = handler
                .state
                .streams
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Plan::Complete);
            let count = usize::try_from(call.count).unwrap_or_default();
            let (sent, end) = match plan {
                Plan::Refuse => return Err(Status::unavailable("starting up")),
                Plan::BreakAfter(n) => (n.min(count), Some(Status::unavailable("lost a node"))),
                Plan::Complete => (count, None),
            };
            let mut items: Vec<Result<Bytes, Status>> = (1..=sent)
                .map(|i| Ok(handler.reply(format!("Hello, {}", call.name), i as i64)))
                .collect();
            items.extend(end.map(Err));
            let stream: Self::ResponseStream = Box::pin(futures_util::stream::iter(items));
            Ok(tonic::Response::new(stream))
        })
    }
}

impl tonic::server::ClientStreamingService<Bytes> for Handler {
    type Response = Bytes;
    type Future = BoxFuture<Result<tonic::Response<Bytes>, Status>>;

    fn call(&mut self, request: tonic::Request<tonic::Streaming<Bytes>>) -> Self::Future {
        let handler = Handler {
            state: self.state.clone(),
            path: self.path.clone(),
        };
        Box::pin(async move {
            let mut stream = request.into_inner();
            let mut names = Vec::new();
            let mut total = 0;
            while let Some(bytes) = stream.message().await? {
                let call = handler.read(bytes)?;
                names.push(call.name);
                total += call.count;
            }
            Ok(tonic::Response::new(
                handler.reply(format!("Hello, {}", names.join(", ")), total),
            ))
        })
    }
}
