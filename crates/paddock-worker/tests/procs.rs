//! Long-lived processes (`/processes`) and loopback relays (`/relays`) against an
//! in-process worker: output kept with offsets, attach and re-attach over an HTTP
//! upgrade, processes that outlive their connections, signals, errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use common::*;
use serde_json::json;

/// Opens `GET /processes/{id}/attach?from=N` with the upgrade; returns the raw stream
/// after the `101` and the offset the worker starts at.
fn attach(w: &TestWorker, id: &str, from: u64) -> (UnixStream, u64) {
    attach_with(w, id, &format!("from={from}"))
}

fn attach_with(w: &TestWorker, id: &str, query: &str) -> (UnixStream, u64) {
    let mut s = w.connect();
    write!(
        s,
        "GET /processes/{id}/attach?{query} HTTP/1.1\r\nHost: w\r\nConnection: Upgrade\r\nUpgrade: paddock-stdio\r\n\r\n"
    )
    .expect("send");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("read the response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let start = head
        .lines()
        .find_map(|l| l.strip_prefix("x-paddock-from: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("x-paddock-from");
    (s, start)
}

fn read_exactly(s: &mut UnixStream, n: usize) -> String {
    let mut buf = vec![0u8; n];
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.read_exact(&mut buf).expect("read from the attachment");
    String::from_utf8(buf).expect("utf-8")
}

#[test]
fn a_process_outlives_its_attachment_and_replays_from_an_offset() {
    let w = TestWorker::start();
    let r = w.post("/processes", &json!({"id": "cat-1", "argv": ["cat"]}));
    assert_eq!(r.status, 201, "{}", r.text());
    let pid = r.json()["pid"].as_i64().expect("pid") as i32;
    assert_eq!(r.json()["running"], true);

    let (mut s, start) = attach(&w, "cat-1", 0);
    assert_eq!(start, 0);
    s.write_all(b"hello\n").expect("write");
    assert_eq!(read_exactly(&mut s, 6), "hello\n");
    drop(s);
    // The connection is gone; the process is not.
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        is_alive(pid),
        "closing an attachment must not end the process"
    );
    let st = w.get("/processes/cat-1").json();
    assert_eq!(
        (st["running"].clone(), st["output_bytes"].clone()),
        (json!(true), json!(6))
    );

    // A second attachment from 0 gets the kept output first, then live output.
    let (mut s, _) = attach(&w, "cat-1", 0);
    assert_eq!(read_exactly(&mut s, 6), "hello\n");
    s.write_all(b"more\n").expect("write");
    assert_eq!(read_exactly(&mut s, 5), "more\n");
    // From an offset: only what follows it.
    let (mut s2, start) = attach(&w, "cat-1", 6);
    assert_eq!(start, 6);
    assert_eq!(read_exactly(&mut s2, 5), "more\n");

    let r = w.delete("/processes/cat-1");
    assert_eq!(r.status, 200);
    assert!(wait_for(Duration::from_secs(5), || !is_alive(pid)));
    w.get("/processes/cat-1").assert_error(404, "not_found");
}

#[test]
fn exited_processes_keep_their_output_and_exit_status() {
    let w = TestWorker::start();
    let r = w.post(
        "/processes",
        &json!({"id": "p", "command": "echo a; sleep 0.3; echo b; echo oops >&2; exit 3"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let st = w.get("/processes/p/wait?timeout_ms=10000").json();
    assert_eq!(st["running"], false, "{st}");
    assert_eq!(st["exit_code"], 3);
    let out = w.get("/processes/p/output?from=0").json();
    assert_eq!(out["text"], "a\nb\n");
    assert_eq!(
        (out["from"].clone(), out["next"].clone()),
        (json!(0), json!(4))
    );
    let err = w.get("/processes/p/output?stream=stderr").json();
    assert_eq!(err["text"], "oops\n");
    // Attaching after the exit sends what is left, then closes.
    let (mut s, _) = attach(&w, "p", 2);
    let mut rest = String::new();
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.read_to_string(&mut rest).expect("read to EOF");
    assert_eq!(rest, "b\n");
    // The id is free again once the process has exited.
    let r = w.post("/processes", &json!({"id": "p", "argv": ["true"]}));
    assert_eq!(r.status, 201, "{}", r.text());
}

/// The output read once a wait says the process has exited is all of it: the exit is
/// shown only after the pipes are read to their end (an ACP terminal's client asks for
/// the output right after `wait`; it once got none).
#[test]
fn the_output_is_complete_once_the_exit_is_shown() {
    let w = TestWorker::start();
    for i in 0..20 {
        let id = format!("burst-{i}");
        let r = w.post(
            "/processes",
            &json!({"id": id, "command": "head -c 300000 /dev/zero; echo tail >&2; exit 3",
                    "merge_stderr": true}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let st = w
            .get(&format!("/processes/{id}/wait?timeout_ms=10000"))
            .json();
        assert_eq!(
            (st["running"].clone(), st["exit_code"].clone()),
            (json!(false), json!(3))
        );
        assert_eq!(st["output_bytes"], 300005, "run {i}: {st}");
        let out = w.get(&format!("/processes/{id}/output?from=299990")).json();
        assert_eq!(
            (
                out["eof"].clone(),
                out["text"].as_str().map(|t| t.ends_with("tail\n"))
            ),
            (json!(true), Some(true)),
            "run {i}"
        );
        assert_eq!(w.delete(&format!("/processes/{id}")).status, 200);
    }
}

#[test]
fn a_terminal_merges_stderr_and_takes_signals() {
    let w = TestWorker::start();
    let r = w.post(
        "/processes",
        &json!({"id": "t", "command": "echo out; echo err >&2; exec sleep 30", "merge_stderr": true}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(wait_for(Duration::from_secs(5), || {
        w.get("/processes/t/output").json()["text"]
            .as_str()
            .is_some_and(|t| t.contains("out") && t.contains("err"))
    }));
    let st = w.get("/processes/t/wait?timeout_ms=50").json();
    assert_eq!(st["running"], true, "the wait times out while it runs");
    let r = w.post("/processes/t/signal", &json!({"signal": "TERM"}));
    assert_eq!(r.status, 200);
    let st = w.get("/processes/t/wait?timeout_ms=10000").json();
    assert_eq!(
        (st["running"].clone(), st["signal"].clone()),
        (json!(false), json!(15))
    );
}

#[test]
fn bad_process_requests_name_the_field() {
    let w = TestWorker::start();
    assert_eq!(
        w.post("/processes", &json!({"id": "x", "argv": ["sleep", "30"]}))
            .status,
        201
    );
    w.post("/processes", &json!({"id": "x", "argv": ["true"]}))
        .assert_error(409, "conflict");
    let e = w
        .post("/processes", &json!({"id": "a b", "argv": ["true"]}))
        .assert_error(400, "invalid_request");
    assert_eq!(e["field"], "id");
    let e = w
        .post(
            "/processes",
            &json!({"id": "y", "argv": ["true"], "output_limit_bytes": 0}),
        )
        .assert_error(400, "invalid_request");
    assert_eq!(e["field"], "output_limit_bytes");
    let e = w
        .post(
            "/processes",
            &json!({"id": "y", "argv": ["true"], "nope": 1}),
        )
        .assert_error(400, "invalid_request");
    assert_eq!(e["field"], "nope");
    w.post(
        "/processes",
        &json!({"id": "y", "argv": ["/no/such/program"]}),
    )
    .assert_error(422, "spawn_failed");
    let e = w
        .post("/processes/x/signal", &json!({"signal": "USR9"}))
        .assert_error(400, "invalid_request");
    assert_eq!(e["field"], "signal");
    let e = w
        .get("/processes/x/attach")
        .assert_error(400, "invalid_request");
    assert_eq!(e["field"], "Upgrade");
    w.get("/processes/nope").assert_error(404, "not_found");
    w.post("/processes/x/output", &json!({}))
        .assert_error(405, "method_not_allowed");
    let list = w.get("/processes").json();
    assert_eq!(list["processes"].as_array().map(Vec::len), Some(1));
    assert_eq!(w.delete("/processes/x").status, 200);
}

#[test]
fn a_relay_forwards_loopback_connections_to_a_socket_beside_the_worker() {
    let relay_dir = tempfile::tempdir().expect("tempdir");
    let dir = relay_dir.path().to_path_buf();
    let w = TestWorker::start_with(|c| c.relay_dir = Some(dir));
    let target = UnixListener::bind(relay_dir.path().join("gateway.sock")).expect("bind");
    std::thread::spawn(move || {
        for conn in target.incoming().flatten() {
            let mut c = conn;
            let mut line = String::new();
            let mut r = BufReader::new(c.try_clone().expect("clone"));
            r.read_line(&mut line).expect("read");
            c.write_all(format!("echo {line}").as_bytes())
                .expect("write");
        }
    });
    let r = w.post("/relays", &json!({"socket": "gateway.sock"}));
    assert_eq!(r.status, 201, "{}", r.text());
    let port = r.json()["port"].as_u64().expect("port");
    // Idempotent per socket.
    let again = w.post("/relays", &json!({"socket": "gateway.sock"}));
    assert_eq!(
        (again.status, again.json()["port"].as_u64()),
        (200, Some(port))
    );
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port as u16)).expect("connect");
    tcp.write_all(b"ping\n").expect("write");
    let mut back = String::new();
    BufReader::new(tcp).read_line(&mut back).expect("read");
    assert_eq!(back, "echo ping\n");
    let e = w
        .post("/relays", &json!({"socket": "../escape.sock"}))
        .assert_error(400, "invalid_request");
    assert_eq!(e["field"], "socket");
    // Without a relay directory there are no relays.
    let plain = TestWorker::start();
    plain
        .post("/relays", &json!({"socket": "gateway.sock"}))
        .assert_error(404, "not_found");
}

#[test]
fn deleting_a_process_kills_what_it_started_even_in_a_session_of_its_own() {
    let w = TestWorker::start();
    // The daemon leaves the process group (setsid) and records its pid.
    let r = w.post(
        "/processes",
        &json!({"id": "d", "command": "setsid sh -c 'echo $$ > daemon.pid; exec sleep 300' & sleep 300"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let pidfile = w.ws.join("daemon.pid");
    assert!(wait_for(Duration::from_secs(5), || {
        std::fs::read_to_string(&pidfile).is_ok_and(|s| !s.trim().is_empty())
    }));
    let daemon: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(is_alive(daemon));
    let env = std::fs::read(format!("/proc/{daemon}/environ")).expect("environ");
    assert!(
        env.split(|b| *b == 0).any(|v| v == b"PADDOCK_PROCESS=d"),
        "descendants carry the marker"
    );
    assert_eq!(w.delete("/processes/d").status, 200);
    assert!(
        wait_for(Duration::from_secs(5), || !is_alive(daemon)),
        "the daemon outlived its process"
    );
}

#[test]
fn a_process_keeps_its_clients_state_for_the_next_client() {
    let w = TestWorker::start();
    assert_eq!(
        w.post("/processes", &json!({"id": "s", "argv": ["sleep", "30"]}))
            .status,
        201
    );
    assert_eq!(w.get("/processes/s").json()["state"], json!(null));
    let state = json!({"session": "abc", "turn": 3, "from": 1024});
    let r = w.put("/processes/s/state", state.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], state);
    // Another client (an orchestrator that restarted) reads it back.
    assert_eq!(w.get("/processes/s").json()["state"], state);
    assert_eq!(w.get("/processes").json()["processes"][0]["state"], state);
    // Bad or oversized states are refused and change nothing.
    w.put("/processes/s/state", b"{not json")
        .assert_error(400, "invalid_request");
    let big = json!({"pad": "x".repeat(70 * 1024)}).to_string();
    w.put("/processes/s/state", big.as_bytes())
        .assert_error(413, "payload_too_large");
    w.get("/processes/s/state")
        .assert_error(405, "method_not_allowed");
    w.put("/processes/nope/state", b"{}")
        .assert_error(404, "not_found");
    assert_eq!(w.get("/processes/s").json()["state"], state);
    assert_eq!(w.delete("/processes/s").status, 200);
}

#[test]
fn a_line_attachment_never_delivers_a_line_cut_off_by_its_connection() {
    let w = TestWorker::start();
    assert_eq!(
        w.post("/processes", &json!({"id": "l", "argv": ["cat"]}))
            .status,
        201
    );
    let (mut s, _) = attach_with(&w, "l", "from=0&lines=true");
    // A whole line, then half of one in the same write, then the connection drops.
    s.write_all(b"whole\nhal").expect("write");
    assert_eq!(read_exactly(&mut s, 6), "whole\n");
    drop(s);
    std::thread::sleep(Duration::from_millis(100));
    let (mut s, _) = attach_with(&w, "l", "from=6&lines=true");
    s.write_all(b"next\n").expect("write");
    // Only the next whole line: the cut-off "hal" never reached stdin.
    assert_eq!(read_exactly(&mut s, 5), "next\n");
    assert_eq!(w.get("/processes/l").json()["output_bytes"], 11);
    // Without lines, bytes go through as they come.
    let (mut raw, _) = attach(&w, "l", 11);
    raw.write_all(b"par").expect("write");
    assert_eq!(read_exactly(&mut raw, 3), "par");
    let e = w
        .get("/processes/l/attach?lines=maybe")
        .assert_error(400, "invalid_request");
    assert_eq!(e["field"], "lines");
    assert_eq!(w.delete("/processes/l").status, 200);
}

#[test]
fn a_relayed_connection_waits_for_its_socket_to_come_back() {
    let relay_dir = tempfile::tempdir().expect("tempdir");
    let dir = relay_dir.path().to_path_buf();
    let w = TestWorker::start_with(|c| c.relay_dir = Some(dir));
    let r = w.post("/relays", &json!({"socket": "gateway.sock"}));
    assert_eq!(r.status, 201, "{}", r.text());
    let port = r.json()["port"].as_u64().expect("port") as u16;
    // Nothing listens yet (the orchestrator is restarting): the connection is taken…
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.write_all(b"ping\n").expect("write");
    std::thread::sleep(Duration::from_millis(700));
    // …and goes through once the socket is served again.
    let target = UnixListener::bind(relay_dir.path().join("gateway.sock")).expect("bind");
    let (mut c, _) = target.accept().expect("the relayed connection arrives");
    let mut line = String::new();
    BufReader::new(c.try_clone().expect("clone"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line, "ping\n");
    c.write_all(b"pong\n").expect("write");
    let mut back = String::new();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
    BufReader::new(tcp).read_line(&mut back).expect("read");
    assert_eq!(back, "pong\n");
}
