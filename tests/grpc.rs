//! The crate generated from `fixtures/proto/greeter.proto` (committed as
//! `generated-example/greeter`) run by a durable worker: its HTTP-annotated methods against a
//! local HTTP server, its plain gRPC method against a local tonic server. Both fail at first (503,
//! UNAVAILABLE) and the worker retries until they answer.

mod support;

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
use greeter::operations::{CreateGreeting, GetGreeting, SayHello};
use greeter::types::{Greeting, HelloRequest, Mood};
use prost_reflect::{DescriptorPool, DynamicMessage, Value};
use support::server::{Reply, Server};
use tokio::sync::watch;
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

    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(SqliteBackend::open(dir.path().join("state.db")).unwrap());
    let (stop, rx) = watch::channel(false);
    let mut handlers = Handlers::new();
    greeter::operations::register_handlers(&mut handlers, &HttpClient::new(http.url()));
    greeter::operations::register_grpc_handlers(
        &mut handlers,
        &GrpcClient::new(grpc.url(), greeter::DESCRIPTOR),
    );
    let service = ServiceWorker::new(
        backend.clone(),
        greeter::SERVICE,
        handlers,
        ServiceWorkerOptions::default(),
    );
    let rx2 = rx.clone();
    tokio::spawn(async move { service.run(rx2).await.unwrap() });
    let mut workflows = Workflows::new();
    workflows.register("greet", 1, greet);
    let engine = WorkflowWorker::new(backend.clone(), workflows, WorkflowWorkerOptions::default());
    tokio::spawn(async move { engine.run(rx).await.unwrap() });
    let client = Client::new(backend);

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
    stop.send(true).unwrap();
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

/// What the gRPC server received in one call.
#[derive(Debug, Clone)]
struct Call {
    path: String,
    name: String,
    count: i64,
    mood: i32,
}

/// A tonic server for `greeter.v1.Greeter/SayHello` on 127.0.0.1: UNAVAILABLE for the first
/// calls, then a reply counting one up.
#[derive(Clone)]
struct GreeterServer {
    port: u16,
    state: Arc<State>,
}

struct State {
    pool: DescriptorPool,
    unavailable: AtomicUsize,
    always: Option<Code>,
    calls: Mutex<Vec<Call>>,
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
            calls: Mutex::new(Vec::new()),
        });
        let service = GreeterService(state.clone());
        let incoming = futures_util::stream::unfold(listener, |listener| async move {
            let accepted = listener.accept().await.map(|(stream, _)| stream);
            Some((accepted, listener))
        });
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await
                .unwrap();
        });
        Self { port, state }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }
}

#[derive(Clone)]
struct GreeterService(Arc<State>);

impl tonic::server::NamedService for GreeterService {
    const NAME: &'static str = "greeter.v1.Greeter";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

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
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec);
            Ok(grpc.unary(SayHelloHandler { state, path }, request).await)
        })
    }
}

struct SayHelloHandler {
    state: Arc<State>,
    path: String,
}

impl tonic::server::UnaryService<Bytes> for SayHelloHandler {
    type Response = Bytes;
    type Future = BoxFuture<Result<tonic::Response<Bytes>, Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let state = self.state.clone();
        let path = self.path.clone();
        Box::pin(async move {
            let input = state
                .pool
                .get_message_by_name("greeter.v1.HelloRequest")
                .unwrap();
            let message = DynamicMessage::decode(input, request.into_inner())
                .map_err(|err| Status::invalid_argument(err.to_string()))?;
            let field = |name: &str| message.get_field_by_name(name).unwrap().into_owned();
            let name = field("name").as_str().unwrap_or_default().to_owned();
            let count = field("count").as_i64().unwrap_or_default();
            let mood = field("mood").as_enum_number().unwrap_or_default();
            state.calls.lock().unwrap().push(Call {
                path,
                name: name.clone(),
                count,
                mood,
            });
            if let Some(code) = state.always {
                return Err(Status::new(code, "refused"));
            }
            let left = state.unavailable.load(Ordering::SeqCst);
            if left > 0 {
                state.unavailable.store(left - 1, Ordering::SeqCst);
                return Err(Status::unavailable("starting up"));
            }
            let output = state
                .pool
                .get_message_by_name("greeter.v1.HelloReply")
                .unwrap();
            let mut reply = DynamicMessage::new(output);
            reply.set_field_by_name("message", Value::String(format!("Hello, {name}")));
            reply.set_field_by_name("count", Value::I64(count + 1));
            Ok(tonic::Response::new(Bytes::from(
                prost::Message::encode_to_vec(&reply),
            )))
        })
    }
}
