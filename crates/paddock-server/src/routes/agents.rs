use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use paddock_core::agent::{AgentCreate, AgentUpdate};
use paddock_core::{id, ts};
use paddock_store::AgentFilter;

use super::{deleted, page_json, to_value};
use crate::error::ApiResult;
use crate::extract::{Id, Json, PathId, Query};
use crate::AppState;

pub async fn create(
    State(s): State<AppState>,
    Json(req): Json<AgentCreate>,
) -> ApiResult<Response> {
    let agent = req.into_agent(id::new(id::AGENT), ts::now())?;
    let agent = s.store.create_agent(agent).await?;
    Ok(axum::Json(agent).into_response())
}

pub async fn retrieve(
    State(s): State<AppState>,
    PathId(agent_id): PathId,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let mut q = Query::parse(q.as_deref())?;
    let version = q.u32("version")?;
    q.finish()?;
    if version == Some(0) {
        return Err(crate::ServerError::invalid(
            "version",
            "versions start at 1",
        ));
    }
    Ok(axum::Json(s.store.get_agent(&agent_id, version).await?).into_response())
}

pub async fn update(
    State(s): State<AppState>,
    Id(agent_id): Id,
    Json(req): Json<AgentUpdate>,
) -> ApiResult<Response> {
    let expected = req.version;
    let now = ts::now();
    let agent = s
        .store
        .update_agent(
            &agent_id,
            expected,
            Box::new(move |a| a.apply_update(req, now)),
        )
        .await?;
    Ok(axum::Json(agent).into_response())
}

pub async fn list(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let mut q = Query::parse(q.as_deref())?;
    let filter = AgentFilter {
        include_archived: q.bool("include_archived")?.unwrap_or(false),
        created_gte: q.time("created_at[gte]")?,
        created_lte: q.time("created_at[lte]")?,
    };
    let page = q.page(20, 100, None)?;
    q.finish()?;
    let page = s.store.list_agents(filter, page).await?;
    Ok(page_json(page, false, to_value))
}

pub async fn archive(State(s): State<AppState>, Id(agent_id): Id) -> ApiResult<Response> {
    Ok(axum::Json(s.store.archive_agent(&agent_id, ts::now()).await?).into_response())
}

pub async fn delete(State(s): State<AppState>, Id(agent_id): Id) -> ApiResult<Response> {
    s.store.delete_agent(&agent_id).await?;
    Ok(deleted(&agent_id, "agent_deleted"))
}

pub async fn versions(
    State(s): State<AppState>,
    PathId(agent_id): PathId,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let mut q = Query::parse(q.as_deref())?;
    let mut page = q.page(20, 100, None)?;
    q.finish()?;
    // Newest version first.
    page.order = paddock_store::Order::Desc;
    let page = s.store.list_agent_versions(&agent_id, page).await?;
    Ok(page_json(page, false, to_value))
}
