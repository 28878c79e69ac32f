//! The optional OpenTelemetry trace exporter (cargo feature `otel`): `tracing` spans are
//! batched on a background thread and sent as OTLP/HTTP (protobuf) to
//! `{otel_endpoint}/v1/traces`, with `service.name` = `paddock`.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::sync::Mutex;
use std::time::Duration;
use tracing_opentelemetry::OpenTelemetryLayer;

use crate::ServerError;

/// The provider `init_logging` installed; `shutdown` flushes and stops it.
static PROVIDER: Mutex<Option<SdkTracerProvider>> = Mutex::new(None);

/// Builds a tracer provider exporting to `endpoint` (an OTLP/HTTP base URL such as
/// `http://127.0.0.1:4318`) and the `tracing` layer that feeds it. Keep the provider to
/// flush it (`force_flush`) or stop it (`shutdown`): spans not yet exported are lost
/// otherwise.
pub fn layer<S>(
    endpoint: &str,
) -> Result<(OpenTelemetryLayer<S, SdkTracer>, SdkTracerProvider), ServerError>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()
        .map_err(|e| ServerError::Config(format!("otel_endpoint: {e}")))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("paddock").build())
        .build();
    let tracer = provider.tracer("paddock");
    Ok((tracing_opentelemetry::layer().with_tracer(tracer), provider))
}

/// Keeps `provider` for [`shutdown`].
pub(crate) fn install(provider: SdkTracerProvider) {
    let mut slot = PROVIDER.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(old) = slot.replace(provider) {
        let _ = old.shutdown();
    }
}

/// Exports the spans still buffered and stops the installed provider (if any). Blocks for
/// at most about five seconds.
pub(crate) fn shutdown() {
    let provider = PROVIDER.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(p) = provider {
        if let Err(e) = p.shutdown_with_timeout(Duration::from_secs(5)) {
            eprintln!("paddock: cannot flush OpenTelemetry spans: {e}");
        }
    }
}
