//! The locks on the control plane: a per-caller rate limit (before anything else), bearer
//! tokens with roles, and the audit trail of every change.

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use paddock_core::security::{AuditEntry, Role, RouteClass};
use paddock_core::{id, ts};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::ServerError;
use crate::AppState;

/// Who is calling, once authenticated (kept in the request's extensions).
#[derive(Debug, Clone)]
pub struct Caller {
    pub actor: String,
    pub role: Option<Role>,
}

pub fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A short, non-secret name for a token.
pub fn fingerprint(token: &str) -> String {
    sha256_hex(token)[..12].to_string()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The bearer token of a request (`Authorization: Bearer …`, or `x-api-key` for curl).
fn bearer(req: &Request) -> Option<String> {
    let h = req.headers();
    let auth = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    if let Some(v) = auth {
        // The scheme is case-insensitive (RFC 9110).
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            return Some(v[7..].trim().to_string());
        }
    }
    // Another scheme (a proxy's Basic, say) does not hide an x-api-key.
    match h.get("x-api-key").and_then(|v| v.to_str().ok()) {
        Some(k) => Some(k.trim().to_string()),
        None => auth.map(|_| String::new()),
    }
}

/// Hands the caller to the audit layer, which runs outside authentication.
fn with_caller(mut resp: Response, caller: Caller) -> Response {
    resp.extensions_mut().insert(caller);
    resp
}

fn client_ip(req: &Request) -> String {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn loopback_host(host: &str) -> bool {
    let h = host.trim();
    let name = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        h.rsplit_once(':').map(|(n, _)| n).unwrap_or(h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Host (and Origin, when a browser sends one) name this machine.
fn addressed_to_loopback(req: &Request) -> bool {
    let h = req.headers();
    let host_ok = h
        .get("host")
        .and_then(|v| v.to_str().ok())
        .is_none_or(loopback_host);
    let origin_ok = h
        .get("origin")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|o| {
            o.split_once("://")
                .is_some_and(|(_, rest)| loopback_host(rest.split('/').next().unwrap_or("")))
        });
    host_ok && origin_ok
}

fn open_route(path: &str) -> bool {
    path == "/healthz" || path == "/metrics"
}

fn error(status: StatusCode, kind: &str, message: String) -> Response {
    let mut body = json!({"type": "error", "error": {"type": kind, "message": message}});
    if let Some(id) = crate::request_id::current() {
        body["request_id"] = json!(id);
    }
    let mut r = (status, axum::Json(body)).into_response();
    if status != StatusCode::TOO_MANY_REQUESTS {
        r.headers_mut()
            .insert("x-should-retry", HeaderValue::from_static("false"));
    }
    r
}

// ---------------------------------------------------------------- rate limiting

/// Token buckets per caller.
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_second: f64, burst: u32) -> Self {
        RateLimiter {
            per_second,
            burst: f64::from(burst),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`; `Err(wait)` when the bucket is empty.
    fn take(&self, key: &str) -> Result<(), Duration> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 50_000 {
            // Forget callers whose buckets are full again.
            let (rate, burst) = (self.per_second, self.burst);
            map.retain(|_, (t, at)| *t + at.elapsed().as_secs_f64() * rate < burst);
        }
        let (tokens, at) = map.entry(key.to_string()).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.per_second))
        }
    }
}

pub async fn rate_limit(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if open_route(req.uri().path()) {
        return next.run(req).await;
    }
    // Keyed by address: a token is not verified yet here, so made-up tokens must not
    // buy fresh buckets.
    let key = format!("ip:{}", client_ip(&req));
    match s.limiter.take(&key) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            s.metrics.rate_limited();
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                format!("too many requests; retry in {:.1} s", wait.as_secs_f64()),
            );
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert("retry-after", v);
            }
            if let Ok(v) = HeaderValue::from_str(&(wait.as_millis().max(1)).to_string()) {
                r.headers_mut().insert("retry-after-ms", v);
            }
            r
        }
    }
}

// ---------------------------------------------------------------- authentication

pub async fn authenticate(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let ip = client_ip(&req);
    let Some(admin) = s.config.api_token.as_deref() else {
        // Without a token, only requests addressed to this machine are answered: a web
        // page (a cross-site request, or DNS rebinding) must not drive the API.
        if !addressed_to_loopback(&req) {
            return error(
                StatusCode::FORBIDDEN,
                "permission_error",
                "without an API token Paddock only answers requests to localhost; set PADDOCK_API_TOKEN".into(),
            );
        }
        // No token configured: loopback only (checked at startup), everyone is admin.
        let caller = Caller {
            actor: format!("ip:{ip}"),
            role: None,
        };
        req.extensions_mut().insert(caller.clone());
        return with_caller(next.run(req).await, caller);
    };
    if open_route(&path) {
        return next.run(req).await;
    }
    let token = match bearer(&req) {
        Some(t) if !t.is_empty() => t,
        _ => {
            return with_caller(
                error(
                    StatusCode::UNAUTHORIZED,
                    "authentication_error",
                    "missing API token: send `Authorization: Bearer <token>`".into(),
                ),
                Caller {
                    actor: format!("ip:{ip}"),
                    role: None,
                },
            )
        }
    };
    let role = if constant_time_eq(sha256_hex(&token).as_bytes(), sha256_hex(admin).as_bytes()) {
        // Not a hash of the admin token: viewers read the audit trail.
        Some((Role::Admin, "admin".to_string()))
    } else {
        match s.store.token_by_hash(&sha256_hex(&token)).await {
            Ok(Some(t)) if t.revoked_at.is_none() && t.expires_at.is_none_or(|e| e > ts::now()) => {
                Some((t.role, format!("token:{}", t.fingerprint)))
            }
            Ok(_) => None,
            Err(e) => return ServerError::from(e).into_response(),
        }
    };
    let Some((role, actor)) = role else {
        return with_caller(
            error(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "the API token is invalid, expired or revoked".into(),
            ),
            Caller {
                actor: format!("ip:{ip}"),
                role: None,
            },
        );
    };
    let class = RouteClass::of(req.method().as_str(), &path);
    if !role.may(class) {
        let refusal = error(
            StatusCode::FORBIDDEN,
            "permission_error",
            format!(
                "a {} token may not {} {path}; it needs the {} role",
                role.as_str(),
                req.method(),
                class.needs().as_str()
            ),
        );
        return with_caller(
            refusal,
            Caller {
                actor,
                role: Some(role),
            },
        );
    }
    let caller = Caller {
        actor,
        role: Some(role),
    };
    req.extensions_mut().insert(caller.clone());
    with_caller(next.run(req).await, caller)
}

// ---------------------------------------------------------------- audit

/// The value of the first `{param}` of `template` in `path`.
fn first_param(template: &str, path: &str) -> Option<String> {
    template
        .split('/')
        .zip(path.split('/'))
        .find(|(t, _)| t.starts_with('{'))
        .map(|(_, v)| v.to_string())
}

/// Writes an audit entry for every request that is not a read.
pub async fn audit(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    if method == Method::GET || method == Method::HEAD || open_route(req.uri().path()) {
        return next.run(req).await;
    }
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    // Authentication runs inside this layer and hands back who called (refused
    // requests included).
    let caller = resp.extensions().get::<Caller>().cloned();
    let status = resp.status();
    let action = template
        .as_deref()
        .and_then(|t| {
            s.routes_actions
                .get(&(method.to_string(), t.to_string()))
                .cloned()
        })
        .unwrap_or_else(|| "unrouted".to_string());
    let mut target = template.as_deref().and_then(|t| first_param(t, &path));
    // A create answers with the new resource: buffer small JSON answers to read its id.
    let is_json = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    let resp = if target.is_none() && status.is_success() && is_json {
        let (parts, body) = resp.into_parts();
        match axum::body::to_bytes(body, 4 * 1024 * 1024).await {
            Ok(bytes) => {
                target = serde_json::from_slice::<Value>(&bytes)
                    .ok()
                    .and_then(|v| v["id"].as_str().map(str::to_string));
                Response::from_parts(parts, Body::from(bytes))
            }
            Err(_) => Response::from_parts(parts, Body::empty()),
        }
    } else {
        resp
    };
    let entry = AuditEntry {
        id: id::new(id::AUDIT),
        kind: "audit_entry".into(),
        at: ts::now(),
        request_id: crate::request_id::current(),
        actor: caller
            .as_ref()
            .map(|c| c.actor.clone())
            .unwrap_or_else(|| "unauthenticated".into()),
        role: caller.and_then(|c| c.role),
        action,
        target,
        status: status.as_u16(),
        outcome: if status.is_success() { "ok" } else { "error" }.into(),
        metadata: json!({"method": method.as_str(), "route": template, "path": path}),
    };
    if let Err(e) = s.store.append_audit(entry).await {
        tracing::error!(error = %e, "cannot write the audit trail");
    }
    resp
}

/// An audit entry for something Paddock did by itself.
pub async fn audit_system(
    store: &dyn paddock_store::Store,
    action: &str,
    target: &str,
    ok: bool,
    metadata: Value,
) {
    let entry = AuditEntry {
        id: id::new(id::AUDIT),
        kind: "audit_entry".into(),
        at: ts::now(),
        request_id: None,
        actor: "system".into(),
        role: None,
        action: action.into(),
        target: Some(target.into()),
        status: if ok { 200 } else { 500 },
        outcome: if ok { "ok" } else { "error" }.into(),
        metadata,
    };
    if let Err(e) = store.append_audit(entry).await {
        tracing::error!(error = %e, "cannot write the audit trail");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_at_the_configured_rate() {
        let l = RateLimiter::new(10.0, 3);
        for _ in 0..3 {
            assert!(l.take("a").is_ok());
        }
        let wait = l.take("a").unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert!(l.take("b").is_ok(), "callers have their own buckets");
        std::thread::sleep(Duration::from_millis(120));
        assert!(l.take("a").is_ok());
        assert!(RateLimiter::new(0.0, 0).take("x").is_ok(), "0 disables");
    }

    #[test]
    fn only_loopback_hosts_count() {
        for h in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:1",
            "[::1]:8080",
            "127.9.9.9",
        ] {
            assert!(loopback_host(h), "{h}");
        }
        for h in [
            "evil.example:8080",
            "10.0.0.1",
            "[2001:db8::1]:80",
            "localhost.evil.example",
        ] {
            assert!(!loopback_host(h), "{h}");
        }
    }

    #[test]
    fn params_and_comparisons() {
        assert_eq!(
            first_param("/v1/runners/{runner_id}/stop", "/v1/runners/run_1/stop").as_deref(),
            Some("run_1")
        );
        assert_eq!(first_param("/v1/agents", "/v1/agents"), None);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert_eq!(fingerprint("secret").len(), 12);
    }
}
