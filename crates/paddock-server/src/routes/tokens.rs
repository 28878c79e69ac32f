//! `/v1/tokens` (admins only) and `/v1/audit`.

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use paddock_core::security::{ApiToken, TokenCreate};
use paddock_core::{id, ts};
use paddock_store::{AuditFilter, Order};
use serde_json::json;

use super::{page_json, to_value};
use crate::error::ApiResult;
use crate::extract::{Id, Json, Query};
use crate::security::{fingerprint, sha256_hex};
use crate::AppState;

/// Creates a token; its secret is in this answer only (it is stored hashed).
pub async fn create(
    State(s): State<AppState>,
    Json(req): Json<TokenCreate>,
) -> ApiResult<Response> {
    let now = ts::now();
    req.validate(now)?;
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)
        .map_err(|e| crate::ServerError::Io(std::io::Error::other(e.to_string())))?;
    let secret = format!(
        "pdk_{}",
        raw.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let token = ApiToken {
        id: id::new(id::TOKEN),
        kind: "api_token".into(),
        name: req.name,
        role: req.role,
        fingerprint: fingerprint(&secret),
        created_at: now,
        expires_at: req.expires_at,
        revoked_at: None,
    };
    let token = s.store.insert_token(token, sha256_hex(&secret)).await?;
    let mut v = to_value(token);
    v["token"] = json!(secret);
    Ok(axum::Json(v).into_response())
}

pub async fn list(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let mut q = Query::parse(q.as_deref())?;
    let page = q.page(20, 100, Some(Order::Desc))?;
    q.finish()?;
    Ok(page_json(s.store.list_tokens(page).await?, false, to_value))
}

pub async fn retrieve(State(s): State<AppState>, Id(id): Id) -> ApiResult<Response> {
    Ok(axum::Json(s.store.get_token(&id).await?).into_response())
}

/// Revokes a token: it stops working at once. Idempotent.
pub async fn revoke(State(s): State<AppState>, Id(id): Id) -> ApiResult<Response> {
    Ok(axum::Json(s.store.revoke_token(&id, ts::now()).await?).into_response())
}

/// `GET /v1/audit?since&until&action&target&limit`, newest first; `*` is a wildcard.
pub async fn audit(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let mut q = Query::parse(q.as_deref())?;
    let filter = AuditFilter {
        since: q.time("since")?,
        until: q.time("until")?,
        action: q.str("action")?,
        target: q.str("target")?,
    };
    let limit = q.u32("limit")?.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(crate::ServerError::invalid(
            "limit",
            "must be between 1 and 1000",
        ));
    }
    q.finish()?;
    let rows = s.store.list_audit(filter, limit as usize).await?;
    Ok(axum::Json(json!({"data": rows, "next_page": null})).into_response())
}
