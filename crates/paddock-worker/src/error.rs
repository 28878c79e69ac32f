//! The worker's one error type, and its mapping to HTTP (the only place that
//! knows about status codes and wire error types).

use std::io;

use hyper::StatusCode;

/// Every failure the worker can report. Each variant maps to exactly one HTTP
/// status and one wire `error.type` (see `docs/worker-protocol.md`).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Malformed or invalid input. `field` names the offending field or query
    /// parameter when there is one.
    #[error("{message}")]
    InvalidRequest {
        field: Option<String>,
        message: String,
    },
    /// Missing or wrong bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// A path escapes the workspace (`..`, an absolute path elsewhere, or a
    /// symbolic link that resolves outside it).
    #[error("{0}")]
    PathForbidden(String),
    /// The operating system refused the operation (EACCES / EPERM).
    #[error("{0}")]
    PermissionDenied(String),
    /// A file, directory, exec id or route does not exist.
    #[error("{0}")]
    NotFound(String),
    /// An exec that ran here, whose records were pruned after its retention.
    #[error("{0}")]
    Expired(String),
    /// The route exists but not with this method.
    #[error("method {method} is not allowed on {path} (allowed: {allow})")]
    MethodNotAllowed {
        method: String,
        path: String,
        allow: &'static str,
    },
    /// A path that must be a directory is not one.
    #[error("{0}")]
    NotADirectory(String),
    /// A path that must be a regular file is not one.
    #[error("{0}")]
    NotAFile(String),
    /// A directory is not empty and `recursive` was not given.
    #[error("{0}")]
    DirectoryNotEmpty(String),
    /// The state conflicts with the request (e.g. an exec id already running).
    #[error("{0}")]
    Conflict(String),
    /// A body is larger than the configured limit.
    #[error("{what} exceeds the limit of {limit} bytes")]
    PayloadTooLarge { what: String, limit: u64 },
    /// The command could not be started (e.g. `argv[0]` does not exist).
    #[error("could not start the process: {0}")]
    SpawnFailed(String),
    /// Invalid worker configuration (startup only).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An I/O error without a more specific meaning.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// A bug or an unexpected condition.
    #[error("internal error: {0}")]
    Internal(String),
}

impl WorkerError {
    /// A 400 naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        WorkerError::InvalidRequest {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// Classifies an I/O error by its kind; `what` describes the operation
    /// and the (workspace-relative) path, e.g. "read `a/b.txt`".
    pub fn io(what: impl Into<String>, err: io::Error) -> Self {
        let what = what.into();
        match err.kind() {
            io::ErrorKind::NotFound => {
                WorkerError::NotFound(format!("{what}: no such file or directory"))
            }
            io::ErrorKind::PermissionDenied => {
                WorkerError::PermissionDenied(format!("{what}: permission denied"))
            }
            io::ErrorKind::NotADirectory => {
                WorkerError::NotADirectory(format!("{what}: not a directory"))
            }
            io::ErrorKind::IsADirectory => WorkerError::NotAFile(format!("{what}: is a directory")),
            io::ErrorKind::DirectoryNotEmpty => WorkerError::DirectoryNotEmpty(format!(
                "{what}: directory not empty (use recursive=true)"
            )),
            _ if err.raw_os_error() == Some(libc::ELOOP) => {
                WorkerError::PathForbidden(format!("{what}: refusing to follow a symbolic link"))
            }
            _ => WorkerError::Io {
                context: what,
                source: err,
            },
        }
    }

    /// The HTTP status this error is reported with.
    pub fn status(&self) -> StatusCode {
        match self {
            WorkerError::InvalidRequest { .. }
            | WorkerError::NotADirectory(_)
            | WorkerError::NotAFile(_) => StatusCode::BAD_REQUEST,
            WorkerError::Unauthorized => StatusCode::UNAUTHORIZED,
            WorkerError::PathForbidden(_) | WorkerError::PermissionDenied(_) => {
                StatusCode::FORBIDDEN
            }
            WorkerError::NotFound(_) => StatusCode::NOT_FOUND,
            WorkerError::Expired(_) => StatusCode::GONE,
            WorkerError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            WorkerError::DirectoryNotEmpty(_) | WorkerError::Conflict(_) => StatusCode::CONFLICT,
            WorkerError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            WorkerError::SpawnFailed(_) => StatusCode::UNPROCESSABLE_ENTITY,
            WorkerError::Config(_) | WorkerError::Io { .. } | WorkerError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The wire `error.type`.
    pub fn kind(&self) -> &'static str {
        match self {
            WorkerError::InvalidRequest { .. } => "invalid_request",
            WorkerError::Unauthorized => "unauthorized",
            WorkerError::PathForbidden(_) => "path_forbidden",
            WorkerError::PermissionDenied(_) => "permission_denied",
            WorkerError::NotFound(_) => "not_found",
            WorkerError::Expired(_) => "expired",
            WorkerError::MethodNotAllowed { .. } => "method_not_allowed",
            WorkerError::NotADirectory(_) => "not_a_directory",
            WorkerError::NotAFile(_) => "not_a_file",
            WorkerError::DirectoryNotEmpty(_) => "directory_not_empty",
            WorkerError::Conflict(_) => "conflict",
            WorkerError::PayloadTooLarge { .. } => "payload_too_large",
            WorkerError::SpawnFailed(_) => "spawn_failed",
            WorkerError::Config(_) | WorkerError::Io { .. } | WorkerError::Internal(_) => {
                "internal_error"
            }
        }
    }

    /// The field named by an `invalid_request` error, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            WorkerError::InvalidRequest { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    /// The JSON body: `{"type":"error","error":{"type","message"[,"field"]}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut error = serde_json::Map::new();
        error.insert("type".into(), self.kind().into());
        error.insert("message".into(), self.to_string().into());
        if let Some(field) = self.field() {
            error.insert("field".into(), field.into());
        }
        serde_json::json!({ "type": "error", "error": error })
    }
}
