//! Tools that run a process in the sandbox (`POST /exec`): bash, grep, web_fetch. The
//! NDJSON stream is read incrementally and only a bounded head and tail of each output
//! stream is kept.

use super::{
    display_path, fields, head_tail, opt_bool, opt_positive, path_field, req_str, ToolLimits,
    ToolOutput,
};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use hyper::Method;
use paddock_backend::worker::{record_bytes, worker_error};
use paddock_backend::{BackendError, WorkerClient};
use paddock_core::agent::BuiltinToolConfig;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::time::Duration;

/// How long past its own timeout an exec may take before the client gives up on the
/// worker (covers the worker's kill grace and drain time).
const CLIENT_SLACK: Duration = Duration::from_secs(30);
/// Longest NDJSON record accepted from the worker (its records carry at most 64 KiB of
/// output, a few times that once escaped).
const MAX_RECORD_BYTES: usize = 8 * 1024 * 1024;
/// web_fetch's own limits (curl's `--max-time` is 30 s).
const FETCH_TIMEOUT_MS: u64 = 45_000;

/// The first and last bytes of one output stream, and how many it had.
pub(crate) struct Capture {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
    half: usize,
}

impl Capture {
    /// Keeps at most `max` bytes: `max / 2` from the start, the rest from the end.
    pub(crate) fn new(max: usize) -> Self {
        Capture {
            head: Vec::new(),
            tail: VecDeque::new(),
            total: 0,
            half: max / 2,
        }
    }

    pub(crate) fn push(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        if self.head.len() < self.half {
            let n = data.len().min(self.half - self.head.len());
            self.head.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        let room = self.half.max(1);
        if data.len() >= room {
            self.tail.clear();
            self.tail.extend(&data[data.len() - room..]);
        } else {
            self.tail.extend(data);
            let excess = self.tail.len().saturating_sub(room);
            self.tail.drain(..excess);
        }
    }

    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Bytes held in memory.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    /// The stream as text in about `budget` bytes (head, marker, tail when cut).
    pub(crate) fn render(&self, budget: usize) -> String {
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        head_tail(&self.head, &tail, self.total, budget)
    }
}

/// How an exec ended (its `exit` record).
#[derive(Debug, Clone, Default)]
pub(crate) struct Exit {
    pub code: Option<i64>,
    pub signal: Option<i64>,
    pub timed_out: bool,
    pub cancelled: bool,
}

pub(crate) struct ExecRun {
    pub stdout: Capture,
    pub stderr: Capture,
    /// `None`: the stream ended (or the client gave up) without an `exit` record.
    pub exit: Option<Exit>,
}

/// Why an exec did not start.
pub(crate) enum ExecFailure {
    /// The worker refused it (validation, `spawn_failed`, id in use, …).
    Refused {
        kind: Option<String>,
        message: String,
    },
    /// The worker could not be reached, or the stream broke before `started`.
    Unreachable(String),
}

impl ExecFailure {
    fn describe(&self) -> String {
        match self {
            ExecFailure::Refused { message, .. } => format!("the sandbox refused: {message}"),
            ExecFailure::Unreachable(m) => format!("the sandbox could not be reached: {m}"),
        }
    }
}

/// Runs `req` (a `POST /exec` body) and reads its stream, keeping about `max` bytes of
/// each output stream. Gives up `timeout_ms + CLIENT_SLACK` after the start.
pub(crate) async fn run_exec(
    worker: &WorkerClient,
    req: &Value,
    max: usize,
    timeout_ms: u64,
) -> Result<ExecRun, ExecFailure> {
    let resp = worker
        .request(
            Method::POST,
            "/exec",
            Bytes::from(req.to_string()),
            Some("application/json"),
        )
        .await;
    read_exec(resp, max, timeout_ms).await
}

/// Reads the records of exec `id` again from the start (`GET /exec/{id}`): `None` when
/// the worker never started it (`not_found`; a pruned one is refused as `expired`).
pub(crate) async fn reattach_exec(
    worker: &WorkerClient,
    id: &str,
    max: usize,
    timeout_ms: u64,
) -> Result<Option<ExecRun>, ExecFailure> {
    let resp = worker
        .request(
            Method::GET,
            &format!("/exec/{id}?from=0"),
            Bytes::new(),
            None,
        )
        .await;
    match read_exec(resp, max, timeout_ms).await {
        Err(ExecFailure::Refused { kind, .. }) if kind.as_deref() == Some("not_found") => Ok(None),
        other => other.map(Some),
    }
}

async fn read_exec(
    resp: Result<hyper::Response<hyper::body::Incoming>, BackendError>,
    max: usize,
    timeout_ms: u64,
) -> Result<ExecRun, ExecFailure> {
    let resp = resp.map_err(|e| match e {
        BackendError::Worker { kind, message, .. } => ExecFailure::Refused { kind, message },
        other => ExecFailure::Unreachable(other.to_string()),
    })?;
    let status = resp.status();
    if !status.is_success() {
        let body = http_body_util::Limited::new(resp.into_body(), 1024 * 1024)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        return Err(match worker_error(status.as_u16(), &body) {
            BackendError::Worker { kind, message, .. } => ExecFailure::Refused { kind, message },
            other => ExecFailure::Unreachable(other.to_string()),
        });
    }
    let mut run = ExecRun {
        stdout: Capture::new(max),
        stderr: Capture::new(max),
        exit: None,
    };
    let read = read_stream(resp.into_body().into_data_stream(), &mut run);
    let limit = Duration::from_millis(timeout_ms).saturating_add(CLIENT_SLACK);
    match tokio::time::timeout(limit, read).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "exec stream broke"),
        Err(_) => tracing::warn!(?limit, "the worker did not end the exec stream in time"),
    }
    Ok(run)
}

async fn read_stream(
    mut stream: http_body_util::BodyDataStream<hyper::body::Incoming>,
    run: &mut ExecRun,
) -> Result<(), String> {
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        let mut scan = buf.len();
        buf.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(nl) = buf[scan..].iter().position(|b| *b == b'\n') {
            let end = scan + nl;
            handle_record(&buf[start..end], run);
            start = end + 1;
            scan = start;
        }
        buf.drain(..start);
        if buf.len() > MAX_RECORD_BYTES {
            return Err("the worker sent an over-long exec record".into());
        }
    }
    Ok(())
}

fn handle_record(line: &[u8], run: &mut ExecRun) {
    let Ok(rec) = serde_json::from_slice::<Value>(line) else {
        return;
    };
    match rec["type"].as_str() {
        Some("stdout") => run.stdout.push(&record_bytes(&rec)),
        Some("stderr") => run.stderr.push(&record_bytes(&rec)),
        Some("exit") => {
            run.exit = Some(Exit {
                code: rec["code"].as_i64(),
                signal: rec["signal"].as_i64(),
                timed_out: rec["timed_out"].as_bool().unwrap_or(false),
                cancelled: rec["cancelled"].as_bool().unwrap_or(false),
            })
        }
        _ => {}
    }
}

/// stdout, then stderr under a `[stderr]` label, sharing `max` bytes (a short stream
/// keeps all of itself, the other gets the rest).
fn render_streams(run: &ExecRun, max: usize) -> String {
    let (o, e) = (run.stdout.total(), run.stderr.total());
    let half = (max / 2) as u64;
    let (ob, eb) = if o + e <= max as u64 {
        (o as usize, e as usize)
    } else if o <= half {
        (o as usize, max - o as usize)
    } else if e <= half {
        (max - e as usize, e as usize)
    } else {
        (max / 2, max - max / 2)
    };
    let mut out = String::new();
    if o > 0 {
        out.push_str(&run.stdout.render(ob));
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    if e > 0 {
        out.push_str("[stderr]\n");
        out.push_str(&run.stderr.render(eb));
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

// ---------------------------------------------------------------- bash

/// The `POST /exec` body of a bash call and its timeout, or why the input is bad.
fn bash_request(
    input: &Value,
    limits: &ToolLimits,
    exec_id: &str,
) -> Result<Result<(Value, u64), ToolOutput>, String> {
    let f = fields(input)?;
    let restart = opt_bool(f, "restart")?.unwrap_or(false);
    let timeout_ms = opt_positive(f, "timeout_ms")?
        .unwrap_or(limits.default_timeout_ms)
        .clamp(1, limits.max_timeout_ms.max(1));
    let command = match f.get("command") {
        None | Some(Value::Null) if restart => {
            return Ok(Err(ToolOutput::ok(
                "the shell was restarted (every command runs in a fresh shell anyway)",
            )))
        }
        Some(Value::String(c)) if !c.trim().is_empty() => c.as_str(),
        Some(Value::String(_)) => return Err("input.command: must not be empty".into()),
        _ => return Err("input.command: required string".into()),
    };
    let mut req = json!({"command": command, "timeout_ms": timeout_ms});
    if !exec_id.is_empty() {
        req["id"] = json!(exec_id);
    }
    Ok(Ok((req, timeout_ms)))
}

pub(crate) async fn bash(
    worker: &WorkerClient,
    input: &Value,
    limits: &ToolLimits,
    exec_id: &str,
) -> Result<ToolOutput, String> {
    let (req, timeout_ms) = match bash_request(input, limits, exec_id)? {
        Ok(r) => r,
        Err(done) => return Ok(done),
    };
    let run = run_exec(worker, &req, limits.max_output_bytes, timeout_ms)
        .await
        .map_err(|e| e.describe())?;
    Ok(bash_outcome(&run, timeout_ms, limits))
}

/// A bash call started before (by an orchestrator that restarted since), asked again
/// of the worker: its outcome when the worker has it; to run now when the worker never
/// received it (the orchestrator stopped between recording the call's start and
/// sending it); unknown when its records were pruned.
pub(crate) async fn resume_bash(
    worker: &WorkerClient,
    input: &Value,
    limits: &ToolLimits,
    exec_id: &str,
) -> super::Resumed {
    use super::Resumed;
    let timeout_ms = match bash_request(input, limits, exec_id) {
        Ok(Ok((_, t))) => t,
        Ok(Err(done)) => return Resumed::Done(done),
        Err(e) => return Resumed::Done(ToolOutput::error(e)),
    };
    match reattach_exec(worker, exec_id, limits.max_output_bytes, timeout_ms).await {
        Ok(Some(run)) => Resumed::Done(bash_outcome(&run, timeout_ms, limits)),
        Ok(None) => Resumed::Rerun,
        Err(ExecFailure::Refused { kind, .. }) if kind.as_deref() == Some("expired") => {
            Resumed::Unknown
        }
        Err(e) => Resumed::Done(ToolOutput::error(e.describe())),
    }
}

fn bash_outcome(run: &ExecRun, timeout_ms: u64, limits: &ToolLimits) -> ToolOutput {
    let mut content = render_streams(run, limits.max_output_bytes);
    if content.is_empty() {
        content.push_str("(no output)\n");
    }
    let is_error = match &run.exit {
        None => {
            content.push_str("[the command's outcome is unknown: the sandbox stopped reporting]");
            true
        }
        Some(x) if x.timed_out => {
            content.push_str(&format!("[timed out after {timeout_ms} ms]"));
            true
        }
        Some(x) if x.cancelled => {
            content.push_str("[cancelled]");
            true
        }
        Some(Exit {
            code: Some(code), ..
        }) => {
            content.push_str(&format!("[exit code {code}]"));
            *code != 0
        }
        Some(Exit {
            signal: Some(sig), ..
        }) => {
            content.push_str(&format!("[killed by signal {sig}]"));
            true
        }
        Some(_) => {
            content.push_str("[exit status unknown]");
            true
        }
    };
    ToolOutput { content, is_error }
}

// ---------------------------------------------------------------- grep

pub(crate) async fn grep(
    worker: &WorkerClient,
    input: &Value,
    limits: &ToolLimits,
    exec_id: &str,
) -> Result<ToolOutput, String> {
    let f = fields(input)?;
    let pattern = req_str(f, "pattern")?;
    if pattern.contains('\0') {
        return Err("input.pattern: must not contain a NUL byte".into());
    }
    let path = path_field(f, "path", false)?;
    let mut req = json!({
        "argv": ["grep", "-rnE", "--binary-files=without-match", "-e", pattern, "--", path],
        "timeout_ms": limits.default_timeout_ms,
        // Quick and harmless to run again: it need not outlive its caller.
        "kill_on_disconnect": true,
    });
    if !exec_id.is_empty() {
        req["id"] = json!(exec_id);
    }
    let run = match run_exec(
        worker,
        &req,
        limits.max_output_bytes,
        limits.default_timeout_ms,
    )
    .await
    {
        Ok(run) => run,
        Err(ExecFailure::Refused { kind: Some(k), .. }) if k == "spawn_failed" => {
            return Err("grep is not installed in the sandbox; use bash instead".into())
        }
        Err(e) => return Err(e.describe()),
    };
    let Some(exit) = &run.exit else {
        return Err("grep did not finish: the sandbox stopped reporting".into());
    };
    if exit.timed_out {
        return Err(format!(
            "grep timed out after {} ms; search a narrower path",
            limits.default_timeout_ms
        ));
    }
    match exit.code {
        Some(0) => Ok(ToolOutput::ok(run.stdout.render(limits.max_output_bytes))),
        Some(1) if run.stdout.total() == 0 => Ok(ToolOutput::ok(format!(
            "no matches for {pattern:?} under {}",
            display_path(&path)
        ))),
        _ => {
            let mut content = render_streams(&run, limits.max_output_bytes);
            match (exit.code, exit.signal) {
                (Some(c), _) => content.push_str(&format!("[grep exit code {c}]")),
                (None, Some(s)) => content.push_str(&format!("[grep killed by signal {s}]")),
                _ => content.push_str("[grep failed]"),
            }
            Ok(ToolOutput::error(content))
        }
    }
}

// ---------------------------------------------------------------- web_fetch

/// Whether `host` matches a domain-list entry: the same host, or for `*.x` any host
/// below `x`.
pub(crate) fn domain_matches(host: &str, entry: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let entry = entry.trim().trim_end_matches('.').to_ascii_lowercase();
    match entry.strip_prefix("*.") {
        Some(base) => host.len() > base.len() + 1 && host.ends_with(&format!(".{base}")),
        None => host == entry,
    }
}

/// The URL's host when `web_fetch` may fetch it under `config`'s domain lists.
pub(crate) fn check_url(url: &str, config: Option<&BuiltinToolConfig>) -> Result<String, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("input.url: not a valid URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "input.url: only http and https URLs are fetched, not {}:",
            parsed.scheme()
        ));
    }
    let host = parsed
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
        .ok_or_else(|| "input.url: the URL has no host".to_string())?;
    if let Some(cfg) = config {
        if let Some(blocked) = &cfg.blocked_domains {
            if let Some(d) = blocked.iter().find(|d| domain_matches(&host, d)) {
                return Err(format!(
                    "{host} is blocked for web_fetch (blocked_domains: {d})"
                ));
            }
        }
        if let Some(allowed) = &cfg.allowed_domains {
            if !allowed.is_empty() && !allowed.iter().any(|d| domain_matches(&host, d)) {
                return Err(format!(
                    "{host} is not in web_fetch's allowed_domains ({})",
                    allowed.join(", ")
                ));
            }
        }
    }
    Ok(host)
}

pub(crate) async fn web_fetch(
    worker: &WorkerClient,
    input: &Value,
    limits: &ToolLimits,
    config: Option<&BuiltinToolConfig>,
    exec_id: &str,
) -> Result<ToolOutput, String> {
    let f = fields(input)?;
    let url = req_str(f, "url")?;
    check_url(url, config)?;
    // About four bytes a token.
    let max = config
        .and_then(|c| c.max_content_tokens)
        .map(|t| usize::try_from(t.saturating_mul(4)).unwrap_or(usize::MAX))
        .unwrap_or(usize::MAX)
        .min(limits.max_output_bytes);
    let mut req = json!({
        "argv": [
            "curl", "-sS", "-L", "--max-time", "30", "--max-filesize", "5000000",
            "--proto", "=http,https", "--proto-redir", "=http,https",
            "-w", "\n[HTTP %{http_code}]", "--", url
        ],
        "timeout_ms": FETCH_TIMEOUT_MS,
        "kill_on_disconnect": true,
    });
    if !exec_id.is_empty() {
        req["id"] = json!(exec_id);
    }
    let run = match run_exec(worker, &req, max, FETCH_TIMEOUT_MS).await {
        Ok(run) => run,
        Err(ExecFailure::Refused { kind: Some(k), .. }) if k == "spawn_failed" => {
            return Err("web_fetch needs curl in the sandbox image, and it is not installed".into())
        }
        Err(e) => return Err(e.describe()),
    };
    match &run.exit {
        Some(Exit { code: Some(0), .. }) => Ok(ToolOutput::ok(run.stdout.render(max))),
        Some(x) => {
            let mut content = run.stderr.render(max);
            if !content.ends_with('\n') && !content.is_empty() {
                content.push('\n');
            }
            match (x.timed_out, x.code, x.signal) {
                (true, _, _) => content.push_str("[timed out]"),
                (_, Some(c), _) => content.push_str(&format!("[curl exit code {c}]")),
                (_, None, Some(s)) => content.push_str(&format!("[curl killed by signal {s}]")),
                _ => content.push_str("[curl failed]"),
            }
            Ok(ToolOutput::error(content))
        }
        None => Err("the fetch did not finish: the sandbox stopped reporting".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_head_and_tail_in_bounded_memory() {
        let mut c = Capture::new(100);
        let mut all = Vec::new();
        for i in 0..10_000u32 {
            let chunk = format!("line {i}\n");
            all.extend_from_slice(chunk.as_bytes());
            c.push(chunk.as_bytes());
            assert!(c.held() <= 100);
        }
        assert_eq!(c.total(), all.len() as u64);
        let text = c.render(100);
        assert!(text.starts_with("line 0\nline 1\n"), "{text}");
        assert!(text.ends_with("line 9999\n"), "{text}");
        let omitted: u64 = text
            .split("[… ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let shown = text.len() - format!("\n[… {omitted} bytes truncated …]\n").len();
        assert_eq!(shown as u64 + omitted, all.len() as u64);
    }

    #[test]
    fn capture_with_a_big_chunk_and_short_output() {
        let mut c = Capture::new(10);
        c.push(b"0123456789abcdefghij");
        assert_eq!(c.held(), 10);
        assert_eq!(c.render(10_000), "01234\n[… 10 bytes truncated …]\nfghij");
        let mut short = Capture::new(100);
        short.push(b"hello ");
        short.push(b"world");
        assert_eq!(short.render(100), "hello world");
    }

    #[test]
    fn streams_share_the_budget() {
        let mut run = ExecRun {
            stdout: Capture::new(1000),
            stderr: Capture::new(1000),
            exit: None,
        };
        run.stdout.push(&[b'o'; 5000]);
        run.stderr.push(b"short error\n");
        let text = render_streams(&run, 1000);
        assert!(text.ends_with("[stderr]\nshort error\n"), "{text}");
        assert!(text.len() < 1100, "{}", text.len());
        assert!(text.contains("bytes truncated"));
    }

    #[test]
    fn domains_match_hosts_and_wildcards() {
        assert!(domain_matches("example.com", "example.com"));
        assert!(domain_matches("Example.COM.", "example.com"));
        assert!(!domain_matches("docs.example.com", "example.com"));
        assert!(domain_matches("docs.example.com", "*.example.com"));
        assert!(domain_matches("a.b.example.com", "*.example.com"));
        assert!(!domain_matches("example.com", "*.example.com"));
        assert!(!domain_matches("badexample.com", "*.example.com"));
        assert!(!domain_matches("example.com.evil", "example.com"));
    }

    fn cfg(allowed: Option<&[&str]>, blocked: Option<&[&str]>) -> BuiltinToolConfig {
        let list = |l: Option<&[&str]>| l.map(|l| l.iter().map(|s| s.to_string()).collect());
        BuiltinToolConfig {
            name: paddock_core::agent::BuiltinTool::WebFetch,
            kind: None,
            enabled: Some(true),
            permission_policy: None,
            allowed_domains: list(allowed),
            blocked_domains: list(blocked),
            max_content_tokens: None,
            url_sources: None,
            user_location: None,
        }
    }

    #[test]
    fn urls_are_checked_against_scheme_and_domain_lists() {
        assert_eq!(
            check_url("https://Example.com/x?y", None).as_deref(),
            Ok("example.com")
        );
        assert_eq!(check_url("http://[::1]:8080/", None).as_deref(), Ok("::1"));
        for bad in ["ftp://example.com/", "file:///etc/passwd", "gopher://x"] {
            let e = check_url(bad, None).err().unwrap_or_default();
            assert!(
                e.starts_with("input.url: only http and https"),
                "{bad}: {e}"
            );
        }
        assert!(check_url("not a url", None)
            .err()
            .is_some_and(|e| e.starts_with("input.url:")));
        let c = cfg(
            Some(&["docs.rs", "*.github.com"]),
            Some(&["evil.github.com"]),
        );
        assert!(check_url("https://docs.rs/x", Some(&c)).is_ok());
        assert!(check_url("https://api.github.com/", Some(&c)).is_ok());
        assert!(check_url("https://evil.github.com/", Some(&c))
            .err()
            .is_some_and(|e| e.contains("blocked")));
        assert!(check_url("https://example.com/", Some(&c))
            .err()
            .is_some_and(|e| e.contains("allowed_domains")));
        let only_blocked = cfg(None, Some(&["*.example.com"]));
        assert!(check_url("https://example.com/", Some(&only_blocked)).is_ok());
        assert!(check_url("https://a.example.com/", Some(&only_blocked)).is_err());
    }
}
