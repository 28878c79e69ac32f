//! What both providers share: the HTTP client (TLS), sending with retries, turning
//! error responses into [`ProviderError`]s, and driving an SSE body into a
//! [`ModelStream`].

use super::sse::{SseDecoder, SseEvent};
use super::{ModelStream, ProviderConfig, StreamEvent};
use crate::ProviderError;
use futures::{Stream, StreamExt};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use serde_json::Value;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// The longest `retry-after` honoured; a longer one falls back to our own backoff.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

pub(crate) struct HttpCore {
    pub name: String,
    pub base_url: String,
    client: reqwest::Client,
    headers: HeaderMap,
    timeout: Duration,
    max_retries: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    /// Set when the config names a key variable that was not set.
    missing_key_env: Option<String>,
}

impl std::fmt::Debug for HttpCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the headers: they hold the key.
        f.debug_struct("HttpCore")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .finish_non_exhaustive()
    }
}

impl HttpCore {
    /// `auth`: the provider's key headers (already marked sensitive), if it has a key.
    pub fn new(
        config: &ProviderConfig,
        auth: Vec<(HeaderName, HeaderValue)>,
        has_key: bool,
    ) -> Result<Self, ProviderError> {
        config.validate()?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        for (k, v) in &config.headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| {
                ProviderError::Config(format!("provider {:?}: header {k:?}: {e}", config.name))
            })?;
            let value = HeaderValue::from_str(v).map_err(|e| {
                ProviderError::Config(format!(
                    "provider {:?}: header {k:?} value: {e}",
                    config.name
                ))
            })?;
            headers.insert(name, value);
        }
        for (k, v) in auth {
            headers.insert(k, v);
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("paddock/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
            .build()
            .map_err(|e| {
                ProviderError::Config(format!(
                    "provider {:?}: cannot build the HTTP client: {}",
                    config.name,
                    chain(&e)
                ))
            })?;
        Ok(HttpCore {
            name: config.name.clone(),
            base_url: config.effective_base_url(),
            client,
            headers,
            timeout: Duration::from_secs(config.timeout_secs),
            max_retries: config.max_retries,
            initial_backoff: Duration::from_millis(config.initial_backoff_ms),
            max_backoff: Duration::from_millis(
                config.max_backoff_ms.max(config.initial_backoff_ms),
            ),
            missing_key_env: if has_key {
                None
            } else {
                config.api_key_env.clone()
            },
        })
    }

    /// POSTs `body` to `url`, retrying what can be retried, and returns the first
    /// successful response (its headers read, its body not yet).
    pub async fn send(&self, url: &str, body: Vec<u8>) -> Result<reqwest::Response, ProviderError> {
        self.send_with(url, body, &[]).await
    }

    /// A model-gateway relay ([`super::Provider::forward`]): `body` POSTed to `tail`
    /// (with `query`) under `root`, the provider's API root below its base URL.
    pub async fn forward(
        &self,
        root: &str,
        tail: &str,
        query: Option<&str>,
        body: Vec<u8>,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<reqwest::Response, ProviderError> {
        let mut url = format!("{}{root}/{tail}", self.base_url);
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            url.push('?');
            url.push_str(q);
        }
        self.send_with(&url, body, extra).await
    }

    /// [`Self::send`] with `extra` headers besides the provider's own (which win: an
    /// extra header never replaces the key).
    pub async fn send_with(
        &self,
        url: &str,
        body: Vec<u8>,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<reqwest::Response, ProviderError> {
        let mut headers = self.headers.clone();
        for (k, v) in extra {
            if !self.headers.contains_key(k) {
                headers.insert(k.clone(), v.clone());
            }
        }
        if let Some(env) = &self.missing_key_env {
            return Err(ProviderError::MissingApiKey {
                provider: self.name.clone(),
                env: env.clone(),
            });
        }
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let request = self
                .client
                .post(url)
                .headers(headers.clone())
                .body(body.clone());
            tracing::debug!(provider = %self.name, url, attempt, "model request");
            let (mut err, should_retry) =
                match tokio::time::timeout(self.timeout, request.send()).await {
                    Err(_) => (
                        ProviderError::Timeout {
                            provider: self.name.clone(),
                            waiting: "waiting for the response",
                            after: self.timeout,
                            attempts: attempt,
                        },
                        None,
                    ),
                    Ok(Err(e)) => (self.transport_error(url, &e), None),
                    Ok(Ok(resp)) if resp.status().is_success() => return Ok(resp),
                    Ok(Ok(resp)) => self.status_error(resp).await,
                };
            err.set_attempts(attempt);
            let retry = should_retry.unwrap_or_else(|| err.is_retryable());
            if !retry || attempt > self.max_retries {
                tracing::warn!(provider = %self.name, attempt, error = %err, "model request failed");
                return Err(err);
            }
            let delay = self.backoff(attempt, err.retry_after());
            tracing::warn!(provider = %self.name, attempt, delay_ms = delay.as_millis() as u64,
                error = %err, "model request failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// The wait before retry number `attempt` (1-based).
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(ra) = retry_after.filter(|d| *d <= MAX_RETRY_AFTER) {
            return ra;
        }
        let exp = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
        let base = self
            .initial_backoff
            .saturating_mul(exp)
            .min(self.max_backoff);
        // Up to 25% less, so that clients that failed together do not retry together.
        let jitter = 1.0 - 0.25 * random_unit();
        base.mul_f64(jitter)
    }

    fn transport_error(&self, url: &str, e: &reqwest::Error) -> ProviderError {
        if e.is_timeout() {
            return ProviderError::Timeout {
                provider: self.name.clone(),
                waiting: "connecting",
                after: self.timeout,
                attempts: 1,
            };
        }
        ProviderError::Unreachable {
            provider: self.name.clone(),
            url: url.to_string(),
            message: chain(e),
            attempts: 1,
        }
    }

    /// Reads an error response; returns the error and the provider's `x-should-retry`.
    async fn status_error(&self, resp: reqwest::Response) -> (ProviderError, Option<bool>) {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = match tokio::time::timeout(self.timeout, resp.bytes()).await {
            Ok(Ok(b)) => b.to_vec(),
            _ => Vec::new(),
        };
        let should_retry = match header_str(&headers, "x-should-retry") {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => None,
        };
        let (etype, code, message) = error_fields(&body);
        let err = classify(
            &self.name,
            Some(status),
            etype.as_deref(),
            code.as_deref(),
            message,
            retry_after(&headers),
        );
        (err, should_retry)
    }

    /// Turns a successful streaming response into a [`ModelStream`].
    pub fn event_stream<P: WireParser>(
        &self,
        resp: reqwest::Response,
        parser: P,
    ) -> Result<ModelStream, ProviderError> {
        let content_type = header_str(resp.headers(), "content-type").unwrap_or("");
        if content_type.starts_with("application/json") {
            return Err(ProviderError::Protocol {
                provider: self.name.clone(),
                message: "expected an event stream but got a JSON response; does this server support \"stream\": true?".into(),
            });
        }
        Ok(drive(
            self.name.clone(),
            Box::pin(resp.bytes_stream()),
            parser,
            self.timeout,
        ))
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// `retry-after-ms` (milliseconds) or `retry-after` (seconds). An HTTP-date
/// `retry-after` is not understood and falls back to the backoff.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let parse = |name: &str, scale: f64| {
        header_str(headers, name)
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| Duration::from_secs_f64(v * scale))
    };
    parse("retry-after-ms", 0.001).or_else(|| parse("retry-after", 1.0))
}

/// `(error.type, error.code, message)` from an OpenAI or Anthropic error body, or from
/// whatever an OpenAI-compatible server sent.
pub(crate) fn error_fields(body: &[u8]) -> (Option<String>, Option<String>, String) {
    let text = String::from_utf8_lossy(body);
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        let t = text.trim();
        return (
            None,
            None,
            if t.is_empty() {
                "(empty response body)".to_string()
            } else {
                truncate(t, 500)
            },
        );
    };
    let err = v.get("error").unwrap_or(&v);
    if let Some(s) = err.as_str() {
        return (None, None, truncate(s, 500));
    }
    let s = |k: &str| err.get(k).and_then(Value::as_str).map(str::to_string);
    let message = s("message")
        .or_else(|| v.get("detail").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| truncate(&v.to_string(), 500));
    (s("type"), s("code"), message)
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

/// Classifies a provider error by HTTP status (`None` for an error event inside a
/// stream) refined by the provider's error type and code.
pub(crate) fn classify(
    provider: &str,
    status: Option<u16>,
    error_type: Option<&str>,
    code: Option<&str>,
    message: String,
    retry_after: Option<Duration>,
) -> ProviderError {
    let provider = provider.to_string();
    let is = |names: &[&str]| {
        error_type.is_some_and(|t| names.contains(&t)) || code.is_some_and(|c| names.contains(&c))
    };
    let billing = is(&[
        "insufficient_quota",
        "billing_error",
        "billing_hard_limit_reached",
    ]);
    let auth = is(&[
        "authentication_error",
        "permission_error",
        "invalid_api_key",
    ]);
    let rate = is(&["rate_limit_error", "rate_limit_exceeded"]);
    let overloaded = is(&["overloaded_error"]);
    match status {
        Some(s) if billing || s == 402 => ProviderError::Billing {
            provider,
            status: s,
            message,
        },
        Some(s @ (401 | 403)) => ProviderError::Auth {
            provider,
            status: s,
            message,
        },
        Some(429) => ProviderError::RateLimited {
            provider,
            status: Some(429),
            message,
            retry_after,
            attempts: 1,
        },
        Some(s @ (503 | 529)) => ProviderError::Overloaded {
            provider,
            status: Some(s),
            message,
            attempts: 1,
        },
        Some(s) if s >= 500 || s == 408 || s == 409 => ProviderError::Server {
            provider,
            status: Some(s),
            message,
            attempts: 1,
        },
        Some(s) => ProviderError::BadRequest {
            provider,
            status: s,
            message,
        },
        None if overloaded => ProviderError::Overloaded {
            provider,
            status: None,
            message,
            attempts: 1,
        },
        None if rate => ProviderError::RateLimited {
            provider,
            status: None,
            message,
            retry_after: None,
            attempts: 1,
        },
        None if billing => ProviderError::Billing {
            provider,
            status: 200,
            message,
        },
        None if auth => ProviderError::Auth {
            provider,
            status: 200,
            message,
        },
        None => ProviderError::Server {
            provider,
            status: None,
            message: match error_type {
                Some(t) => format!("{t}: {message}"),
                None => message,
            },
            attempts: 1,
        },
    }
}

/// The error text with its causes ("error sending request: … : Connection refused").
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    s
}

fn random_unit() -> f64 {
    // A fresh RandomState is randomly keyed per process and per instance.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5eed);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Turns a provider's SSE events into [`StreamEvent`]s.
pub(crate) trait WireParser: Send + 'static {
    /// Handles one SSE event; returns `true` once the response is complete.
    fn event(
        &mut self,
        event: SseEvent,
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<bool, ProviderError>;

    /// The body ended before [`WireParser::event`] returned `true`.
    fn end(&mut self, out: &mut VecDeque<StreamEvent>) -> Result<(), ProviderError>;
}

struct Driver<S, P> {
    provider: String,
    body: S,
    decoder: SseDecoder,
    parser: P,
    pending: VecDeque<StreamEvent>,
    error: Option<ProviderError>,
    done: bool,
    idle: Duration,
}

fn drive<S, B, P>(provider: String, body: S, parser: P, idle: Duration) -> ModelStream
where
    S: Stream<Item = Result<B, reqwest::Error>> + Send + Unpin + 'static,
    B: AsRef<[u8]> + Send,
    P: WireParser,
{
    let driver = Driver {
        provider,
        body,
        decoder: SseDecoder::default(),
        parser,
        pending: VecDeque::new(),
        error: None,
        done: false,
        idle,
    };
    ModelStream::new(futures::stream::unfold(driver, |mut d| async move {
        loop {
            if let Some(ev) = d.pending.pop_front() {
                return Some((Ok(ev), d));
            }
            if let Some(e) = d.error.take() {
                d.done = true;
                return Some((Err(e), d));
            }
            if d.done {
                return None;
            }
            d.step().await;
        }
    }))
}

impl<S, B, P> Driver<S, P>
where
    S: Stream<Item = Result<B, reqwest::Error>> + Send + Unpin,
    B: AsRef<[u8]> + Send,
    P: WireParser,
{
    /// Reads one chunk of the body and parses what it completes.
    async fn step(&mut self) {
        let mut events = Vec::new();
        match tokio::time::timeout(self.idle, self.body.next()).await {
            Err(_) => {
                self.fail(ProviderError::Timeout {
                    provider: self.provider.clone(),
                    waiting: "waiting for the next stream event",
                    after: self.idle,
                    attempts: 1,
                });
                return;
            }
            Ok(Some(Err(e))) => {
                self.fail(ProviderError::Unreachable {
                    provider: self.provider.clone(),
                    url: e.url().map(|u| u.to_string()).unwrap_or_default(),
                    message: format!("the connection failed mid-stream: {}", chain(&e)),
                    attempts: 1,
                });
                return;
            }
            Ok(Some(Ok(bytes))) => {
                if let Err(m) = self.decoder.push(bytes.as_ref(), &mut events) {
                    self.fail(self.protocol(m));
                    return;
                }
            }
            Ok(None) => {
                if let Err(m) = self.decoder.finish(&mut events) {
                    self.fail(self.protocol(m));
                    return;
                }
                self.parse(events);
                if !self.done && self.error.is_none() {
                    if let Err(e) = self.parser.end(&mut self.pending) {
                        self.error = Some(e);
                    }
                    self.done = true;
                }
                return;
            }
        }
        self.parse(events);
    }

    fn parse(&mut self, events: Vec<SseEvent>) {
        for ev in events {
            if self.done || self.error.is_some() {
                return;
            }
            match self.parser.event(ev, &mut self.pending) {
                Ok(true) => self.done = true,
                Ok(false) => {}
                Err(e) => self.error = Some(e),
            }
        }
    }

    fn fail(&mut self, e: ProviderError) {
        tracing::warn!(provider = %self.provider, error = %e, "model stream failed");
        self.error = Some(e);
    }

    fn protocol(&self, message: String) -> ProviderError {
        ProviderError::Protocol {
            provider: self.provider.clone(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_of_both_providers_are_read() {
        let anthropic = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"r"}"#;
        assert_eq!(
            error_fields(anthropic),
            (
                Some("overloaded_error".into()),
                None,
                "Overloaded".to_string()
            )
        );
        let openai = br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
        let (t, c, m) = error_fields(openai);
        assert_eq!(t.as_deref(), Some("insufficient_quota"));
        assert_eq!(c.as_deref(), Some("insufficient_quota"));
        assert!(m.contains("quota"));
        assert!(matches!(
            classify("p", Some(429), t.as_deref(), c.as_deref(), m, None),
            ProviderError::Billing { status: 429, .. }
        ));
        assert_eq!(error_fields(b"").2, "(empty response body)");
        assert_eq!(error_fields(b"Bad Gateway").2, "Bad Gateway");
        assert_eq!(
            error_fields(br#"{"error":"model not found"}"#).2,
            "model not found"
        );
    }

    #[test]
    fn statuses_are_classified() {
        let c = |s: u16| classify("p", Some(s), None, None, "m".into(), None);
        assert!(matches!(c(401), ProviderError::Auth { .. }));
        assert!(matches!(c(403), ProviderError::Auth { .. }));
        assert!(matches!(c(402), ProviderError::Billing { .. }));
        assert!(matches!(c(429), ProviderError::RateLimited { .. }));
        assert!(matches!(c(529), ProviderError::Overloaded { .. }));
        assert!(matches!(c(503), ProviderError::Overloaded { .. }));
        assert!(matches!(c(500), ProviderError::Server { .. }));
        assert!(matches!(c(502), ProviderError::Server { .. }));
        assert!(matches!(c(400), ProviderError::BadRequest { .. }));
        assert!(matches!(c(404), ProviderError::BadRequest { .. }));
        assert!(!c(400).is_retryable() && !c(401).is_retryable());
        assert!(c(429).is_retryable() && c(500).is_retryable() && c(529).is_retryable());
        let stream = |t: &str| classify("p", None, Some(t), None, "m".into(), None);
        assert!(matches!(
            stream("overloaded_error"),
            ProviderError::Overloaded { status: None, .. }
        ));
        assert!(matches!(
            stream("api_error"),
            ProviderError::Server { status: None, .. }
        ));
    }

    #[test]
    fn retry_after_headers_are_read() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", HeaderValue::from_static("150"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
        let mut d = HeaderMap::new();
        d.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&d), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_honours_retry_after() {
        let mut config = ProviderConfig::openai();
        config.initial_backoff_ms = 100;
        config.max_backoff_ms = 1000;
        let core = HttpCore::new(&config, Vec::new(), false).expect("builds");
        for (attempt, full) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (9, 1000)] {
            let d = core.backoff(attempt, None).as_millis() as u64;
            assert!(d <= full && d >= full * 3 / 4, "attempt {attempt}: {d}ms");
        }
        assert_eq!(
            core.backoff(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert!(core.backoff(1, Some(Duration::from_secs(3600))) <= Duration::from_millis(100));
    }
}
