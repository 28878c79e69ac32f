//! `POST /exec` and `POST /cancel` against an in-process worker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[test]
fn exit_codes_zero_and_three() {
    let w = TestWorker::start();
    let recs = w.exec(&json!({"command": "exit 0"}));
    let started = &recs[0];
    assert!(started["pid"].as_i64().unwrap() > 1);
    assert!(started["id"].as_str().is_some_and(|id| !id.is_empty()));
    let exit = exit_of(&recs);
    assert_eq!(exit["code"], 0);
    assert_eq!(exit["signal"], serde_json::Value::Null);
    assert_eq!(exit["timed_out"], false);
    assert_eq!(exit["cancelled"], false);
    assert_eq!(exit["id"], started["id"]);
    assert!(exit["duration_ms"].as_u64().is_some());

    let recs = w.exec(&json!({"command": "exit 3", "id": "three"}));
    assert_eq!(recs[0]["id"], "three");
    assert_eq!(exit_of(&recs)["code"], 3);

    let recs = w.exec(&json!({"argv": ["sh", "-c", "exit 3"]}));
    assert_eq!(exit_of(&recs)["code"], 3);

    // Death by signal: code null, signal set.
    let recs = w.exec(&json!({"command": "kill -9 $$"}));
    assert_eq!(exit_of(&recs)["code"], serde_json::Value::Null);
    assert_eq!(exit_of(&recs)["signal"], 9);
}

#[test]
fn stdout_and_stderr_are_separate() {
    let w = TestWorker::start();
    let recs = w.exec(&json!({"command": "echo out; echo err >&2; echo out2"}));
    assert_eq!(text_of(&recs, "stdout"), "out\nout2\n");
    assert_eq!(text_of(&recs, "stderr"), "err\n");
    assert_eq!(exit_of(&recs)["code"], 0);
}

#[test]
fn stdin_is_delivered_and_closed() {
    let w = TestWorker::start();
    let recs = w.exec(&json!({"command": "cat; echo done", "stdin": "hello\nwörld"}));
    assert_eq!(text_of(&recs, "stdout"), "hello\nwörlddone\n");
    // No stdin: the process reads EOF at once instead of hanging.
    let recs = w.exec(&json!({"command": "cat; echo eof", "timeout_ms": 5000}));
    assert_eq!(text_of(&recs, "stdout"), "eof\n");
    assert_eq!(exit_of(&recs)["timed_out"], false);
}

#[test]
fn binary_stdin_and_output_round_trip_through_base64() {
    let w = TestWorker::start();
    let bytes: Vec<u8> = (0u8..=255).collect();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let recs = w.exec(&json!({"argv": ["cat"], "stdin_b64": b64}));
    assert_eq!(output_of(&recs, "stdout"), bytes);
    assert!(recs
        .iter()
        .any(|r| r["type"] == "stdout" && r["data_b64"].is_string()));
    // A multi-byte character split across reads is still valid UTF-8 text.
    let recs = w.exec(&json!({"command": "printf '\\303'; sleep 0.2; printf '\\251\\n'"}));
    assert_eq!(text_of(&recs, "stdout"), "é\n");
    assert!(recs.iter().all(|r| r.get("data_b64").is_none()), "{recs:?}");
}

#[test]
fn env_is_passed() {
    let w = TestWorker::start();
    let recs = w.exec(&json!({
        "command": "printf '%s|%s' \"$FOO\" \"$EMPTY\"",
        "env": {"FOO": "bar baz", "EMPTY": ""}
    }));
    assert_eq!(text_of(&recs, "stdout"), "bar baz|");
    // The worker's own environment is inherited (PATH at least).
    let recs = w.exec(&json!({"argv": ["sh", "-c", "test -n \"$PATH\""]}));
    assert_eq!(exit_of(&recs)["code"], 0);
}

#[test]
fn cwd_is_relative_to_the_workspace_and_confined() {
    let w = TestWorker::start();
    std::fs::create_dir_all(w.ws.join("sub/dir")).unwrap();
    let recs = w.exec(&json!({"command": "pwd"}));
    assert_eq!(text_of(&recs, "stdout").trim(), w.ws.to_str().unwrap());
    let recs = w.exec(&json!({"command": "pwd", "cwd": "sub/dir"}));
    assert_eq!(
        text_of(&recs, "stdout").trim(),
        w.ws.join("sub/dir").to_str().unwrap()
    );

    let err = w
        .post("/exec", &json!({"command": "pwd", "cwd": ".."}))
        .assert_error(403, "path_forbidden");
    assert!(err["message"].as_str().unwrap().contains(".."));
    w.post("/exec", &json!({"command": "pwd", "cwd": "/tmp"}))
        .assert_error(403, "path_forbidden");
    std::os::unix::fs::symlink("/etc", w.ws.join("etc")).unwrap();
    w.post("/exec", &json!({"command": "pwd", "cwd": "etc"}))
        .assert_error(403, "path_forbidden");
    w.post("/exec", &json!({"command": "pwd", "cwd": "missing"}))
        .assert_error(404, "not_found");
    std::fs::write(w.ws.join("file"), "x").unwrap();
    w.post("/exec", &json!({"command": "pwd", "cwd": "file"}))
        .assert_error(400, "not_a_directory");
}

#[test]
fn large_output_arrives_complete() {
    let w = TestWorker::start();
    let size = 5 * 1024 * 1024;
    let recs = w.exec(
        &json!({"id": "big", "command": format!("head -c {size} /dev/zero | tr '\\000' a; echo end >&2")}),
    );
    let out = output_of(&recs, "stdout");
    assert_eq!(out.len(), size);
    assert!(out.iter().all(|&b| b == b'a'));
    assert_eq!(text_of(&recs, "stderr"), "end\n");
    assert!(recs.len() > 10, "output arrives in several records");
    assert_eq!(exit_of(&recs)["code"], 0);
    // Read again once finished, from the start: every record (far more than one
    // batch of the journal), then the exit.
    let again = w.get_ndjson("/exec/big?from=0");
    assert!(again.len() > 64, "{} records", again.len());
    assert_eq!(output_of(&again, "stdout").len(), size);
    assert_eq!(exit_of(&again)["code"], 0);
}

#[test]
fn output_is_streamed_as_produced() {
    let w = TestWorker::start();
    let mut stream = w.exec_stream(&json!({"command": "echo first; sleep 1; echo second"}));
    let t0 = Instant::now();
    assert_eq!(stream.next_record().unwrap()["type"], "started");
    let first = stream.next_record().unwrap();
    assert_eq!(first["data"], "first\n");
    assert!(
        t0.elapsed() < Duration::from_millis(800),
        "first line arrived before the process ended"
    );
    let rest = stream.rest();
    assert_eq!(text_of(&rest, "stdout"), "second\n");
}

#[test]
fn timeout_kills_the_whole_process_group() {
    let w = TestWorker::start();
    let mut stream = w.exec_stream(&json!({
        "command": "sleep 100 & echo $!; sleep 100",
        "timeout_ms": 500
    }));
    let started = stream.next_record().unwrap();
    let pgid = started["pid"].as_i64().unwrap() as i32;
    let bg: i32 = stream.next_record().unwrap()["data"]
        .as_str()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(is_alive(bg), "the background sleep runs");
    assert_eq!(
        proc_state(bg).unwrap().1,
        pgid,
        "children share the exec's process group"
    );
    let records = stream.rest();
    let exit = exit_of(&records);
    assert_eq!(exit["timed_out"], true);
    assert_eq!(exit["cancelled"], false);
    assert_eq!(exit["code"], serde_json::Value::Null);
    assert_eq!(exit["signal"], libc::SIGTERM);
    assert!(exit["duration_ms"].as_u64().unwrap() >= 500);
    assert!(
        wait_for(Duration::from_secs(3), || live_group_members(pgid)
            .is_empty()),
        "survivors: {:?}",
        live_group_members(pgid)
    );
    assert!(!is_alive(bg));
}

#[test]
fn timeout_escalates_to_sigkill_when_sigterm_is_ignored() {
    let w = TestWorker::start_with(|c| c.kill_grace = Duration::from_millis(300));
    let mut stream = w.exec_stream(&json!({
        "command": "trap '' TERM; sleep 100 & echo $!; sleep 100",
        "timeout_ms": 200
    }));
    let pgid = stream.next_record().unwrap()["pid"].as_i64().unwrap() as i32;
    let bg: i32 = stream.next_record().unwrap()["data"]
        .as_str()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let records = stream.rest();
    let exit = exit_of(&records);
    assert_eq!(exit["timed_out"], true);
    assert_eq!(exit["signal"], libc::SIGKILL);
    assert!(exit["duration_ms"].as_u64().unwrap() >= 500);
    assert!(wait_for(Duration::from_secs(3), || live_group_members(
        pgid
    )
    .is_empty()));
    assert!(!is_alive(bg));
}

#[test]
fn background_processes_do_not_outlive_their_exec() {
    let w = TestWorker::start();
    let recs = w.exec(&json!({"command": "sleep 100 & echo $!"}));
    assert_eq!(exit_of(&recs)["code"], 0);
    let bg: i32 = text_of(&recs, "stdout").trim().parse().unwrap();
    assert!(wait_for(Duration::from_secs(3), || !is_alive(bg)));
}

#[test]
fn cancel_stops_a_running_exec() {
    let w = TestWorker::start();
    let mut stream =
        w.exec_stream(&json!({"id": "cancel-me", "command": "echo ready; sleep 100 & sleep 100"}));
    let started = stream.next_record().unwrap();
    assert_eq!(started["id"], "cancel-me");
    let pgid = started["pid"].as_i64().unwrap() as i32;
    assert_eq!(stream.next_record().unwrap()["data"], "ready\n");

    let status = w.get("/status").json();
    assert_eq!(status["execs"]["running"][0]["id"], "cancel-me");

    let resp = w.post("/cancel", &json!({"id": "cancel-me"}));
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json(), json!({"cancelled": ["cancel-me"]}));
    let records = stream.rest();
    let exit = exit_of(&records);
    assert_eq!(exit["type"], "exit");
    assert_eq!(exit["cancelled"], true);
    assert_eq!(exit["timed_out"], false);
    assert!(wait_for(Duration::from_secs(3), || live_group_members(
        pgid
    )
    .is_empty()));

    // Not running any more.
    w.post("/cancel", &json!({"id": "cancel-me"}))
        .assert_error(404, "not_found");
    assert_eq!(w.get("/status").json()["execs"]["running"], json!([]));
}

#[test]
fn cancel_without_id_stops_everything() {
    let w = TestWorker::start();
    let mut a = w.exec_stream(&json!({"id": "a", "command": "sleep 100"}));
    let mut b = w.exec_stream(&json!({"id": "b", "command": "sleep 100"}));
    a.next_record().unwrap();
    b.next_record().unwrap();
    let resp = w.request("POST", "/cancel", b"");
    assert_eq!(resp.json(), json!({"cancelled": ["a", "b"]}));
    assert_eq!(exit_of(&a.rest())["cancelled"], true);
    assert_eq!(exit_of(&b.rest())["cancelled"], true);
    // Nothing running: an empty list, not an error.
    assert_eq!(
        w.post("/cancel", &json!({})).json(),
        json!({"cancelled": []})
    );
}

#[test]
fn client_disconnect_kills_the_process_group_when_asked() {
    let w = TestWorker::start();
    let mut stream = w.exec_stream(
        &json!({"id": "gone", "command": "sleep 100 & echo $!; sleep 100", "kill_on_disconnect": true}),
    );
    let pgid = stream.next_record().unwrap()["pid"].as_i64().unwrap() as i32;
    let bg: i32 = stream.next_record().unwrap()["data"]
        .as_str()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(is_alive(pgid) && is_alive(bg));
    drop(stream); // closes the connection
    assert!(
        wait_for(Duration::from_secs(5), || live_group_members(pgid)
            .is_empty()),
        "survivors: {:?}",
        live_group_members(pgid)
    );
    assert!(wait_for(Duration::from_secs(3), || w.get("/status").json()
        ["execs"]["running"]
        == json!([])));
}

#[test]
fn duplicate_running_id_is_a_conflict() {
    let w = TestWorker::start();
    let mut first = w.exec_stream(&json!({"id": "dup", "command": "sleep 100"}));
    first.next_record().unwrap();
    w.post("/exec", &json!({"id": "dup", "command": "true"}))
        .assert_error(409, "conflict");
    w.post("/cancel", &json!({"id": "dup"}));
    assert_eq!(exit_of(&first.rest())["cancelled"], true);
    // Once finished, the id can be reused.
    let recs = w.exec(&json!({"id": "dup", "command": "true"}));
    assert_eq!(exit_of(&recs)["code"], 0);
}

#[test]
fn a_missing_program_is_a_spawn_failure() {
    let w = TestWorker::start();
    let err = w
        .post("/exec", &json!({"argv": ["/nonexistent/program"]}))
        .assert_error(422, "spawn_failed");
    assert!(err["message"]
        .as_str()
        .unwrap()
        .contains("/nonexistent/program"));
    // Through the shell it is an ordinary exit code.
    let recs = w.exec(&json!({"command": "/nonexistent/program"}));
    assert_eq!(exit_of(&recs)["code"], 127);
}

#[test]
fn bad_exec_bodies_are_rejected_with_the_field_named() {
    let w = TestWorker::start();
    let e = w
        .post("/exec", &json!({"command": "true", "bogus": 1}))
        .assert_error(400, "invalid_request");
    assert_eq!(e["field"], "bogus");
    assert!(e["message"].as_str().unwrap().contains("bogus"));
    let e = w
        .post("/exec", &json!({"command": "true", "argv": ["true"]}))
        .assert_error(400, "invalid_request");
    assert_eq!(e["field"], "command");
    let e = w
        .post("/exec", &json!({}))
        .assert_error(400, "invalid_request");
    assert_eq!(e["field"], "command");
    let e = w
        .post("/exec", &json!({"argv": []}))
        .assert_error(400, "invalid_request");
    assert_eq!(e["field"], "argv");
    let e = w
        .post("/exec", &json!({"command": "true", "timeout_ms": "soon"}))
        .assert_error(400, "invalid_request");
    assert_eq!(e["field"], "timeout_ms");
    let e = w
        .post("/exec", &json!({"command": "true", "timeout_ms": 0}))
        .assert_error(400, "invalid_request");
    assert_eq!(e["field"], "timeout_ms");
    let e = w
        .post("/exec", &json!({"command": "true", "env": {"A=B": "x"}}))
        .assert_error(400, "invalid_request");
    assert_eq!(e["field"], "env.A=B");
    let e = w
        .post("/exec", &json!({"command": "true", "id": "no spaces"}))
        .assert_error(400, "invalid_request");
    assert_eq!(e["field"], "id");
    let e = w
        .post(
            "/exec",
            &json!({"command": "true", "stdin": "a", "stdin_b64": "YQ=="}),
        )
        .assert_error(400, "invalid_request");
    assert_eq!(e["field"], "stdin");
    w.post("/exec", &json!({"command": "a\u{0}b"}))
        .assert_error(400, "invalid_request");
    w.request("POST", "/exec", b"{not json")
        .assert_error(400, "invalid_request");
    w.request("POST", "/exec", b"")
        .assert_error(400, "invalid_request");
    w.request("POST", "/exec", b"[1,2]")
        .assert_error(400, "invalid_request");
    w.request("POST", "/exec", b"{\"command\":\"true\"} trailing")
        .assert_error(400, "invalid_request");
    let e = w
        .post("/cancel", &json!({"id": "x", "all": true}))
        .assert_error(400, "invalid_request");
    assert_eq!(e["field"], "all");
}

#[test]
fn oversized_request_bodies_are_413() {
    let w = TestWorker::start_with(|c| c.max_request_bytes = 1024);
    let big = "x".repeat(4096);
    w.post("/exec", &json!({"command": "cat", "stdin": big}))
        .assert_error(413, "payload_too_large");
}

#[test]
fn an_exec_outlives_its_connection_and_is_read_again_from_any_record() {
    let w = TestWorker::start();
    let mut stream =
        w.exec_stream(&json!({"id": "long", "command": "echo one; sleep 0.6; echo two"}));
    let started = stream.next_record().unwrap();
    assert_eq!(started["type"], "started");
    let pid = started["pid"].as_i64().unwrap() as i32;
    assert_eq!(stream.next_record().unwrap()["data"], "one\n");
    drop(stream); // the connection goes; the exec does not
    std::thread::sleep(Duration::from_millis(100));
    assert!(is_alive(pid), "a dropped connection no longer ends an exec");
    // Attached again from the start: every record, then the exit.
    let recs = w.get_ndjson("/exec/long?from=0");
    let types: Vec<&str> = recs.iter().map(|r| r["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["started", "stdout", "stdout", "exit"]);
    assert_eq!(text_of(&recs, "stdout"), "one\ntwo\n");
    assert_eq!(exit_of(&recs)["code"], 0);
    // From a record on; and after the end, the same records again.
    let tail = w.get_ndjson("/exec/long?from=2");
    assert_eq!(text_of(&tail, "stdout"), "two\n");
    assert_eq!(exit_of(&tail)["code"], 0);
    w.get("/exec/never-ran").assert_error(404, "not_found");
    let e = w
        .get("/exec/long?from=x")
        .assert_error(400, "invalid_request");
    assert_eq!(e["field"], "from");
}

#[test]
fn output_past_the_memory_budget_spills_to_a_file_and_reads_back() {
    let spill = tempfile::tempdir().expect("tempdir");
    let dir = spill.path().to_path_buf();
    let w = TestWorker::start_with(|c| {
        c.journal_memory_bytes = 64 * 1024;
        c.spill_dir = Some(dir);
    });
    // About 1 MB of output, far past the 64 KiB kept in memory.
    let recs = w.exec(&json!({"id": "big", "command": "head -c 1000000 /dev/zero | tr '\\0' a"}));
    assert_eq!(output_of(&recs, "stdout").len(), 1_000_000);
    assert!(
        std::fs::read_dir(spill.path()).unwrap().count() >= 1,
        "records spilled to a file"
    );
    let again = w.get_ndjson("/exec/big");
    assert_eq!(output_of(&again, "stdout").len(), 1_000_000);
    assert_eq!(exit_of(&again)["code"], 0);
}

#[test]
fn a_pruned_exec_is_told_from_one_never_started() {
    let w = TestWorker::start_with(|c| c.exec_retention = Duration::ZERO);
    let recs = w.exec(&json!({"id": "first", "command": "echo one"}));
    assert_eq!(exit_of(&recs)["code"], 0);
    // The next exec prunes the finished one (its retention is zero).
    let recs = w.exec(&json!({"id": "second", "command": "true"}));
    assert_eq!(exit_of(&recs)["code"], 0);
    let e = w.get("/exec/first").assert_error(410, "expired");
    assert!(e["message"].as_str().unwrap().contains("first"), "{e}");
    w.get("/exec/never-ran").assert_error(404, "not_found");
    // The id may be used again; it is then known, and its records are the new ones.
    let recs = w.exec(&json!({"id": "first", "command": "echo again"}));
    assert_eq!(text_of(&recs, "stdout"), "again\n");
}
