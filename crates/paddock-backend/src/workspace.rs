//! Workspace archives for snapshots and restores, shared by the backends whose
//! workspace is a directory on the orchestrator's host.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::{io, BackendError, Result};

/// Writes `ws` as a tar.gz to `dest` (atomically); returns its size.
pub(crate) async fn archive(ws: &Path, runner_id: &str, dest: &Path) -> Result<u64> {
    if !ws.is_dir() {
        return Err(BackendError::NotFound(runner_id.to_string()));
    }
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(io("creating the snapshot directory"))?;
    }
    let partial = dest.with_extension("partial");
    let out = tokio::process::Command::new("tar")
        .arg("-C")
        .arg(ws)
        .args(["--numeric-owner", "-czf"])
        .arg(&partial)
        .arg(".")
        .output()
        .await
        .map_err(io("running tar"))?;
    // Exit 1 means "a file changed while it was read" (the runner kept working).
    if !(out.status.success() || out.status.code() == Some(1)) {
        let _ = std::fs::remove_file(&partial);
        return Err(BackendError::io(
            "archiving the workspace",
            std::io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()),
        ));
    }
    std::fs::rename(&partial, dest).map_err(io("storing the snapshot"))?;
    Ok(std::fs::metadata(dest)
        .map_err(io("sizing the snapshot"))?
        .len())
}

/// Replaces `<dir>/workspace` by the archive at `src`, files owned by `uid`; a failure
/// leaves the workspace as it was.
pub(crate) async fn restore(dir: &Path, src: &Path, uid: Option<u32>) -> Result<()> {
    let tag = paddock_core::id::new("tmp");
    let fresh = dir.join(format!("workspace.{tag}.restore"));
    let old = dir.join(format!("workspace.{tag}.old"));
    std::fs::create_dir(&fresh).map_err(io("creating the restore directory"))?;
    let out = tokio::process::Command::new("tar")
        .arg("-C")
        .arg(&fresh)
        .args(["--numeric-owner", "--same-owner", "-xzf"])
        .arg(src)
        .output()
        .await
        .map_err(io("running tar"));
    let failed = match &out {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(String::from_utf8_lossy(&o.stderr).into_owned()),
        Err(e) => Some(e.to_string()),
    };
    if let Some(why) = failed {
        // The live workspace was never touched.
        let _ = std::fs::remove_dir_all(&fresh);
        return Err(BackendError::io(
            "restoring the snapshot",
            std::io::Error::other(why),
        ));
    }
    if let Some(uid) = uid {
        // Every restored file belongs to the sandbox user (chown also clears any
        // setuid/setgid bit an archive carried).
        let out = tokio::process::Command::new("chown")
            .arg("-R")
            .arg(format!("{uid}:{uid}"))
            .arg(&fresh)
            .output()
            .await
            .map_err(io("running chown"))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&fresh);
            return Err(BackendError::io(
                "giving the restored files to the sandbox user",
                std::io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()),
            ));
        }
    }
    std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o700))
        .map_err(io("chmod"))?;
    let ws = dir.join("workspace");
    std::fs::rename(&ws, &old).map_err(io("setting the old workspace aside"))?;
    if let Err(e) = std::fs::rename(&fresh, &ws) {
        let _ = std::fs::rename(&old, &ws);
        return Err(BackendError::io("swapping in the restored workspace", e));
    }
    let _ = tokio::fs::remove_dir_all(&old).await;
    Ok(())
}
