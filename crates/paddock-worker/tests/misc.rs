//! Health, status, logs, routing and auth against an in-process worker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[test]
fn healthz() {
    let w = TestWorker::start();
    let resp = w.get("/healthz");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let body = resp.json();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["protocol"], 1);
    assert_eq!(body["pid"], std::process::id());
}

#[test]
fn status_reports_plausible_numbers() {
    let w = TestWorker::start();
    let before = w.get("/status");
    assert_eq!(before.status, 200);
    let before = before.json();
    assert_eq!(before["pid"], std::process::id());
    assert!(before["uptime_ms"].as_u64().is_some());
    assert!(before["cpu"]["tree_seconds"].as_f64().unwrap() >= 0.0);
    assert!(before["cpu"]["cores"].as_u64().unwrap() >= 1);
    assert!(before["memory"]["tree_rss_bytes"].as_u64().unwrap() > 1024 * 1024);
    assert!(before["processes"]["tree"].as_u64().unwrap() >= 1);
    assert!(before["disk"]["fs_total_bytes"].as_u64().unwrap() > 0);
    assert_eq!(before["disk"]["workspace_apparent_bytes"], 0);
    assert_eq!(before["execs"]["running"], json!([]));
    // cgroup numbers are either numbers or null, never missing.
    assert!(before["cpu"].get("cgroup_seconds").is_some());
    assert!(before["memory"].get("cgroup_current_bytes").is_some());

    assert_eq!(w.write_file("blob", &vec![7u8; 1024 * 1024]).status, 200);
    let mut running = w.exec_stream(&json!({"id": "busy", "command": "sleep 100 & sleep 100"}));
    running.next_record().unwrap();
    assert!(wait_for(Duration::from_secs(2), || {
        w.get("/status").json()["processes"]["tree"]
            .as_u64()
            .unwrap()
            >= 3
    }));
    let after = w.get("/status").json();
    let grew = after["disk"]["workspace_apparent_bytes"].as_u64().unwrap();
    assert!(grew >= 1024 * 1024, "disk usage grew: {grew}");
    assert!(after["disk"]["workspace_bytes"].as_u64().unwrap() > 0);
    assert_eq!(after["disk"]["workspace_entries"], 1);
    assert_eq!(after["execs"]["running"][0]["id"], "busy");
    assert!(after["execs"]["running"][0]["pid"].as_i64().unwrap() > 1);
    assert!(after["execs"]["started_total"].as_u64().unwrap() >= 1);
    assert!(after["uptime_ms"].as_u64() >= before["uptime_ms"].as_u64());
    w.post("/cancel", &json!({"id": "busy"}));
    assert_eq!(exit_of(&running.rest())["cancelled"], true);

    // CPU burnt by an exec is counted in the tree once reaped.
    let cpu0 = w.get("/status").json()["cpu"]["tree_seconds"]
        .as_f64()
        .unwrap();
    w.exec(&json!({"command": "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"}));
    let cpu1 = w.get("/status").json()["cpu"]["tree_seconds"]
        .as_f64()
        .unwrap();
    assert!(cpu1 > cpu0, "cpu {cpu0} -> {cpu1}");
}

#[test]
fn logs_keep_recent_exec_output() {
    let w = TestWorker::start_with(|c| c.output_ring_bytes = 64 * 1024);
    w.exec(&json!({"id": "one", "command": "echo marker-one; echo oops >&2"}));
    w.exec(&json!({"id": "two", "command": "echo marker-two"}));
    let logs = w.get("/logs?tail=10");
    assert_eq!(logs.status, 200);
    let logs = logs.json();
    let out = logs["output"].as_array().unwrap();
    assert!(out
        .iter()
        .any(|r| r["id"] == "one" && r["stream"] == "stdout" && r["data"] == "marker-one\n"));
    assert!(out
        .iter()
        .any(|r| r["id"] == "one" && r["stream"] == "stderr" && r["data"] == "oops\n"));
    assert_eq!(out.last().unwrap()["data"], "marker-two\n");
    assert!(out.last().unwrap()["ts_ms"].as_u64().unwrap() > 0);
    assert!(logs["worker"].is_array());
    assert_eq!(logs["output_dropped_bytes"], 0);

    let only_two = w.get("/logs?id=two").json();
    assert_eq!(only_two["output"].as_array().unwrap().len(), 1);
    let tail1 = w.get("/logs?tail=1").json();
    assert_eq!(tail1["output"].as_array().unwrap().len(), 1);

    // The ring is bounded: 200 KiB of output keeps at most 64 KiB.
    w.exec(&json!({"command": "head -c 204800 /dev/zero | tr '\\000' z"}));
    let logs = w.get("/logs?tail=10000").json();
    let kept: usize = logs["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["data"].as_str().unwrap().len())
        .sum();
    assert!(kept <= 64 * 1024, "kept {kept}");
    assert!(logs["output_dropped_bytes"].as_u64().unwrap() > 0);

    let e = w.get("/logs?tail=abc").assert_error(400, "invalid_request");
    assert_eq!(e["field"], "tail");
}

#[test]
fn routing_errors() {
    let w = TestWorker::start();
    w.get("/nope").assert_error(404, "not_found");
    let resp = w.get("/exec");
    resp.assert_error(405, "method_not_allowed");
    assert_eq!(resp.header("allow"), Some("POST"));
    let resp = w.request("POST", "/files/read?path=x", b"");
    resp.assert_error(405, "method_not_allowed");
    assert_eq!(resp.header("allow"), Some("GET"));
    w.get("/files/write?path=x")
        .assert_error(405, "method_not_allowed");
    let e = w
        .get("/status?verbose=1")
        .assert_error(400, "invalid_request");
    assert_eq!(e["field"], "verbose");
    // Every error body has the same shape.
    let body = w.get("/nope").json();
    assert_eq!(body["type"], "error");
}

#[test]
fn token_is_enforced_when_configured() {
    let w = TestWorker::start_with(|c| c.token = Some("s3cret".into()));
    let anon = Client {
        sock: w.client.sock.clone(),
        token: None,
    };
    let wrong = Client {
        sock: w.client.sock.clone(),
        token: Some("nope".into()),
    };
    assert_eq!(anon.get("/healthz").status, 200, "healthz needs no token");
    anon.get("/status").assert_error(401, "unauthorized");
    wrong.get("/status").assert_error(401, "unauthorized");
    anon.post("/exec", &json!({"command": "true"}))
        .assert_error(401, "unauthorized");
    anon.get("/files/list").assert_error(401, "unauthorized");
    assert_eq!(w.get("/status").status, 200);
    let recs = w.exec(&json!({"command": "echo ${PADDOCK_WORKER_TOKEN:-unset}"}));
    assert_eq!(text_of(&recs, "stdout"), "unset\n");
}

#[test]
fn many_concurrent_execs() {
    let w = TestWorker::start();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let c = w.client.clone();
            std::thread::spawn(move || {
                let recs =
                    c.exec(&json!({"command": format!("echo {i}; sleep 0.2; echo {i} >&2")}));
                (text_of(&recs, "stdout"), text_of(&recs, "stderr"))
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let (out, err) = h.join().unwrap();
        assert_eq!(out, format!("{i}\n"));
        assert_eq!(err, format!("{i}\n"));
    }
}
