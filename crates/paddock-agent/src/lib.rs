//! The built-in agent's parts, used by the agent loop in the orchestrator:
//!
//! * [`provider`]: the model providers it calls (OpenAI chat completions and Anthropic
//!   messages, both streaming, behind one trait);
//! * [`pricing`]: the price table that meters each model call;
//! * [`tools`]: the built-in tools the model is offered (bash, read, write, edit, glob,
//!   grep, web_fetch), run inside the session's sandbox through its worker, with
//!   bounded output;
//! * [`gateway`]: what the model gateway knows of the wire formats it relays for ACP
//!   agents (classification, model rewriting, usage for metering, error envelopes);
//! * [`permission`]: the permission policies of tool calls (`always_allow`,
//!   `always_ask`, and `auto`'s rule table).
//!
//! Provider keys live only here, in the orchestrator: nothing in this crate ever sends
//! one anywhere but to its provider, and the tools run in the sandbox without them.

mod error;
pub mod gateway;
pub mod permission;
pub mod pricing;
pub mod provider;
pub mod tools;

pub use error::{ProviderError, RetryStatus, SessionError, SessionErrorType};
