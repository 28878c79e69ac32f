//! Who may do what: API token roles, scoped tokens and the audit trail, as data.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::common::require_text;
use crate::ts::{serde_ts, Timestamp};
use crate::CoreError;

/// What a token may do. Viewers read; operators also change things; admins also manage
/// tokens and vaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

/// The class of a route, for authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// Reads (GET).
    Read,
    /// Changes (POST, PUT, DELETE) outside tokens and vaults.
    Mutate,
    /// Tokens and vaults, read or changed.
    Admin,
}

impl RouteClass {
    /// The class of `method path`.
    pub fn of(method: &str, path: &str) -> RouteClass {
        if path.starts_with("/v1/tokens") || path.starts_with("/v1/vaults") {
            RouteClass::Admin
        } else if method == "GET" || method == "HEAD" {
            RouteClass::Read
        } else {
            RouteClass::Mutate
        }
    }

    /// The least role allowed.
    pub fn needs(self) -> Role {
        match self {
            RouteClass::Read => Role::Viewer,
            RouteClass::Mutate => Role::Operator,
            RouteClass::Admin => Role::Admin,
        }
    }
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn may(self, class: RouteClass) -> bool {
        self >= class.needs()
    }
}

/// A scoped API token (the secret itself is shown once, at creation, and stored hashed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub role: Role,
    /// A short, non-secret fingerprint of the token (what the audit log shows).
    pub fingerprint: String,
    #[serde(with = "serde_ts")]
    pub created_at: Timestamp,
    #[serde(default, with = "serde_ts::option")]
    pub expires_at: Option<Timestamp>,
    #[serde(default, with = "serde_ts::option")]
    pub revoked_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    pub name: String,
    pub role: Role,
    #[serde(default, with = "serde_ts::option")]
    pub expires_at: Option<Timestamp>,
}

impl TokenCreate {
    pub fn validate(&self, now: Timestamp) -> Result<(), CoreError> {
        require_text("name", &self.name, 128)?;
        if self.expires_at.is_some_and(|e| e <= now) {
            return Err(CoreError::invalid("expires_at", "must be in the future"));
        }
        Ok(())
    }
}

/// One row of the audit trail: every change through the API and every automatic action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(with = "serde_ts")]
    pub at: Timestamp,
    pub request_id: Option<String>,
    /// `token:<fingerprint>`, `admin:<fingerprint>`, `ip:<address>` or `system`.
    pub actor: String,
    pub role: Option<Role>,
    /// What was done, e.g. `agents.create`, `runners.stop`, `runners.auto_stop`.
    pub action: String,
    /// The resource acted on, when there is one.
    pub target: Option<String>,
    /// The HTTP status (automatic actions: 200 when they succeeded).
    pub status: u16,
    pub outcome: String,
    /// Method, route and error type — never bodies, so never secrets.
    pub metadata: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_what_they_may_do() {
        let cases = [
            ("GET", "/v1/agents", [true, true, true]),
            ("POST", "/v1/agents", [false, true, true]),
            ("DELETE", "/v1/runners/run_1", [false, true, true]),
            ("GET", "/v1/tokens", [false, false, true]),
            ("POST", "/v1/vaults", [false, false, true]),
            ("GET", "/v1/vaults/vlt_1/credentials", [false, false, true]),
        ];
        for (m, p, expect) in cases {
            let class = RouteClass::of(m, p);
            let got = [Role::Viewer, Role::Operator, Role::Admin].map(|r| r.may(class));
            assert_eq!(got, expect, "{m} {p}");
        }
    }
}
