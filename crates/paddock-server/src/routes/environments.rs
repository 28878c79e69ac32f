use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use paddock_core::environment::{EnvironmentCreate, EnvironmentUpdate};
use paddock_core::{id, ts};
use paddock_store::EnvironmentFilter;

use super::{deleted, page_json, to_value};
use crate::error::ApiResult;
use crate::extract::{Id, Json, Query};
use crate::AppState;

pub async fn create(
    State(s): State<AppState>,
    Json(req): Json<EnvironmentCreate>,
) -> ApiResult<Response> {
    let env = req.into_environment(id::new(id::ENVIRONMENT), ts::now())?;
    Ok(axum::Json(s.store.create_environment(env).await?).into_response())
}

pub async fn retrieve(State(s): State<AppState>, Id(env_id): Id) -> ApiResult<Response> {
    Ok(axum::Json(s.store.get_environment(&env_id).await?).into_response())
}

pub async fn update(
    State(s): State<AppState>,
    Id(env_id): Id,
    Json(req): Json<EnvironmentUpdate>,
) -> ApiResult<Response> {
    let now = ts::now();
    let env = s
        .store
        .update_environment(&env_id, Box::new(move |e| e.apply_update(req, now)))
        .await?;
    Ok(axum::Json(env).into_response())
}

pub async fn list(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let mut q = Query::parse(q.as_deref())?;
    let filter = EnvironmentFilter {
        include_archived: q.bool("include_archived")?.unwrap_or(false),
    };
    let page = q.page(20, 100, None)?;
    q.finish()?;
    let page = s.store.list_environments(filter, page).await?;
    Ok(page_json(page, false, to_value))
}

pub async fn archive(State(s): State<AppState>, Id(env_id): Id) -> ApiResult<Response> {
    Ok(axum::Json(s.store.archive_environment(&env_id, ts::now()).await?).into_response())
}

pub async fn delete(State(s): State<AppState>, Id(env_id): Id) -> ApiResult<Response> {
    s.store.delete_environment(&env_id).await?;
    Ok(deleted(&env_id, "environment_deleted"))
}
