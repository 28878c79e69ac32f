use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use paddock_core::lifecycle::RunnerState;
use paddock_store::{Order, RunnerFilter};

use super::{page_json, to_value};
use crate::error::{ApiResult, ServerError};
use crate::extract::{Id, Query};
use crate::AppState;

pub async fn list(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let mut q = Query::parse(q.as_deref())?;
    let states = q
        .list("states")
        .into_iter()
        .map(|st| {
            RunnerState::parse(&st).ok_or_else(|| {
                ServerError::invalid("states[]", format!("unknown runner state {st:?}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let filter = RunnerFilter {
        states,
        session_id: q.str("session_id")?,
        backend: q.str("backend")?,
    };
    let page = q.page(20, 100, Some(Order::Desc))?;
    q.finish()?;
    let page = s.store.list_runners(filter, page).await?;
    Ok(page_json(page, false, to_value))
}

pub async fn retrieve(State(s): State<AppState>, Id(runner_id): Id) -> ApiResult<Response> {
    Ok(axum::Json(s.store.get_runner(&runner_id).await?).into_response())
}
