//! The built-in tools against a real worker (`paddock_worker`, in-process, on a Unix
//! socket in a temporary directory). The worker's workspace plays `/workspace`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use paddock_agent::tools::{
    resume_tool, run_builtin, run_tool, AvailableTool, Resumed, ToolKind, ToolLimits, ToolOutput,
};
use paddock_backend::worker::WorkerClient;
use paddock_backend::Connector;
use paddock_core::agent::{BuiltinTool, BuiltinToolConfig, PermissionPolicy};
use paddock_worker::{Listener, Worker, WorkerConfig};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A worker serving a fresh workspace on its own runtime; stopped on drop.
struct TestWorker {
    _dir: tempfile::TempDir,
    ws: PathBuf,
    /// A directory beside the workspace, which no tool may touch.
    outside: PathBuf,
    client: WorkerClient,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestWorker {
    fn start() -> Self {
        Self::start_with(|_| {})
    }

    fn start_with(adjust: impl FnOnce(&mut WorkerConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&ws).unwrap();
        std::fs::create_dir(&outside).unwrap();
        let ws = std::fs::canonicalize(ws).unwrap();
        let sock = dir.path().join("w.sock");
        let mut config = WorkerConfig::new(&ws);
        config.kill_grace = Duration::from_millis(300);
        config.drain_timeout = Duration::from_millis(300);
        adjust(&mut config);
        let worker = Worker::new(config).unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let sock2 = sock.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::UnixListener::bind(&sock2).unwrap();
                let _ = ready_tx.send(());
                worker
                    .serve(vec![Listener::Unix(listener)], async move {
                        let _ = stop_rx.await;
                    })
                    .await
                    .unwrap();
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        });
        ready_rx.recv().unwrap();
        TestWorker {
            _dir: dir,
            ws,
            outside,
            client: WorkerClient::new(Connector::UnixSocket {
                path: sock,
                pid_ns: None,
            }),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    async fn run(&self, tool: BuiltinTool, input: Value) -> ToolOutput {
        self.run_with(tool, input, &ToolLimits::default()).await
    }

    async fn run_with(&self, tool: BuiltinTool, input: Value, limits: &ToolLimits) -> ToolOutput {
        run_builtin(&self.client, tool, &input, limits, "").await
    }

    fn put(&self, rel: &str, content: impl AsRef<[u8]>) {
        let p = self.ws.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(p, content).unwrap();
    }

    fn get(&self, rel: &str) -> String {
        std::fs::read_to_string(self.ws.join(rel)).unwrap()
    }

    async fn running_execs(&self) -> Vec<String> {
        let status = self
            .client
            .json(hyper::Method::GET, "/status", None)
            .await
            .unwrap();
        status["execs"]["running"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[track_caller]
fn ok(out: &ToolOutput) -> &str {
    assert!(!out.is_error, "unexpected error: {}", out.content);
    &out.content
}

#[track_caller]
fn err(out: &ToolOutput) -> &str {
    assert!(out.is_error, "expected an error, got: {}", out.content);
    &out.content
}

// ---------------------------------------------------------------- files

#[tokio::test]
async fn write_then_read_with_line_numbers_and_ranges() {
    let w = TestWorker::start();
    let out = w
        .run(
            BuiltinTool::Write,
            json!({"file_path": "notes/a.txt", "content": "alpha\nbeta\ngamma\n"}),
        )
        .await;
    assert_eq!(
        ok(&out),
        "wrote 17 bytes to /workspace/notes/a.txt (new file)"
    );
    assert_eq!(w.get("notes/a.txt"), "alpha\nbeta\ngamma\n");
    // Replacing it again (absolute path this time).
    let out = w
        .run(
            BuiltinTool::Write,
            json!({"file_path": "/workspace/notes/a.txt", "content": "alpha\nbeta\ngamma\ndelta"}),
        )
        .await;
    assert_eq!(ok(&out), "wrote 22 bytes to /workspace/notes/a.txt");

    let read = |range: Value| {
        let mut input = json!({"file_path": "/workspace/notes/a.txt"});
        if !range.is_null() {
            input["view_range"] = range;
        }
        w.run(BuiltinTool::Read, input)
    };
    assert_eq!(
        ok(&read(Value::Null).await),
        "     1\talpha\n     2\tbeta\n     3\tgamma\n     4\tdelta\n"
    );
    assert_eq!(
        ok(&read(json!([2, 3])).await),
        "     2\tbeta\n     3\tgamma\n"
    );
    assert_eq!(
        ok(&read(json!([3, -1])).await),
        "     3\tgamma\n     4\tdelta\n"
    );
    assert_eq!(ok(&read(json!([4, 0])).await), "     4\tdelta\n");
    let past = read(json!([9, -1])).await;
    assert!(
        err(&past).starts_with("input.view_range:"),
        "{}",
        past.content
    );
    assert!(past.content.contains("4 lines"), "{}", past.content);

    // Relative paths are relative to the workspace.
    let rel = w
        .run(
            BuiltinTool::Read,
            json!({"file_path": "./notes/../notes/a.txt", "view_range": [1, 1]}),
        )
        .await;
    assert_eq!(ok(&rel), "     1\talpha\n");
}

#[tokio::test]
async fn read_refuses_directories_binaries_and_missing_files_and_cuts_long_files() {
    let w = TestWorker::start();
    w.put("dir/x", "x");
    w.put("blob.bin", [0x7f, b'E', b'L', b'F', 0, 0, 1, 2]);
    let out = w.run(BuiltinTool::Read, json!({"file_path": "dir"})).await;
    assert_eq!(
        err(&out),
        "/workspace/dir is a directory; use glob to list its files"
    );
    let out = w
        .run(BuiltinTool::Read, json!({"file_path": "blob.bin"}))
        .await;
    assert_eq!(err(&out), "/workspace/blob.bin is a binary file (8 bytes)");
    let out = w
        .run(BuiltinTool::Read, json!({"file_path": "nope.txt"}))
        .await;
    assert_eq!(err(&out), "/workspace/nope.txt: no such file or directory");
    w.put("empty", "");
    let out = w
        .run(BuiltinTool::Read, json!({"file_path": "empty"}))
        .await;
    assert_eq!(ok(&out), "(/workspace/empty is empty)");

    let big: String = (1..=10_000).map(|i| format!("line number {i}\n")).collect();
    w.put("big.txt", &big);
    let limits = ToolLimits {
        max_read_bytes: 1000,
        ..ToolLimits::default()
    };
    let out = w
        .run_with(BuiltinTool::Read, json!({"file_path": "big.txt"}), &limits)
        .await;
    let text = ok(&out);
    assert!(text.starts_with("     1\tline number 1\n"));
    let (lines, note) = text.split_once("[output cut").unwrap();
    assert!(lines.len() <= 1000);
    let shown = lines.lines().count();
    assert!(
        note.contains(&format!("view_range [{}, …]", shown + 1)),
        "{note}"
    );
    assert!(note.contains(&format!("{} bytes", big.len())), "{note}");
    // A range far into the file is reached without holding the file.
    let out = w
        .run_with(
            BuiltinTool::Read,
            json!({"file_path": "big.txt", "view_range": [9999, -1]}),
            &limits,
        )
        .await;
    assert_eq!(
        ok(&out),
        "  9999\tline number 9999\n 10000\tline number 10000\n"
    );
}

#[tokio::test]
async fn edit_once_replace_all_not_found_and_ambiguous() {
    let w = TestWorker::start();
    w.put("src/lib.rs", "fn a() {}\nfn b() {}\nfn a2() {}\n");
    let edit = |input: Value| w.run(BuiltinTool::Edit, input);

    let out =
        edit(json!({"file_path": "src/lib.rs", "old_string": "fn b()", "new_string": "fn bee()"}))
            .await;
    assert_eq!(ok(&out), "replaced 1 occurrence in /workspace/src/lib.rs");
    assert_eq!(w.get("src/lib.rs"), "fn a() {}\nfn bee() {}\nfn a2() {}\n");

    let out =
        edit(json!({"file_path": "src/lib.rs", "old_string": "fn a", "new_string": "fn x"})).await;
    assert_eq!(
        err(&out),
        "old_string occurs 2 times in /workspace/src/lib.rs; include more context to make it unique, or set replace_all"
    );
    assert_eq!(w.get("src/lib.rs"), "fn a() {}\nfn bee() {}\nfn a2() {}\n");

    let out = edit(json!({"file_path": "src/lib.rs", "old_string": "fn a", "new_string": "fn x", "replace_all": true})).await;
    assert_eq!(ok(&out), "replaced 2 occurrences in /workspace/src/lib.rs");
    assert_eq!(w.get("src/lib.rs"), "fn x() {}\nfn bee() {}\nfn x2() {}\n");

    let out =
        edit(json!({"file_path": "src/lib.rs", "old_string": "missing", "new_string": "y"})).await;
    assert_eq!(err(&out), "old_string not found in /workspace/src/lib.rs");

    let out =
        edit(json!({"file_path": "src/lib.rs", "old_string": "fn x", "new_string": "fn x"})).await;
    assert_eq!(err(&out), "input.new_string: must differ from old_string");
    let out = edit(json!({"file_path": "src/nope.rs", "old_string": "a", "new_string": "b"})).await;
    assert_eq!(
        err(&out),
        "/workspace/src/nope.rs: no such file or directory"
    );
    assert_eq!(w.get("src/lib.rs"), "fn x() {}\nfn bee() {}\nfn x2() {}\n");
}

#[tokio::test]
async fn glob_matches_recursively_sorted_and_bounded() {
    let w = TestWorker::start();
    for f in [
        "src/main.rs",
        "src/sub/deep/b.rs",
        "src/a.rs",
        "README.md",
        "src/c.txt",
        "z.rs",
    ] {
        w.put(f, "x");
    }
    let out = w
        .run(BuiltinTool::Glob, json!({"pattern": "**/*.rs"}))
        .await;
    assert_eq!(ok(&out), "src/a.rs\nsrc/main.rs\nsrc/sub/deep/b.rs\nz.rs\n");
    // `*` stays within one directory; `path` sets where matching starts.
    let out = w.run(BuiltinTool::Glob, json!({"pattern": "*.rs"})).await;
    assert_eq!(ok(&out), "z.rs\n");
    let out = w
        .run(BuiltinTool::Glob, json!({"pattern": "*.rs", "path": "src"}))
        .await;
    assert_eq!(ok(&out), "src/a.rs\nsrc/main.rs\n");
    let out = w
        .run(
            BuiltinTool::Glob,
            json!({"pattern": "/workspace/src/**/*.{rs,txt}"}),
        )
        .await;
    assert_eq!(
        ok(&out),
        "src/a.rs\nsrc/c.txt\nsrc/main.rs\nsrc/sub/deep/b.rs\n"
    );
    let out = w
        .run(BuiltinTool::Glob, json!({"pattern": "**/*.py"}))
        .await;
    assert_eq!(ok(&out), "no files match \"**/*.py\" under /workspace");

    let limits = ToolLimits {
        max_glob_results: 2,
        ..ToolLimits::default()
    };
    let out = w
        .run_with(BuiltinTool::Glob, json!({"pattern": "**/*.rs"}), &limits)
        .await;
    assert_eq!(
        ok(&out),
        "src/a.rs\nsrc/main.rs\n[2 more matches not shown; 4 in all: narrow the pattern or path]\n"
    );

    let out = w.run(BuiltinTool::Glob, json!({"pattern": "src/[a"})).await;
    assert!(
        err(&out).starts_with("input.pattern: not a valid glob"),
        "{}",
        out.content
    );
    let out = w
        .run(
            BuiltinTool::Glob,
            json!({"pattern": "*", "path": "README.md"}),
        )
        .await;
    assert_eq!(err(&out), "/workspace/README.md: not a directory");
}

// ---------------------------------------------------------------- grep

#[tokio::test]
async fn grep_matches_no_matches_and_bad_regex() {
    let w = TestWorker::start();
    w.put("src/a.rs", "fn main() {\n    println!(\"hi\");\n}\n");
    w.put("src/b.rs", "// nothing here\n");
    w.put("blob.bin", [b'f', b'n', 0, 1]);
    let out = w
        .run(
            BuiltinTool::Grep,
            json!({"pattern": "fn (main|other)\\(", "path": "src"}),
        )
        .await;
    assert_eq!(ok(&out), "src/a.rs:1:fn main() {\n");
    let out = w
        .run(BuiltinTool::Grep, json!({"pattern": "println"}))
        .await;
    assert!(
        ok(&out).contains("src/a.rs:2:    println!(\"hi\");"),
        "{}",
        out.content
    );
    let out = w.run(BuiltinTool::Grep, json!({"pattern": "zebra"})).await;
    assert_eq!(ok(&out), "no matches for \"zebra\" under /workspace");
    let out = w.run(BuiltinTool::Grep, json!({"pattern": "a(b"})).await;
    let text = err(&out);
    assert!(text.contains("[grep exit code 2]"), "{text}");
    assert!(text.contains("[stderr]"), "{text}");

    // The pattern is an argument, never shell text.
    let out = w
        .run(
            BuiltinTool::Grep,
            json!({"pattern": "x'; touch pwned; echo '", "path": "src"}),
        )
        .await;
    assert!(ok(&out).starts_with("no matches"), "{}", out.content);
    let out = w
        .run(BuiltinTool::Grep, json!({"pattern": "--version"}))
        .await;
    assert!(ok(&out).starts_with("no matches"), "{}", out.content);
    assert!(!w.ws.join("pwned").exists());
}

// ---------------------------------------------------------------- bash

#[tokio::test]
async fn bash_reports_stdout_stderr_and_exit_code() {
    let w = TestWorker::start();
    let out = w
        .run(BuiltinTool::Bash, json!({"command": "echo hi"}))
        .await;
    assert_eq!(ok(&out), "hi\n[exit code 0]");
    let out = w
        .run(
            BuiltinTool::Bash,
            json!({"command": "echo out; echo err >&2; exit 3"}),
        )
        .await;
    assert_eq!(err(&out), "out\n[stderr]\nerr\n[exit code 3]");
    let out = w.run(BuiltinTool::Bash, json!({"command": "true"})).await;
    assert_eq!(ok(&out), "(no output)\n[exit code 0]");
    let out = w
        .run(BuiltinTool::Bash, json!({"command": "kill -TERM $$"}))
        .await;
    assert_eq!(err(&out), "(no output)\n[killed by signal 15]");
    // It runs in the workspace, and every call is a fresh shell.
    let out = w
        .run(
            BuiltinTool::Bash,
            json!({"command": "touch made-here; export X=1; cd /"}),
        )
        .await;
    ok(&out);
    assert!(w.ws.join("made-here").exists());
    let out = w
        .run(
            BuiltinTool::Bash,
            json!({"command": "echo \"x=$X\"; ls made-here"}),
        )
        .await;
    assert_eq!(ok(&out), "x=\nmade-here\n[exit code 0]");
    let out = w.run(BuiltinTool::Bash, json!({"restart": true})).await;
    assert!(ok(&out).starts_with("the shell was restarted"));
}

#[tokio::test]
async fn bash_timeout_is_reported_and_clamped() {
    let w = TestWorker::start();
    let started = Instant::now();
    let out = w
        .run(
            BuiltinTool::Bash,
            json!({"command": "echo before; sleep 20", "timeout_ms": 300}),
        )
        .await;
    assert_eq!(err(&out), "before\n[timed out after 300 ms]");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A timeout above the maximum is clamped to it.
    let limits = ToolLimits {
        max_timeout_ms: 200,
        ..ToolLimits::default()
    };
    let out = w
        .run_with(
            BuiltinTool::Bash,
            json!({"command": "sleep 20", "timeout_ms": 100_000}),
            &limits,
        )
        .await;
    assert_eq!(err(&out), "(no output)\n[timed out after 200 ms]");
    // …and so is the default.
    let limits = ToolLimits {
        default_timeout_ms: 250,
        ..ToolLimits::default()
    };
    let out = w
        .run_with(BuiltinTool::Bash, json!({"command": "sleep 20"}), &limits)
        .await;
    assert_eq!(err(&out), "(no output)\n[timed out after 250 ms]");
}

#[tokio::test]
async fn bash_output_is_truncated_with_a_marker() {
    let w = TestWorker::start();
    let limits = ToolLimits::default();
    let out = w
        .run(
            BuiltinTool::Bash,
            json!({"command": "yes | head -c 5000000; echo; echo THE-END"}),
        )
        .await;
    let text = ok(&out);
    assert!(
        text.len() <= limits.max_output_bytes + 100,
        "{}",
        text.len()
    );
    assert!(text.starts_with("y\ny\ny\n"));
    assert!(
        text.ends_with("THE-END\n[exit code 0]"),
        "{}",
        &text[text.len() - 50..]
    );
    let omitted: usize = text
        .split("[… ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    // Every byte of output is either shown or counted.
    let body = text
        .strip_suffix("[exit code 0]")
        .unwrap()
        .replace(&format!("\n[… {omitted} bytes truncated …]\n"), "");
    assert_eq!(body.len() + omitted, 5_000_000 + 1 + 8);
}

#[tokio::test]
async fn a_dropped_call_leaves_the_command_running_and_its_outcome_is_picked_up() {
    let w = TestWorker::start();
    let limits = ToolLimits::default();
    let input = json!({"command": "sleep 1; touch done; echo finished"});
    let mut fut = Box::pin(run_builtin(
        &w.client,
        BuiltinTool::Bash,
        &input,
        &limits,
        "drop-me",
    ));
    assert!(tokio::time::timeout(Duration::from_millis(200), &mut fut)
        .await
        .is_err());
    // It runs under the caller's exec id, and outlives the call (an orchestrator that
    // stops mid-call).
    assert_eq!(w.running_execs().await, ["drop-me"]);
    drop(fut);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(w.running_execs().await, ["drop-me"]);
    // Asked again (a restarted orchestrator): the real outcome, once it ends.
    let bash = AvailableTool::builtin(BuiltinTool::Bash, PermissionPolicy::AlwaysAllow);
    match resume_tool(&w.client, &bash, &input, &limits, "drop-me").await {
        Resumed::Done(out) => {
            assert!(!out.is_error, "{out:?}");
            assert!(
                out.content.contains("finished") && out.content.contains("[exit code 0]"),
                "{out:?}"
            );
        }
        _ => panic!("the worker knows the exec"),
    }
    assert!(w.ws.join("done").exists(), "it ran to its end, once");
    // An exec the worker never received (the orchestrator stopped between recording
    // the call's start and sending it) may be run now.
    assert!(matches!(
        resume_tool(&w.client, &bash, &input, &limits, "never-sent").await,
        Resumed::Rerun
    ));
}

#[tokio::test]
async fn a_call_whose_records_are_gone_has_an_unknown_outcome() {
    let w = TestWorker::start_with(|c| c.exec_retention = Duration::ZERO);
    let limits = ToolLimits::default();
    let input = json!({"command": "echo ran"});
    let out = run_builtin(&w.client, BuiltinTool::Bash, &input, &limits, "old").await;
    assert!(!out.is_error, "{out:?}");
    // Another call prunes its records (a zero retention).
    run_builtin(&w.client, BuiltinTool::Bash, &input, &limits, "newer").await;
    let bash = AvailableTool::builtin(BuiltinTool::Bash, PermissionPolicy::AlwaysAllow);
    assert!(matches!(
        resume_tool(&w.client, &bash, &input, &limits, "old").await,
        Resumed::Unknown
    ));
}

#[tokio::test]
async fn cancelling_the_exec_id_ends_the_call() {
    let w = TestWorker::start();
    let client = w.client.clone();
    let call = tokio::spawn(async move {
        run_builtin(
            &client,
            BuiltinTool::Bash,
            &json!({"command": "echo started; sleep 30"}),
            &ToolLimits::default(),
            "cancel-me",
        )
        .await
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while w.running_execs().await.is_empty() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answer = w
        .client
        .json(
            hyper::Method::POST,
            "/cancel",
            Some(&json!({"id": "cancel-me"})),
        )
        .await
        .unwrap();
    assert_eq!(answer["cancelled"], json!(["cancel-me"]));
    let out = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(err(&out), "started\n[cancelled]");
}

// ---------------------------------------------------------------- refusals

#[tokio::test]
async fn paths_outside_the_workspace_are_refused() {
    let w = TestWorker::start();
    std::fs::write(w.outside.join("secret"), "s").unwrap();
    std::os::unix::fs::symlink(&w.outside, w.ws.join("link")).unwrap();
    let cases = [
        (
            BuiltinTool::Read,
            json!({"file_path": "/etc/passwd"}),
            "/etc/passwd",
        ),
        (
            BuiltinTool::Read,
            json!({"file_path": "../outside/secret"}),
            "../outside/secret",
        ),
        (
            BuiltinTool::Write,
            json!({"file_path": "/workspace/../outside/new", "content": "x"}),
            "/workspace/../outside/new",
        ),
        (
            BuiltinTool::Edit,
            json!({"file_path": "~/secret", "old_string": "s", "new_string": "t"}),
            "~/secret",
        ),
        (
            BuiltinTool::Glob,
            json!({"pattern": "*", "path": "/etc"}),
            "/etc",
        ),
        (BuiltinTool::Glob, json!({"pattern": "/etc/*"}), "/etc/*"),
        (
            BuiltinTool::Grep,
            json!({"pattern": "s", "path": "a/../.."}),
            "a/../..",
        ),
    ];
    for (tool, input, shown) in cases {
        let out = w.run(tool, input.clone()).await;
        assert_eq!(
            err(&out),
            format!("{shown} is outside the workspace /workspace"),
            "{tool:?} {input}"
        );
    }
    // A link inside the workspace that leads out is refused by the worker.
    let out = w
        .run(BuiltinTool::Read, json!({"file_path": "link/secret"}))
        .await;
    assert_eq!(
        err(&out),
        "/workspace/link/secret is outside the workspace /workspace"
    );
    let out = w
        .run(
            BuiltinTool::Write,
            json!({"file_path": "link/new", "content": "x"}),
        )
        .await;
    assert!(err(&out).contains("outside the workspace"));
    assert!(!w.outside.join("new").exists());
    assert_eq!(
        std::fs::read_to_string(w.outside.join("secret")).unwrap(),
        "s"
    );
}

#[tokio::test]
async fn wrong_inputs_name_the_field() {
    let w = TestWorker::start();
    let cases = [
        (
            BuiltinTool::Read,
            json!({"file_path": 5}),
            "input.file_path: required string",
        ),
        (
            BuiltinTool::Read,
            json!({}),
            "input.file_path: required string",
        ),
        (
            BuiltinTool::Read,
            json!({"file_path": "a", "view_range": "1-2"}),
            "input.view_range: expected [start, end]",
        ),
        (
            BuiltinTool::Write,
            json!({"file_path": "a"}),
            "input.content: required string",
        ),
        (
            BuiltinTool::Edit,
            json!({"file_path": "a", "old_string": "x", "new_string": "y", "replace_all": "yes"}),
            "input.replace_all: expected a boolean",
        ),
        (
            BuiltinTool::Edit,
            json!({"file_path": "a", "old_string": "x"}),
            "input.new_string: required string",
        ),
        (
            BuiltinTool::Glob,
            json!({"path": "."}),
            "input.pattern: required string",
        ),
        (
            BuiltinTool::Grep,
            json!({"pattern": "x", "path": 3}),
            "input.path: expected a string",
        ),
        (
            BuiltinTool::Bash,
            json!({}),
            "input.command: required string",
        ),
        (
            BuiltinTool::Bash,
            json!({"command": ["ls"]}),
            "input.command: required string",
        ),
        (
            BuiltinTool::Bash,
            json!({"command": "ls", "timeout_ms": "10"}),
            "input.timeout_ms: expected a positive integer",
        ),
        (
            BuiltinTool::Bash,
            json!({"command": "ls", "restart": 1}),
            "input.restart: expected a boolean",
        ),
        (
            BuiltinTool::WebFetch,
            json!({"url": 1}),
            "input.url: required string",
        ),
        (
            BuiltinTool::WebFetch,
            json!({"url": "ftp://example.com/x"}),
            "input.url: only http and https URLs are fetched",
        ),
        (
            BuiltinTool::Write,
            json!("not an object"),
            "input: expected an object",
        ),
    ];
    for (tool, input, expected) in cases {
        let out = w.run(tool, input.clone()).await;
        assert!(
            err(&out).starts_with(expected),
            "{tool:?} {input}: {}",
            out.content
        );
    }
    assert!(!w.ws.join("a").exists());
}

#[tokio::test]
async fn web_search_and_custom_tools_do_not_run() {
    let w = TestWorker::start();
    let out = w.run(BuiltinTool::WebSearch, json!({"query": "x"})).await;
    assert_eq!(err(&out), "web_search is not available in Paddock");
    let custom = AvailableTool {
        kind: ToolKind::Custom,
        name: "deploy".into(),
        ..AvailableTool::builtin(BuiltinTool::Bash, PermissionPolicy::AlwaysAllow)
    };
    let out = run_tool(
        &w.client,
        &custom,
        &json!({"command": "touch ran"}),
        &ToolLimits::default(),
        "",
    )
    .await;
    assert!(err(&out).contains("custom tool"));
    assert!(!w.ws.join("ran").exists());
}

// ---------------------------------------------------------------- web_fetch

/// Serves one fixed HTTP answer per connection on 127.0.0.1.
async fn http_server(body: &'static str) -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(answer.as_bytes()).await;
        }
    });
    (format!("http://{addr}/page"), task)
}

fn fetch_tool(
    allowed: Option<Vec<&str>>,
    blocked: Option<Vec<&str>>,
    tokens: Option<u64>,
) -> AvailableTool {
    let list = |l: Option<Vec<&str>>| l.map(|l| l.into_iter().map(String::from).collect());
    AvailableTool {
        config: Some(BuiltinToolConfig {
            name: BuiltinTool::WebFetch,
            kind: Some(BuiltinTool::WebFetch),
            enabled: Some(true),
            permission_policy: Some(PermissionPolicy::AlwaysAllow),
            allowed_domains: list(allowed),
            blocked_domains: list(blocked),
            max_content_tokens: tokens,
            url_sources: None,
            user_location: None,
        }),
        ..AvailableTool::builtin(BuiltinTool::WebFetch, PermissionPolicy::AlwaysAllow)
    }
}

fn have(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|d| Path::new(&d).join(program).is_file())
    })
}

#[tokio::test]
async fn web_fetch_fetches_and_honours_domain_lists() {
    if !have("curl") {
        eprintln!("SKIPPED web_fetch_fetches_and_honours_domain_lists: curl is not installed");
        return;
    }
    let w = TestWorker::start();
    let (url, server) = http_server("hello from the web\n").await;
    let limits = ToolLimits::default();
    let input = json!({ "url": url });

    let open = fetch_tool(None, None, None);
    let out = run_tool(&w.client, &open, &input, &limits, "").await;
    assert_eq!(ok(&out), "hello from the web\n\n[HTTP 200]");

    let allowed = fetch_tool(Some(vec!["127.0.0.1"]), None, None);
    let out = run_tool(&w.client, &allowed, &input, &limits, "").await;
    assert!(ok(&out).starts_with("hello from the web"));

    let other = fetch_tool(Some(vec!["example.com", "*.example.org"]), None, None);
    let out = run_tool(&w.client, &other, &input, &limits, "").await;
    assert_eq!(
        err(&out),
        "127.0.0.1 is not in web_fetch's allowed_domains (example.com, *.example.org)"
    );
    let blocked = fetch_tool(Some(vec!["127.0.0.1"]), Some(vec!["127.0.0.1"]), None);
    let out = run_tool(&w.client, &blocked, &input, &limits, "").await;
    assert_eq!(
        err(&out),
        "127.0.0.1 is blocked for web_fetch (blocked_domains: 127.0.0.1)"
    );

    // max_content_tokens bounds the content (about 4 bytes a token).
    let small = fetch_tool(None, None, Some(3));
    let out = run_tool(&w.client, &small, &input, &limits, "").await;
    assert!(ok(&out).contains("bytes truncated"), "{}", out.content);
    server.abort();
    let _ = server.await;

    // Nothing listens there any more: curl's failure is an error.
    let out = run_tool(&w.client, &open, &input, &limits, "").await;
    assert!(err(&out).contains("[curl exit code 7]"), "{}", out.content);
}
