//! The OpenTelemetry exporter (feature `otel`) sends spans over OTLP/HTTP: a stand-in
//! collector on loopback records what arrives at `/v1/traces`.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "otel")]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use std::sync::{Arc, Mutex};
use tracing_subscriber::layer::SubscriberExt;

/// A request to `/v1/traces`: its content type and body.
type Export = (Option<String>, Vec<u8>);

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Export>>>);

async fn traces(State(r): State<Received>, headers: HeaderMap, body: Bytes) {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    r.0.lock().unwrap().push((content_type, body.to_vec()));
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_collector() {
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    // A trailing slash is tolerated.
    let (layer, provider) =
        paddock_server::otel::layer(&format!("http://{addr}/")).expect("exporter");
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("otel_probe_span", runner = "r-1");
        span.in_scope(|| tracing::info!("inside the probe span"));
    });
    // Flushing blocks until the batch thread has exported; keep it off the runtime.
    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .expect("join")
        .expect("flush");

    let got = received.0.lock().unwrap().clone();
    assert!(!got.is_empty(), "no request reached /v1/traces");
    let (content_type, body) = got
        .iter()
        .find(|(_, b)| contains(b, b"otel_probe_span"))
        .unwrap_or_else(|| panic!("no exported span named otel_probe_span in {got:?}"));
    assert_eq!(content_type.as_deref(), Some("application/x-protobuf"));
    // The resource names the service.
    assert!(contains(body, b"service.name") && contains(body, b"paddock"));
}
