//! Landlock: before it starts anything, the worker restricts itself — and so every
//! process it will run — to its workspace, its socket directory and the paths it is
//! given writable, plus the system directories read-only. A process that escaped the
//! sandbox's namespaces still cannot open another runner's files. Built on the
//! `landlock` crate; the kernel's support is reported as it is (`/healthz`).

use std::path::PathBuf;
use std::sync::OnceLock;

use landlock::{
    path_beneath_rules, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    Scope, ABI,
};
use serde::Serialize;

/// Read (and execute) only: the system, configuration and the worker's own binary
/// (more with `--readable`: a sandbox's `/opt`, `/var`, `/run`).
pub const READ_ONLY: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32", "/etc", "/proc", "/sys",
    "/paddock",
];

/// What Landlock does for this worker, as `/healthz` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct Confinement {
    /// The kernel's Landlock ABI version (0: no Landlock in this kernel).
    pub abi: i64,
    /// `fully_enforced`, `partially_enforced` (an older ABI: some rights are not
    /// handled), `not_enforced` (no Landlock), or `off` (not asked for).
    pub status: &'static str,
    pub writable: Vec<PathBuf>,
}

static APPLIED: OnceLock<Confinement> = OnceLock::new();

/// The confinement in force (`off` when [`restrict`] was not called).
pub fn current() -> Confinement {
    APPLIED.get().cloned().unwrap_or(Confinement {
        abi: kernel_abi(),
        status: "off",
        writable: vec![],
    })
}

/// The kernel's Landlock ABI version, 0 without Landlock.
pub fn kernel_abi() -> i64 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_long = 1;
    // SAFETY: the documented version query: no ruleset attributes, no pointers kept.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    v.max(0)
}

/// Restricts the calling thread and its future children: everything beneath
/// `writable` may be read, written, created and removed; beneath [`READ_ONLY`] and
/// `readable`, read and executed; nothing else may be opened at all. Signals to, and
/// abstract Unix sockets of, processes outside the domain are refused too (ABI 6; on
/// an older kernel the status says `partially_enforced`). Call it before any other
/// thread starts (Landlock restricts the thread that asks, and what it spawns later).
pub fn restrict(writable: &[PathBuf], readable: &[PathBuf]) -> Result<Confinement, String> {
    let abi = ABI::V6;
    let existing =
        |ps: Vec<PathBuf>| -> Vec<PathBuf> { ps.into_iter().filter(|p| p.exists()).collect() };
    let writable = existing(writable.to_vec());
    let mut read_only: Vec<PathBuf> = READ_ONLY.iter().map(PathBuf::from).collect();
    read_only.extend(readable.iter().cloned());
    let read_only = existing(read_only);
    let err = |e: landlock::RulesetError| format!("landlock: {e}");
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(err)?
        .scope(Scope::from_all(abi))
        .map_err(err)?
        .create()
        .map_err(err)?
        .add_rules(path_beneath_rules(&read_only, AccessFs::from_read(abi)))
        .map_err(err)?
        .add_rules(path_beneath_rules(&writable, AccessFs::from_all(abi)))
        .map_err(err)?
        .restrict_self()
        .map_err(err)?;
    let c = Confinement {
        abi: kernel_abi(),
        status: match status.ruleset {
            RulesetStatus::FullyEnforced => "fully_enforced",
            RulesetStatus::PartiallyEnforced => "partially_enforced",
            RulesetStatus::NotEnforced => "not_enforced",
        },
        writable,
    };
    let _ = APPLIED.set(c.clone());
    Ok(c)
}
