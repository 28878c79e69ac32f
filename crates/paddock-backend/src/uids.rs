//! One host identity per runner: a uid (and the gid of the same number) from a range the
//! operator gives Paddock, so that two runners cannot read each other's files even with
//! every namespace gone.
//!
//! A uid is claimed by creating `<pool>/<uid>` exclusively (its content: the runner's
//! id), which holds across backend instances, processes and restarts, and recorded in
//! the runner's directory (`<runner>/uid`). It is released only once the runner's
//! directory — its workspace, every file the uid owned — is gone. A claim whose runner
//! directory no longer exists (a crash between the two writes, or a directory removed
//! by hand) is taken back when the pool wraps around to it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::{io, BackendError, Result};

#[derive(Debug)]
pub struct UidPool {
    /// Where claims live.
    dir: PathBuf,
    /// Where runner directories live (`<root>/<runner_id>`).
    runners: PathBuf,
    backend: &'static str,
    first: u32,
    count: u32,
    /// Where the next search starts (claims are spread, not reused at once).
    next: AtomicU32,
}

impl UidPool {
    /// A pool of `count` uids from `first`, its claims kept in `runners/.uids`.
    pub fn new(backend: &'static str, runners: PathBuf, first: u32, count: u32) -> Self {
        UidPool {
            dir: runners.join(".uids"),
            runners,
            backend,
            first,
            count,
            next: AtomicU32::new(0),
        }
    }

    /// The range, as `first..first+count`.
    pub fn range(&self) -> std::ops::Range<u32> {
        self.first..self.first.saturating_add(self.count)
    }

    /// The uid recorded for runner `id`, if any.
    pub fn recorded(&self, id: &str) -> Option<u32> {
        let text = std::fs::read_to_string(self.runners.join(id).join("uid")).ok()?;
        text.trim().parse().ok()
    }

    /// The uid of runner `id`: the recorded one, else a newly claimed one (then `true`).
    /// The runner's directory must exist.
    pub fn of(&self, id: &str) -> Result<(u32, bool)> {
        if let Some(uid) = self.recorded(id) {
            return Ok((uid, false));
        }
        std::fs::create_dir_all(&self.dir).map_err(io("creating the uid pool"))?;
        use std::os::unix::fs::PermissionsExt;
        // Runner ids are nobody else's business.
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io("creating the uid pool"))?;
        // One allocation at a time on this host (backend instances, processes): taking
        // back a stale claim is a read, a check and a removal.
        let lock =
            std::fs::File::create(self.dir.join(".lock")).map_err(io("locking the uid pool"))?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock(2) on a file we hold open; released when it is closed.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(BackendError::io(
                "locking the uid pool",
                std::io::Error::last_os_error(),
            ));
        }
        if let Some(uid) = self.recorded(id) {
            return Ok((uid, false));
        }
        let start = self.next.load(Ordering::Relaxed);
        for i in 0..self.count {
            let off = (start + i) % self.count;
            let uid = self.first + off;
            if self.claim(uid, id)? {
                self.next.store((off + 1) % self.count, Ordering::Relaxed);
                let rec = self.runners.join(id).join("uid");
                let tmp = rec.with_extension("tmp");
                std::fs::write(&tmp, uid.to_string()).map_err(io("recording the runner's uid"))?;
                std::fs::rename(&tmp, &rec).map_err(io("recording the runner's uid"))?;
                return Ok((uid, true));
            }
        }
        Err(BackendError::Unavailable {
            backend: self.backend,
            reason: format!(
                "every uid of the range {}..{} belongs to a runner; destroy runners or widen uid_range",
                self.first,
                self.first.saturating_add(self.count)
            ),
        })
    }

    /// Claims `uid` for `id`; false when another runner holds it.
    fn claim(&self, uid: u32, id: &str) -> Result<bool> {
        let path = self.dir.join(uid.to_string());
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(id.as_bytes()).map_err(io("claiming a uid"))?;
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = std::fs::read_to_string(&path).unwrap_or_default();
                    // A claim whose runner directory is gone owns no file any more.
                    if holder.is_empty() || self.runners.join(holder.trim()).exists() {
                        return Ok(false);
                    }
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => return Err(BackendError::io("claiming a uid", e)),
            }
        }
        Ok(false)
    }

    /// Releases the uid of a runner whose directory has been removed.
    pub fn release(&self, id: &str, uid: u32) {
        let path = self.dir.join(uid.to_string());
        if std::fs::read_to_string(&path).is_ok_and(|h| h.trim() == id) {
            let _ = std::fs::remove_file(&path);
        }
    }

    /// The uids claimed now, with their runners.
    pub fn claimed(&self) -> Vec<(u32, String)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return vec![];
        };
        let mut out: Vec<(u32, String)> = entries
            .flatten()
            .filter(|e| e.file_name() != ".lock")
            .filter_map(|e| {
                let uid = e.file_name().to_str()?.parse().ok()?;
                let id = std::fs::read_to_string(e.path()).ok()?;
                Some((uid, id))
            })
            .collect();
        out.sort();
        out
    }
}

/// Gives `dir` to `uid`: the directory alone when it is `uid`'s already, else the
/// whole tree (a workspace of the single sandbox user of earlier versions, or of a
/// hand-over that failed half-way: it is finished at the next start).
pub fn hand_over(dir: &Path, uid: u32) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta =
        std::fs::symlink_metadata(dir).map_err(io(format!("inspecting {}", dir.display())))?;
    if meta.uid() == uid && meta.gid() == uid {
        return Ok(());
    }
    chown_tree(dir, uid)
}

/// Hands a whole tree to `uid`. Symbolic links are changed themselves, never followed;
/// it runs while the runner's sandbox is not running (no one swaps a directory for a
/// link during the walk).
pub fn chown_tree(path: &Path, uid: u32) -> Result<()> {
    let meta =
        std::fs::symlink_metadata(path).map_err(io(format!("inspecting {}", path.display())))?;
    if meta.is_dir() {
        for e in std::fs::read_dir(path).map_err(io(format!("listing {}", path.display())))? {
            let e = e.map_err(io(format!("listing {}", path.display())))?;
            chown_tree(&e.path(), uid)?;
        }
    }
    // The top last: a walk cut off half-way leaves it as it was, and is done again.
    std::os::unix::fs::lchown(path, Some(uid), Some(uid))
        .map_err(io(format!("chown {}", path.display())))
}

/// Host users and groups whose id falls in `range`, and subordinate id ranges
/// (`/etc/subuid`, `/etc/subgid`: a user who may map those ids could read a runner's
/// files) that overlap it. A range that overlaps any of them is refused.
pub fn host_users_in(range: &std::ops::Range<u32>) -> Vec<String> {
    let mut out = vec![];
    for (file, what) in [("/etc/passwd", "user"), ("/etc/group", "group")] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        out.extend(text.lines().filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let id: u32 = f.nth(1)?.parse().ok()?;
            range.contains(&id).then(|| format!("{what} {name} ({id})"))
        }));
    }
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        out.extend(text.lines().filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let start: u32 = f.next()?.parse().ok()?;
            let count: u32 = f.next()?.parse().ok()?;
            let end = start.saturating_add(count);
            (start < range.end && range.start < end)
                .then(|| format!("{file} of {name} ({start}..{end})"))
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_exclusive_and_released_with_their_runner() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().to_path_buf();
        for id in ["a", "b", "c"] {
            std::fs::create_dir_all(root.join(id)).unwrap();
        }
        let pool = UidPool::new("local", root.clone(), 5000, 2);
        let (ua, new) = pool.of("a").unwrap();
        assert!(new);
        assert_eq!(
            pool.of("a").unwrap(),
            (ua, false),
            "recorded, not claimed again"
        );
        // Another instance (a restarted orchestrator) sees the claim.
        let other = UidPool::new("local", root.clone(), 5000, 2);
        let (ub, _) = other.of("b").unwrap();
        assert_ne!(ua, ub);
        assert!(other.of("c").is_err(), "the range is full");
        // Released once its directory is gone; then free again.
        std::fs::remove_dir_all(root.join("a")).unwrap();
        pool.release("a", ua);
        assert_eq!(pool.of("c").unwrap(), (ua, true));
        assert_eq!(
            pool.claimed(),
            vec![
                (ua.min(ub), if ua < ub { "c" } else { "b" }.to_string()),
                (ua.max(ub), if ua < ub { "b" } else { "c" }.to_string())
            ]
        );
    }

    #[test]
    fn a_claim_without_its_runner_directory_is_taken_back() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().to_path_buf();
        std::fs::create_dir_all(root.join(".uids")).unwrap();
        std::fs::write(root.join(".uids/7000"), "gone").unwrap();
        std::fs::create_dir_all(root.join("x")).unwrap();
        let pool = UidPool::new("local", root, 7000, 1);
        assert_eq!(pool.of("x").unwrap(), (7000, true));
    }
}
