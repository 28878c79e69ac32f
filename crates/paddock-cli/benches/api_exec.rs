//! An exec through the API against the worker's own round trip, on the same runner in
//! the same run: `POST /v1/runners/{id}/exec` of `/bin/true` on a kept-alive connection
//! to a real `paddock serve`, and the same request straight to the runner's worker
//! socket, taken in turn.
//!
//! `cargo bench -p paddock-cli --bench api_exec` (needs bwrap; `PADDOCK_BENCH_N`,
//! default 300, samples). It only measures: nothing here asserts a timing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{post, stats, Serve};

use paddock_backend::{Connector, WorkerClient};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

#[tokio::main]
async fn main() {
    let Some(n) = common::samples("api_exec", 300) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = dir.path().join("paddock.toml");
    std::fs::write(
        &config,
        "[rate_limit]\nper_second = 0.0\n\n[agent]\nenabled = false\n",
    )
    .expect("config");
    let data = dir.path().join("data");
    let s = Serve::start(&data, &config, common::free_port());
    let http = reqwest::Client::new();
    let r = post(&http, format!("{}/v1/runners", s.url), json!({})).await;
    let id = r["id"].as_str().expect("runner id").to_string();
    let url = format!("{}/v1/runners/{id}/exec", s.url);
    let direct = WorkerClient::new(Connector::UnixSocket {
        path: data
            .join("runners")
            .join(&id)
            .join("sock")
            .join("worker.sock"),
        pid_ns: None,
    });
    let body = json!({"argv": ["/bin/true"]});
    println!("api_exec: {n} samples each, taken in turn, local backend, release build\n");

    let (mut api, mut raw) = (vec![], vec![]);
    for i in 0..n + 10 {
        let t = Instant::now();
        let resp = http.post(&url).json(&body).send().await.expect("exec");
        assert!(resp.status().is_success(), "exec: {}", resp.status());
        let text = resp.text().await.expect("exec body");
        let d = t.elapsed();
        assert!(text.contains("\"exit\""), "{text}");
        let t = Instant::now();
        let out = direct.exec(&body).await.expect("direct exec");
        let e = t.elapsed();
        assert_eq!(out.code, Some(0));
        // The first few warm the connection and the caches up.
        if i >= 10 {
            api.push(d);
            raw.push(e);
        }
    }
    let a = stats("POST /v1/runners/{id}/exec /bin/true (API)", api);
    let b = stats("the same exec straight to the worker's socket", raw);
    println!(
        "{:<56} {:.2}x (+{:.2} ms)",
        "  ratio API / worker",
        a.as_secs_f64() / b.as_secs_f64(),
        (a.as_secs_f64() - b.as_secs_f64()) * 1000.0
    );
    let _ = http
        .delete(format!("{}/v1/runners/{id}?wait=true", s.url))
        .send()
        .await;
}
