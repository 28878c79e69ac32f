//! Route handlers, one module per resource.

pub mod agents;
pub mod environments;
pub mod events;
pub mod meta;
pub mod runners;
pub mod sessions;
pub mod tokens;
pub mod vaults;

use axum::response::{IntoResponse, Response};
use paddock_store::Page;
use serde_json::{json, Value};

use crate::extract::encode_cursor;

/// `{"data": [...], "next_page": …}` (and `prev_page` when `with_prev`).
pub fn page_json<T>(page: Page<T>, with_prev: bool, f: impl Fn(T) -> Value) -> Response {
    let mut body = json!({
        "data": page.data.into_iter().map(f).collect::<Vec<_>>(),
        "next_page": page.next.map(encode_cursor),
    });
    if with_prev {
        body["prev_page"] = json!(page.prev.map(encode_cursor));
    }
    axum::Json(body).into_response()
}

pub fn to_value<T: serde::Serialize>(v: T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

pub fn deleted(id: &str, kind: &str) -> Response {
    axum::Json(json!({"id": id, "type": kind})).into_response()
}
