//! Between the worker's attach stream and the ACP client: the agent's stdout in whole
//! lines with their offsets, so that an orchestrator that restarted can attach again
//! from the first line of a turn and replay it without writing or answering anything
//! twice (docs/agents-acp.md, "Restarts").
//!
//! * Every request and notification of the agent gets its stdout offset in
//!   `params._meta["paddock/offset"]` (ACP reserves `_meta` for extensions like this):
//!   the pump derives the ids of the events it writes from it.
//! * A request the agent made before the attach (below `replay_end`) that was answered
//!   already is not handed on again; the answer to every request is recorded once sent.
//! * A response to a request this connection did not send — the prompt of the turn
//!   being resumed, sent by the orchestrator before the restart — is handed on, in
//!   its place in the stream, as the notification [`PROMPT_DONE`].

use async_trait::async_trait;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// The `_meta` key carrying a message's stdout offset.
pub(crate) const OFFSET_KEY: &str = "paddock/offset";
/// The notification an orphaned prompt response becomes (`params`: the response's
/// `result` or `error`).
pub(crate) const PROMPT_DONE: &str = "_paddock/prompt_done";

/// Where the answers to the agent's requests are recorded.
#[async_trait]
pub(crate) trait Answers: Send + Sync {
    /// Whether the agent's request at `offset` was answered before (asked of a replayed
    /// request); one that was not is taken as answered from now on.
    async fn answered_before(&self, offset: u64) -> bool;
    /// The answer to the agent's request at `offset` was sent.
    async fn answered(&self, offset: u64);
}

/// How far the agent's stdout has been read.
pub(crate) struct Tap {
    /// The offset just past the last whole line handed on.
    pub consumed: AtomicU64,
    /// Lines below this offset were read by an earlier connection (a replay).
    pub replay_end: u64,
}

/// The stdout offset in a message's `_meta`.
pub(crate) fn offset_of(meta: Option<&Map<String, Value>>) -> Option<u64> {
    meta?.get(OFFSET_KEY)?.as_u64()
}

#[derive(Default)]
struct Book {
    /// Ids of the requests this connection sent and has no answer to yet.
    outgoing: HashSet<String>,
    /// Ids of the agent's requests not answered yet → their offsets.
    incoming: HashMap<String, u64>,
    /// This connection (or, for the turn being resumed, the one before the restart)
    /// has sent a `session/cancel`.
    cancel_sent: bool,
}

fn lock(b: &Mutex<Book>) -> std::sync::MutexGuard<'_, Book> {
    b.lock().unwrap_or_else(|p| p.into_inner())
}

/// Splices the tap into `io` (the agent's stdio from offset `start`); returns the end
/// the ACP client speaks on. `cancelled`: the turn being resumed was cancelled before
/// the restart (its `cancelled` answer is its own).
pub(crate) fn splice<S>(
    io: S,
    start: u64,
    tap: Arc<Tap>,
    answers: Arc<dyn Answers>,
    cancelled: bool,
) -> tokio::io::DuplexStream
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let (worker_rd, worker_wr) = tokio::io::split(io);
    let (client_rd, client_wr) = tokio::io::split(ours);
    let book = Arc::new(Mutex::new(Book {
        cancel_sent: cancelled,
        ..Book::default()
    }));
    tokio::spawn(inbound(
        worker_rd,
        client_wr,
        start,
        tap,
        answers.clone(),
        book.clone(),
    ));
    tokio::spawn(outbound(client_rd, worker_wr, answers, book));
    theirs
}

/// What becomes of one line of the agent's stdout at `offset`: the bytes to hand on
/// (none: it is dropped).
async fn inbound_line(
    line: &[u8],
    offset: u64,
    tap: &Tap,
    answers: &dyn Answers,
    book: &Mutex<Book>,
) -> Option<Vec<u8>> {
    let Ok(Value::Object(mut m)) = serde_json::from_slice::<Value>(line) else {
        return Some(line.to_vec());
    };
    let id = m.get("id").filter(|v| !v.is_null()).map(Value::to_string);
    if m.contains_key("method") {
        if let Some(Value::Object(params)) = m.get_mut("params") {
            let meta = params
                .entry("_meta")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(meta) = meta {
                meta.insert(OFFSET_KEY.into(), json!(offset));
            }
        }
        if let Some(id) = id {
            if offset < tap.replay_end && answers.answered_before(offset).await {
                return None;
            }
            lock(book).incoming.insert(id, offset);
        }
    } else if let Some(id) = id {
        if !lock(book).outgoing.remove(&id) {
            // An answer to the orchestrator before the restart: its prompt. Or the
            // late answer to a prompt it cancelled (an interrupted turn, answered after
            // the next turn's prompt went): a prompt is cancelled only by the connection
            // that sent it, and the turn being resumed was not (it would have ended), so
            // a `cancelled` answer this connection did not ask for is an earlier turn's.
            let cancelled = m
                .get("result")
                .and_then(|r| r.get("stopReason"))
                .is_some_and(|r| r == "cancelled");
            if cancelled && !lock(book).cancel_sent {
                tracing::debug!(
                    offset,
                    "the late answer to a prompt cancelled before the restart; dropped"
                );
                return None;
            }
            let params = m
                .remove("result")
                .map(|r| json!({ "result": r }))
                .or_else(|| m.remove("error").map(|e| json!({ "error": e })))?;
            m = Map::new();
            m.insert("jsonrpc".into(), json!("2.0"));
            m.insert("method".into(), json!(PROMPT_DONE));
            m.insert("params".into(), params);
        }
    }
    let mut out = serde_json::to_vec(&Value::Object(m)).ok()?;
    out.push(b'\n');
    Some(out)
}

async fn inbound<R, W>(
    rd: R,
    mut client: W,
    start: u64,
    tap: Arc<Tap>,
    answers: Arc<dyn Answers>,
    book: Arc<Mutex<Book>>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut rd = BufReader::new(rd);
    let mut offset = start;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = match rd.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => {
                // The client's end is one half of a duplex whose other half lives on in
                // `outbound`: only a shutdown tells the client the agent is gone.
                let _ = client.shutdown().await;
                return;
            }
            Ok(n) => n as u64,
        };
        let whole = line.last() == Some(&b'\n');
        let out = if whole {
            inbound_line(&line, offset, &tap, answers.as_ref(), &book).await
        } else {
            Some(line.clone())
        };
        if let Some(bytes) = out {
            if client.write_all(&bytes).await.is_err() || client.flush().await.is_err() {
                return;
            }
        }
        offset += n;
        if whole {
            tap.consumed.store(offset, Ordering::SeqCst);
        }
    }
}

async fn outbound<R, W>(rd: R, mut worker: W, answers: Arc<dyn Answers>, book: Arc<Mutex<Book>>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut rd = BufReader::new(rd);
    let mut line = Vec::new();
    loop {
        line.clear();
        match rd.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => {
                let _ = worker.shutdown().await;
                return;
            }
            Ok(_) => {}
        }
        let mut answered = None;
        if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&line) {
            if m.get("method").is_some_and(|v| v == "session/cancel") {
                lock(&book).cancel_sent = true;
            }
            if let Some(id) = m.get("id").filter(|v| !v.is_null()).map(Value::to_string) {
                if m.contains_key("method") {
                    lock(&book).outgoing.insert(id);
                } else {
                    answered = lock(&book).incoming.remove(&id);
                }
            }
        }
        if worker.write_all(&line).await.is_err() || worker.flush().await.is_err() {
            return;
        }
        if let Some(offset) = answered {
            let answers = answers.clone();
            tokio::spawn(async move { answers.answered(offset).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Memory(Mutex<HashSet<u64>>);

    #[async_trait]
    impl Answers for Memory {
        async fn answered_before(&self, offset: u64) -> bool {
            !self
                .0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(offset)
        }
        async fn answered(&self, offset: u64) {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(offset);
        }
    }

    async fn line(
        l: &str,
        offset: u64,
        tap: &Tap,
        a: &Memory,
        book: &Mutex<Book>,
    ) -> Option<Value> {
        inbound_line(format!("{l}\n").as_bytes(), offset, tap, a, book)
            .await
            .map(|b| serde_json::from_slice(&b).expect("json"))
    }

    #[tokio::test]
    async fn messages_carry_their_offsets_and_answered_requests_are_not_replayed() {
        let tap = Tap {
            consumed: AtomicU64::new(0),
            replay_end: 100,
        };
        let a = Memory::default();
        let book = Mutex::new(Book::default());
        let n = line(
            r#"{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s"}}"#,
            7,
            &tap,
            &a,
            &book,
        )
        .await
        .expect("handed on");
        assert_eq!(n["params"]["_meta"][OFFSET_KEY], 7);
        // A replayed request answered before is dropped; one not answered is handed on.
        a.answered(20).await;
        let req = r#"{"jsonrpc":"2.0","id":3,"method":"fs/read_text_file","params":{"path":"/workspace/a"}}"#;
        assert!(line(req, 20, &tap, &a, &book).await.is_none());
        let r = line(req, 40, &tap, &a, &book).await.expect("handed on");
        assert_eq!(r["params"]["_meta"][OFFSET_KEY], 40);
        assert_eq!(lock(&book).incoming.get("3"), Some(&40));
        // Past the replay, requests are always handed on.
        assert!(line(req, 20 + 100, &tap, &a, &book).await.is_some());
    }

    #[tokio::test]
    async fn an_answer_to_an_earlier_connection_becomes_prompt_done() {
        let tap = Tap {
            consumed: AtomicU64::new(0),
            replay_end: 0,
        };
        let a = Memory::default();
        let book = Mutex::new(Book::default());
        lock(&book).outgoing.insert("1".into());
        let ours = line(
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            0,
            &tap,
            &a,
            &book,
        )
        .await
        .expect("handed on");
        assert_eq!(ours["id"], 1, "an answer to this connection stays one");
        let old = line(
            r#"{"jsonrpc":"2.0","id":9,"result":{"stopReason":"end_turn"}}"#,
            50,
            &tap,
            &a,
            &book,
        )
        .await
        .expect("handed on");
        assert_eq!(old["method"], PROMPT_DONE);
        assert_eq!(old["params"]["result"]["stopReason"], "end_turn");
        assert!(old.get("id").is_none());
    }

    #[tokio::test]
    async fn a_late_answer_to_a_cancelled_prompt_does_not_end_the_resumed_turn() {
        let tap = Tap {
            consumed: AtomicU64::new(0),
            replay_end: 200,
        };
        let a = Memory::default();
        let book = Mutex::new(Book::default());
        // The interrupted turn's prompt, answered after the next turn's prompt went.
        let late = r#"{"jsonrpc":"2.0","id":4,"result":{"stopReason":"cancelled"}}"#;
        assert!(line(late, 60, &tap, &a, &book).await.is_none());
        // The resumed turn's own answer ends it.
        let done = line(
            r#"{"jsonrpc":"2.0","id":5,"result":{"stopReason":"end_turn"}}"#,
            120,
            &tap,
            &a,
            &book,
        )
        .await
        .expect("handed on");
        assert_eq!(done["method"], PROMPT_DONE);
        // Once this connection cancelled (an interrupt or a budget stop after the
        // restart), a cancelled answer is the resumed turn's, and is handed on.
        lock(&book).cancel_sent = true;
        let cancelled = line(late, 150, &tap, &a, &book).await.expect("handed on");
        assert_eq!(cancelled["params"]["result"]["stopReason"], "cancelled");
    }

    #[tokio::test]
    async fn the_client_sees_the_end_of_the_agents_stream() {
        use tokio::io::AsyncReadExt;
        let (worker, agent) = tokio::io::duplex(1024);
        let tap = Arc::new(Tap {
            consumed: AtomicU64::new(0),
            replay_end: 0,
        });
        let mut client = splice(worker, 0, tap.clone(), Arc::new(Memory::default()), false);
        let (agent_rd, mut agent_wr) = tokio::io::split(agent);
        agent_wr
            .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"x\",\"params\":{}}\n")
            .await
            .expect("write");
        drop(agent_wr);
        drop(agent_rd);
        let mut got = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            client.read_to_end(&mut got),
        )
        .await;
        assert!(read.is_ok(), "the client never saw the agent's stream end");
        assert!(String::from_utf8_lossy(&got).contains("paddock/offset"));
        assert_eq!(tap.consumed.load(Ordering::SeqCst), 43);
    }
}
