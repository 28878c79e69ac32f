//! Following a session's event stream (SSE): printing events as they come and, for
//! `start`/`send`/`confirm`/`tool-result --follow`, stopping when the agent's turn ends.

use futures::StreamExt;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::Write;

use crate::client::{CliError, Client};
use crate::render::{self, Style};

/// Exit code when the turn ended normally (`end_turn`).
pub const EXIT_END_TURN: u8 = 0;
/// Exit code for `refusal`, `retries_exhausted`, a terminated or deleted session.
pub const EXIT_FAILED: u8 = 1;
/// Exit code for `budget_reached`.
pub const EXIT_BUDGET: u8 = 3;
/// Exit code for `requires_action`: tool uses await a confirmation or a result.
pub const EXIT_REQUIRES_ACTION: u8 = 4;

/// A broken stream is reopened this many times in a row before giving up.
const RECONNECTS: u32 = 5;

/// The exit code for a `session.status_idle` stop reason.
pub fn exit_code_for_stop(stop_reason: &str) -> u8 {
    match stop_reason {
        "end_turn" => EXIT_END_TURN,
        "budget_reached" => EXIT_BUDGET,
        "requires_action" => EXIT_REQUIRES_ACTION,
        // refusal, retries_exhausted and reasons this CLI does not know yet.
        _ => EXIT_FAILED,
    }
}

/// One SSE frame.
#[derive(Debug, Default, PartialEq)]
pub struct SseFrame {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// Splits an SSE body into frames; bytes may arrive cut anywhere (even inside a
/// UTF-8 character or a `\r\n`).
#[derive(Default)]
pub struct SseParser {
    buf: Vec<u8>,
}

impl SseParser {
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
        // `\r\n` line ends become `\n`; a trailing `\r` waits for the next chunk.
        if self.buf.windows(2).any(|w| w == b"\r\n") {
            let mut out = Vec::with_capacity(self.buf.len());
            let mut i = 0;
            while i < self.buf.len() {
                if self.buf[i] == b'\r' && self.buf.get(i + 1) == Some(&b'\n') {
                    i += 1;
                    continue;
                }
                out.push(self.buf[i]);
                i += 1;
            }
            self.buf = out;
        }
    }

    /// The next complete frame, if any.
    pub fn next_frame(&mut self) -> Option<SseFrame> {
        let end = self.buf.windows(2).position(|w| w == b"\n\n")?;
        let raw: Vec<u8> = self.buf.drain(..end + 2).collect();
        let text = String::from_utf8_lossy(&raw);
        let mut frame = SseFrame::default();
        let mut data: Vec<&str> = vec![];
        for line in text.lines() {
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "id" => frame.id = Some(value.to_string()),
                "event" => frame.event = Some(value.to_string()),
                "data" => data.push(value),
                _ => {}
            }
        }
        frame.data = data.join("\n");
        Some(frame)
    }
}

/// A tool use the agent waits on.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub id: String,
    /// `agent.custom_tool_use`: answered with a result, not a confirmation.
    pub custom: bool,
    /// `bash(rm -rf build)`, when the tool use was seen on the stream.
    pub summary: Option<String>,
}

/// How a turn ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnEnd {
    pub code: u8,
    /// The stop reason, or the event type that ended the session.
    pub reason: String,
    /// With `requires_action`: the tool uses awaiting an answer.
    pub pending: Vec<Pending>,
}

/// Watches events for the end of the turn started by the events this CLI sent.
pub struct TurnWatcher {
    sent: HashSet<String>,
    armed: bool,
    tool_uses: HashMap<String, (bool, String)>,
}

impl TurnWatcher {
    /// Waits for one of `sent` (the ids of the events we sent) before an idle status
    /// counts, so an idle left over from an earlier turn does not end ours. With no
    /// ids the first idle counts.
    pub fn new(sent: Vec<String>) -> Self {
        TurnWatcher {
            armed: sent.is_empty(),
            sent: sent.into_iter().collect(),
            tool_uses: HashMap::new(),
        }
    }

    /// The stream now starts after event `id`: if it is one of ours, we will not see
    /// it, so idle statuses count from now on.
    pub fn resumed_after(&mut self, id: &str) {
        if self.sent.contains(id) {
            self.armed = true;
        }
    }

    /// Feeds one event; `Some` when it ends the turn.
    pub fn observe(&mut self, e: &Value) -> Option<TurnEnd> {
        let kind = e["type"].as_str().unwrap_or("");
        let id = e["id"].as_str().unwrap_or("");
        match kind {
            "agent.tool_use" | "agent.mcp_tool_use" | "agent.custom_tool_use" => {
                let name = e["name"].as_str().unwrap_or("?");
                let summary = format!("{name}({})", render::tool_input_summary(name, &e["input"]));
                self.tool_uses
                    .insert(id.to_string(), (kind == "agent.custom_tool_use", summary));
            }
            "session.status_terminated" | "session.deleted" => {
                return Some(TurnEnd {
                    code: EXIT_FAILED,
                    reason: kind.to_string(),
                    pending: vec![],
                })
            }
            _ => {}
        }
        if self.sent.contains(id) {
            self.armed = true;
        }
        if kind != "session.status_idle" || !self.armed {
            return None;
        }
        let reason = e["stop_reason"]["type"].as_str().unwrap_or("unknown");
        let pending = if reason == "requires_action" {
            e["stop_reason"]["event_ids"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|id| {
                    let known = self.tool_uses.get(id);
                    Pending {
                        id: id.to_string(),
                        custom: known.is_some_and(|(custom, _)| *custom),
                        summary: known.map(|(_, s)| s.clone()),
                    }
                })
                .collect()
        } else {
            vec![]
        };
        Some(TurnEnd {
            code: exit_code_for_stop(reason),
            reason: reason.to_string(),
            pending,
        })
    }
}

/// What to tell the user when tool uses await an answer.
pub fn requires_action_hint(session: &str, pending: &[Pending]) -> String {
    let n = pending.len();
    let mut s = format!(
        "paddock: the agent waits for an answer to {n} tool use{}:",
        if n == 1 { "" } else { "s" }
    );
    for p in pending {
        s.push_str(&format!(
            "\n  {}  {}",
            p.id,
            p.summary.as_deref().unwrap_or("(tool use)")
        ));
        let confirm = format!(
            "paddock sessions confirm {session} {} --allow|--deny [--message M]",
            p.id
        );
        let result = format!(
            "paddock sessions tool-result {session} {} --content TEXT [--error]",
            p.id
        );
        match (p.custom, p.summary.is_some()) {
            (true, _) => s.push_str(&format!("\n    answer: {result}")),
            (false, true) => s.push_str(&format!("\n    answer: {confirm}")),
            // Not seen on this stream: it may be either kind.
            (false, false) => s.push_str(&format!(
                "\n    answer: {confirm}\n        or (custom tool): {result}"
            )),
        }
    }
    s
}

/// Where a stream starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Cursor {
    /// The whole log (`after=start`).
    Start,
    /// Events committed after the stream opened.
    End,
    /// After this event (`Last-Event-ID`).
    After(String),
}

/// Opens the session's event stream at `cursor`. The server fixes the position
/// before it answers, so events sent after this returns are not missed.
pub async fn open(
    c: &Client,
    session: &str,
    cursor: &Cursor,
) -> Result<reqwest::Response, CliError> {
    let path = format!("/v1/sessions/{session}/events/stream");
    match cursor {
        Cursor::Start => c.open_stream(&path, &[("after", "start")], None).await,
        Cursor::End => c.open_stream(&path, &[], None).await,
        Cursor::After(id) => c.open_stream(&path, &[], Some(id)).await,
    }
}

/// Prints a session's events from an opened stream.
pub struct Follower<'a> {
    pub client: &'a Client,
    pub session: String,
    /// Print raw JSON lines instead of the transcript.
    pub json: bool,
    pub style: Style,
    /// `Some`: stop at the end of the turn; `None`: follow until the session ends.
    pub turn: Option<TurnWatcher>,
    /// Where to reopen when the stream breaks before any event came.
    pub fallback: Cursor,
}

impl Follower<'_> {
    /// Reads `resp` (reopening it after the last event seen if it breaks) and returns
    /// the exit code: the turn's (see `exit_code_for_stop`), or 0 when following a
    /// whole session that was deleted or terminated.
    pub async fn run(mut self, mut resp: reqwest::Response) -> Result<u8, CliError> {
        let mut last: Option<String> = None;
        let mut failures = 0u32;
        loop {
            let mut parser = SseParser::default();
            let mut stream = resp.bytes_stream();
            let mut broken: Option<String> = None;
            while let Some(chunk) = stream.next().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        broken = Some(e.to_string());
                        break;
                    }
                };
                parser.push(&chunk);
                while let Some(frame) = parser.next_frame() {
                    if let Some(id) = frame.id.as_ref().filter(|i| !i.is_empty()) {
                        last = Some(id.clone());
                    }
                    let Some(event) = frame.event.as_deref() else {
                        continue;
                    };
                    if event == "ping" || frame.data.is_empty() {
                        continue;
                    }
                    let Ok(v) = serde_json::from_str::<Value>(&frame.data) else {
                        continue;
                    };
                    if event == "error" {
                        return Err(CliError::Api {
                            status: 200,
                            kind: v["error"]["type"].as_str().unwrap_or("error").to_string(),
                            message: v["error"]["message"].as_str().unwrap_or("").to_string(),
                        });
                    }
                    failures = 0;
                    if let Some(code) = self.handle(&v) {
                        return Ok(code);
                    }
                }
            }
            let cursor = match &last {
                Some(id) => Cursor::After(id.clone()),
                None => self.fallback.clone(),
            };
            let mut why = broken.unwrap_or_else(|| "the server closed it".to_string());
            resp = loop {
                failures += 1;
                if failures > RECONNECTS {
                    return Err(CliError::Other(anyhow::anyhow!(
                        "lost the event stream of {}: {why}",
                        self.session
                    )));
                }
                eprintln!("paddock: the event stream was cut ({why}); reconnecting");
                tokio::time::sleep(std::time::Duration::from_secs(u64::from(failures))).await;
                match open(self.client, &self.session, &cursor).await {
                    Ok(r) => {
                        if let (Cursor::After(id), Some(w)) = (&cursor, &mut self.turn) {
                            w.resumed_after(id);
                        }
                        break r;
                    }
                    Err(e @ CliError::Unreachable { .. }) => why = e.to_string(),
                    Err(e) => return Err(e),
                }
            };
        }
    }

    /// Prints one event; `Some(code)` when following should stop.
    fn handle(&mut self, v: &Value) -> Option<u8> {
        if self.json {
            println!("{v}");
        } else if let Some(line) = render::render(v, self.style) {
            println!("{line}");
        }
        let _ = std::io::stdout().flush();
        match &mut self.turn {
            Some(w) => {
                let end = w.observe(v)?;
                if !end.pending.is_empty() {
                    eprintln!("{}", requires_action_hint(&self.session, &end.pending));
                }
                Some(end.code)
            }
            None => {
                let kind = v["type"].as_str().unwrap_or("");
                (kind == "session.deleted" || kind == "session.status_terminated").then_some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stop_reasons_map_to_exit_codes() {
        assert_eq!(exit_code_for_stop("end_turn"), 0);
        assert_eq!(exit_code_for_stop("budget_reached"), 3);
        assert_eq!(exit_code_for_stop("refusal"), 1);
        assert_eq!(exit_code_for_stop("retries_exhausted"), 1);
        assert_eq!(exit_code_for_stop("requires_action"), 4);
        assert_eq!(exit_code_for_stop("something_new"), 1);
    }

    #[test]
    fn sse_frames_survive_any_chunking() {
        let body = "id: evt_1\nevent: user.message\ndata: {\"type\":\"user.message\",\"content\":[{\"type\":\"text\",\"text\":\"héllo ⏺\"}]}\n\n: keep-alive\n\nid: evt_2\r\nevent: session.status_idle\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n";
        let bytes = body.as_bytes();
        for size in [1, 2, 3, 7, bytes.len()] {
            let mut p = SseParser::default();
            let mut frames = vec![];
            for chunk in bytes.chunks(size) {
                p.push(chunk);
                while let Some(f) = p.next_frame() {
                    frames.push(f);
                }
            }
            let events: Vec<&SseFrame> = frames.iter().filter(|f| f.event.is_some()).collect();
            assert_eq!(events.len(), 2, "chunk size {size}: {frames:?}");
            assert_eq!(events[0].id.as_deref(), Some("evt_1"));
            let v: Value = serde_json::from_str(&events[0].data).unwrap_or_default();
            assert_eq!(v["content"][0]["text"], "héllo ⏺", "chunk size {size}");
            assert_eq!(events[1].event.as_deref(), Some("session.status_idle"));
            assert_eq!(events[1].data, "{\"a\":\n1}");
        }
    }

    fn idle(reason: Value) -> Value {
        json!({"id": "evt_idle", "type": "session.status_idle", "stop_reason": reason})
    }

    #[test]
    fn the_turn_ends_only_after_our_event() {
        let mut w = TurnWatcher::new(vec!["evt_mine".into()]);
        // An idle from before our message does not count.
        assert_eq!(w.observe(&idle(json!({"type": "end_turn"}))), None);
        assert_eq!(
            w.observe(&json!({"id": "evt_mine", "type": "user.message"})),
            None
        );
        assert_eq!(
            w.observe(&json!({"id": "e2", "type": "session.status_running"})),
            None
        );
        let end = w.observe(&idle(json!({"type": "end_turn"})));
        assert_eq!(
            end,
            Some(TurnEnd {
                code: 0,
                reason: "end_turn".into(),
                pending: vec![]
            })
        );

        // Resuming after our own event: it will not be seen again.
        let mut w = TurnWatcher::new(vec!["evt_mine".into()]);
        w.resumed_after("evt_other");
        assert_eq!(w.observe(&idle(json!({"type": "end_turn"}))), None);
        w.resumed_after("evt_mine");
        assert_eq!(
            w.observe(&idle(json!({"type": "budget_reached"})))
                .map(|e| e.code),
            Some(3)
        );

        let mut w = TurnWatcher::new(vec![]);
        assert_eq!(
            w.observe(&idle(json!({"type": "retries_exhausted"})))
                .map(|e| e.code),
            Some(1)
        );
    }

    #[test]
    fn the_session_ending_ends_the_turn() {
        for kind in ["session.status_terminated", "session.deleted"] {
            let mut w = TurnWatcher::new(vec!["evt_mine".into()]);
            let end = w.observe(&json!({"id": "x", "type": kind}));
            assert_eq!(end.map(|e| (e.code, e.reason)), Some((1, kind.to_string())));
        }
        // Errors alone do not end it (the server may be retrying).
        let mut w = TurnWatcher::new(vec![]);
        let err = json!({"type": "session.error", "error": {"type": "model_overloaded_error", "message": "m", "retry_status": {"type": "retrying"}}});
        assert_eq!(w.observe(&err), None);
    }

    #[test]
    fn requires_action_lists_what_awaits_an_answer() {
        let mut w = TurnWatcher::new(vec![]);
        w.observe(
            &json!({"id": "evt_t", "type": "agent.tool_use", "name": "bash",
            "input": {"command": "rm -rf build"}, "evaluated_permission": "ask"}),
        );
        w.observe(
            &json!({"id": "evt_c", "type": "agent.custom_tool_use", "name": "get_weather",
            "input": {"city": "Paris"}}),
        );
        let end = w.observe(&idle(
            json!({"type": "requires_action", "event_ids": ["evt_t", "evt_c", "evt_old"]}),
        ));
        let end = end.unwrap_or_else(|| panic!("the turn should end"));
        assert_eq!(end.code, 4);
        assert_eq!(
            end.pending,
            vec![
                Pending {
                    id: "evt_t".into(),
                    custom: false,
                    summary: Some("bash(rm -rf build)".into())
                },
                Pending {
                    id: "evt_c".into(),
                    custom: true,
                    summary: Some(r#"get_weather({"city":"Paris"})"#.into())
                },
                Pending {
                    id: "evt_old".into(),
                    custom: false,
                    summary: None
                },
            ]
        );
        let hint = requires_action_hint("sesn_1", &end.pending);
        assert!(hint.contains("3 tool uses"), "{hint}");
        assert!(
            hint.contains("paddock sessions confirm sesn_1 evt_t --allow|--deny [--message M]"),
            "{hint}"
        );
        assert!(
            hint.contains("paddock sessions tool-result sesn_1 evt_c --content TEXT [--error]"),
            "{hint}"
        );
        assert!(!hint.contains("confirm sesn_1 evt_c"), "{hint}");
        assert!(
            hint.contains("confirm sesn_1 evt_old") && hint.contains("tool-result sesn_1 evt_old"),
            "{hint}"
        );
    }
}
