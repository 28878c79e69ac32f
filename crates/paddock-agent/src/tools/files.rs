//! Tools on the worker's file API: read, write, edit, glob.

use super::{
    display_path, fields, opt_bool, path_field, query, req_str, worker_failure, ToolLimits,
    ToolOutput, WORKSPACE,
};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Response};
use paddock_backend::worker::worker_error;
use paddock_backend::{BackendError, WorkerClient};
use serde_json::Value;
use std::collections::VecDeque;

/// Largest file `edit` rewrites.
const MAX_EDIT_BYTES: u64 = 16 * 1024 * 1024;
/// Bytes of a file checked for NUL bytes before anything is shown.
const SNIFF_BYTES: usize = 8192;
/// Most directory entries a `glob` walk visits.
const MAX_GLOB_VISITS: usize = 200_000;

/// `GET /files/read`, answering the worker's error as a [`BackendError`].
async fn open_read(
    worker: &WorkerClient,
    rel: &str,
    limit: Option<u64>,
) -> Result<Response<Incoming>, BackendError> {
    let limit_s = limit.map(|l| l.to_string());
    let mut pairs = vec![("path", rel)];
    if let Some(l) = &limit_s {
        pairs.push(("limit", l));
    }
    let resp = worker
        .request(
            Method::GET,
            &format!("/files/read?{}", query(&pairs)),
            Bytes::new(),
            None,
        )
        .await?;
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let body = http_body_util::Limited::new(resp.into_body(), 1024 * 1024)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    Err(worker_error(status, &body))
}

/// The words for a failed read, telling a directory apart from other non-files.
async fn read_failure(worker: &WorkerClient, e: &BackendError, rel: &str) -> String {
    let shown = display_path(rel);
    if let BackendError::Worker {
        kind: Some(kind), ..
    } = e
    {
        if kind == "not_a_file" {
            let stat = worker
                .json(
                    Method::GET,
                    &format!("/files/stat?{}", query(&[("path", rel)])),
                    None,
                )
                .await;
            if stat.is_ok_and(|s| s["type"] == "dir") {
                return format!("{shown} is a directory; use glob to list its files");
            }
        }
    }
    worker_failure(e, &shown)
}

fn file_size(resp: &Response<Incoming>) -> Option<u64> {
    resp.headers()
        .get("x-paddock-file-size")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Which lines to show: 1-based, inclusive; `end: None` = to the end of the file.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Lines {
    start: u64,
    end: Option<u64>,
}

fn view_range(f: &super::Fields) -> Result<Lines, String> {
    let bad = || {
        "input.view_range: expected [start, end] line numbers (start >= 1; end >= start, or end <= 0 for the end of the file)"
            .to_string()
    };
    match f.get("view_range") {
        None | Some(Value::Null) => Ok(Lines {
            start: 1,
            end: None,
        }),
        Some(Value::Array(a)) if a.len() == 2 => {
            let start = a[0].as_i64().filter(|s| *s >= 1).ok_or_else(bad)? as u64;
            let end = a[1].as_i64().ok_or_else(bad)?;
            if end <= 0 {
                return Ok(Lines { start, end: None });
            }
            let end = end as u64;
            if end < start {
                return Err(bad());
            }
            Ok(Lines {
                start,
                end: Some(end),
            })
        }
        Some(_) => Err(bad()),
    }
}

/// Numbers the selected lines of a byte stream like `cat -n`, keeping at most `budget`
/// bytes of output and at most one line (cut at `budget`) in memory.
struct Numberer {
    lines: Lines,
    budget: usize,
    /// Number of the line being read.
    line_no: u64,
    current: Vec<u8>,
    current_cut: bool,
    out: String,
    /// The output was cut; the next line to read is the one given.
    truncated_at: Option<u64>,
    /// The last line wanted has been read.
    done: bool,
    sniffed: usize,
    binary: bool,
    /// Bytes seen since the last newline (to count a last line without one).
    pending: bool,
}

impl Numberer {
    fn new(lines: Lines, budget: usize) -> Self {
        Numberer {
            lines,
            budget,
            line_no: 1,
            current: Vec::new(),
            current_cut: false,
            out: String::new(),
            truncated_at: None,
            done: false,
            sniffed: 0,
            binary: false,
            pending: false,
        }
    }

    fn stopped(&self) -> bool {
        self.done || self.binary || self.truncated_at.is_some()
    }

    fn wanted(&self) -> bool {
        self.line_no >= self.lines.start && self.lines.end.is_none_or(|e| self.line_no <= e)
    }

    fn feed(&mut self, mut data: &[u8]) {
        if self.sniffed < SNIFF_BYTES {
            let n = data.len().min(SNIFF_BYTES - self.sniffed);
            self.sniffed += n;
            if data[..n].contains(&0) {
                self.binary = true;
                return;
            }
        }
        while !data.is_empty() && !self.stopped() {
            let nl = data.iter().position(|b| *b == b'\n');
            let piece = &data[..nl.unwrap_or(data.len())];
            if self.wanted() && !self.current_cut {
                if piece.contains(&0) {
                    self.binary = true;
                    return;
                }
                let room = self.budget.saturating_sub(self.current.len());
                if piece.len() > room {
                    // A line longer than the whole budget: show its start and stop.
                    self.current.extend_from_slice(&piece[..room]);
                    self.current_cut = true;
                    self.end_line();
                    return;
                } else {
                    self.current.extend_from_slice(piece);
                }
            }
            self.pending = true;
            match nl {
                Some(i) => {
                    self.end_line();
                    data = &data[i + 1..];
                }
                None => data = &[],
            }
        }
    }

    fn end_line(&mut self) {
        self.pending = false;
        if self.wanted() {
            let text = String::from_utf8_lossy(&self.current);
            let line = format!("{:>6}\t{}\n", self.line_no, text);
            if self.out.len() + line.len() > self.budget || self.current_cut {
                if self.out.is_empty() {
                    // One huge line: show its start.
                    let mut cut = self.budget.min(line.len());
                    while !line.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    self.out.push_str(&line[..cut]);
                    self.out.push('\n');
                    self.truncated_at = Some(self.line_no + 1);
                } else {
                    self.truncated_at = Some(self.line_no);
                }
                return;
            }
            self.out.push_str(&line);
            self.current.clear();
        }
        if self.lines.end.is_some_and(|e| self.line_no >= e) {
            self.done = true;
        }
        self.line_no += 1;
    }

    fn finish(&mut self) {
        if self.pending && !self.stopped() {
            self.end_line();
        }
    }

    /// Lines the file has, when it was read to the end.
    fn lines_read(&self) -> u64 {
        self.line_no - 1
    }
}

pub(crate) async fn read(
    worker: &WorkerClient,
    input: &Value,
    limits: &ToolLimits,
) -> Result<ToolOutput, String> {
    let f = fields(input)?;
    let rel = path_field(f, "file_path", true)?;
    let lines = view_range(f)?;
    let shown = display_path(&rel);
    let resp = match open_read(worker, &rel, None).await {
        Ok(r) => r,
        Err(e) => return Err(read_failure(worker, &e, &rel).await),
    };
    let size = file_size(&resp).unwrap_or(0);
    let budget = usize::try_from(limits.max_read_bytes).unwrap_or(usize::MAX);
    let mut n = Numberer::new(lines, budget);
    let mut body = resp.into_body();
    while !n.stopped() {
        match body.frame().await {
            None => break,
            Some(Err(e)) => {
                return Err(format!(
                    "{shown}: the sandbox stopped sending the file: {e}"
                ))
            }
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    n.feed(data);
                }
            }
        }
    }
    // Dropping the body closes the connection when the file was not read to its end.
    drop(body);
    n.finish();
    if n.binary {
        return Err(format!("{shown} is a binary file ({size} bytes)"));
    }
    if size == 0 {
        return Ok(ToolOutput::ok(format!("({shown} is empty)")));
    }
    if n.out.is_empty() && n.truncated_at.is_none() {
        return Err(format!(
            "input.view_range: {shown} has {} lines; line {} is past its end",
            n.lines_read(),
            lines.start
        ));
    }
    let mut content = n.out;
    if let Some(next) = n.truncated_at {
        content.push_str(&format!(
            "[output cut at {budget} bytes; {shown} has {size} bytes: read on with view_range [{next}, …]]"
        ));
    }
    Ok(ToolOutput::ok(content))
}

/// `PUT /files/write` of `content`; the worker's JSON answer.
async fn put(
    worker: &WorkerClient,
    rel: &str,
    content: Bytes,
    mkdirs: bool,
) -> Result<Value, BackendError> {
    let mut pairs = vec![("path", rel)];
    if mkdirs {
        pairs.push(("mkdirs", "true"));
    }
    let resp = worker
        .request(
            Method::PUT,
            &format!("/files/write?{}", query(&pairs)),
            content,
            Some("application/octet-stream"),
        )
        .await?;
    let status = resp.status();
    let body = http_body_util::Limited::new(resp.into_body(), 1024 * 1024)
        .collect()
        .await
        .map_err(|e| BackendError::Unreachable(format!("reading the worker's answer: {e}")))?
        .to_bytes();
    if !status.is_success() {
        return Err(worker_error(status.as_u16(), &body));
    }
    Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
}

pub(crate) async fn write(worker: &WorkerClient, input: &Value) -> Result<ToolOutput, String> {
    let f = fields(input)?;
    let rel = path_field(f, "file_path", true)?;
    let content = req_str(f, "content")?;
    let shown = display_path(&rel);
    if rel == "." {
        return Err(format!("{shown} is a directory"));
    }
    let len = content.len();
    match put(
        worker,
        &rel,
        Bytes::copy_from_slice(content.as_bytes()),
        true,
    )
    .await
    {
        Ok(v) => {
            let created = if v["created"] == true {
                " (new file)"
            } else {
                ""
            };
            Ok(ToolOutput::ok(format!(
                "wrote {len} bytes to {shown}{created}"
            )))
        }
        Err(BackendError::Worker { kind: Some(k), .. }) if k == "not_a_file" => {
            Err(format!("{shown} is a directory"))
        }
        Err(e) => Err(worker_failure(&e, &shown)),
    }
}

pub(crate) async fn edit(worker: &WorkerClient, input: &Value) -> Result<ToolOutput, String> {
    let f = fields(input)?;
    let rel = path_field(f, "file_path", true)?;
    let old = req_str(f, "old_string")?;
    let new = req_str(f, "new_string")?;
    let replace_all = opt_bool(f, "replace_all")?.unwrap_or(false);
    if old.is_empty() {
        return Err("input.old_string: must not be empty (use write to create a file)".into());
    }
    if old == new {
        return Err("input.new_string: must differ from old_string".into());
    }
    let shown = display_path(&rel);
    let resp = match open_read(worker, &rel, Some(MAX_EDIT_BYTES + 1)).await {
        Ok(r) => r,
        Err(e) => return Err(read_failure(worker, &e, &rel).await),
    };
    if file_size(&resp).is_some_and(|s| s > MAX_EDIT_BYTES) {
        return Err(format!(
            "{shown} is larger than {MAX_EDIT_BYTES} bytes; edit it with bash"
        ));
    }
    let bytes = http_body_util::Limited::new(resp.into_body(), MAX_EDIT_BYTES as usize + 1)
        .collect()
        .await
        .map_err(|e| format!("{shown}: reading it from the sandbox failed: {e}"))?
        .to_bytes();
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| format!("{shown} is not UTF-8 text; edit only changes text files"))?;
    let count = text.matches(old).count();
    if count == 0 {
        return Err(format!("old_string not found in {shown}"));
    }
    if count > 1 && !replace_all {
        return Err(format!(
            "old_string occurs {count} times in {shown}; include more context to make it unique, or set replace_all"
        ));
    }
    let updated = if replace_all {
        text.replace(old, new)
    } else {
        text.replacen(old, new, 1)
    };
    put(worker, &rel, Bytes::from(updated), false)
        .await
        .map_err(|e| worker_failure(&e, &shown))?;
    let what = if count == 1 {
        "1 occurrence".to_string()
    } else {
        format!("{count} occurrences")
    };
    Ok(ToolOutput::ok(format!("replaced {what} in {shown}")))
}

pub(crate) async fn glob(
    worker: &WorkerClient,
    input: &Value,
    limits: &ToolLimits,
) -> Result<ToolOutput, String> {
    let f = fields(input)?;
    let pattern = req_str(f, "pattern")?;
    let base = path_field(f, "path", false)?;
    // An absolute pattern is matched against absolute paths (it must lie in the
    // workspace); a relative one against paths relative to `path`.
    let absolute = pattern.starts_with('/');
    if absolute {
        let prefix_ok = pattern == WORKSPACE || pattern.starts_with(&format!("{WORKSPACE}/"));
        if !prefix_ok || pattern.split('/').any(|c| c == "..") {
            return Err(format!("{pattern} is outside the workspace {WORKSPACE}"));
        }
    }
    let matcher = globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| format!("input.pattern: not a valid glob: {e}"))?
        .compile_matcher();
    let shown_base = display_path(&base);
    let mut matches: Vec<String> = Vec::new();
    // Entry paths come back resolved (a linked base lists under its target).
    let mut resolved_base: Option<String> = None;
    let mut dirs: VecDeque<String> = VecDeque::from([base.clone()]);
    let mut visited = 0usize;
    let mut walk_cut = false;
    while let Some(dir) = dirs.pop_front() {
        let listing = worker
            .json(
                Method::GET,
                &format!(
                    "/files/list?{}",
                    query(&[("path", &dir), ("limit", "100000")])
                ),
                None,
            )
            .await;
        let listing = match listing {
            Ok(l) => l,
            // The base must be a directory; below it, skip what vanished or is unreadable.
            Err(e) if dir == base => return Err(worker_failure(&e, &shown_base)),
            Err(e) => {
                tracing::debug!(dir, error = %e, "glob: skipping a directory");
                continue;
            }
        };
        let root = resolved_base
            .get_or_insert_with(|| listing["path"].as_str().unwrap_or(&base).to_string())
            .clone();
        let entries = listing["entries"].as_array().cloned().unwrap_or_default();
        for entry in entries {
            visited += 1;
            let (Some(path), Some(kind)) = (entry["path"].as_str(), entry["type"].as_str()) else {
                continue;
            };
            if kind == "dir" {
                dirs.push_back(path.to_string());
                continue;
            }
            let candidate = if absolute {
                format!("{WORKSPACE}/{path}")
            } else if root == "." {
                path.to_string()
            } else {
                path.strip_prefix(&format!("{root}/"))
                    .unwrap_or(path)
                    .to_string()
            };
            if matcher.is_match(&candidate) {
                matches.push(path.to_string());
            }
        }
        if listing["truncated"] == true || visited >= MAX_GLOB_VISITS {
            walk_cut = true;
            if visited >= MAX_GLOB_VISITS {
                break;
            }
        }
    }
    matches.sort();
    let total = matches.len();
    if total == 0 {
        let mut msg = format!("no files match {pattern:?} under {shown_base}");
        if walk_cut {
            msg.push_str(&format!(" (the search stopped after {visited} entries)"));
        }
        return Ok(ToolOutput::ok(msg));
    }
    matches.truncate(limits.max_glob_results);
    let mut content = matches.join("\n");
    content.push('\n');
    if total > matches.len() {
        content.push_str(&format!(
            "[{} more matches not shown; {total} in all: narrow the pattern or path]\n",
            total - matches.len()
        ));
    }
    if walk_cut {
        content.push_str(&format!(
            "[the search stopped after {visited} entries; some files were not examined]\n"
        ));
    }
    Ok(ToolOutput::ok(content))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn number(data: &[&[u8]], lines: Lines, budget: usize) -> Numberer {
        let mut n = Numberer::new(lines, budget);
        for d in data {
            n.feed(d);
        }
        n.finish();
        n
    }

    const ALL: Lines = Lines {
        start: 1,
        end: None,
    };

    #[test]
    fn numbering_like_cat_n_across_chunks() {
        let n = number(&[b"one\ntw", b"o\nthree"], ALL, 1000);
        assert_eq!(n.out, "     1\tone\n     2\ttwo\n     3\tthree\n");
        assert_eq!(n.truncated_at, None);
        let n = number(&[b"a\nb\n"], ALL, 1000);
        assert_eq!(n.out, "     1\ta\n     2\tb\n");
        assert_eq!(n.lines_read(), 2);
    }

    #[test]
    fn ranges_select_lines() {
        let text: String = (1..=20).map(|i| format!("l{i}\n")).collect();
        let n = number(
            &[text.as_bytes()],
            Lines {
                start: 3,
                end: Some(4),
            },
            1000,
        );
        assert_eq!(n.out, "     3\tl3\n     4\tl4\n");
        assert!(n.done);
        let n = number(
            &[text.as_bytes()],
            Lines {
                start: 19,
                end: None,
            },
            1000,
        );
        assert_eq!(n.out, "    19\tl19\n    20\tl20\n");
    }

    #[test]
    fn budget_cuts_at_a_line_and_huge_lines_are_bounded() {
        let text: String = (1..=100).map(|i| format!("line {i}\n")).collect();
        let n = number(&[text.as_bytes()], ALL, 60);
        assert!(n.out.len() <= 60);
        assert_eq!(n.truncated_at, Some(5));
        let huge = vec![b'x'; 100_000];
        let mut n = Numberer::new(ALL, 50);
        n.feed(&huge);
        assert!(n.current.len() <= 50);
        n.feed(b"\nnext\n");
        assert!(n.out.len() <= 51);
        assert_eq!(n.truncated_at, Some(2));
    }

    #[test]
    fn nul_bytes_mean_binary() {
        assert!(number(&[b"abc\0def"], ALL, 100).binary);
        assert!(!number(&[b"abc def"], ALL, 100).binary);
    }

    #[test]
    fn view_range_inputs() {
        let r = |v: Value| {
            let input = json!({ "view_range": v });
            view_range(fields(&input).unwrap())
        };
        assert_eq!(
            r(json!([2, 5])),
            Ok(Lines {
                start: 2,
                end: Some(5)
            })
        );
        assert_eq!(
            r(json!([2, -1])),
            Ok(Lines {
                start: 2,
                end: None
            })
        );
        assert_eq!(
            r(json!([1, 0])),
            Ok(Lines {
                start: 1,
                end: None
            })
        );
        assert_eq!(r(Value::Null), Ok(ALL));
        for bad in [
            json!([0, 3]),
            json!([5, 2]),
            json!([1]),
            json!("1-3"),
            json!([1.5, 2]),
        ] {
            assert!(
                r(bad.clone()).is_err_and(|e| e.starts_with("input.view_range:")),
                "{bad}"
            );
        }
    }
}
