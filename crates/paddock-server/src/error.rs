//! The one place where errors become HTTP: `{"type":"error","error":{type,message,details}}`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use paddock_core::CoreError;
use paddock_store::StoreError;
use serde_json::json;

use crate::request_id;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error("{what} not found")]
    NotFound { what: String, code: Option<String> },
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("config: {0}")]
    Config(String),
    #[error("{message}")]
    Unavailable { message: String, code: &'static str },
    #[error("{0}")]
    Forbidden(String),
    /// A budget or quota is spent: 429, and retrying as is will not help.
    #[error("{message}")]
    QuotaExceeded { message: String, code: &'static str },
    #[error(transparent)]
    Backend(#[from] paddock_backend::BackendError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl ServerError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ServerError::Core(CoreError::invalid(field, message))
    }

    /// HTTP status, error type, message and the narrower `details.error_code`.
    fn parts(&self) -> (StatusCode, &'static str, String, Option<String>) {
        let conflict = |m: String, code: &str| {
            (
                StatusCode::CONFLICT,
                "conflict_error",
                m,
                Some(code.to_string()),
            )
        };
        match self {
            ServerError::Core(CoreError::Invalid { code, .. }) => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                self.to_string(),
                code.map(str::to_string),
            ),
            ServerError::Core(CoreError::Conflict { message }) => {
                conflict(message.clone(), "conflict")
            }
            ServerError::Core(e @ CoreError::IllegalTransition { .. }) => {
                conflict(e.to_string(), "illegal_transition")
            }
            ServerError::Store(StoreError::Invalid(e)) => ServerError::Core(e.clone()).parts(),
            ServerError::Store(StoreError::NotFound { kind, .. }) => (
                StatusCode::NOT_FOUND,
                "not_found_error",
                self.to_string(),
                Some(format!("{}_not_found", kind.replace(' ', "_"))),
            ),
            ServerError::Store(e @ StoreError::VersionConflict { .. }) => {
                conflict(e.to_string(), "version_conflict")
            }
            ServerError::Store(StoreError::Conflict(m)) => conflict(m.clone(), "conflict"),
            ServerError::Store(e @ StoreError::IdempotencyMismatch { .. }) => {
                conflict(e.to_string(), "idempotency_key_reused")
            }
            ServerError::Store(_) | ServerError::Io(_) | ServerError::Config(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                "internal error; see the server log for this request id".to_string(),
                None,
            ),
            ServerError::QuotaExceeded { message, code } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                message.clone(),
                Some(code.to_string()),
            ),
            ServerError::Forbidden(m) => {
                (StatusCode::FORBIDDEN, "permission_error", m.clone(), None)
            }
            ServerError::Unavailable { message, code } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded_error",
                message.clone(),
                Some(code.to_string()),
            ),
            ServerError::Backend(e) => {
                use paddock_backend::BackendError as B;
                let (status, kind, code) = match e {
                    B::Unsupported { .. } => (
                        StatusCode::BAD_REQUEST,
                        "invalid_request_error",
                        "unsupported".to_string(),
                    ),
                    B::NotFound(_) => (
                        StatusCode::NOT_FOUND,
                        "not_found_error",
                        "sandbox_not_found".to_string(),
                    ),
                    B::Worker { status, kind, .. } => {
                        // The worker's answer keeps its meaning; its error type is the code.
                        let code = kind.clone().unwrap_or_else(|| "worker_error".into());
                        match *status {
                            400 => (StatusCode::BAD_REQUEST, "invalid_request_error", code),
                            401 | 403 => (StatusCode::FORBIDDEN, "permission_error", code),
                            404 => (StatusCode::NOT_FOUND, "not_found_error", code),
                            409 => (StatusCode::CONFLICT, "conflict_error", code),
                            413 => (StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error", code),
                            422 => (
                                StatusCode::UNPROCESSABLE_ENTITY,
                                "invalid_request_error",
                                code,
                            ),
                            _ => (StatusCode::BAD_GATEWAY, "api_error", code),
                        }
                    }
                    B::Unreachable(_) => (
                        StatusCode::BAD_GATEWAY,
                        "api_error",
                        "worker_unreachable".to_string(),
                    ),
                    B::Timeout(_) => (
                        StatusCode::GATEWAY_TIMEOUT,
                        "timeout_error",
                        "backend_timeout".to_string(),
                    ),
                    B::Unavailable { .. } => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "overloaded_error",
                        "backend_unavailable".to_string(),
                    ),
                    B::Io { .. } => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "api_error",
                        "backend_io".to_string(),
                    ),
                };
                (status, kind, e.to_string(), Some(code))
            }
            ServerError::NotFound { code, .. } => (
                StatusCode::NOT_FOUND,
                "not_found_error",
                self.to_string(),
                code.clone(),
            ),
            ServerError::TooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                self.to_string(),
                Some("request_too_large".into()),
            ),
            ServerError::MethodNotAllowed(m) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                m.clone(),
                None,
            ),
        }
    }

    /// The error envelope and status, for both responses and SSE `error` frames.
    pub fn envelope(&self) -> (StatusCode, serde_json::Value) {
        let (status, kind, message, code) = self.parts();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let mut error = json!({"type": kind, "message": message});
        if let Some(code) = code {
            error["details"] = json!({"error_code": code});
        }
        let mut body = json!({"type": "error", "error": error});
        if let Some(id) = request_id::current() {
            body["request_id"] = json!(id);
        }
        (status, body)
    }
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        // Nothing we answer with a 4xx other than 429 gets better by being replayed as is.
        let quota = matches!(self, ServerError::QuotaExceeded { .. });
        let (status, body) = self.envelope();
        let mut resp = (status, axum::Json(body)).into_response();
        if quota || (status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS) {
            resp.headers_mut()
                .insert("x-should-retry", HeaderValue::from_static("false"));
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ServerError>;
