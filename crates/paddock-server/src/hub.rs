//! Wakes event streams. Each session has a watch channel holding the newest `seq`
//! (and whether the session was deleted); streams read events from the store and use
//! this only as a signal, so a missed or coalesced wake-up cannot lose an event.
//!
//! Previews (`event_start` / `event_delta`, asked for with `event_deltas[]`) are never
//! stored: they go through a broadcast channel per session to the streams that asked,
//! and a slow stream may miss some (the final stored event replaces them anyway).

use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use tokio::sync::{broadcast, watch};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tip {
    pub seq: i64,
    pub deleted: bool,
}

#[derive(Default)]
pub struct Hub {
    sessions: Mutex<HashMap<String, watch::Sender<Tip>>>,
    previews: Mutex<HashMap<String, broadcast::Sender<Arc<Value>>>>,
}

impl Hub {
    pub fn subscribe(&self, session_id: &str) -> watch::Receiver<Tip> {
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, tx| tx.receiver_count() > 0);
        map.entry(session_id.to_string())
            .or_insert_with(|| watch::channel(Tip::default()).0)
            .subscribe()
    }

    fn update(&self, session_id: &str, f: impl FnOnce(&mut Tip)) {
        let map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = map.get(session_id) {
            tx.send_modify(f);
        }
    }

    /// Events up to `seq` are committed.
    pub fn published(&self, session_id: &str, seq: i64) {
        self.update(session_id, |t| t.seq = t.seq.max(seq));
    }

    /// Previews of a session's events as they are produced.
    pub fn subscribe_previews(&self, session_id: &str) -> broadcast::Receiver<Arc<Value>> {
        let mut map = self.previews.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, tx| tx.receiver_count() > 0);
        map.entry(session_id.to_string())
            .or_insert_with(|| broadcast::channel(1024).0)
            .subscribe()
    }

    pub fn preview(&self, session_id: &str, frame: Value) {
        let map = self.previews.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = map.get(session_id) {
            let _ = tx.send(Arc::new(frame));
        }
    }

    pub fn deleted(&self, session_id: &str) {
        self.update(session_id, |t| t.deleted = true);
    }
}
