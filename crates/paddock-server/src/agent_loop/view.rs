//! What a session's event log says about its conversation and its current turn.
//!
//! The log is the only state of the agent loop: a restarted orchestrator rebuilds the
//! same [`View`] from it and goes on from there. Rules:
//!
//! * A `user.message` is *queued* until a `session.status_running` opens a turn; then
//!   every queued message joins the conversation, in order. Messages sent during a turn
//!   wait for the next one.
//! * A turn ends at a `session.status_idle` whose stop reason is not `requires_action`.
//! * Each `agent.tool_use` / `agent.custom_tool_use` is *pending* until its
//!   `agent.tool_result` / `user.custom_tool_result`.

use paddock_agent::provider::{ContentPart, Message, Role};
use paddock_core::event::{
    blocks_text, ConfirmResult, EvaluatedPermission, Event, ServerEvent, StopReason, ToolResult,
    ToolUse,
};
use paddock_core::ts::Timestamp;
use serde_json::Value;

/// A tool use of the open turn that has no result yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// The id of its `agent.tool_use` event (also the id the model sees).
    pub id: String,
    pub name: String,
    pub input: Value,
    /// Client-executed (`agent.custom_tool_use`).
    pub custom: bool,
    pub permission: EvaluatedPermission,
    /// The client's `user.tool_confirmation`: allowed?, and the deny message.
    pub answer: Option<(bool, Option<String>)>,
    /// When it was cleared to run (its use, or the confirmation that allowed it).
    pub cleared_at: Option<Timestamp>,
    /// Sent to a runner: that runner and the exec id it runs under.
    pub started: Option<(String, String)>,
}

impl Pending {
    /// Waiting for the client: an unanswered ask, or a custom tool without its result.
    pub fn awaits_client(&self) -> bool {
        self.custom || (self.permission == EvaluatedPermission::Ask && self.answer.is_none())
    }

    /// Cleared to run in the sandbox.
    pub fn may_run(&self) -> bool {
        !self.custom
            && (self.permission == EvaluatedPermission::Allow
                || (self.permission == EvaluatedPermission::Ask
                    && matches!(self.answer, Some((true, _)))))
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Turn {
    pub started_at: Option<Timestamp>,
    /// Model calls made in this turn.
    pub model_calls: u32,
    /// A `span.model_request_start` without its end, and when it started.
    pub open_call: Option<String>,
    pub open_call_at: Option<Timestamp>,
    /// Whether the latest model call asked for tools.
    pub last_call_used_tools: bool,
    /// Whether the latest model call ended in error (one a restart cut short: the turn
    /// is still open).
    pub last_call_failed: bool,
    pub pending: Vec<Pending>,
    /// The last status is `idle` with `requires_action` for these tool uses.
    pub waiting_on: Option<Vec<String>>,
    /// A `user.interrupt` arrived during this turn.
    pub interrupted: bool,
    /// The text of the user messages that opened it.
    pub input: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    /// The conversation as the model sees it.
    pub messages: Vec<Message>,
    /// User messages that wait for the next turn.
    pub queued: Vec<Message>,
    pub turn: Option<Turn>,
    /// Turns started so far.
    pub turns: u32,
}

fn push(messages: &mut Vec<Message>, role: Role, part: ContentPart) {
    match messages.last_mut() {
        Some(m) if m.role == role => m.content.push(part),
        _ => messages.push(Message {
            role,
            content: vec![part],
        }),
    }
}

impl View {
    /// The view of a whole log (the driver applies events as they come).
    #[cfg(test)]
    pub fn build(events: &[Event]) -> View {
        let mut v = View::default();
        for e in events {
            v.apply(e);
        }
        v
    }

    /// Takes one more event of the log into account (events of types the loop does
    /// not know are passed by).
    pub fn apply(&mut self, e: &Event) {
        let Some(typed) = e.typed() else { return };
        match typed {
            ServerEvent::UserMessage { content } => {
                self.queued.push(Message::user(blocks_text(&content)));
            }
            ServerEvent::SessionStatusRunning {} => match self.turn.as_mut() {
                Some(t) => t.waiting_on = None,
                None => {
                    self.turn = Some(Turn {
                        started_at: Some(e.processed_at),
                        ..Turn::default()
                    });
                    self.turns += 1;
                    for m in self.queued.drain(..) {
                        for part in m.content {
                            if let (Some(t), ContentPart::Text { text }) =
                                (self.turn.as_mut(), &part)
                            {
                                t.input.push(text.clone());
                            }
                            push(&mut self.messages, Role::User, part);
                        }
                    }
                }
            },
            ServerEvent::SessionStatusIdle { stop_reason } => match stop_reason {
                StopReason::RequiresAction { event_ids } => {
                    if let Some(t) = self.turn.as_mut() {
                        t.waiting_on = Some(event_ids);
                    }
                }
                _ => self.turn = None,
            },
            ServerEvent::SpanModelRequestStart {} => {
                if let Some(t) = self.turn.as_mut() {
                    t.open_call = Some(e.id.clone());
                    t.open_call_at = Some(e.processed_at);
                    t.model_calls += 1;
                    t.last_call_used_tools = false;
                    t.last_call_failed = false;
                }
            }
            ServerEvent::SpanModelRequestEnd(end) => {
                if let Some(t) = self.turn.as_mut() {
                    t.open_call = None;
                    t.last_call_failed = end.is_error;
                }
            }
            ServerEvent::SpanToolExecutionStart {
                tool_use_id,
                runner_id,
                exec_id,
            } => {
                if let Some(t) = self.turn.as_mut() {
                    if let Some(p) = t.pending.iter_mut().find(|p| p.id == tool_use_id) {
                        p.started = Some((runner_id, exec_id));
                    }
                }
            }
            ServerEvent::AgentMessage { content } => {
                let text = blocks_text(&content);
                push(
                    &mut self.messages,
                    Role::Assistant,
                    ContentPart::Text { text },
                );
            }
            ServerEvent::AgentToolUse(ToolUse {
                name,
                input,
                evaluated_permission,
                ..
            }) => self.tool_use(e, name, input, false, evaluated_permission),
            ServerEvent::AgentCustomToolUse { name, input } => {
                self.tool_use(e, name, input, true, Some(EvaluatedPermission::Allow))
            }
            ServerEvent::AgentToolResult(ToolResult {
                tool_use_id,
                content,
                is_error,
            }) => self.tool_result(tool_use_id, &content, is_error),
            ServerEvent::UserCustomToolResult {
                custom_tool_use_id,
                content,
                is_error,
                ..
            } => self.tool_result(
                custom_tool_use_id,
                content.as_deref().unwrap_or_default(),
                is_error.unwrap_or(false),
            ),
            ServerEvent::UserToolConfirmation {
                tool_use_id,
                result,
                deny_message,
                ..
            } => {
                let allow = result == ConfirmResult::Allow;
                if let Some(t) = self.turn.as_mut() {
                    if let Some(x) = t.pending.iter_mut().find(|x| x.id == tool_use_id) {
                        x.answer = Some((allow, deny_message));
                        if allow {
                            x.cleared_at = Some(e.processed_at);
                        }
                    }
                }
            }
            ServerEvent::UserInterrupt { .. } => {
                if let Some(t) = self.turn.as_mut() {
                    t.interrupted = true;
                }
            }
            _ => {}
        }
    }

    fn tool_use(
        &mut self,
        e: &Event,
        name: String,
        input: Value,
        custom: bool,
        permission: Option<EvaluatedPermission>,
    ) {
        push(
            &mut self.messages,
            Role::Assistant,
            ContentPart::ToolUse {
                id: e.id.clone(),
                name: name.clone(),
                input: input.clone(),
            },
        );
        if let Some(t) = self.turn.as_mut() {
            t.last_call_used_tools = true;
            // Refused before any policy: no permission, never runs.
            let permission = permission.unwrap_or(EvaluatedPermission::Deny);
            t.pending.push(Pending {
                cleared_at: (permission == EvaluatedPermission::Allow).then_some(e.processed_at),
                id: e.id.clone(),
                name,
                input,
                custom,
                permission,
                answer: None,
                started: None,
            });
        }
    }

    fn tool_result(
        &mut self,
        id: String,
        content: &[paddock_core::event::ContentBlock],
        is_error: bool,
    ) {
        push(
            &mut self.messages,
            Role::User,
            ContentPart::ToolResult {
                tool_use_id: id.clone(),
                content: blocks_text(content),
                is_error,
            },
        );
        if let Some(t) = self.turn.as_mut() {
            t.pending.retain(|x| x.id != id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(seq: i64, kind: &str, payload: Value) -> Event {
        Event {
            seq,
            id: format!("evt_{seq}"),
            session_id: "sesn_1".into(),
            kind: kind.into(),
            processed_at: paddock_core::ts::now(),
            payload: payload.as_object().cloned().unwrap_or_default(),
        }
    }

    fn text(t: &str) -> Value {
        json!({"content": [{"type": "text", "text": t}]})
    }

    #[test]
    fn messages_wait_for_a_turn_and_join_in_order() {
        let log = vec![
            ev(1, "user.message", text("one")),
            ev(2, "session.status_running", json!({})),
            ev(3, "span.model_request_start", json!({})),
            ev(4, "user.message", text("two (during the turn)")),
            ev(5, "agent.message", text("answer")),
            ev(
                6,
                "span.model_request_end",
                json!({"model_request_start_id": "evt_3"}),
            ),
        ];
        let v = View::build(&log);
        assert_eq!(
            v.messages,
            vec![Message::user("one"), Message::assistant("answer")]
        );
        assert_eq!(v.queued, vec![Message::user("two (during the turn)")]);
        let t = v.turn.expect("open turn");
        assert_eq!(
            (t.model_calls, t.open_call, t.last_call_used_tools),
            (1, None, false)
        );
        let mut log = log;
        log.push(ev(
            7,
            "session.status_idle",
            json!({"stop_reason": {"type": "end_turn"}}),
        ));
        log.push(ev(8, "session.status_running", json!({})));
        let v = View::build(&log);
        assert_eq!(v.turns, 2);
        assert!(v.queued.is_empty());
        assert_eq!(v.messages.len(), 3);
        assert_eq!(v.messages[2], Message::user("two (during the turn)"));
    }

    #[test]
    fn tool_uses_stay_pending_until_answered() {
        let log = vec![
            ev(1, "user.message", text("go")),
            ev(2, "session.status_running", json!({})),
            ev(3, "span.model_request_start", json!({})),
            ev(
                4,
                "agent.tool_use",
                json!({"name": "bash", "input": {"command": "ls"}, "evaluated_permission": "ask"}),
            ),
            ev(
                5,
                "agent.custom_tool_use",
                json!({"name": "lookup", "input": {}}),
            ),
            ev(
                6,
                "agent.tool_use",
                json!({"name": "read", "input": {}, "evaluated_permission": "allow"}),
            ),
            ev(
                7,
                "span.model_request_end",
                json!({"model_request_start_id": "evt_3"}),
            ),
            ev(
                8,
                "session.status_idle",
                json!({"stop_reason": {"type": "requires_action", "event_ids": ["evt_4", "evt_5"]}}),
            ),
        ];
        let v = View::build(&log);
        let t = v.turn.clone().expect("turn stays open while waiting");
        assert_eq!(
            t.waiting_on,
            Some(vec!["evt_4".to_string(), "evt_5".to_string()])
        );
        assert_eq!(t.pending.len(), 3);
        assert!(t.pending[0].awaits_client() && !t.pending[0].may_run());
        assert!(t.pending[1].awaits_client());
        assert!(t.pending[2].may_run() && !t.pending[2].awaits_client());
        let mut log = log;
        log.push(ev(
            9,
            "user.tool_confirmation",
            json!({"tool_use_id": "evt_4", "result": "allow"}),
        ));
        log.push(ev(
            10,
            "user.custom_tool_result",
            json!({"custom_tool_use_id": "evt_5", "content": [{"type": "text", "text": "42"}]}),
        ));
        log.push(ev(11, "session.status_running", json!({})));
        let v = View::build(&log);
        let t = v.turn.expect("turn");
        assert_eq!(t.waiting_on, None);
        assert_eq!(v.turns, 1, "resuming is not a new turn");
        assert_eq!(t.pending.len(), 2);
        assert!(t.pending[0].may_run());
        // The conversation pairs the custom result with its use.
        let last = v.messages.last().expect("messages");
        assert_eq!(last.role, Role::User);
        assert!(
            matches!(&last.content[0], ContentPart::ToolResult { tool_use_id, content, .. } if tool_use_id == "evt_5" && content == "42")
        );
    }

    #[test]
    fn interrupts_count_only_during_a_turn() {
        let v = View::build(&[ev(1, "user.interrupt", json!({}))]);
        assert!(v.turn.is_none());
        let v = View::build(&[
            ev(1, "user.message", text("go")),
            ev(2, "session.status_running", json!({})),
            ev(3, "span.model_request_start", json!({})),
            ev(4, "user.interrupt", json!({})),
        ]);
        let t = v.turn.expect("turn");
        assert!(t.interrupted);
        assert_eq!(t.open_call.as_deref(), Some("evt_3"));
    }
}
