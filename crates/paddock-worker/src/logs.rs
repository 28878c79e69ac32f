//! Bounded in-memory rings behind `GET /logs`: the worker's own log lines and
//! recent exec output. Nothing here survives a restart (by design: the worker
//! keeps no state the orchestrator cannot rebuild).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Longest worker log line kept (longer lines are cut, with a marker).
pub const MAX_LOG_LINE_BYTES: usize = 4096;

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the ring
    // inconsistent in a way that matters; keep serving.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Clone, Debug, Serialize)]
pub struct LogLine {
    pub ts_ms: u64,
    pub line: String,
}

/// The worker's own recent log lines (a fixed number of lines).
#[derive(Debug)]
pub struct LogRing {
    lines: Mutex<VecDeque<LogLine>>,
    capacity: usize,
}

impl LogRing {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(LogRing {
            lines: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            capacity: capacity.max(1),
        })
    }

    pub fn push(&self, line: &str) {
        let mut line = line.trim_end_matches(['\n', '\r']).to_string();
        if line.len() > MAX_LOG_LINE_BYTES {
            let mut cut = MAX_LOG_LINE_BYTES;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push_str(" …[truncated]");
        }
        let mut lines = lock(&self.lines);
        if lines.len() >= self.capacity {
            lines.pop_front();
        }
        lines.push_back(LogLine {
            ts_ms: now_ms(),
            line,
        });
    }

    pub fn tail(&self, n: usize) -> Vec<LogLine> {
        let lines = lock(&self.lines);
        let skip = lines.len().saturating_sub(n);
        lines.iter().skip(skip).cloned().collect()
    }

    /// A writer that copies everything to stderr and records complete lines
    /// in the ring. Meant for `tracing_subscriber::fmt().with_writer(...)`:
    /// `let ring = ring.clone(); move || ring.writer()`.
    pub fn writer(self: &Arc<Self>) -> LogRingWriter {
        LogRingWriter {
            ring: self.clone(),
            pending: Vec::new(),
        }
    }
}

/// See [`LogRing::writer`].
pub struct LogRingWriter {
    ring: Arc<LogRing>,
    pending: Vec<u8>,
}

impl Write for LogRingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = io::stderr().write_all(buf);
        self.pending.extend_from_slice(buf);
        while let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            self.ring.push(&String::from_utf8_lossy(&line));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl Drop for LogRingWriter {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.ring.push(&String::from_utf8_lossy(&rest));
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct OutputRecord {
    pub ts_ms: u64,
    pub id: String,
    pub stream: &'static str,
    pub data: String,
}

#[derive(Debug, Default)]
struct OutputInner {
    records: VecDeque<OutputRecord>,
    bytes: usize,
    dropped_bytes: u64,
}

/// Recent exec output, bounded by the total bytes of `data` kept.
#[derive(Debug)]
pub struct OutputRing {
    inner: Mutex<OutputInner>,
    capacity: usize,
}

impl OutputRing {
    pub fn new(capacity: usize) -> Self {
        OutputRing {
            inner: Mutex::new(OutputInner::default()),
            capacity,
        }
    }

    pub fn push(&self, id: &str, stream: &'static str, data: &[u8]) {
        if self.capacity == 0 || data.is_empty() {
            return;
        }
        // A chunk larger than the whole ring keeps only its tail.
        let data = if data.len() > self.capacity {
            &data[data.len() - self.capacity..]
        } else {
            data
        };
        let text = String::from_utf8_lossy(data).into_owned();
        let mut inner = lock(&self.inner);
        while inner.bytes + text.len() > self.capacity {
            match inner.records.pop_front() {
                Some(old) => {
                    inner.bytes -= old.data.len();
                    inner.dropped_bytes += old.data.len() as u64;
                }
                None => break,
            }
        }
        inner.bytes += text.len();
        inner.records.push_back(OutputRecord {
            ts_ms: now_ms(),
            id: id.to_string(),
            stream,
            data: text,
        });
    }

    /// The last `n` records, optionally only those of exec `id`, and the
    /// number of bytes evicted since the worker started.
    pub fn tail(&self, n: usize, id: Option<&str>) -> (Vec<OutputRecord>, u64) {
        let inner = lock(&self.inner);
        let mut out: Vec<OutputRecord> = inner
            .records
            .iter()
            .rev()
            .filter(|r| id.is_none_or(|id| r.id == id))
            .take(n)
            .cloned()
            .collect();
        out.reverse();
        (out, inner.dropped_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_ring_is_bounded() {
        let ring = OutputRing::new(10);
        ring.push("a", "stdout", b"12345");
        ring.push("a", "stdout", b"67890");
        ring.push("b", "stderr", b"xyz");
        let (all, dropped) = ring.tail(100, None);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].data, "67890");
        assert_eq!(all[1].data, "xyz");
        assert_eq!(dropped, 5);
        let (only_b, _) = ring.tail(100, Some("b"));
        assert_eq!(only_b.len(), 1);
        ring.push("c", "stdout", b"0123456789abcdef");
        let (all, _) = ring.tail(100, None);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].data, "6789abcdef");
    }

    #[test]
    fn log_ring_keeps_last_lines() {
        let ring = LogRing::new(2);
        {
            let mut w = ring.writer();
            w.write_all(b"one\ntwo\nthr").unwrap();
            w.write_all(b"ee\n").unwrap();
        }
        let tail = ring.tail(10);
        assert_eq!(
            tail.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(),
            vec!["two", "three"]
        );
    }
}
