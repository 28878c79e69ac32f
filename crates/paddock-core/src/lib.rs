//! Paddock's domain: sortable prefixed ids, the runner lifecycle, the wire shapes of the
//! primitives it shares with the Managed Agents API, and their validation. No I/O here.

pub mod agent;
pub mod common;
pub mod environment;
pub mod error;
pub mod event;
pub mod harness;
pub mod id;
pub mod lifecycle;
pub mod profile;
pub mod runner;
pub mod security;
pub mod session;
pub mod ts;

pub use error::CoreError;
