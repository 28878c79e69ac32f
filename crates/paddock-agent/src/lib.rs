//! The built-in agent. For now: the model providers it calls ([`provider`]: OpenAI
//! chat completions and Anthropic messages, both streaming, behind one trait) and the
//! price table that meters each model call ([`pricing`]). The agent loop and its tools
//! come later.
//!
//! Provider keys live only here, in the orchestrator: nothing in this crate ever sends
//! one anywhere but to its provider.

mod error;
pub mod pricing;
pub mod provider;

pub use error::{ProviderError, RetryStatus, SessionError, SessionErrorType};
