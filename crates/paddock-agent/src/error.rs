//! The crate's one error type and its mapping to the wire's `session.error` payload.

use std::time::Duration;

/// Why a model call failed. Every variant names the provider (the configured name,
/// never its key). Variants that can be retried carry how many attempts were made:
/// when one comes out of [`crate::provider::Provider::stream`] the retries allowed by
/// the provider's config are already spent.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("model provider {provider:?} is unreachable at {url}: {message} (after {attempts} attempt(s))")]
    Unreachable {
        provider: String,
        url: String,
        message: String,
        attempts: u32,
    },
    #[error("model provider {provider:?} rejected the API key (HTTP {status}): {message}")]
    Auth {
        provider: String,
        status: u16,
        message: String,
    },
    #[error("model provider {provider:?} refused the request for billing reasons (HTTP {status}): {message}")]
    Billing {
        provider: String,
        status: u16,
        message: String,
    },
    #[error("model provider {provider:?} is rate limiting requests ({}after {attempts} attempt(s)): {message}", http(.status))]
    RateLimited {
        provider: String,
        status: Option<u16>,
        message: String,
        retry_after: Option<Duration>,
        attempts: u32,
    },
    #[error("model provider {provider:?} is overloaded ({}after {attempts} attempt(s)): {message}", http(.status))]
    Overloaded {
        provider: String,
        status: Option<u16>,
        message: String,
        attempts: u32,
    },
    #[error("model provider {provider:?} rejected the request (HTTP {status}): {message}")]
    BadRequest {
        provider: String,
        status: u16,
        message: String,
    },
    #[error("model provider {provider:?} failed ({}after {attempts} attempt(s)): {message}", http(.status))]
    Server {
        provider: String,
        status: Option<u16>,
        message: String,
        attempts: u32,
    },
    #[error("model provider {provider:?} timed out {waiting} after {after:?} (after {attempts} attempt(s))")]
    Timeout {
        provider: String,
        /// What was being waited for, e.g. "waiting for the response".
        waiting: &'static str,
        after: Duration,
        attempts: u32,
    },
    #[error("model provider {provider:?} sent a malformed response: {message}")]
    Protocol { provider: String, message: String },
    #[error("unknown model provider {name:?} in model {model:?}; configured providers: {known}")]
    UnknownProvider {
        name: String,
        model: String,
        known: String,
    },
    #[error("invalid model {0:?}: expected provider/model, e.g. anthropic/claude-sonnet-4-6")]
    InvalidModel(String),
    #[error(
        "model provider {provider:?} has no API key: the environment variable {env} is not set"
    )]
    MissingApiKey { provider: String, env: String },
    #[error("invalid model provider configuration: {0}")]
    Config(String),
}

fn http(status: &Option<u16>) -> String {
    match status {
        Some(s) => format!("HTTP {s}, "),
        None => "in the stream, ".to_string(),
    }
}

pub use paddock_core::event::{RetryStatus, SessionError, SessionErrorType};

impl ProviderError {
    /// The `session.error` type this failure is reported as.
    pub fn session_error_type(&self) -> SessionErrorType {
        match self {
            ProviderError::Overloaded { .. } => SessionErrorType::ModelOverloaded,
            ProviderError::RateLimited { .. } => SessionErrorType::ModelRateLimited,
            ProviderError::Billing { .. } => SessionErrorType::Billing,
            ProviderError::Unreachable { .. }
            | ProviderError::Auth { .. }
            | ProviderError::BadRequest { .. }
            | ProviderError::Server { .. }
            | ProviderError::Timeout { .. }
            | ProviderError::Protocol { .. }
            | ProviderError::UnknownProvider { .. }
            | ProviderError::InvalidModel(_)
            | ProviderError::MissingApiKey { .. }
            | ProviderError::Config(_) => SessionErrorType::ModelRequestFailed,
        }
    }

    /// Whether sending the same request again may succeed (429, 5xx, 529, timeouts,
    /// connection failures).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::Unreachable { .. }
                | ProviderError::RateLimited { .. }
                | ProviderError::Overloaded { .. }
                | ProviderError::Server { .. }
                | ProviderError::Timeout { .. }
        )
    }

    /// The retry status of this error once it is final (the provider's own retries
    /// spent): `terminal` for a wrong key, billing and configuration errors (retrying
    /// cannot help until an operator acts), `exhausted` for everything else.
    pub fn retry_status(&self) -> RetryStatus {
        match self {
            ProviderError::Auth { .. }
            | ProviderError::Billing { .. }
            | ProviderError::UnknownProvider { .. }
            | ProviderError::InvalidModel(_)
            | ProviderError::MissingApiKey { .. }
            | ProviderError::Config(_) => RetryStatus::Terminal,
            _ => RetryStatus::Exhausted,
        }
    }

    /// The `session.error` payload for this (final) error.
    pub fn session_error(&self) -> SessionError {
        SessionError::new(
            self.session_error_type(),
            self.to_string(),
            self.retry_status(),
        )
    }

    /// How long the provider asked us to wait, when it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The configured name of the provider involved, when there is one.
    pub fn provider(&self) -> Option<&str> {
        match self {
            ProviderError::Unreachable { provider, .. }
            | ProviderError::Auth { provider, .. }
            | ProviderError::Billing { provider, .. }
            | ProviderError::RateLimited { provider, .. }
            | ProviderError::Overloaded { provider, .. }
            | ProviderError::BadRequest { provider, .. }
            | ProviderError::Server { provider, .. }
            | ProviderError::Timeout { provider, .. }
            | ProviderError::Protocol { provider, .. }
            | ProviderError::MissingApiKey { provider, .. } => Some(provider),
            ProviderError::UnknownProvider { .. }
            | ProviderError::InvalidModel(_)
            | ProviderError::Config(_) => None,
        }
    }

    pub(crate) fn set_attempts(&mut self, n: u32) {
        match self {
            ProviderError::Unreachable { attempts, .. }
            | ProviderError::RateLimited { attempts, .. }
            | ProviderError::Overloaded { attempts, .. }
            | ProviderError::Server { attempts, .. }
            | ProviderError::Timeout { attempts, .. } => *attempts = n,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn session_error_serializes_like_the_wire() {
        let e = ProviderError::Overloaded {
            provider: "anthropic".into(),
            status: Some(529),
            message: "Overloaded".into(),
            attempts: 3,
        };
        let v = serde_json::to_value(e.session_error()).expect("serializes");
        assert_eq!(v["type"], json!("model_overloaded_error"));
        assert_eq!(v["retry_status"], json!({"type": "exhausted"}));
        assert!(v["message"]
            .as_str()
            .is_some_and(|m| m.contains("HTTP 529") && m.contains("3 attempt")));

        let auth = ProviderError::Auth {
            provider: "openai".into(),
            status: 401,
            message: "bad key".into(),
        };
        let s = auth.session_error();
        assert_eq!(s.error_type, SessionErrorType::ModelRequestFailed);
        assert_eq!(s.retry_status, RetryStatus::Terminal);
        assert!(!auth.is_retryable());

        let billing = ProviderError::Billing {
            provider: "openai".into(),
            status: 429,
            message: "quota".into(),
        };
        assert_eq!(
            serde_json::to_value(billing.session_error()).expect("json")["type"],
            json!("billing_error")
        );
        let rl = ProviderError::RateLimited {
            provider: "p".into(),
            status: Some(429),
            message: "m".into(),
            retry_after: None,
            attempts: 1,
        };
        assert_eq!(rl.session_error_type().as_str(), "model_rate_limited_error");
        assert!(rl.is_retryable());
        assert_eq!(
            serde_json::to_value(RetryStatus::Retrying).expect("json"),
            json!({"type": "retrying"})
        );
    }
}
