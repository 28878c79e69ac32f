//! Vaults and credentials (wire reference §10). Secrets are write-only: they are sealed
//! with the vault key (bound to the credential's id) and never returned, logged or
//! echoed in errors — errors name fields, never values.

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use paddock_core::common::{patch_metadata, require_text, validate_metadata, Metadata};
use paddock_core::{id, ts};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

use super::{deleted, page_json};
use crate::error::{ApiResult, ServerError};
use crate::extract::{Json, Query};
use crate::AppState;

fn obj<'a>(field: &str, v: &'a Value) -> ApiResult<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| ServerError::invalid(field, "must be an object"))
}

fn only(field: &str, m: &Map<String, Value>, allowed: &[&str]) -> ApiResult<()> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ServerError::invalid(
            format!("{field}.{k}"),
            "unknown field",
        )),
        None => Ok(()),
    }
}

/// A required secret: a non-empty string. Its value never appears in the error.
fn secret(
    field: &str,
    m: &Map<String, Value>,
    key: &str,
    required: bool,
) -> ApiResult<Option<String>> {
    match m.get(key) {
        None | Some(Value::Null) if required => Err(ServerError::invalid(
            format!("{field}.{key}"),
            "is required",
        )),
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 65536 => Ok(Some(s.clone())),
        Some(_) => Err(ServerError::invalid(
            format!("{field}.{key}"),
            "must be a non-empty string of at most 64 KiB",
        )),
    }
}

fn text(field: &str, m: &Map<String, Value>, key: &str) -> ApiResult<Option<String>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ServerError::invalid(
            format!("{field}.{key}"),
            "must be a string",
        )),
    }
}

fn url(field: &str, m: &Map<String, Value>, key: &str) -> ApiResult<Option<String>> {
    let u = text(field, m, key)?;
    if let Some(u) = &u {
        if !(u.starts_with("https://") || u.starts_with("http://")) {
            return Err(ServerError::invalid(
                format!("{field}.{key}"),
                "must be an http(s) URL",
            ));
        }
    }
    Ok(u)
}

/// Splits an `auth` object into its public form and its secrets, merging over the
/// stored ones on update (`prev`).
fn split_auth(
    v: &Value,
    prev: Option<(&Value, &Map<String, Value>)>,
) -> ApiResult<(Value, Map<String, Value>)> {
    let f = "auth";
    let m = obj(f, v)?;
    let kind = m.get("type").and_then(Value::as_str).ok_or_else(|| {
        ServerError::invalid(
            "auth.type",
            "expected static_bearer, mcp_oauth or environment_variable",
        )
    })?;
    let (prev_pub, prev_sec) = match prev {
        Some((p, s)) => {
            if p["type"].as_str() != Some(kind) {
                return Err(ServerError::invalid(
                    "auth.type",
                    "the credential type cannot change",
                ));
            }
            (Some(p), s.clone())
        }
        None => (None, Map::new()),
    };
    let creating = prev.is_none();
    let immutable = |key: &str, given: &Option<String>| -> ApiResult<()> {
        if let (Some(p), Some(g)) = (prev_pub, given) {
            if p[key].as_str() != Some(g.as_str()) {
                return Err(ServerError::invalid(
                    format!("auth.{key}"),
                    "cannot change once created",
                ));
            }
        }
        Ok(())
    };
    let mut sec = prev_sec;
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            sec.insert(k.into(), Value::String(v));
        }
    };
    let public = match kind {
        "static_bearer" => {
            only(f, m, &["type", "token", "mcp_server_url"])?;
            put("token", secret(f, m, "token", creating)?);
            let u = url(f, m, "mcp_server_url")?;
            if creating && u.is_none() {
                return Err(ServerError::invalid("auth.mcp_server_url", "is required"));
            }
            immutable("mcp_server_url", &u)?;
            json!({"type": kind, "mcp_server_url": u.or_else(|| prev_pub.and_then(|p| p["mcp_server_url"].as_str().map(str::to_string)))})
        }
        "mcp_oauth" => {
            only(
                f,
                m,
                &[
                    "type",
                    "access_token",
                    "mcp_server_url",
                    "expires_at",
                    "refresh",
                ],
            )?;
            put("access_token", secret(f, m, "access_token", creating)?);
            let u = url(f, m, "mcp_server_url")?;
            if creating && u.is_none() {
                return Err(ServerError::invalid("auth.mcp_server_url", "is required"));
            }
            immutable("mcp_server_url", &u)?;
            let expires_at = text(f, m, "expires_at")?;
            if let Some(e) = &expires_at {
                if ts::parse(e).is_none() {
                    return Err(ServerError::invalid(
                        "auth.expires_at",
                        "must be an RFC 3339 time",
                    ));
                }
            }
            let mut refresh_pub = prev_pub
                .map(|p| p["refresh"].clone())
                .unwrap_or(Value::Null);
            if let Some(r) = m.get("refresh").filter(|r| !r.is_null()) {
                let rf = "auth.refresh";
                let rm = obj(rf, r)?;
                only(
                    rf,
                    rm,
                    &[
                        "client_id",
                        "refresh_token",
                        "token_endpoint",
                        "token_endpoint_auth",
                        "resource",
                        "scope",
                    ],
                )?;
                put("refresh_token", secret(rf, rm, "refresh_token", creating)?);
                let mut tea = Value::Null;
                if let Some(t) = rm.get("token_endpoint_auth") {
                    let tf = "auth.refresh.token_endpoint_auth";
                    let tm = obj(tf, t)?;
                    only(tf, tm, &["type", "client_secret"])?;
                    let tt = tm.get("type").and_then(Value::as_str).unwrap_or("");
                    if !["none", "client_secret_basic", "client_secret_post"].contains(&tt) {
                        return Err(ServerError::invalid(
                            format!("{tf}.type"),
                            "expected none, client_secret_basic or client_secret_post",
                        ));
                    }
                    put(
                        "client_secret",
                        secret(tf, tm, "client_secret", tt != "none" && creating)?,
                    );
                    tea = json!({"type": tt});
                }
                let base = refresh_pub.as_object().cloned().unwrap_or_default();
                let pick = |k: &str| -> ApiResult<Value> {
                    Ok(match text(rf, rm, k)? {
                        Some(v) => Value::String(v),
                        None => base.get(k).cloned().unwrap_or(Value::Null),
                    })
                };
                refresh_pub = json!({
                    "client_id": pick("client_id")?,
                    "token_endpoint": pick("token_endpoint")?,
                    "token_endpoint_auth": if tea.is_null() { base.get("token_endpoint_auth").cloned().unwrap_or(Value::Null) } else { tea },
                    "resource": pick("resource")?,
                    "scope": pick("scope")?,
                });
            }
            json!({
                "type": kind,
                "mcp_server_url": u.or_else(|| prev_pub.and_then(|p| p["mcp_server_url"].as_str().map(str::to_string))),
                "expires_at": expires_at.or_else(|| prev_pub.and_then(|p| p["expires_at"].as_str().map(str::to_string))),
                "refresh": refresh_pub,
            })
        }
        "environment_variable" => {
            only(
                f,
                m,
                &[
                    "type",
                    "secret_name",
                    "secret_value",
                    "networking",
                    "injection_location",
                ],
            )?;
            put("secret_value", secret(f, m, "secret_value", creating)?);
            let name = text(f, m, "secret_name")?;
            if creating {
                let n = name
                    .as_deref()
                    .ok_or_else(|| ServerError::invalid("auth.secret_name", "is required"))?;
                if !paddock_core::environment::valid_env_name(n) {
                    return Err(ServerError::invalid(
                        "auth.secret_name",
                        "must be a valid environment variable name",
                    ));
                }
            }
            immutable("secret_name", &name)?;
            let networking = match m.get("networking") {
                Some(n) => {
                    let nm = obj("auth.networking", n)?;
                    match nm.get("type").and_then(Value::as_str) {
                        Some("unrestricted") => json!({"type": "unrestricted"}),
                        Some("limited") => {
                            let hosts = nm
                                .get("allowed_hosts")
                                .and_then(Value::as_array)
                                .cloned()
                                .unwrap_or_default();
                            if hosts.iter().any(|h| {
                                !h.as_str()
                                    .is_some_and(paddock_core::environment::valid_host_pattern)
                            }) {
                                return Err(ServerError::invalid(
                                    "auth.networking.allowed_hosts",
                                    "must be host names or *.domain patterns",
                                ));
                            }
                            json!({"type": "limited", "allowed_hosts": hosts})
                        }
                        _ => {
                            return Err(ServerError::invalid(
                                "auth.networking.type",
                                "expected unrestricted or limited",
                            ))
                        }
                    }
                }
                None if creating => {
                    return Err(ServerError::invalid("auth.networking", "is required"))
                }
                None => prev_pub
                    .map(|p| p["networking"].clone())
                    .unwrap_or(Value::Null),
            };
            let inj = match m.get("injection_location") {
                Some(i) if !i.is_null() => {
                    let im = obj("auth.injection_location", i)?;
                    only("auth.injection_location", im, &["header", "body"])?;
                    json!({"header": im.get("header").cloned().unwrap_or(Value::Null), "body": im.get("body").cloned().unwrap_or(Value::Null)})
                }
                _ => prev_pub
                    .map(|p| p["injection_location"].clone())
                    .unwrap_or(json!({"header": null, "body": null})),
            };
            json!({
                "type": kind,
                "secret_name": name.or_else(|| prev_pub.and_then(|p| p["secret_name"].as_str().map(str::to_string))),
                "networking": networking,
                "injection_location": inj,
            })
        }
        _ => {
            return Err(ServerError::invalid(
                "auth.type",
                "expected static_bearer, mcp_oauth or environment_variable",
            ))
        }
    };
    Ok((public, sec))
}

fn metadata(field: &str, v: Option<&Value>) -> ApiResult<Metadata> {
    match v {
        None | Some(Value::Null) => Ok(Metadata::new()),
        Some(v) => {
            let m: Metadata = paddock_core::common::from_value(field, v.clone())?;
            validate_metadata(field, &m)?;
            Ok(m)
        }
    }
}

fn metadata_patch(field: &str, cur: &Value, v: Option<&Value>) -> ApiResult<Option<Metadata>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let patch: BTreeMap<String, Option<String>> =
                paddock_core::common::from_value(field, v.clone())?;
            let cur: Metadata = serde_json::from_value(cur.clone()).unwrap_or_default();
            Ok(Some(patch_metadata(field, &cur, &patch, false)?))
        }
    }
}

fn display_name(field: &str, v: Option<&Value>, required: bool) -> ApiResult<Option<String>> {
    match v {
        None | Some(Value::Null) if required => Err(ServerError::invalid(field, "is required")),
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            require_text(field, s, 255)?;
            Ok(Some(s.clone()))
        }
        Some(_) => Err(ServerError::invalid(field, "must be a string")),
    }
}

fn seal(s: &AppState, cred_id: &str, secrets: &Map<String, Value>) -> ApiResult<String> {
    let plain = zeroize_json(secrets);
    s.keyring
        .seal(plain.as_bytes(), cred_id.as_bytes())
        .map(|x| x.into_string())
        .map_err(|e| ServerError::Io(std::io::Error::other(e.to_string())))
}

fn zeroize_json(m: &Map<String, Value>) -> paddock_vault::Zeroizing<String> {
    paddock_vault::Zeroizing::new(Value::Object(m.clone()).to_string())
}

/// Opens a credential's secrets (only the orchestrator ever sees them).
pub fn open(s: &AppState, cred_id: &str, sealed: &str) -> ApiResult<Map<String, Value>> {
    open_with(&s.keyring, cred_id, sealed)
}

pub fn open_with(
    keyring: &paddock_vault::Keyring,
    cred_id: &str,
    sealed: &str,
) -> ApiResult<Map<String, Value>> {
    let sealed = paddock_vault::Sealed::parse(sealed)
        .map_err(|e| ServerError::Io(std::io::Error::other(e.to_string())))?;
    let plain = keyring
        .open(&sealed, cred_id.as_bytes())
        .map_err(|e| ServerError::Io(std::io::Error::other(e.to_string())))?;
    serde_json::from_slice(&plain)
        .map_err(|_| ServerError::Io(std::io::Error::other("a stored secret is not JSON")))
}

// ---------------------------------------------------------------- vaults

pub async fn create(State(s): State<AppState>, Json(b): Json<Value>) -> ApiResult<Response> {
    let m = obj("body", &b)?;
    only("body", m, &["display_name", "metadata"]).map_err(|_| {
        ServerError::invalid(
            m.keys()
                .find(|k| !["display_name", "metadata"].contains(&k.as_str()))
                .cloned()
                .unwrap_or_default(),
            "unknown field",
        )
    })?;
    let now = ts::format(ts::now());
    let v = json!({
        "id": id::new(id::VAULT),
        "type": "vault",
        "display_name": display_name("display_name", m.get("display_name"), true)?,
        "metadata": metadata("metadata", m.get("metadata"))?,
        "created_at": now,
        "updated_at": now,
        "archived_at": null,
    });
    Ok(axum::Json(s.store.create_vault(v).await?).into_response())
}

pub async fn retrieve(State(s): State<AppState>, Path(vid): Path<String>) -> ApiResult<Response> {
    Ok(axum::Json(s.store.get_vault(&vid).await?).into_response())
}

pub async fn update(
    State(s): State<AppState>,
    Path(vid): Path<String>,
    Json(b): Json<Value>,
) -> ApiResult<Response> {
    let m = obj("body", &b)?;
    if let Some(k) = m
        .keys()
        .find(|k| !["display_name", "metadata"].contains(&k.as_str()))
    {
        return Err(ServerError::invalid(k.clone(), "unknown field"));
    }
    let mut v = s.store.get_vault(&vid).await?;
    if let Some(n) = display_name("display_name", m.get("display_name"), false)? {
        v["display_name"] = json!(n);
    }
    if let Some(md) = metadata_patch("metadata", &v["metadata"], m.get("metadata"))? {
        v["metadata"] = json!(md);
    }
    v["updated_at"] = json!(ts::format(ts::now()));
    Ok(axum::Json(s.store.put_vault(v).await?).into_response())
}

pub async fn list(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let mut q = Query::parse(q.as_deref())?;
    let inc = q.bool("include_archived")?.unwrap_or(false);
    let page = q.page(20, 100, None)?;
    q.finish()?;
    Ok(page_json(
        s.store.list_vaults(inc, page).await?,
        false,
        |v| v,
    ))
}

pub async fn archive(State(s): State<AppState>, Path(vid): Path<String>) -> ApiResult<Response> {
    let mut v = s.store.get_vault(&vid).await?;
    if v["archived_at"].is_null() {
        let now = ts::format(ts::now());
        v["archived_at"] = json!(now);
        v["updated_at"] = json!(now);
        v = s.store.put_vault(v).await?;
    }
    Ok(axum::Json(v).into_response())
}

pub async fn delete(State(s): State<AppState>, Path(vid): Path<String>) -> ApiResult<Response> {
    s.store.delete_vault(&vid).await?;
    Ok(deleted(&vid, "vault_deleted"))
}

// ---------------------------------------------------------------- credentials

pub async fn cred_create(
    State(s): State<AppState>,
    Path(vid): Path<String>,
    Json(b): Json<Value>,
) -> ApiResult<Response> {
    let m = obj("body", &b)?;
    if let Some(k) = m
        .keys()
        .find(|k| !["auth", "display_name", "metadata"].contains(&k.as_str()))
    {
        return Err(ServerError::invalid(k.clone(), "unknown field"));
    }
    let vault = s.store.get_vault(&vid).await?;
    if !vault["archived_at"].is_null() {
        return Err(ServerError::invalid("vault_id", "the vault is archived"));
    }
    let auth = m
        .get("auth")
        .ok_or_else(|| ServerError::invalid("auth", "is required"))?;
    let (public, secrets) = split_auth(auth, None)?;
    let now = ts::format(ts::now());
    let cid = id::new(id::CREDENTIAL);
    let sealed = seal(&s, &cid, &secrets)?;
    let c = json!({
        "id": cid,
        "type": "vault_credential",
        "vault_id": vid,
        "auth": public,
        "display_name": display_name("display_name", m.get("display_name"), false)?,
        "metadata": metadata("metadata", m.get("metadata"))?,
        "created_at": now,
        "updated_at": now,
        "archived_at": null,
    });
    Ok(axum::Json(s.store.create_credential(c, sealed).await?).into_response())
}

pub async fn cred_retrieve(
    State(s): State<AppState>,
    Path((vid, cid)): Path<(String, String)>,
) -> ApiResult<Response> {
    Ok(axum::Json(s.store.get_credential(&vid, &cid).await?.0).into_response())
}

pub async fn cred_update(
    State(s): State<AppState>,
    Path((vid, cid)): Path<(String, String)>,
    Json(b): Json<Value>,
) -> ApiResult<Response> {
    let m = obj("body", &b)?;
    if let Some(k) = m
        .keys()
        .find(|k| !["auth", "display_name", "metadata"].contains(&k.as_str()))
    {
        return Err(ServerError::invalid(k.clone(), "unknown field"));
    }
    let (mut c, sealed) = s.store.get_credential(&vid, &cid).await?;
    let mut new_sealed = None;
    if let Some(auth) = m.get("auth").filter(|a| !a.is_null()) {
        let current = open(&s, &cid, &sealed)?;
        let (public, secrets) = split_auth(auth, Some((&c["auth"], &current)))?;
        c["auth"] = public;
        new_sealed = Some(seal(&s, &cid, &secrets)?);
    }
    if let Some(n) = display_name("display_name", m.get("display_name"), false)? {
        c["display_name"] = json!(n);
    }
    if let Some(md) = metadata_patch("metadata", &c["metadata"], m.get("metadata"))? {
        c["metadata"] = json!(md);
    }
    c["updated_at"] = json!(ts::format(ts::now()));
    Ok(axum::Json(s.store.put_credential(c, new_sealed).await?).into_response())
}

pub async fn cred_list(
    State(s): State<AppState>,
    Path(vid): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let mut q = Query::parse(q.as_deref())?;
    let inc = q.bool("include_archived")?.unwrap_or(false);
    let page = q.page(20, 100, None)?;
    q.finish()?;
    Ok(page_json(
        s.store.list_credentials(&vid, inc, page).await?,
        false,
        |v| v,
    ))
}

pub async fn cred_archive(
    State(s): State<AppState>,
    Path((vid, cid)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (mut c, _) = s.store.get_credential(&vid, &cid).await?;
    if c["archived_at"].is_null() {
        let now = ts::format(ts::now());
        c["archived_at"] = json!(now);
        c["updated_at"] = json!(now);
        c = s.store.put_credential(c, None).await?;
    }
    Ok(axum::Json(c).into_response())
}

pub async fn cred_delete(
    State(s): State<AppState>,
    Path((vid, cid)): Path<(String, String)>,
) -> ApiResult<Response> {
    s.store.delete_credential(&vid, &cid).await?;
    Ok(deleted(&cid, "vault_credential_deleted"))
}

/// Paddock cannot reach MCP servers from here to probe a token, so it says `unknown`.
pub async fn cred_validate(
    State(s): State<AppState>,
    Path((vid, cid)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (c, sealed) = s.store.get_credential(&vid, &cid).await?;
    if c["auth"]["type"] != "mcp_oauth" {
        return Err(ServerError::invalid(
            "credential_id",
            "only mcp_oauth credentials can be validated",
        ));
    }
    let secrets = open(&s, &cid, &sealed)?;
    Ok(axum::Json(json!({
        "type": "vault_credential_validation",
        "credential_id": cid,
        "vault_id": vid,
        "status": "unknown",
        "has_refresh_token": secrets.contains_key("refresh_token"),
        "validated_at": ts::format(ts::now()),
    }))
    .into_response())
}
