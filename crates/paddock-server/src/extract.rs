//! Request parsing: size-limited JSON bodies whose errors name the field, and query
//! strings in the reference's bracket form (`statuses[]=a`, `created_at[gte]=…`).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use base64::Engine;
use paddock_core::common::parse_json;
use paddock_core::ts::{self, Timestamp};
use paddock_store::{Cursor, Order, PageReq};
use serde::de::DeserializeOwned;

use crate::error::ServerError;
use crate::AppState;

/// The raw body, refused with 413 past the configured limit.
pub struct Body(pub Bytes);

impl FromRequest<AppState> for Body {
    type Rejection = ServerError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.config.max_body_bytes;
        let declared = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(ServerError::TooLarge { limit });
        }
        axum::body::to_bytes(req.into_body(), limit)
            .await
            .map(Body)
            .map_err(|_| ServerError::TooLarge { limit })
    }
}

/// A JSON body parsed into `T`.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Json<T> {
    type Rejection = ServerError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let Body(bytes) = Body::from_request(req, state).await?;
        let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
            Bytes::from_static(b"{}")
        } else {
            bytes
        };
        Ok(Json(parse_json(&bytes)?))
    }
}

/// Query parameters, taken one by one; whatever is left over is refused.
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Query, ServerError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|e| ServerError::invalid("query", e.to_string()))?;
        Ok(Query { pairs })
    }

    fn take_all(&mut self, names: &[&str]) -> Vec<String> {
        let mut out = vec![];
        self.pairs.retain(|(k, v)| {
            if names.contains(&k.as_str()) {
                out.push(v.clone());
                false
            } else {
                true
            }
        });
        out
    }

    pub fn str(&mut self, name: &str) -> Result<Option<String>, ServerError> {
        let mut v = self.take_all(&[name]);
        if v.len() > 1 {
            return Err(ServerError::invalid(name, "given more than once"));
        }
        Ok(v.pop())
    }

    pub fn bool(&mut self, name: &str) -> Result<Option<bool>, ServerError> {
        match self.str(name)?.as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(o) => Err(ServerError::invalid(
                name,
                format!("expected true or false, got {o:?}"),
            )),
        }
    }

    pub fn u32(&mut self, name: &str) -> Result<Option<u32>, ServerError> {
        self.str(name)?
            .map(|s| {
                s.parse::<u32>().map_err(|_| {
                    ServerError::invalid(name, format!("expected a whole number, got {s:?}"))
                })
            })
            .transpose()
    }

    /// A repeated array parameter, `name[]=a&name[]=b` (plain `name=a` is accepted too).
    pub fn list(&mut self, name: &str) -> Vec<String> {
        self.take_all(&[&format!("{name}[]"), name])
    }

    pub fn time(&mut self, name: &str) -> Result<Option<Timestamp>, ServerError> {
        self.str(name)?
            .map(|s| {
                ts::parse(&s).ok_or_else(|| {
                    ServerError::invalid(name, format!("expected an RFC 3339 time, got {s:?}"))
                })
            })
            .transpose()
    }

    /// `limit`, `page` and (when `order_default` is given) `order`.
    pub fn page(
        &mut self,
        default_limit: u32,
        max_limit: u32,
        order_default: Option<Order>,
    ) -> Result<PageReq, ServerError> {
        let limit = self.u32("limit")?.unwrap_or(default_limit);
        if limit == 0 || limit > max_limit {
            return Err(ServerError::invalid(
                "limit",
                format!("must be between 1 and {max_limit}, got {limit}"),
            ));
        }
        let order = match order_default {
            None => Order::Asc,
            Some(d) => match self.str("order")?.as_deref() {
                None => d,
                Some("asc") => Order::Asc,
                Some("desc") => Order::Desc,
                Some(o) => {
                    return Err(ServerError::invalid(
                        "order",
                        format!("expected asc or desc, got {o:?}"),
                    ))
                }
            },
        };
        let cursor = self.str("page")?.map(|p| decode_cursor(&p)).transpose()?;
        Ok(PageReq {
            limit: limit as usize,
            order,
            cursor,
        })
    }

    /// Refuses any parameter nobody took. `beta=true`, which SDKs may add, is ignored.
    pub fn finish(mut self) -> Result<(), ServerError> {
        self.take_all(&["beta"]);
        match self.pairs.first() {
            None => Ok(()),
            Some((k, _)) => Err(ServerError::invalid(k.clone(), "unknown query parameter")),
        }
    }
}

pub fn encode_cursor(c: Cursor) -> String {
    let raw = format!("{}{}", if c.forward { "n" } else { "p" }, c.key);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

pub fn decode_cursor(s: &str) -> Result<Cursor, ServerError> {
    let bad = || ServerError::invalid("page", "not a page cursor returned by this API");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (dir, key) = raw.split_at_checked(1).ok_or_else(bad)?;
    let key: i64 = key.parse().map_err(|_| bad())?;
    match dir {
        "n" => Ok(Cursor { forward: true, key }),
        "p" => Ok(Cursor {
            forward: false,
            key,
        }),
        _ => Err(bad()),
    }
}

/// The id in a route's path (`/v1/agents/{agent_id}`), with the query string checked to
/// be empty: routes that take no parameters refuse unknown ones like every other route.
pub struct Id(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ServerError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ServerError::invalid("path", e.body_text()))?;
        Query::parse(parts.uri.query())?.finish()?;
        Ok(Id(id))
    }
}

/// A path id for routes that also take query parameters.
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ServerError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ServerError::invalid("path", e.body_text()))?;
        Ok(PathId(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_times_and_leftovers() {
        let mut q = Query::parse(Some(
            "statuses%5B%5D=idle&statuses[]=running&created_at%5Bgte%5D=2026-01-01T00:00:00%2B00:00&limit=5&beta=true",
        ))
        .expect("parses");
        assert_eq!(q.list("statuses"), ["idle", "running"]);
        assert!(q.time("created_at[gte]").expect("valid").is_some());
        assert_eq!(q.page(20, 100, None).expect("valid").limit, 5);
        assert!(q.finish().is_ok());
        let q = Query::parse(Some("limt=5")).expect("parses");
        assert!(q.finish().unwrap_err().to_string().starts_with("limt"));
        let mut q = Query::parse(Some("limit=0")).expect("parses");
        assert!(q.page(20, 100, None).is_err());
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        for c in [
            Cursor {
                forward: true,
                key: 42,
            },
            Cursor {
                forward: false,
                key: 7,
            },
        ] {
            assert_eq!(decode_cursor(&encode_cursor(c)).expect("valid"), c);
        }
        assert!(decode_cursor("!!").is_err());
        assert!(
            decode_cursor(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("x1")).is_err()
        );
    }
}
