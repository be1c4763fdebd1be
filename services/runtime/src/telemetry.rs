//! Logging and tracing, set up once per binary.
//!
//! `tracing` with an `EnvFilter` (`RUST_LOG`, default `info`), plain or JSON lines, and
//! an OTLP (gRPC) exporter when an endpoint is given. The W3C trace-context propagator
//! is installed explicitly so `traceparent` travels from commands to events.

use async_nats::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::error::{Error, Result};

/// Flushes the trace exporter when dropped.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// How logs and traces leave the process.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TelemetryArgs {
    /// Log as JSON lines (for log shippers) instead of text.
    #[arg(long, env = "BERTH_LOG_JSON")]
    pub log_json: bool,
    /// OTLP gRPC endpoint to export traces to, e.g. http://127.0.0.1:4317.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

/// Installs the global subscriber. `default_filter` applies when `RUST_LOG` is unset.
pub fn init(service: &str, args: &TelemetryArgs, default_filter: &str) -> Result<TelemetryGuard> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let provider = match &args.otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .build()
                .map_err(|e| Error::Config(format!("OTLP endpoint {endpoint}: {e}")))?;
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(
                        Resource::builder()
                            .with_service_name(format!("berth-{service}"))
                            .build(),
                    )
                    .build(),
            )
        }
        None => None,
    };
    let otel_layer = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(format!("berth-{service}"))));
    let registry = tracing_subscriber::registry().with(filter).with(otel_layer);
    let installed = if args.log_json {
        registry
            .with(tracing_subscriber::fmt::layer().json())
            .try_init()
    } else {
        registry
            .with(tracing_subscriber::fmt::layer().with_target(false))
            .try_init()
    };
    installed.map_err(|e| Error::Config(format!("logging is already set up: {e}")))?;
    Ok(TelemetryGuard { provider })
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|value| value.as_str())
    }
    fn keys(&self) -> Vec<&str> {
        Vec::new()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

/// Makes the `traceparent` in `headers` the parent of `span`.
pub fn set_parent(span: &Span, headers: Option<&HeaderMap>) {
    if let Some(headers) = headers {
        let context = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        let _ = span.set_parent(context);
    }
}

/// The current span's `traceparent`, when tracing is exported.
pub fn current_traceparent() -> Option<String> {
    let mut headers = HeaderMap::new();
    TraceContextPropagator::new().inject_context(
        &Span::current().context(),
        &mut HeaderInjector(&mut headers),
    );
    headers
        .get("traceparent")
        .map(|value| value.as_str().to_owned())
}
