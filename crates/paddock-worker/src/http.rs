//! Small HTTP helpers on top of hyper: the response body type (full or
//! streamed from a channel), JSON responses, strict JSON / query parsing.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::error::WorkerError;

/// The body of every response the worker sends.
pub type Body = BoxBody<Bytes, io::Error>;

/// A response body fed by a channel: each `Ok` item is sent as one chunk as
/// soon as it is received; an `Err` aborts the response (the client sees a
/// truncated body). Dropping the body (client gone) closes the channel, which
/// producers observe through `Sender::closed()` / failed sends.
pub struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, io::Error>>,
    exact_len: Option<u64>,
    /// Held while the body is alive (e.g. counts open exec streams).
    _guard: Option<crate::exec::StreamGuard>,
}

impl ChannelBody {
    pub fn new(rx: mpsc::Receiver<Result<Bytes, io::Error>>, exact_len: Option<u64>) -> Self {
        ChannelBody {
            rx,
            exact_len,
            _guard: None,
        }
    }

    /// A body that keeps `guard` until hyper is done with it.
    pub fn guarded(
        rx: mpsc::Receiver<Result<Bytes, io::Error>>,
        guard: crate::exec::StreamGuard,
    ) -> Self {
        ChannelBody {
            rx,
            exact_len: None,
            _guard: Some(guard),
        }
    }
}

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(bytes))) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact_len {
            Some(len) => SizeHint::with_exact(len),
            None => SizeHint::default(),
        }
    }
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn streamed(body: ChannelBody) -> Body {
    body.boxed()
}

fn with_content_type(status: StatusCode, content_type: &'static str, body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            with_content_type(status, "application/json", full(bytes))
        }
        Err(err) => error_response(&WorkerError::Internal(format!(
            "serializing the response: {err}"
        ))),
    }
}

pub fn ok_json<T: Serialize>(value: &T) -> Response<Body> {
    json(StatusCode::OK, value)
}

pub fn error_response(err: &WorkerError) -> Response<Body> {
    let mut bytes = serde_json::to_vec(&err.to_json()).unwrap_or_else(|_| b"{}".to_vec());
    bytes.push(b'\n');
    let mut resp = with_content_type(err.status(), "application/json", full(bytes));
    if let WorkerError::MethodNotAllowed { allow, .. } = err {
        resp.headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static(allow));
    }
    resp
}

pub fn ndjson(body: ChannelBody) -> Response<Body> {
    with_content_type(StatusCode::OK, "application/x-ndjson", streamed(body))
}

pub fn octet_stream(body: ChannelBody) -> Response<Body> {
    with_content_type(StatusCode::OK, "application/octet-stream", streamed(body))
}

/// Reads a whole request body of at most `limit` bytes.
pub async fn read_body(
    req: Request<Incoming>,
    limit: usize,
    what: &str,
) -> Result<Bytes, WorkerError> {
    if let Some(len) = content_length(&req) {
        if len > limit as u64 {
            return Err(WorkerError::PayloadTooLarge {
                what: what.to_string(),
                limit: limit as u64,
            });
        }
    }
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) => {
            if err.is::<http_body_util::LengthLimitError>() {
                Err(WorkerError::PayloadTooLarge {
                    what: what.to_string(),
                    limit: limit as u64,
                })
            } else {
                Err(WorkerError::InvalidRequest {
                    field: None,
                    message: format!("could not read the request body: {err}"),
                })
            }
        }
    }
}

pub fn content_length<B>(req: &Request<B>) -> Option<u64> {
    content_length_of(req.headers())
}

pub fn content_length_of(headers: &hyper::HeaderMap) -> Option<u64> {
    headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Most bytes of an unread request body discarded before an error response
/// (so the client can finish sending and read the response); a larger body
/// makes the connection close instead.
pub const DRAIN_LIMIT: u64 = 8 * 1024 * 1024;

/// Reads and discards what is left of a request body, up to [`DRAIN_LIMIT`]
/// bytes and 5 seconds.
pub async fn drain(body: &mut Incoming) {
    if body.is_end_stream() {
        return;
    }
    let mut seen: u64 = 0;
    let discard = async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                seen += data.len() as u64;
                if seen > DRAIN_LIMIT {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), discard).await;
}

/// Extracts the name between the first pair of backticks of a serde message
/// ("unknown field `foo`, expected ..." / "missing field `path`").
fn backticked(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

fn join_field(prefix: &str, name: &str) -> String {
    if prefix.is_empty() || prefix == "." {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Parses a JSON object strictly (the target type uses
/// `deny_unknown_fields`); errors name the offending field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WorkerError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = match serde_path_to_error::deserialize(&mut de) {
        Ok(v) => v,
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            let message = inner.to_string();
            let field = if message.starts_with("unknown field") {
                // serde_path_to_error's path already ends with the unknown key.
                if path.is_empty() || path == "." {
                    backticked(&message)
                } else {
                    Some(path.clone())
                }
            } else if message.starts_with("missing field") {
                backticked(&message).map(|name| join_field(&path, &name))
            } else if path.is_empty() || path == "." {
                None
            } else {
                Some(path.clone())
            };
            let message = match &field {
                Some(f)
                    if !message.starts_with("unknown field")
                        && !message.starts_with("missing field") =>
                {
                    format!("invalid request body: field `{f}`: {message}")
                }
                _ => format!("invalid request body: {message}"),
            };
            return Err(WorkerError::InvalidRequest { field, message });
        }
    };
    de.end().map_err(|err| WorkerError::InvalidRequest {
        field: None,
        message: format!("invalid request body: {err}"),
    })?;
    Ok(value)
}

/// Parses the query string strictly into a struct of `Option<String>` fields
/// (`deny_unknown_fields`); errors name the offending parameter.
pub fn parse_query<T: DeserializeOwned>(query: Option<&str>) -> Result<T, WorkerError> {
    serde_urlencoded::from_str(query.unwrap_or("")).map_err(|err| {
        let message = err.to_string();
        let field = backticked(&message);
        WorkerError::InvalidRequest {
            field,
            message: format!(
                "invalid query string: {}",
                message.replace("field", "parameter")
            ),
        }
    })
}

pub fn parse_u64_param(name: &str, value: Option<&str>) -> Result<Option<u64>, WorkerError> {
    match value {
        None => Ok(None),
        Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| {
            WorkerError::invalid(
                name,
                format!("`{name}` must be a non-negative integer, got {v:?}"),
            )
        }),
    }
}

pub fn parse_bool_param(name: &str, value: Option<&str>) -> Result<bool, WorkerError> {
    match value {
        None => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(v) => Err(WorkerError::invalid(
            name,
            format!("`{name}` must be true or false, got {v:?}"),
        )),
    }
}
