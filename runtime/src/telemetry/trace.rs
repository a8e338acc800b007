//! Traces: one per workflow instance, across every process that serves it.
//!
//! The spans are `tracing` spans at the `debug` level, so they cost nothing unless a layer
//! wants them:
//! - `workflow` (the root, or a child of the client's or the parent workflow's span): when an
//!   instance starts. Its context is kept in the instance's `WorkflowStarted` event.
//! - `workflow.activation`: each replay, a child of `workflow`, in whichever process replays.
//! - `task.attempt`: each attempt of a task, a child of the activation that scheduled it (the
//!   task message carries its context). Its HTTP call sends it as the `traceparent` header,
//!   and a gRPC call as metadata.
//!
//! Context crosses processes as a W3C `traceparent` string inside the messages. Built without
//! the `otel` feature, no context is made and none is sent.
//!
//! No span or attribute holds a credential, a request body or a URL: attributes are the
//! workflow, instance, service, task, attempt, outcome and HTTP status.

/// Keeps the trace exporter running; dropping it sends what is buffered and stops it.
#[must_use = "dropping the guard stops the trace exporter"]
pub struct TraceGuard {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl std::fmt::Debug for TraceGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceGuard")
            .field("exporting", &self.exporting())
            .finish()
    }
}

impl TraceGuard {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        #[cfg(feature = "otel")]
        {
            self.provider.is_some()
        }
        #[cfg(not(feature = "otel"))]
        {
            false
        }
    }
}

impl Drop for TraceGuard {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("warning: cannot send the last spans: {err}");
        }
    }
}

/// Sets up logging to stderr (filtered by `RUST_LOG`, `info` by default) and, when built with
/// the `otel` feature and `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
/// is set, the export of spans over OTLP (HTTP and protobuf), as the OpenTelemetry environment
/// variables say. `service_name` is the resource's `service.name` unless `OTEL_SERVICE_NAME`
/// is set. Keep the guard until the program ends. Does nothing when a subscriber is already
/// installed.
pub fn init(service_name: &str) -> Result<TraceGuard, String> {
    setup(service_name, None)
}

/// As [`init`], exporting to the OTLP/HTTP collector at `endpoint` (`http://HOST:4318`)
/// whatever the environment says. Without the `otel` feature nothing is exported.
pub fn init_exporting_to(service_name: &str, endpoint: &str) -> Result<TraceGuard, String> {
    setup(service_name, Some(endpoint))
}

fn setup(service_name: &str, endpoint: Option<&str>) -> Result<TraceGuard, String> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        );
    #[cfg(feature = "otel")]
    {
        let (provider, spans) = match exporter(service_name, endpoint)? {
            Some((provider, layer)) => (Some(provider), Some(layer)),
            None => (None, None),
        };
        let installed = tracing_subscriber::registry()
            .with(spans)
            .with(logs)
            .try_init()
            .is_ok();
        Ok(TraceGuard {
            provider: provider.filter(|_| installed),
        })
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = (service_name, endpoint);
        let _ = tracing_subscriber::registry().with(logs).try_init();
        Ok(TraceGuard {})
    }
}

#[cfg(feature = "otel")]
type SpanLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// The OTLP exporter and its layer, when the environment asks for one.
#[cfg(feature = "otel")]
fn exporter(
    service_name: &str,
    endpoint: Option<&str>,
) -> Result<Option<(opentelemetry_sdk::trace::SdkTracerProvider, SpanLayer)>, String> {
    use opentelemetry::trace::TracerProvider;
    use opentelemetry_otlp::WithExportConfig;
    use tracing_subscriber::Layer;

    let configured = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty()));
    if !configured && endpoint.is_none() {
        return Ok(None);
    }
    let mut builder = opentelemetry_otlp::SpanExporter::builder().with_http();
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')));
    }
    let exporter = builder
        .build()
        .map_err(|e| format!("cannot set up the OTLP trace exporter: {e}"))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service_name.to_owned());
    }
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("codegen-runtime");
    // Only the runtime's spans: its log events stay in the logs.
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            meta.is_span() && meta.target().starts_with("codegen_runtime")
        }))
        .boxed();
    Ok(Some((provider, layer)))
}

/// The W3C `traceparent` of `span`, when it is exported.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    #[cfg(feature = "otel")]
    {
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;

        let context = span.context();
        let span = context.span();
        let found = span.span_context();
        found.is_valid().then(|| {
            format!(
                "00-{}-{}-{:02x}",
                found.trace_id(),
                found.span_id(),
                found.trace_flags().to_u8()
            )
        })
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = span;
        None
    }
}

/// Makes `span` a child of the span `traceparent` names (from another process); a missing or
/// malformed one leaves it a root.
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    #[cfg(feature = "otel")]
    if let Some(parent) = traceparent.and_then(parse) {
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;

        let context = opentelemetry::Context::new().with_remote_span_context(parent);
        let _ = span.set_parent(context);
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = (span, traceparent);
    }
}

/// A `traceparent` header's span context: `00-<32 hex>-<16 hex>-<2 hex>`.
#[cfg(feature = "otel")]
fn parse(text: &str) -> Option<opentelemetry::trace::SpanContext> {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    let mut parts = text.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || parts.next().is_some() || trace.len() != 32 || span.len() != 16 {
        return None;
    }
    let context = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()?),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

#[cfg(all(test, feature = "otel"))]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_is_read_back_and_a_malformed_one_is_refused() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let found = parse(good).expect("a valid traceparent");
        assert_eq!(
            found.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(found.span_id().to_string(), "00f067aa0ba902b7");
        assert!(found.is_sampled());
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert!(parse(bad).is_none(), "{bad:?} was accepted");
        }
    }
}
