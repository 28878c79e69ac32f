//! The session's pump: what an ACP agent sends, in the order it sent it, becomes the
//! same Managed Agents events the built-in agent writes.
//!
//! | ACP | events |
//! |---|---|
//! | `agent_message_chunk` | `event_start`/`event_delta` previews, then one `agent.message` (at the next non-text update or the prompt's end) |
//! | `agent_thought_chunk` | `agent.thinking` (once per run of thought) |
//! | `tool_call` / `tool_call_update` | `agent.tool_use` once the call runs (or asks), `agent.tool_result` when it is completed or failed |
//! | `session/request_permission` | judged by the agent's policy: answered at once, or `agent.tool_use` with `evaluated_permission: "ask"` for the user to confirm |
//! | the prompt's answer | the turn's outcome, for the driver to end the turn with |
//!
//! Events are written only while a turn of this connection is open: what an agent
//! says after an interrupt or before its first turn is not part of any turn.
//!
//! Every event's id is derived: a tool call's use and result from the agent's id of
//! the call, the others from the stdout offset of the message they came of (see
//! `tap.rs`); each event is appended under its id as idempotency key, so a connection
//! that replays a turn after a restart writes nothing twice.

use agent_client_protocol::v1::schema::{
    self, ContentBlock, PermissionOptionKind, RequestPermissionOutcome, RequestPermissionResponse,
    SelectedPermissionOutcome, SessionUpdate, ToolCallContent, ToolCallStatus, ToolKind,
};
use paddock_core::event::{EvaluatedPermission, NewEvent, ServerEvent, ToolUse};
use paddock_core::id;
use paddock_store::{Append, Idempotency};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

use super::conn::FromAgent;
use super::policy::Policy;
use super::tap::offset_of;
use super::{Ask, Kick, Outcome, Shared};
use crate::agent_loop::ctx::Ctx;

/// One tool call of the agent, as far as it has told us.
#[derive(Default)]
struct Call {
    /// The `agent.tool_use` written for it.
    event: Option<String>,
    name: Option<String>,
    title: String,
    kind: Option<ToolKind>,
    input: Option<Value>,
    paths: Vec<String>,
    output: Vec<String>,
    raw_output: Option<Value>,
}

impl Call {
    fn tool_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        match &self.kind {
            Some(k) => serde_json::to_value(k)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "tool".into()),
            None => "tool".into(),
        }
    }

    /// The call's input as the agent gave it (an object; the agent's title of the
    /// call when it gave no input).
    fn tool_input(&self) -> Value {
        match &self.input {
            Some(Value::Object(m)) if !m.is_empty() => Value::Object(m.clone()),
            Some(Value::Null) | Some(Value::Object(_)) | None if !self.title.is_empty() => {
                json!({ "title": self.title })
            }
            Some(Value::Null) | None => json!({}),
            Some(Value::Object(m)) => Value::Object(m.clone()),
            Some(other) => json!({ "input": other }),
        }
    }

    fn content(&mut self, content: &[ToolCallContent]) {
        self.output = content
            .iter()
            .filter_map(|c| match c {
                ToolCallContent::Content(c) => Some(block_text(&c.content)),
                ToolCallContent::Diff(d) => Some(format!("[diff of {}]", d.path.display())),
                ToolCallContent::Terminal(t) => Some(format!("[terminal {}]", t.terminal_id.0)),
                _ => None,
            })
            .filter(|t| !t.is_empty())
            .collect();
    }

    fn result_text(&self) -> String {
        if !self.output.is_empty() {
            return self.output.join("\n");
        }
        match &self.raw_output {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(v) => ["formatted_output", "aggregated_output", "output"]
                .iter()
                .find_map(|k| v.get(*k).and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| v.to_string()),
        }
    }
}

/// The tool's name as some agents give it in `_meta` (`toolName`, or Claude Code's
/// `claudeCode.toolName`) when the call has no `name`.
fn meta_tool_name(meta: Option<&serde_json::Map<String, Value>>) -> Option<String> {
    let m = meta?;
    m.get("toolName")
        .or_else(|| m.get("claudeCode").and_then(|c| c.get("toolName")))
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn block_text(b: &ContentBlock) -> String {
    match b {
        ContentBlock::Text(t) => t.text.clone(),
        ContentBlock::Image(_) => "[image]".into(),
        ContentBlock::Audio(_) => "[audio]".into(),
        ContentBlock::ResourceLink(l) => format!("[{}]", l.uri),
        ContentBlock::Resource(_) => "[resource]".into(),
        _ => String::new(),
    }
}

/// Where the ids of an agent's events come from.
pub(crate) struct Ids {
    /// Unique to the agent's process (its offsets start again with a new one).
    pub nonce: String,
    /// The millisecond its ids are stamped with (the process's start).
    pub ms: u64,
    /// Messages below this offset were read before: no previews of them.
    pub replay_end: u64,
}

pub(crate) struct Pump {
    pub cx: Arc<Ctx>,
    pub session_id: String,
    pub shared: Arc<std::sync::Mutex<Shared>>,
    pub policy: Policy,
    pub kick: Kick,
    ids: Ids,
    /// The stdout offset of the message being handled, and the ids derived from it.
    at: u64,
    derived: u32,
    /// The agent was told to ask before (some) tool calls.
    may_ask: bool,
    text: String,
    text_id: Option<String>,
    thinking: bool,
    calls: HashMap<String, Call>,
}

impl Pump {
    pub fn new(
        cx: Arc<Ctx>,
        session_id: String,
        shared: Arc<std::sync::Mutex<Shared>>,
        policy: Policy,
        kick: Kick,
        ids: Ids,
    ) -> Self {
        Pump {
            cx,
            session_id,
            shared,
            may_ask: !policy.allows_everything(),
            policy,
            kick,
            ids,
            at: 0,
            derived: 0,
            text: String::new(),
            text_id: None,
            thinking: false,
            calls: HashMap::new(),
        }
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn turn_open(&self) -> bool {
        self.shared().turn.is_some()
    }

    /// The next id derived from the message being handled.
    fn next_id(&mut self) -> String {
        let seed = format!("{}:{}:{}", self.ids.nonce, self.at, self.derived);
        self.derived += 1;
        id::derived(id::EVENT, self.ids.ms, &seed)
    }

    /// The id of `what` (`use`, `result`) of the agent's tool call `call`.
    fn call_id(&self, what: &str, call: &str) -> String {
        let seed = format!("{}:{what}:{call}", self.ids.nonce);
        id::derived(id::EVENT, self.ids.ms, &seed)
    }

    fn handling(&mut self, offset: Option<u64>) {
        if let Some(o) = offset {
            self.at = o;
            self.derived = 0;
        }
    }

    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<FromAgent>) {
        while let Some(m) = rx.recv().await {
            let r = match m {
                FromAgent::Update(n) => {
                    self.handling(offset_of(n.meta.as_ref()));
                    self.update(n.update).await
                }
                FromAgent::Permission { request, reply } => {
                    self.handling(offset_of(request.meta.as_ref()));
                    self.permission(*request, reply).await
                }
                FromAgent::Withdrawn => Ok(()),
                FromAgent::PromptDone { turn, result } => {
                    let r = self.flush().await;
                    let outcome = match result {
                        Ok(resp) => Outcome::Stopped(resp.stop_reason),
                        Err(e) => Outcome::Failed(e.to_string()),
                    };
                    self.finish(turn, outcome);
                    r
                }
                FromAgent::Closed => {
                    let r = self.flush().await;
                    let turn = {
                        let mut s = self.shared();
                        s.closed = true;
                        s.turn
                    };
                    if let Some(t) = turn {
                        self.finish(t, Outcome::Closed);
                    } else {
                        (self.kick)(&self.session_id);
                    }
                    if let Err(e) = r {
                        tracing::warn!(session_id = %self.session_id, error = %e, "cannot write the ACP agent's events");
                    }
                    return;
                }
            };
            if let Err(e) = r {
                tracing::warn!(session_id = %self.session_id, error = %e, "cannot write the ACP agent's events");
            }
        }
    }

    /// Records how the prompt of `turn` ended, for the driver.
    fn finish(&self, turn: u32, outcome: Outcome) {
        {
            let mut s = self.shared();
            if s.turn != Some(turn) {
                return;
            }
            s.outcome = Some((turn, outcome));
        }
        (self.kick)(&self.session_id);
    }

    /// Appends events, each under its derived id as idempotency key: written once, also
    /// when a replay comes to them again.
    async fn emit(&mut self, events: Vec<NewEvent>) -> crate::error::ApiResult<()> {
        if !self.turn_open() {
            return Ok(());
        }
        for mut e in events {
            let id = match &e.id {
                Some(id) => id.clone(),
                None => self.next_id(),
            };
            e.id = Some(id.clone());
            let idempotency = Some(Idempotency {
                key: format!("acp:{id}"),
                request_hash: id,
            });
            self.cx
                .emit(
                    &self.session_id,
                    Append {
                        events: vec![e],
                        idempotency,
                        ..Append::default()
                    },
                )
                .await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> crate::error::ApiResult<()> {
        let Some(eid) = self.text_id.take() else {
            return Ok(());
        };
        let t = std::mem::take(&mut self.text);
        self.emit(vec![NewEvent::typed_with_id(
            eid,
            &ServerEvent::agent_text(t),
        )])
        .await
    }

    fn preview(&mut self, t: &str) {
        if !self.turn_open() {
            return;
        }
        let sid = self.session_id.clone();
        // What an earlier connection read was previewed then (or is stored already).
        let live = self.at >= self.ids.replay_end;
        let eid = match &self.text_id {
            Some(e) => e.clone(),
            None => {
                let eid = self.next_id();
                if live {
                    self.cx.hub.preview(
                        &sid,
                        json!({"type": "event_start", "event": {"id": eid, "type": "agent.message"}}),
                    );
                }
                self.text_id = Some(eid.clone());
                eid
            }
        };
        if live {
            self.cx.hub.preview(
                &sid,
                json!({"type": "event_delta", "event_id": eid, "delta": {"type": "content_delta", "index": 0, "content": {"type": "text", "text": t}}}),
            );
        }
        self.text.push_str(t);
    }

    async fn update(&mut self, u: SessionUpdate) -> crate::error::ApiResult<()> {
        match u {
            SessionUpdate::AgentMessageChunk(c) => {
                self.thinking = false;
                let t = block_text(&c.content);
                if !t.is_empty() {
                    self.preview(&t);
                }
                Ok(())
            }
            SessionUpdate::AgentThoughtChunk(_) => {
                self.flush().await?;
                if !std::mem::replace(&mut self.thinking, true) {
                    self.emit(vec![ServerEvent::AgentThinking {}.into()])
                        .await?;
                }
                Ok(())
            }
            SessionUpdate::ToolCall(tc) => {
                self.thinking = false;
                self.flush().await?;
                let id = tc.tool_call_id.0.to_string();
                let call = self.calls.entry(id.clone()).or_default();
                call.title = tc.title.clone();
                call.name = tc
                    .name
                    .clone()
                    .or_else(|| meta_tool_name(tc.meta.as_ref()))
                    .or(call.name.take());
                call.kind = Some(tc.kind);
                if tc.raw_input.is_some() {
                    call.input = tc.raw_input.clone();
                }
                call.paths = tc
                    .locations
                    .iter()
                    .map(|l| l.path.display().to_string())
                    .collect();
                call.content(&tc.content);
                if tc.raw_output.is_some() {
                    call.raw_output = tc.raw_output.clone();
                }
                self.status(&id, tc.status).await
            }
            SessionUpdate::ToolCallUpdate(u) => {
                self.thinking = false;
                self.flush().await?;
                let id = u.tool_call_id.0.to_string();
                let f = u.fields;
                {
                    let call = self.calls.entry(id.clone()).or_default();
                    if let Some(t) = f.title {
                        call.title = t;
                    }
                    if f.name.is_some() {
                        call.name = f.name;
                    }
                    if f.kind.is_some() {
                        call.kind = f.kind;
                    }
                    if let Some(i) = f.raw_input {
                        call.input = Some(i);
                    }
                    if let Some(l) = f.locations {
                        call.paths = l.iter().map(|l| l.path.display().to_string()).collect();
                    }
                    if let Some(c) = f.content {
                        call.content(&c);
                    }
                    if f.raw_output.is_some() {
                        call.raw_output = f.raw_output;
                    }
                }
                match f.status {
                    Some(s) => self.status(&id, s).await,
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// A `agent.tool_use` for call `id` (written once).
    fn use_event(
        &mut self,
        id: &str,
        permission: EvaluatedPermission,
        evaluation: Option<Value>,
    ) -> Option<(String, NewEvent)> {
        if self.calls.get(id)?.event.is_some() {
            return None;
        }
        let eid = self.call_id("use", id);
        let call = self.calls.get_mut(id)?;
        call.event = Some(eid.clone());
        let e = ServerEvent::AgentToolUse(ToolUse {
            name: call.tool_name(),
            input: call.tool_input(),
            mcp_server_name: None,
            evaluated_permission: Some(permission),
            evaluation,
        });
        Some((eid.clone(), NewEvent::typed_with_id(eid, &e)))
    }

    /// The `agent.tool_result` of tool use `eid` (written once; the driver may have
    /// written one already, for a call the user denied).
    fn result_event(&self, eid: &str, text: String, is_error: bool) -> Option<NewEvent> {
        let fresh = self.shared().resulted.insert(eid.to_string());
        fresh.then(|| {
            NewEvent::typed_with_id(
                self.call_id("result", eid),
                &ServerEvent::tool_result(eid, text, is_error),
            )
        })
    }

    async fn status(&mut self, id: &str, status: ToolCallStatus) -> crate::error::ApiResult<()> {
        let mut events = Vec::new();
        match status {
            // Some agents report a call as running before they ask for it (OpenClaw):
            // while they may ask, its use is written at the ask or at its end.
            ToolCallStatus::InProgress if !self.may_ask => {
                if let Some((_, e)) = self.use_event(id, EvaluatedPermission::Allow, None) {
                    events.push(e);
                }
            }
            ToolCallStatus::Completed | ToolCallStatus::Failed => {
                if let Some((_, e)) = self.use_event(id, EvaluatedPermission::Allow, None) {
                    events.push(e);
                }
                let failed = status == ToolCallStatus::Failed;
                if let Some(call) = self.calls.get(id) {
                    if let Some(eid) = call.event.clone() {
                        let mut text = call.result_text();
                        if text.is_empty() {
                            text = if failed {
                                "The tool call failed."
                            } else {
                                "Done."
                            }
                            .into();
                        }
                        if let Some(e) = self.result_event(&eid, text, failed) {
                            events.push(e);
                        }
                    }
                }
            }
            _ => {}
        }
        self.emit(events).await
    }

    async fn permission(
        &mut self,
        req: schema::RequestPermissionRequest,
        reply: agent_client_protocol::v1::Responder<RequestPermissionResponse>,
    ) -> crate::error::ApiResult<()> {
        self.flush().await?;
        let id = req.tool_call.tool_call_id.0.to_string();
        {
            let f = &req.tool_call.fields;
            let call = self.calls.entry(id.clone()).or_default();
            if let Some(t) = &f.title {
                call.title = t.clone();
            }
            if f.name.is_some() {
                call.name = f.name.clone();
            } else if call.name.is_none() {
                call.name = meta_tool_name(req.tool_call.meta.as_ref());
            }
            if f.kind.is_some() {
                call.kind = f.kind;
            }
            if let Some(i) = &f.raw_input {
                call.input = Some(i.clone());
            }
            if let Some(l) = &f.locations {
                call.paths = l.iter().map(|l| l.path.display().to_string()).collect();
            }
        }
        let (kind, input, paths) = {
            let c = &self.calls[&id];
            (
                c.kind.unwrap_or(ToolKind::Other),
                c.input.clone().unwrap_or(Value::Null),
                c.paths.clone(),
            )
        };
        let d = self.policy.decide(&kind, &input, &paths);
        if !self.turn_open() {
            // No turn: nothing may run.
            let _ = reply.respond(RequestPermissionResponse::new(
                RequestPermissionOutcome::Cancelled,
            ));
            return Ok(());
        }
        let options = req.options.clone();
        match d.permission {
            EvaluatedPermission::Allow => {
                let _ = reply.respond(choose(&options, true));
                let events: Vec<NewEvent> = self
                    .use_event(&id, EvaluatedPermission::Allow, d.evaluation)
                    .map(|(_, e)| e)
                    .into_iter()
                    .collect();
                self.emit(events).await
            }
            EvaluatedPermission::Deny => {
                let _ = reply.respond(choose(&options, false));
                let mut events = Vec::new();
                if let Some((eid, e)) = self.use_event(&id, EvaluatedPermission::Deny, d.evaluation)
                {
                    events.push(e);
                    let why = d.reason.unwrap_or_else(|| "the permission policy".into());
                    if let Some(r) = self.result_event(
                        &eid,
                        format!("Denied by the permission policy: {why}."),
                        true,
                    ) {
                        events.push(r);
                    }
                }
                self.emit(events).await
            }
            EvaluatedPermission::Ask => {
                let Some((eid, e)) = self.use_event(&id, EvaluatedPermission::Ask, d.evaluation)
                else {
                    let _ = reply.respond(choose(&options, true));
                    return Ok(());
                };
                self.shared().asks.insert(eid, Ask { reply, options });
                self.emit(vec![e]).await?;
                (self.kick)(&self.session_id);
                Ok(())
            }
        }
    }
}

/// The answer that allows (or rejects) once, by the options' kinds.
pub(crate) fn choose(
    options: &[schema::PermissionOption],
    allow: bool,
) -> RequestPermissionResponse {
    let wanted: &[PermissionOptionKind] = if allow {
        &[
            PermissionOptionKind::AllowOnce,
            PermissionOptionKind::AllowAlways,
        ]
    } else {
        &[
            PermissionOptionKind::RejectOnce,
            PermissionOptionKind::RejectAlways,
        ]
    };
    let pick = wanted
        .iter()
        .find_map(|k| options.iter().find(|o| &o.kind == k));
    RequestPermissionResponse::new(match pick {
        Some(o) => {
            RequestPermissionOutcome::Selected(SelectedPermissionOutcome::new(o.option_id.clone()))
        }
        None => RequestPermissionOutcome::Cancelled,
    })
}
