//! Session events: the append-only, per-session ordered log. Client-sent events are
//! parsed and validated here; every stored event is `{id, type, processed_at, …}`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub mod server;
pub use server::*;

use crate::common::require_text;
use crate::ts::{self, Timestamp};
use crate::CoreError;

/// A content block of a message (request and response are the same shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ContentBlock {
    Text {
        text: String,
    },
    Image {
        source: Value,
    },
    Document {
        source: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context: Option<String>,
    },
    Redacted {},
    SearchResult {
        source: String,
        title: String,
        content: Vec<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        citations: Option<Value>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfirmResult {
    Allow,
    Deny,
}

/// An event a client may send (`POST /v1/sessions/{id}/events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum UserEvent {
    #[serde(rename = "user.message")]
    Message { content: Vec<ContentBlock> },
    #[serde(rename = "user.interrupt")]
    Interrupt {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_thread_id: Option<String>,
    },
    #[serde(rename = "user.tool_confirmation")]
    ToolConfirmation {
        tool_use_id: String,
        result: ConfirmResult,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deny_message: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_thread_id: Option<String>,
    },
    #[serde(rename = "user.custom_tool_result")]
    CustomToolResult {
        custom_tool_use_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<Vec<ContentBlock>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_thread_id: Option<String>,
    },
}

/// What a client event must refer to in the session's log before it may be appended.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    /// An `agent.tool_use`/`agent.mcp_tool_use` awaiting confirmation, not yet answered.
    PendingToolUse(String),
    /// An `agent.custom_tool_use` not yet answered.
    PendingCustomToolUse(String),
}

fn validate_source(field: &str, source: &Value, allowed: &[&str]) -> Result<(), CoreError> {
    match source.get("type").and_then(Value::as_str) {
        Some(t) if allowed.contains(&t) => Ok(()),
        _ => Err(CoreError::invalid(
            format!("{field}.type"),
            format!("expected one of {allowed:?}"),
        )),
    }
}

pub fn validate_blocks(field: &str, blocks: &[ContentBlock]) -> Result<(), CoreError> {
    for (i, b) in blocks.iter().enumerate() {
        let f = format!("{field}[{i}]");
        match b {
            ContentBlock::Text { text } => {
                if text.is_empty() {
                    return Err(CoreError::invalid(format!("{f}.text"), "must not be empty"));
                }
            }
            ContentBlock::Image { source } => {
                validate_source(&format!("{f}.source"), source, &["base64", "url", "file"])?
            }
            ContentBlock::Document { source, .. } => validate_source(
                &format!("{f}.source"),
                source,
                &["base64", "text", "url", "file"],
            )?,
            ContentBlock::Redacted {} | ContentBlock::SearchResult { .. } => {}
        }
    }
    Ok(())
}

impl UserEvent {
    pub fn kind(&self) -> &'static str {
        match self {
            UserEvent::Message { .. } => "user.message",
            UserEvent::Interrupt { .. } => "user.interrupt",
            UserEvent::ToolConfirmation { .. } => "user.tool_confirmation",
            UserEvent::CustomToolResult { .. } => "user.custom_tool_result",
        }
    }

    /// Checks the event on its own; `field` is its path in the request (`events[2]`).
    pub fn validate(&self, field: &str) -> Result<Option<Reference>, CoreError> {
        match self {
            UserEvent::Message { content } => {
                if content.is_empty() {
                    return Err(CoreError::invalid(
                        format!("{field}.content"),
                        "must hold at least one block",
                    ));
                }
                validate_blocks(&format!("{field}.content"), content)?;
                Ok(None)
            }
            UserEvent::Interrupt { .. } => Ok(None),
            UserEvent::ToolConfirmation {
                tool_use_id,
                result,
                deny_message,
                ..
            } => {
                require_text(&format!("{field}.tool_use_id"), tool_use_id, 256)?;
                if deny_message.is_some() && *result != ConfirmResult::Deny {
                    return Err(CoreError::invalid(
                        format!("{field}.deny_message"),
                        "only allowed with result \"deny\"",
                    ));
                }
                Ok(Some(Reference::PendingToolUse(tool_use_id.clone())))
            }
            UserEvent::CustomToolResult {
                custom_tool_use_id,
                content,
                ..
            } => {
                require_text(
                    &format!("{field}.custom_tool_use_id"),
                    custom_tool_use_id,
                    256,
                )?;
                if let Some(c) = content {
                    validate_blocks(&format!("{field}.content"), c)?;
                }
                Ok(Some(Reference::PendingCustomToolUse(
                    custom_tool_use_id.clone(),
                )))
            }
        }
    }

    /// The event's fields besides `id`, `type` and `processed_at`.
    pub fn payload(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut m)) => {
                m.remove("type");
                m
            }
            _ => Map::new(),
        }
    }
}

/// A stored event: its position in the session's log and its JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub seq: i64,
    pub id: String,
    pub session_id: String,
    pub kind: String,
    pub processed_at: Timestamp,
    /// Fields besides `id`, `type` and `processed_at`.
    pub payload: Map<String, Value>,
}

/// An event about to be appended (its id and seq are assigned by the store).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// An id chosen in advance (an `event_start` preview announced it); else the store
    /// assigns one.
    pub id: Option<String>,
    pub kind: String,
    pub payload: Map<String, Value>,
}

impl NewEvent {
    pub fn new(kind: impl Into<String>, payload: Value) -> Self {
        let payload = match payload {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        NewEvent {
            id: None,
            kind: kind.into(),
            payload,
        }
    }

    /// The same, with an id chosen in advance.
    pub fn with_id(id: String, kind: impl Into<String>, payload: Value) -> Self {
        NewEvent {
            id: Some(id),
            ..NewEvent::new(kind, payload)
        }
    }
}

impl NewEvent {
    /// A typed event about to be appended.
    pub fn typed(event: &ServerEvent) -> Self {
        NewEvent {
            id: None,
            kind: event.kind().to_string(),
            payload: event.payload(),
        }
    }

    /// The same, with an id chosen in advance.
    pub fn typed_with_id(id: String, event: &ServerEvent) -> Self {
        NewEvent {
            id: Some(id),
            ..NewEvent::typed(event)
        }
    }
}

impl From<ServerEvent> for NewEvent {
    fn from(e: ServerEvent) -> Self {
        NewEvent::typed(&e)
    }
}

impl Event {
    /// The typed form; `None` for a type Paddock does not know or a payload of another
    /// shape (the raw event is still kept and served as it is).
    pub fn typed(&self) -> Option<ServerEvent> {
        let mut m = self.payload.clone();
        m.insert("type".into(), Value::String(self.kind.clone()));
        serde_json::from_value(Value::Object(m)).ok()
    }

    /// The wire form: `{id, type, processed_at, …payload}`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::with_capacity(self.payload.len() + 3);
        m.insert("id".into(), Value::String(self.id.clone()));
        m.insert("type".into(), Value::String(self.kind.clone()));
        m.insert(
            "processed_at".into(),
            Value::String(ts::format(self.processed_at)),
        );
        for (k, v) in &self.payload {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }
}

/// The `events` body of `POST /v1/sessions/{id}/events`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendEvents {
    pub events: Vec<Value>,
}

/// Most events one request may carry.
pub const MAX_EVENTS_PER_REQUEST: usize = 100;

/// Parses and checks the events of one request, naming the bad one.
pub fn parse_user_events(
    field: &str,
    raw: Vec<Value>,
    max: usize,
) -> Result<Vec<(UserEvent, Option<Reference>)>, CoreError> {
    if raw.is_empty() {
        return Err(CoreError::invalid(field, "must hold at least one event"));
    }
    if raw.len() > max {
        return Err(CoreError::invalid(
            field,
            format!("at most {max} events per request, got {}", raw.len()),
        ));
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, v)| {
            let f = format!("{field}[{i}]");
            if let Some(t) = v.get("type").and_then(Value::as_str) {
                if t == "user.define_outcome" || t == "user.tool_result" || t == "system.message" {
                    return Err(CoreError::invalid(
                        format!("{f}.type"),
                        format!("{t} is not supported by Paddock"),
                    ));
                }
            }
            let ev: UserEvent = crate::common::from_value(&f, v)?;
            let r = ev.validate(&f)?;
            Ok((ev, r))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn user_events_parse_and_validate() {
        let evs = parse_user_events(
            "events",
            vec![
                json!({"type":"user.message","content":[{"type":"text","text":"hi"}]}),
                json!({"type":"user.interrupt"}),
                json!({"type":"user.tool_confirmation","tool_use_id":"evt_1","result":"deny","deny_message":"no"}),
                json!({"type":"user.custom_tool_result","custom_tool_use_id":"evt_2","content":[{"type":"text","text":"42"}]}),
            ],
            10,
        )
        .expect("valid");
        assert_eq!(evs.len(), 4);
        assert_eq!(evs[2].1, Some(Reference::PendingToolUse("evt_1".into())));
        assert_eq!(evs[0].0.payload()["content"][0]["text"], "hi");
    }

    #[test]
    fn bad_events_name_their_position() {
        let cases = [
            (
                json!({"type":"user.message","content":[]}),
                "events[0].content",
            ),
            (json!({"type":"user.message"}), "events[0]"),
            (json!({"type":"user.nope"}), "events[0]"),
            (
                json!({"type":"user.message","content":[{"type":"text","text":"x","bold":true}]}),
                "events[0]",
            ),
            (
                json!({"type":"user.tool_confirmation","tool_use_id":"e","result":"allow","deny_message":"x"}),
                "events[0].deny_message",
            ),
            (
                json!({"type":"user.tool_confirmation","tool_use_id":"e","result":"maybe"}),
                "events[0]",
            ),
            (
                json!({"type":"user.message","content":[{"type":"image","source":{"type":"ftp"}}]}),
                "events[0].content[0].source.type",
            ),
            (
                json!({"type":"user.define_outcome","description":"d"}),
                "events[0].type",
            ),
        ];
        for (v, field) in cases {
            let e = parse_user_events("events", vec![v.clone()], 10).unwrap_err();
            assert!(e.to_string().starts_with(field), "{v}: {e}");
        }
        assert!(parse_user_events("events", vec![], 10).is_err());
        let many = vec![json!({"type":"user.interrupt"}); 11];
        assert!(parse_user_events("events", many, 10).is_err());
    }

    #[test]
    fn stored_events_serialize_with_id_type_and_time_first() {
        let e = Event {
            seq: 1,
            id: "evt_1".into(),
            session_id: "sesn_1".into(),
            kind: "user.interrupt".into(),
            processed_at: crate::ts::now(),
            payload: Map::new(),
        };
        let v = e.to_json();
        let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["id", "type", "processed_at"]);
    }
}
