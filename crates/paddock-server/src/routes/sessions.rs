use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use paddock_core::agent::AgentOverrides;
use paddock_core::event::{parse_user_events, NewEvent, UserEvent};
use paddock_core::session::{
    resolve_resources, AgentRef, Session, SessionCreate, SessionStats, SessionStatus,
    SessionUpdate, Usage,
};
use paddock_core::{id, ts, CoreError};
use paddock_store::{Order, SessionFilter};

use super::{deleted, page_json, to_value};
use crate::error::{ApiResult, ServerError};
use crate::extract::{Id, Json, Query};
use crate::AppState;

fn respond(s: Session) -> Response {
    axum::Json(s.with_stats(ts::now())).into_response()
}

pub async fn create(
    State(s): State<AppState>,
    caller: Option<axum::Extension<crate::security::Caller>>,
    Json(req): Json<SessionCreate>,
) -> ApiResult<Response> {
    // A session's runners receive its vaults' secrets: binding vaults is for admins.
    if req.vault_ids.as_ref().is_some_and(|v| !v.is_empty()) {
        if let Some(role) = caller.and_then(|c| c.0.role) {
            if role != paddock_core::security::Role::Admin {
                return Err(ServerError::Forbidden(format!(
                    "vault_ids: a {} token may not bind vaults to a session; it needs the admin role",
                    role.as_str()
                )));
            }
        }
    }
    req.validate()?;
    let now = ts::now();
    let (agent_id, version, overrides) = match req.agent {
        AgentRef::Latest(id) => (id, None, None),
        AgentRef::Pinned {
            id,
            version,
            overrides,
        } => (id, version, overrides),
    };
    let agent = s.store.get_agent(&agent_id, version).await?;
    if agent.archived_at.is_some() {
        return Err(CoreError::invalid_code(
            "agent",
            format!("agent {agent_id:?} is archived and takes no new sessions"),
            "agent_archived",
        )
        .into());
    }
    let agent = agent.with_overrides(
        overrides
            .map(|o| *o)
            .unwrap_or_else(AgentOverrides::default),
    )?;
    let env = s.store.get_environment(&req.environment_id).await?;
    let vault_ids = req.vault_ids.clone().unwrap_or_default();
    for (i, vid) in vault_ids.iter().enumerate() {
        match s.store.get_vault(vid).await {
            Ok(v) if v["archived_at"].is_null() => {}
            Ok(_) => {
                return Err(ServerError::invalid(
                    format!("vault_ids[{i}]"),
                    format!("vault {vid:?} is archived"),
                ))
            }
            Err(paddock_store::StoreError::NotFound { .. }) => {
                return Err(ServerError::NotFound {
                    what: format!("vault_ids[{i}]: vault {vid:?}"),
                    code: Some("vault_not_found".into()),
                })
            }
            Err(e) => return Err(e.into()),
        }
    }
    let resources = resolve_resources(req.resources.unwrap_or_default(), now, &mut || {
        id::new(id::RESOURCE)
    })?;
    let mut initial = vec![];
    if let Some(raw) = req.initial_events {
        if !raw.is_empty() {
            for (i, (ev, _)) in parse_user_events("initial_events", raw, 50)?
                .into_iter()
                .enumerate()
            {
                if !matches!(ev, UserEvent::Message { .. }) {
                    return Err(ServerError::invalid(
                        format!("initial_events[{i}].type"),
                        "only user.message may start a session",
                    ));
                }
                initial.push(NewEvent {
                    id: None,
                    kind: ev.kind().to_string(),
                    payload: ev.payload(),
                });
            }
        }
    }
    let execution_profile = req
        .execution_profile
        .or_else(|| agent.execution_profile.clone())
        .or_else(|| env.execution_profile.clone());
    let session = Session {
        id: id::new(id::SESSION),
        kind: "session".into(),
        status: SessionStatus::Idle,
        agent,
        environment_id: env.id,
        title: req.title,
        metadata: req.metadata.unwrap_or_default(),
        resources,
        vault_ids,
        outcome_evaluations: vec![],
        stats: SessionStats::default(),
        usage: Usage::default(),
        budget: req.budget,
        deployment_id: None,
        runner_id: None,
        execution_profile,
        created_at: now,
        updated_at: now,
        archived_at: None,
    };
    let (session, events) = s.store.create_session(session, initial).await?;
    if let Some(last) = events.last() {
        s.hub.published(&session.id, last.seq);
        s.agent.kick(&session.id);
    }
    Ok(respond(session))
}

pub async fn retrieve(State(s): State<AppState>, Id(sid): Id) -> ApiResult<Response> {
    Ok(respond(s.store.get_session(&sid).await?))
}

pub async fn update(
    State(s): State<AppState>,
    Id(sid): Id,
    Json(req): Json<SessionUpdate>,
) -> ApiResult<Response> {
    let now = ts::now();
    let (session, event) = s
        .store
        .update_session(&sid, Box::new(move |cur| cur.apply_update(req, now)))
        .await?;
    if let Some(e) = event {
        s.hub.published(&sid, e.seq);
    }
    Ok(respond(session))
}

pub async fn list(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let mut q = Query::parse(q.as_deref())?;
    let statuses = q
        .list("statuses")
        .into_iter()
        .map(|st| {
            SessionStatus::parse(&st).ok_or_else(|| {
                ServerError::invalid("statuses[]", format!("unknown session status {st:?}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let agent_version = q.u32("agent_version")?;
    let agent_id = q.str("agent_id")?;
    if agent_version.is_some() && agent_id.is_none() {
        return Err(ServerError::invalid("agent_version", "needs agent_id"));
    }
    // Paddock has no deployments or memory stores, so filtering on one matches nothing.
    let unsupported_filter =
        q.str("deployment_id")?.is_some() | q.str("memory_store_id")?.is_some();
    let filter = SessionFilter {
        agent_id,
        agent_version,
        include_archived: q.bool("include_archived")?.unwrap_or(false),
        statuses,
        created_gt: q.time("created_at[gt]")?,
        created_gte: q.time("created_at[gte]")?,
        created_lt: q.time("created_at[lt]")?,
        created_lte: q.time("created_at[lte]")?,
    };
    let page = q.page(20, 100, Some(Order::Desc))?;
    q.finish()?;
    if unsupported_filter {
        return Ok(page_json(
            paddock_store::Page::<Session> {
                data: vec![],
                next: None,
                prev: None,
            },
            true,
            to_value,
        ));
    }
    let now = ts::now();
    let page = s.store.list_sessions(filter, page).await?;
    Ok(page_json(page, true, |x| to_value(x.with_stats(now))))
}

pub async fn archive(State(s): State<AppState>, Id(sid): Id) -> ApiResult<Response> {
    Ok(respond(s.store.archive_session(&sid, ts::now()).await?))
}

pub async fn delete(State(s): State<AppState>, Id(sid): Id) -> ApiResult<Response> {
    s.store.delete_session(&sid).await?;
    s.hub.deleted(&sid);
    Ok(deleted(&sid, "session_deleted"))
}
