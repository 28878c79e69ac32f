//! The built `paddock-worker` binary: Unix socket, TCP with a token,
//! argument errors and SIGTERM shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_paddock-worker");

struct Proc {
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("PADDOCK_WORKER_TOKEN")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc {
        child: cmd.spawn().expect("spawn paddock-worker"),
    }
}

fn wait_for_socket(path: &Path) {
    assert!(
        wait_for(Duration::from_secs(10), || {
            std::os::unix::net::UnixStream::connect(path).is_ok()
        }),
        "the worker did not start listening on {}",
        path.display()
    );
}

fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    let sock = dir.path().join("run/worker.sock");
    (dir, ws, sock)
}

#[test]
fn binary_serves_on_a_unix_socket_and_stops_on_sigterm() {
    let (_dir, ws, sock) = dirs();
    let mut proc = spawn(
        &[
            "--socket",
            sock.to_str().unwrap(),
            "--workspace",
            ws.to_str().unwrap(),
            "--kill-grace-ms",
            "300",
            "--socket-mode",
            "0660",
        ],
        &[("PADDOCK_WORKER_TOKEN", "tok-123")],
    );
    wait_for_socket(&sock);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660, "socket mode {mode:o}");
    }
    let c = Client {
        sock: sock.clone(),
        token: Some("tok-123".into()),
    };
    let health = c.get("/healthz").json();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["pid"], proc.child.id());

    let anon = Client {
        sock: sock.clone(),
        token: None,
    };
    anon.get("/status").assert_error(401, "unauthorized");

    let recs =
        c.exec(&json!({"command": "echo hi; echo ${PADDOCK_WORKER_TOKEN:-not-leaked}; exit 3"}));
    assert_eq!(text_of(&recs, "stdout"), "hi\nnot-leaked\n");
    assert_eq!(exit_of(&recs)["code"], 3);

    assert_eq!(c.write_file("notes/a.txt", b"from the binary").status, 200);
    assert_eq!(
        c.get("/files/read?path=notes/a.txt").body,
        b"from the binary"
    );
    assert_eq!(
        std::fs::read(ws.join("notes/a.txt")).unwrap(),
        b"from the binary"
    );
    c.get("/files/read?path=../x")
        .assert_error(403, "path_forbidden");

    let logs = c.get("/logs").json();
    let worker_lines = logs["worker"].as_array().unwrap();
    assert!(
        worker_lines.iter().any(|l| l["line"]
            .as_str()
            .unwrap()
            .contains("paddock-worker listening")),
        "{worker_lines:?}"
    );
    assert!(worker_lines
        .iter()
        .any(|l| l["line"].as_str().unwrap().contains("exec finished")));

    let status = c.get("/status").json();
    assert_eq!(status["pid"], proc.child.id());

    // A running exec is stopped when the worker is told to stop.
    let mut running = c.exec_stream(&json!({"command": "sleep 100 & echo $!; sleep 100"}));
    let pgid = running.next_record().unwrap()["pid"].as_i64().unwrap() as i32;
    running.next_record().unwrap();
    // SAFETY: signalling the child we spawned.
    unsafe {
        libc::kill(proc.child.id() as i32, libc::SIGTERM);
    }
    let rest = running.rest();
    assert_eq!(exit_of(&rest)["cancelled"], true);
    assert!(wait_for(Duration::from_secs(5), || live_group_members(
        pgid
    )
    .is_empty()));
    let mut exited = None;
    assert!(wait_for(Duration::from_secs(10), || {
        exited = proc.child.try_wait().unwrap();
        exited.is_some()
    }));
    assert!(exited.unwrap().success(), "exit status {exited:?}");
    assert!(!exists(&sock), "the socket file is removed on shutdown");
}

#[test]
fn binary_serves_tcp_with_a_required_token() {
    let (_dir, ws, _sock) = dirs();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let _proc = spawn(
        &[
            "--listen",
            &addr,
            "--token",
            "tcp-token",
            "--workspace",
            ws.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        wait_for(Duration::from_secs(10), || TcpStream::connect(&addr)
            .is_ok()),
        "the worker did not start listening on {addr}"
    );
    let req = |path: &str, auth: Option<&str>| {
        let stream = TcpStream::connect(&addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let header = auth.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = header
            .iter()
            .map(|h| ("Authorization", h.as_str()))
            .collect();
        send(stream, "GET", path, &headers, b"")
            .unwrap()
            .finish()
            .unwrap()
    };
    assert_eq!(req("/healthz", None).status, 200);
    req("/status", None).assert_error(401, "unauthorized");
    req("/status", Some("wrong")).assert_error(401, "unauthorized");
    let ok = req("/status", Some("tcp-token"));
    assert_eq!(ok.status, 200);
    assert!(ok.json()["memory"]["tree_rss_bytes"].as_u64().unwrap() > 0);

    // Exec over TCP.
    let stream = TcpStream::connect(&addr).unwrap();
    let body = json!({"argv": ["echo", "over", "tcp"]}).to_string();
    let recs = send(
        stream,
        "POST",
        "/exec",
        &[("Authorization", "Bearer tcp-token")],
        body.as_bytes(),
    )
    .unwrap()
    .into_ndjson()
    .rest();
    assert_eq!(text_of(&recs, "stdout"), "over tcp\n");
}

#[test]
fn binary_rejects_bad_arguments() {
    let (_dir, ws, _sock) = dirs();
    let out = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--workspace",
            ws.to_str().unwrap(),
        ])
        .env_remove("PADDOCK_WORKER_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("token"));

    let out = Command::new(BIN).args(["--frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--frobnicate"));

    let out = Command::new(BIN)
        .args([
            "--socket",
            "/tmp/x.sock",
            "--workspace",
            "/definitely/missing",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("workspace"));

    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--socket"));
}

#[test]
fn an_exec_ends_only_once_its_killed_processes_are_gone() {
    // The worker reaps orphans by default: a killed command's children are reparented
    // to it and reaped before the exit record is written, so a command run right
    // after never sees them. This child closed its output (the record does not wait
    // for it through the pipe) and takes its time to die: 300 MB to tear down.
    let (_dir, ws, sock) = dirs();
    let _proc = spawn(
        &[
            "--socket",
            sock.to_str().unwrap(),
            "--workspace",
            ws.to_str().unwrap(),
            "--kill-grace-ms",
            "200",
        ],
        &[],
    );
    wait_for_socket(&sock);
    let c = Client {
        sock: sock.clone(),
        token: None,
    };
    let perl = r#"close STDOUT; close STDERR; $SIG{TERM} = "IGNORE"; $x = "x" x 300000000; open(F, ">ready"); close F; sleep 100"#;
    let mut stream = c.exec_stream(&json!({
        "command": format!("perl -e '{perl}' & echo $!; sleep 100"),
        "timeout_ms": 10000
    }));
    let started = stream.next_record().unwrap();
    let exec_id = started["id"].as_str().unwrap().to_string();
    let child: i32 = stream.next_record().unwrap()["data"]
        .as_str()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(wait_for(Duration::from_secs(10), || exists(
        &ws.join("ready")
    )));
    let cancel = c.post("/cancel", &json!({"id": exec_id}));
    assert_eq!(cancel.status, 200);
    let rest = stream.rest();
    assert_eq!(exit_of(&rest)["cancelled"], true);
    assert!(
        !exists(Path::new(&format!("/proc/{child}"))),
        "the exit record came before its process {child} was gone: {:?}",
        std::fs::read_to_string(format!("/proc/{child}/stat"))
    );
}
