//! Workspace confinement and the `/files` routes.
//!
//! Every path is resolved component by component against the (canonical)
//! workspace root, expanding symbolic links ourselves: `..` may never climb
//! above the root, an absolute path must lie under the root, and a symbolic
//! link is followed only if its target stays inside the workspace (a relative
//! target is resolved from the link's directory under the same rules; an
//! absolute target must lie under the root).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::error::WorkerError;
use crate::http::{self, Body, ChannelBody};
use crate::State;

/// Maximum number of symbolic links expanded while resolving one path.
pub const MAX_SYMLINKS: usize = 40;
/// Default and maximum number of entries returned by `/files/list`.
pub const DEFAULT_LIST_LIMIT: usize = 10_000;
pub const MAX_LIST_LIMIT: usize = 100_000;
const READ_CHUNK: usize = 64 * 1024;

/// A path resolved inside the workspace.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Absolute real path (no symbolic links in it, except possibly the final
    /// component when it was resolved without following it).
    pub real: PathBuf,
    /// `real` relative to the workspace root, `"."` for the root itself.
    pub rel: String,
    /// `lstat` of `real`, if it exists.
    pub meta: Option<fs::Metadata>,
}

impl Resolved {
    pub fn is_root(&self, root: &Path) -> bool {
        self.real == root
    }
}

fn forbidden(input: &str, why: &str) -> WorkerError {
    WorkerError::PathForbidden(format!("path {input:?} is outside the workspace: {why}"))
}

fn rel_of(root: &Path, real: &Path) -> String {
    match real.strip_prefix(root) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".to_string(),
        Ok(rel) => rel.to_string_lossy().into_owned(),
        Err(_) => real.to_string_lossy().into_owned(),
    }
}

/// Resolves `input` (relative to the workspace, or absolute under it) to a
/// real path inside `root`. `follow_final` decides whether a symbolic link in
/// the last position is followed (read, write, list, exec cwd) or returned
/// as is (stat, delete). `field` names the request field in errors.
pub fn resolve(
    root: &Path,
    input: &str,
    follow_final: bool,
    field: &str,
) -> Result<Resolved, WorkerError> {
    if input.as_bytes().contains(&0) {
        return Err(WorkerError::invalid(
            field,
            format!("`{field}` must not contain NUL bytes"),
        ));
    }
    let input_path = Path::new(input);
    let relative: &Path = if input_path.is_absolute() {
        input_path
            .strip_prefix(root)
            .map_err(|_| forbidden(input, "absolute paths must lie under the workspace root"))?
    } else {
        input_path
    };

    let mut queue: VecDeque<OsString> = VecDeque::new();
    push_components(&mut queue, relative, false);

    let mut cur = root.to_path_buf();
    let mut depth: usize = 0;
    let mut links = 0usize;
    while let Some(comp) = queue.pop_front() {
        if comp == "." {
            continue;
        }
        if comp == ".." {
            if depth == 0 {
                return Err(forbidden(input, "`..` climbs above the workspace root"));
            }
            cur.pop();
            depth -= 1;
            continue;
        }
        let candidate = cur.join(&comp);
        match fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                if queue.is_empty() && !follow_final {
                    cur = candidate;
                    depth += 1;
                    continue;
                }
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(WorkerError::invalid(
                        field,
                        format!("path {input:?}: too many levels of symbolic links"),
                    ));
                }
                let target = fs::read_link(&candidate).map_err(|e| {
                    WorkerError::io(
                        format!("reading the link `{}`", rel_of(root, &candidate)),
                        e,
                    )
                })?;
                if target.is_absolute() {
                    let rest = target.strip_prefix(root).map_err(|_| {
                        forbidden(
                            input,
                            &format!(
                                "symbolic link `{}` points to {:?}, outside the workspace",
                                rel_of(root, &candidate),
                                target
                            ),
                        )
                    })?;
                    cur = root.to_path_buf();
                    depth = 0;
                    push_components(&mut queue, rest, true);
                } else {
                    // Resolved from the directory containing the link: `cur`.
                    push_components(&mut queue, &target, true);
                }
            }
            Ok(_) => {
                cur = candidate;
                depth += 1;
            }
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.kind() == io::ErrorKind::NotADirectory =>
            {
                cur = candidate;
                depth += 1;
            }
            Err(e) => {
                return Err(WorkerError::io(
                    format!("resolving `{}`", rel_of(root, &candidate)),
                    e,
                ))
            }
        }
    }
    let meta = fs::symlink_metadata(&cur).ok();
    Ok(Resolved {
        rel: rel_of(root, &cur),
        real: cur,
        meta,
    })
}

/// Pushes the components of `path` (relative) onto the queue, at the front
/// when `front` (a link's target is resolved before the rest of the path).
fn push_components(queue: &mut VecDeque<OsString>, path: &Path, front: bool) {
    let comps: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => None,
        })
        .collect();
    if front {
        for c in comps.into_iter().rev() {
            queue.push_front(c);
        }
    } else {
        queue.extend(comps);
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, WorkerError> + Send + 'static,
) -> Result<T, WorkerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| WorkerError::Internal(format!("blocking task failed: {e}")))?
}

// ---------------------------------------------------------------- entries

#[derive(Debug, Serialize)]
pub struct Entry {
    pub name: String,
    pub path: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub size: u64,
    pub mode: String,
    pub mtime_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

fn kind_of(meta: &fs::Metadata) -> &'static str {
    let ft = meta.file_type();
    if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else {
        "other"
    }
}

fn entry(root: &Path, real: &Path, meta: &fs::Metadata) -> Entry {
    let name = if real == root {
        String::new()
    } else {
        real.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let target = if meta.file_type().is_symlink() {
        fs::read_link(real)
            .ok()
            .map(|t| t.to_string_lossy().into_owned())
    } else {
        None
    };
    Entry {
        name,
        path: rel_of(root, real),
        kind: kind_of(meta),
        size: meta.len(),
        mode: format!("{:04o}", meta.mode() & 0o7777),
        mtime_ms: meta.mtime() * 1000 + meta.mtime_nsec() / 1_000_000,
        target,
    }
}

// ---------------------------------------------------------------- queries

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadQuery {
    path: Option<String>,
    offset: Option<String>,
    limit: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteQuery {
    path: Option<String>,
    mode: Option<String>,
    mkdirs: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    path: Option<String>,
    limit: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatQuery {
    path: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    path: Option<String>,
    recursive: Option<String>,
}

fn required_path(path: Option<String>) -> Result<String, WorkerError> {
    match path {
        Some(p) if !p.is_empty() => Ok(p),
        _ => Err(WorkerError::invalid(
            "path",
            "query parameter `path` is required",
        )),
    }
}

fn parse_mode(mode: Option<&str>) -> Result<Option<u32>, WorkerError> {
    let Some(raw) = mode else { return Ok(None) };
    let digits = raw.strip_prefix("0o").unwrap_or(raw);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o7777 && !digits.is_empty() => Ok(Some(m)),
        _ => Err(WorkerError::invalid(
            "mode",
            format!("`mode` must be an octal permission between 0000 and 7777, got {raw:?}"),
        )),
    }
}

// ---------------------------------------------------------------- routes

/// `GET /files/read?path=…[&offset=N][&limit=N]`
pub async fn read(state: &State, req: Request<Incoming>) -> Result<Response<Body>, WorkerError> {
    let q: ReadQuery = http::parse_query(req.uri().query())?;
    let path = required_path(q.path)?;
    let offset = http::parse_u64_param("offset", q.offset.as_deref())?.unwrap_or(0);
    let limit = http::parse_u64_param("limit", q.limit.as_deref())?;
    let root = state.root.clone();
    let r = blocking(move || resolve(&root, &path, true, "path")).await?;
    let meta = r
        .meta
        .as_ref()
        .ok_or_else(|| WorkerError::NotFound(format!("`{}`: no such file or directory", r.rel)))?;
    if !meta.is_file() {
        return Err(WorkerError::NotAFile(format!(
            "`{}` is a {}, not a regular file",
            r.rel,
            kind_of(meta)
        )));
    }
    let mut file = tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&r.real)
        .await
        .map_err(|e| WorkerError::io(format!("open `{}`", r.rel), e))?;
    let size = file
        .metadata()
        .await
        .map_err(|e| WorkerError::io(format!("stat `{}`", r.rel), e))?
        .len();
    let start = offset.min(size);
    let mut len = size - start;
    if let Some(limit) = limit {
        len = len.min(limit);
    }
    if start > 0 {
        file.seek(io::SeekFrom::Start(start))
            .await
            .map_err(|e| WorkerError::io(format!("seek `{}`", r.rel), e))?;
    }
    let (tx, rx) = mpsc::channel(8);
    let rel = r.rel.clone();
    tokio::spawn(async move {
        let mut remaining = len;
        let mut buf = vec![0u8; READ_CHUNK];
        while remaining > 0 {
            let want = remaining.min(READ_CHUNK as u64) as usize;
            match file.read(&mut buf[..want]).await {
                Ok(0) => {
                    let _ = tx
                        .send(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("`{rel}` shrank while being read"),
                        )))
                        .await;
                    return;
                }
                Ok(n) => {
                    remaining -= n as u64;
                    if tx
                        .send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(path = %rel, error = %e, "read failed mid-stream");
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    let mut resp = http::octet_stream(ChannelBody::new(rx, Some(len)));
    let headers = resp.headers_mut();
    if let Ok(v) = hyper::header::HeaderValue::from_str(&size.to_string()) {
        headers.insert("x-paddock-file-size", v);
    }
    if let Ok(v) = hyper::header::HeaderValue::from_str(&start.to_string()) {
        headers.insert("x-paddock-offset", v);
    }
    Ok(resp)
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

#[derive(Serialize)]
struct WriteResult {
    path: String,
    size: u64,
    created: bool,
    mode: String,
}

/// `PUT /files/write?path=…[&mode=0644][&mkdirs=true]` with the raw bytes as
/// body. The file is written to a temporary sibling and renamed into place,
/// so readers never see a half-written file.
pub async fn write(state: &State, req: Request<Incoming>) -> Result<Response<Body>, WorkerError> {
    let (parts, mut body) = req.into_parts();
    let result = write_inner(state, &parts, &mut body).await;
    if let Err(err) = &result {
        if !matches!(err, WorkerError::PayloadTooLarge { .. }) {
            http::drain(&mut body).await;
        }
    }
    result
}

async fn write_inner(
    state: &State,
    parts: &hyper::http::request::Parts,
    body: &mut Incoming,
) -> Result<Response<Body>, WorkerError> {
    let q: WriteQuery = http::parse_query(parts.uri.query())?;
    let path = required_path(q.path)?;
    let mode = parse_mode(q.mode.as_deref())?;
    let mkdirs = http::parse_bool_param("mkdirs", q.mkdirs.as_deref())?;
    let limit = state.config.max_write_bytes;
    if let Some(len) = http::content_length_of(&parts.headers) {
        if len > limit {
            return Err(WorkerError::PayloadTooLarge {
                what: "the file body".into(),
                limit,
            });
        }
    }

    let root = state.root.clone();
    let (r, tmp) = blocking(move || {
        let r = resolve(&root, &path, true, "path")?;
        if r.is_root(&root) {
            return Err(WorkerError::NotAFile(
                "the workspace root is a directory".into(),
            ));
        }
        if let Some(meta) = &r.meta {
            if !meta.is_file() {
                return Err(WorkerError::NotAFile(format!(
                    "`{}` is a {}, not a regular file",
                    r.rel,
                    kind_of(meta)
                )));
            }
        }
        let parent = r
            .real
            .parent()
            .ok_or_else(|| WorkerError::Internal("resolved path has no parent".into()))?
            .to_path_buf();
        let parent_rel = rel_of(&root, &parent);
        match fs::symlink_metadata(&parent) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(WorkerError::NotADirectory(format!(
                    "`{parent_rel}` is not a directory"
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && mkdirs => {
                fs::create_dir_all(&parent)
                    .map_err(|e| WorkerError::io(format!("create directory `{parent_rel}`"), e))?;
            }
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.kind() == io::ErrorKind::NotADirectory =>
            {
                return Err(WorkerError::NotFound(format!(
                    "parent directory `{parent_rel}` does not exist (use mkdirs=true)"
                )))
            }
            Err(e) => return Err(WorkerError::io(format!("stat `{parent_rel}`"), e)),
        }
        let name = r
            .real
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!(
            ".{name}.paddock-{}-{}.tmp",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        Ok((r, tmp))
    })
    .await?;

    let final_mode =
        mode.unwrap_or_else(|| r.meta.as_ref().map(|m| m.mode() & 0o7777).unwrap_or(0o644));
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .await
        .map_err(|e| WorkerError::io(format!("create `{}`", r.rel), e))?;

    let result: Result<u64, WorkerError> = async {
        let mut written: u64 = 0;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| WorkerError::InvalidRequest {
                field: None,
                message: format!("could not read the request body: {e}"),
            })?;
            if let Ok(data) = frame.into_data() {
                written += data.len() as u64;
                if written > limit {
                    return Err(WorkerError::PayloadTooLarge {
                        what: "the file body".into(),
                        limit,
                    });
                }
                file.write_all(&data)
                    .await
                    .map_err(|e| WorkerError::io(format!("write `{}`", r.rel), e))?;
            }
        }
        file.flush()
            .await
            .map_err(|e| WorkerError::io(format!("write `{}`", r.rel), e))?;
        Ok(written)
    }
    .await;
    drop(file);

    let size = match result {
        Ok(size) => size,
        Err(err) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(err);
        }
    };
    let real = r.real.clone();
    let rel = r.rel.clone();
    let tmp2 = tmp.clone();
    let finish = blocking(move || {
        fs::set_permissions(&tmp2, fs::Permissions::from_mode(final_mode))
            .map_err(|e| WorkerError::io(format!("chmod `{rel}`"), e))?;
        fs::rename(&tmp2, &real).map_err(|e| WorkerError::io(format!("rename into `{rel}`"), e))
    })
    .await;
    if let Err(err) = finish {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(err);
    }
    tracing::debug!(path = %r.rel, size, "file written");
    Ok(http::ok_json(&WriteResult {
        path: r.rel,
        size,
        created: r.meta.is_none(),
        mode: format!("{final_mode:04o}"),
    }))
}

#[derive(Serialize)]
struct ListResult {
    path: String,
    entries: Vec<Entry>,
    truncated: bool,
}

/// `GET /files/list?path=…[&limit=N]` (path defaults to the root).
pub async fn list(state: &State, req: Request<Incoming>) -> Result<Response<Body>, WorkerError> {
    let q: ListQuery = http::parse_query(req.uri().query())?;
    let path = q
        .path
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| ".".into());
    let limit = match http::parse_u64_param("limit", q.limit.as_deref())? {
        None => DEFAULT_LIST_LIMIT,
        Some(n) if n >= 1 && n <= MAX_LIST_LIMIT as u64 => n as usize,
        Some(_) => {
            return Err(WorkerError::invalid(
                "limit",
                format!("`limit` must be between 1 and {MAX_LIST_LIMIT}"),
            ))
        }
    };
    let root = state.root.clone();
    let result = blocking(move || {
        let r = resolve(&root, &path, true, "path")?;
        let meta = r.meta.as_ref().ok_or_else(|| {
            WorkerError::NotFound(format!("`{}`: no such file or directory", r.rel))
        })?;
        if !meta.is_dir() {
            return Err(WorkerError::NotADirectory(format!(
                "`{}` is not a directory",
                r.rel
            )));
        }
        let mut entries = Vec::new();
        let dir =
            fs::read_dir(&r.real).map_err(|e| WorkerError::io(format!("list `{}`", r.rel), e))?;
        for item in dir {
            let item = item.map_err(|e| WorkerError::io(format!("list `{}`", r.rel), e))?;
            let real = item.path();
            // An entry may vanish between readdir and lstat: skip it.
            if let Ok(meta) = fs::symlink_metadata(&real) {
                entries.push(entry(&root, &real, &meta));
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let truncated = entries.len() > limit;
        entries.truncate(limit);
        Ok(ListResult {
            path: r.rel,
            entries,
            truncated,
        })
    })
    .await?;
    Ok(http::ok_json(&result))
}

/// `GET /files/stat?path=…` (a final symbolic link is described, not followed).
pub async fn stat(state: &State, req: Request<Incoming>) -> Result<Response<Body>, WorkerError> {
    let q: StatQuery = http::parse_query(req.uri().query())?;
    let path = required_path(q.path)?;
    let root = state.root.clone();
    let e = blocking(move || {
        let r = resolve(&root, &path, false, "path")?;
        let meta = r.meta.as_ref().ok_or_else(|| {
            WorkerError::NotFound(format!("`{}`: no such file or directory", r.rel))
        })?;
        Ok(entry(&root, &r.real, meta))
    })
    .await?;
    Ok(http::ok_json(&e))
}

#[derive(Serialize)]
struct DeleteResult {
    path: String,
    deleted: bool,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// `DELETE /files?path=…[&recursive=true]` (a final symbolic link is removed
/// itself; its target is untouched).
pub async fn delete(state: &State, req: Request<Incoming>) -> Result<Response<Body>, WorkerError> {
    let q: DeleteQuery = http::parse_query(req.uri().query())?;
    let path = required_path(q.path)?;
    let recursive = http::parse_bool_param("recursive", q.recursive.as_deref())?;
    let root = state.root.clone();
    let result = blocking(move || {
        let r = resolve(&root, &path, false, "path")?;
        if r.is_root(&root) {
            return Err(WorkerError::PathForbidden(
                "the workspace root itself cannot be deleted".into(),
            ));
        }
        let meta = r.meta.as_ref().ok_or_else(|| {
            WorkerError::NotFound(format!("`{}`: no such file or directory", r.rel))
        })?;
        let kind = kind_of(meta);
        if meta.is_dir() {
            if recursive {
                fs::remove_dir_all(&r.real)
            } else {
                fs::remove_dir(&r.real)
            }
        } else {
            fs::remove_file(&r.real)
        }
        .map_err(|e| WorkerError::io(format!("delete `{}`", r.rel), e))?;
        Ok(DeleteResult {
            path: r.rel,
            deleted: true,
            kind,
        })
    })
    .await?;
    tracing::debug!(path = %result.path, "deleted");
    Ok(http::ok_json(&result))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ws");
        fs::create_dir(&root).unwrap();
        fs::create_dir(dir.path().join("outside")).unwrap();
        (dir, fs::canonicalize(root).unwrap())
    }

    #[test]
    fn plain_paths_resolve_inside() {
        let (_d, root) = setup();
        fs::create_dir_all(root.join("a/b")).unwrap();
        let r = resolve(&root, "a/./b/../b/c.txt", true, "path").unwrap();
        assert_eq!(r.real, root.join("a/b/c.txt"));
        assert_eq!(r.rel, "a/b/c.txt");
        assert!(r.meta.is_none());
        assert_eq!(resolve(&root, ".", true, "path").unwrap().rel, ".");
        let abs = root.join("a/b");
        assert_eq!(
            resolve(&root, abs.to_str().unwrap(), true, "path")
                .unwrap()
                .rel,
            "a/b"
        );
    }

    #[test]
    fn escapes_are_forbidden() {
        let (_d, root) = setup();
        for bad in ["..", "../x", "a/../../x", "/etc/passwd", "/"] {
            let err = resolve(&root, bad, true, "path").unwrap_err();
            assert_eq!(err.kind(), "path_forbidden", "{bad}");
        }
        let sneaky = format!("{}/../outside/x", root.display());
        assert_eq!(
            resolve(&root, &sneaky, true, "path").unwrap_err().kind(),
            "path_forbidden"
        );
    }

    #[test]
    fn symlinks_are_confined() {
        let (_d, root) = setup();
        fs::create_dir(root.join("real")).unwrap();
        symlink("real", root.join("inside")).unwrap();
        symlink(root.join("real"), root.join("inside_abs")).unwrap();
        symlink("/etc", root.join("etc")).unwrap();
        symlink("../outside", root.join("up")).unwrap();
        symlink("hop2", root.join("hop1")).unwrap();
        symlink("real/../../outside", root.join("hop2")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        assert_eq!(
            resolve(&root, "inside/f", true, "path").unwrap().rel,
            "real/f"
        );
        assert_eq!(
            resolve(&root, "inside_abs/f", true, "path").unwrap().rel,
            "real/f"
        );
        for bad in ["etc/passwd", "etc", "up/x", "hop1/x", "hop1"] {
            let err = resolve(&root, bad, true, "path").unwrap_err();
            assert_eq!(err.kind(), "path_forbidden", "{bad}");
        }
        // Not following the final link describes the link itself.
        let r = resolve(&root, "etc", false, "path").unwrap();
        assert_eq!(r.rel, "etc");
        assert!(r.meta.unwrap().file_type().is_symlink());
        // But a link in the middle is always followed (and refused here).
        assert_eq!(
            resolve(&root, "etc/passwd", false, "path")
                .unwrap_err()
                .kind(),
            "path_forbidden"
        );
        // A missing component followed by `..` is still checked.
        assert_eq!(
            resolve(&root, "nope/../etc/x", true, "path")
                .unwrap_err()
                .kind(),
            "path_forbidden"
        );
        assert_eq!(
            resolve(&root, "loop", true, "path").unwrap_err().kind(),
            "invalid_request"
        );
    }

    #[test]
    fn nul_is_invalid() {
        let (_d, root) = setup();
        let err = resolve(&root, "a\0b", true, "cwd").unwrap_err();
        assert_eq!(err.kind(), "invalid_request");
        assert_eq!(err.field(), Some("cwd"));
    }

    #[test]
    fn modes_parse() {
        assert_eq!(parse_mode(Some("0644")).unwrap(), Some(0o644));
        assert_eq!(parse_mode(Some("755")).unwrap(), Some(0o755));
        assert!(parse_mode(Some("999")).is_err());
        assert!(parse_mode(Some("")).is_err());
        assert!(parse_mode(Some("17777")).is_err());
    }
}
