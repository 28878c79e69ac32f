//! The static worker runs in an image that has nothing but itself: no /usr, no libc,
//! no shell. scripts/test builds it (`-C target-feature=+crt-static`) and sets
//! `PADDOCK_STATIC_WORKER`; with `PADDOCK_REQUIRE_STATIC_WORKER=1` a missing binary or a
//! missing bubblewrap fails instead of skipping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Client;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn skip(why: &str) {
    if std::env::var("PADDOCK_REQUIRE_STATIC_WORKER").as_deref() == Ok("1") {
        panic!("PADDOCK_REQUIRE_STATIC_WORKER=1 but {why}");
    }
    eprintln!("SKIPPED static worker test: {why}");
}

#[test]
fn the_static_worker_runs_in_an_empty_root() {
    let Some(bin) = std::env::var_os("PADDOCK_STATIC_WORKER").map(PathBuf::from) else {
        return skip("PADDOCK_STATIC_WORKER is not set (scripts/test builds it)");
    };
    if Command::new("bwrap").arg("--version").output().is_err() {
        return skip("bubblewrap is not installed");
    }
    let size = std::fs::metadata(&bin)
        .expect("the static worker exists")
        .len();
    println!(
        "static worker: {} ({:.1} MiB)",
        bin.display(),
        size as f64 / 1048576.0
    );
    let ldd = Command::new("ldd").arg(&bin).output().expect("ldd runs");
    let ldd =
        String::from_utf8_lossy(&ldd.stdout).to_string() + &String::from_utf8_lossy(&ldd.stderr);
    assert!(
        ldd.contains("not a dynamic executable") || ldd.contains("statically linked"),
        "ldd: {ldd}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let (ws, sock) = (dir.path().join("ws"), dir.path().join("sock"));
    std::fs::create_dir_all(&ws).expect("ws");
    std::fs::create_dir_all(&sock).expect("sock");
    // The root is an empty tmpfs: only the worker, its workspace and its socket exist.
    let mut child = Command::new("bwrap")
        .args([
            "--unshare-all",
            // Killing the child below must end the sandbox too, not only bwrap's parent.
            "--die-with-parent",
            "--tmpfs",
            "/",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
        ])
        .arg("--ro-bind")
        .arg(&bin)
        .arg("/worker")
        .arg("--bind")
        .arg(&ws)
        .arg("/ws")
        .arg("--bind")
        .arg(&sock)
        .arg("/sock")
        .args([
            "--",
            "/worker",
            "--workspace",
            "/ws",
            "--socket",
            "/sock/w.sock",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("bwrap starts");
    let client = Client {
        sock: sock.join("w.sock"),
        token: None,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !client.sock.exists() {
        assert!(
            Instant::now() < deadline,
            "the static worker never opened its socket"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let h = client.get("/healthz");
    assert_eq!(h.status, 200, "{}", h.text());
    let w = client.write_file("note.txt", b"static");
    assert!((200..300).contains(&w.status), "{}", w.text());
    assert_eq!(
        std::fs::read(ws.join("note.txt")).expect("written"),
        b"static"
    );
    // Exec works without a shell: argv runs the worker itself.
    let recs = client.exec(&serde_json::json!({"argv": ["/worker", "--version"]}));
    assert_eq!(common::exit_of(&recs)["code"], 0, "{recs:?}");
    assert!(
        common::text_of(&recs, "stdout").contains("paddock-worker"),
        "{recs:?}"
    );
    let no_shell = client.post("/exec", &serde_json::json!({"command": "true"}));
    assert_ne!(no_shell.status, 200, "there is no /bin/sh in an empty root");
    let _ = child.kill();
    let _ = child.wait();
}
