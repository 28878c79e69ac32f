//! Budgets and quotas: whether a session may make another model call, or start
//! another turn. Checked before **every** model call (by the built-in brain and by the
//! model gateway alike), not only between turns.

use paddock_agent::pricing::Usd;
use paddock_core::session::{Budget, Session};

use crate::error::{ApiResult, ServerError};

/// Why a model call may not be made.
pub(crate) enum Spent {
    Budget(String),
    Quota(&'static str, String),
}

pub(crate) fn cents(m: &paddock_core::common::Money) -> Usd {
    Usd::parse_cents(&m.amount).unwrap_or(Usd::ZERO)
}

/// The tightest cost limit on a session: its `budget` and its agent's quota.
pub(crate) fn cost_limit(s: &Session) -> Option<paddock_core::common::Money> {
    let budget = s
        .budget
        .as_ref()
        .map(|Budget::Limit { max_list_cost }| max_list_cost.clone());
    match (budget, s.agent.quotas.max_list_cost.clone()) {
        (Some(a), Some(b)) => Some(if cents(&a) <= cents(&b) { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Whether the session may make another model call (`turn_secs`: the open turn so far).
pub(crate) fn spent(s: &Session, turn_secs: f64) -> Option<Spent> {
    if let Some(limit) = cost_limit(s) {
        if cents(&s.usage.list_cost) >= cents(&limit) {
            return Some(Spent::Budget(format!(
                "the session's cost of {} cents reached its budget of {} cents",
                s.usage.list_cost.amount, limit.amount
            )));
        }
    }
    let q = &s.agent.quotas;
    let u = &s.usage;
    let tokens = u.input_tokens
        + u.output_tokens
        + u.cache_read_input_tokens
        + u.cache_creation.ephemeral_5m_input_tokens
        + u.cache_creation.ephemeral_1h_input_tokens;
    if let Some(max) = q.max_tokens {
        if tokens >= max {
            return Some(Spent::Quota(
                "max_tokens",
                format!("quota max_tokens reached: {tokens} tokens used of {max}"),
            ));
        }
    }
    if let Some(max) = q.max_turns {
        if s.stats.turns > max {
            return Some(Spent::Quota(
                "max_turns",
                format!("quota max_turns reached: {max} turns"),
            ));
        }
    }
    if let Some(max) = q.max_wall_seconds {
        let used = u.active_seconds + turn_secs;
        if used >= max as f64 {
            return Some(Spent::Quota(
                "max_wall_seconds",
                format!("quota max_wall_seconds reached: {used:.1} s of {max} s"),
            ));
        }
    }
    None
}

/// Refuses a new turn of a session whose budget or quotas are spent (a 429).
pub fn check_new_turn(s: &Session) -> ApiResult<()> {
    // A new turn counts as one more.
    let mut next = s.clone();
    next.stats.turns += 1;
    match spent(&next, 0.0) {
        None => Ok(()),
        Some(Spent::Budget(m)) => Err(ServerError::QuotaExceeded {
            message: format!("session {}: {m}; raise the budget to go on", s.id),
            code: "budget_reached",
        }),
        Some(Spent::Quota(_, m)) => Err(ServerError::QuotaExceeded {
            message: format!("session {}: {m}", s.id),
            code: "quota_exceeded",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paddock_core::common::Money;
    use serde_json::{json, Value};

    fn session(json_patch: Value) -> Session {
        let mut v = json!({
            "id": "sesn_1", "type": "session", "status": "idle",
            "agent": {
                "id": "agent_1", "type": "agent", "name": "a", "version": 1,
                "description": null, "system": null,
                "model": {"id": "m/x", "effort": null, "inference_geo": null, "speed": "standard"},
                "tools": [], "mcp_servers": [], "skills": [], "metadata": {},
                "execution_identity": {"type": "service_account"}, "multiagent": null,
                "harness": "builtin", "quotas": {}, "execution_profile": null,
                "created_at": "2026-01-01T00:00:00.000000Z", "updated_at": "2026-01-01T00:00:00.000000Z", "archived_at": null
            },
            "environment_id": "env_1", "title": null, "metadata": {}, "resources": [], "vault_ids": [],
            "outcome_evaluations": [], "stats": {"active_seconds": 0.0, "duration_seconds": 0.0, "turns": 1},
            "usage": {"input_tokens": 100, "output_tokens": 50, "cache_read_input_tokens": 0,
                      "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                      "active_seconds": 10.0, "list_cost": {"amount": "5", "currency": "USD"},
                      "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0}},
            "budget": null, "deployment_id": null, "runner_id": null, "execution_profile": null,
            "created_at": "2026-01-01T00:00:00.000000Z", "updated_at": "2026-01-01T00:00:00.000000Z", "archived_at": null
        });
        json_merge(&mut v, json_patch);
        serde_json::from_value(v).expect("session")
    }

    fn json_merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    json_merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    #[test]
    fn budgets_and_quotas_are_checked_before_each_call() {
        let s = session(json!({}));
        assert!(spent(&s, 0.0).is_none(), "no limits");
        let s = session(
            json!({"budget": {"type": "limit", "max_list_cost": {"amount": "5", "currency": "USD"}}}),
        );
        assert!(
            matches!(spent(&s, 0.0), Some(Spent::Budget(_))),
            "5 of 5 cents"
        );
        let s = session(
            json!({"budget": {"type": "limit", "max_list_cost": {"amount": "5.1", "currency": "USD"}}}),
        );
        assert!(spent(&s, 0.0).is_none(), "under budget");
        // The agent's quota is the tighter one here.
        let s = session(json!({
            "budget": {"type": "limit", "max_list_cost": {"amount": "100", "currency": "USD"}},
            "agent": {"quotas": {"max_list_cost": {"amount": "4", "currency": "USD"}}}
        }));
        assert!(matches!(spent(&s, 0.0), Some(Spent::Budget(_))));
        let s = session(json!({"agent": {"quotas": {"max_tokens": 150}}}));
        assert!(matches!(
            spent(&s, 0.0),
            Some(Spent::Quota("max_tokens", _))
        ));
        let s = session(json!({"agent": {"quotas": {"max_tokens": 151}}}));
        assert!(spent(&s, 0.0).is_none());
        let s = session(json!({"agent": {"quotas": {"max_wall_seconds": 12}}}));
        assert!(spent(&s, 1.0).is_none());
        assert!(matches!(
            spent(&s, 2.5),
            Some(Spent::Quota("max_wall_seconds", _))
        ));
        let s = session(json!({"agent": {"quotas": {"max_turns": 1}}}));
        assert!(spent(&s, 0.0).is_none(), "the first turn may run");
        assert!(check_new_turn(&s).is_err(), "a second one may not");
        let _ = Money {
            amount: "0".into(),
            currency: "USD".into(),
        };
    }
}
