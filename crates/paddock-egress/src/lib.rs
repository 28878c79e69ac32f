//! Paddock's allowlisting HTTP/HTTPS egress proxy.
//!
//! Runners whose network policy is `limited` sit on an isolated network whose only way out
//! is this proxy: they get `HTTP_PROXY`/`HTTPS_PROXY` pointing at it and have no DNS of their
//! own. The proxy decides by host name (see [`Allowlist`]), resolves allowed names itself and
//! refuses to connect to addresses that must never be reachable from a runner (loopback,
//! link-local — including cloud metadata at `169.254.169.254` — unspecified, multicast and,
//! with [`ProxyConfig::block_private`], private ranges), whatever the allowlist says.
//!
//! Supported requests (HTTP/1.x, one request per client connection):
//! - `CONNECT host:port` — a byte tunnel (used for HTTPS);
//! - absolute-form requests such as `GET http://host:port/path HTTP/1.1` — forwarded to the
//!   origin in origin-form, with `Proxy-*` and hop-by-hop headers dropped and
//!   `Connection: close`.
//!
//! Every request yields exactly one [`Decision`], passed to the `on_decision` callback and
//! logged with `tracing` (target `paddock_egress`).

mod addr;
mod allowlist;
mod head;
mod proxy;

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

pub use allowlist::Allowlist;
pub use proxy::EgressProxy;

/// Errors of the egress proxy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EgressError {
    /// An allowlist pattern is malformed.
    #[error("invalid allowlist pattern {pattern:?}: {reason}")]
    InvalidPattern {
        /// The pattern as given.
        pattern: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A client sent something that is not an acceptable proxy request (or request body).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// An I/O operation did not complete in time.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// An I/O error on a client or upstream connection.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The proxy's verdict on one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// When the decision was made (RFC 3339, UTC).
    pub at: String,
    /// The client's address.
    pub client: SocketAddr,
    /// The request method (`CONNECT`, `GET`, …); empty if it could not be parsed.
    pub method: String,
    /// The target host: lower-case, no trailing dot, IPv6 without brackets; empty if the
    /// request could not be parsed.
    pub host: String,
    /// The target port; 0 if the request could not be parsed.
    pub port: u16,
    /// Whether the request was let through.
    pub allowed: bool,
    /// Why, e.g. `allowed by *.pypi.org`, `not in the allowlist`,
    /// `blocked address 169.254.169.254 (link-local)`, `bad request: …`.
    pub reason: String,
}

/// Configuration of an [`EgressProxy`].
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Hosts that may be reached. Replace it on a running proxy with
    /// [`EgressProxy::set_allowlist`].
    pub allow: Allowlist,
    /// Bound on name resolution plus connecting to the origin (default 10 s).
    pub connect_timeout: Duration,
    /// A tunnel or forwarded exchange with no traffic in either direction for this long is
    /// closed; also bounds how long a client may take to send its request head (default 300 s).
    pub idle_timeout: Duration,
    /// Also refuse private addresses (10/8, 172.16/12, 192.168/16, fc00::/7). Off by default:
    /// Paddock's own tests use containers on private Docker networks as allowed hosts.
    pub block_private: bool,
    /// Let allowed requests reach loopback addresses (127/8, ::1), which are otherwise always
    /// refused. For tests and local development only: never enable it for real runners.
    pub allow_loopback: bool,
}

impl ProxyConfig {
    /// A configuration with the given allowlist and default settings.
    pub fn new(allow: Allowlist) -> Self {
        Self {
            allow,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            block_private: false,
            allow_loopback: false,
        }
    }
}

impl Default for ProxyConfig {
    /// Default settings with an empty allowlist (everything denied).
    fn default() -> Self {
        Self::new(Allowlist::default())
    }
}
