//! The system calls a runner may not make, as data, and the two forms the backends
//! apply it in: a BPF program for bubblewrap (`--add-seccomp-fd`, compiled with
//! Firecracker's `seccompiler`) and a seccomp profile for Docker (`security_opt`).
//!
//! The policy is a deny list on top of everything else a sandbox already takes away
//! (namespaces, dropped capabilities, `no_new_privs`): what an agent's workload never
//! needs and what has been the way out of containers — loading kernel code (modules,
//! `kexec`, `bpf`), mounting, new namespaces, other processes' memory (`ptrace`,
//! `process_vm_*`), kernel keyrings, `userfaultfd`, file handles (`open_by_handle_at`),
//! port I/O and the clock. Denied calls fail with `EPERM`; `clone3` fails with `ENOSYS`
//! (its flags cannot be inspected, and the C library then falls back to `clone`, whose
//! namespace flags are). Levels: `default`; `strict` also denies `personality`,
//! `process_madvise`, `remap_file_pages` and `sysfs`; `unconfined` applies nothing.

use std::collections::BTreeMap;

pub use paddock_core::profile::SeccompLevel;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("cannot compile the seccomp policy: {0}")]
    Compile(String),
    #[error("seccomp filters are built for x86_64 only, not {0}")]
    Arch(&'static str),
}

/// System calls that fail with `EPERM` at every level but `unconfined`.
const DENIED: &[(&str, i64)] = &[
    ("acct", libc::SYS_acct),
    ("add_key", libc::SYS_add_key),
    ("bpf", libc::SYS_bpf),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("clock_settime", libc::SYS_clock_settime),
    ("delete_module", libc::SYS_delete_module),
    ("finit_module", libc::SYS_finit_module),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fsopen", libc::SYS_fsopen),
    ("fspick", libc::SYS_fspick),
    ("init_module", libc::SYS_init_module),
    ("ioperm", libc::SYS_ioperm),
    ("iopl", libc::SYS_iopl),
    ("kcmp", libc::SYS_kcmp),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("kexec_load", libc::SYS_kexec_load),
    ("keyctl", libc::SYS_keyctl),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("mount", libc::SYS_mount),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("move_mount", libc::SYS_move_mount),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("nfsservctl", libc::SYS_nfsservctl),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("open_tree", libc::SYS_open_tree),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("pivot_root", libc::SYS_pivot_root),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("ptrace", libc::SYS_ptrace),
    ("quotactl", libc::SYS_quotactl),
    ("quotactl_fd", libc::SYS_quotactl_fd),
    ("reboot", libc::SYS_reboot),
    ("request_key", libc::SYS_request_key),
    ("setns", libc::SYS_setns),
    ("settimeofday", libc::SYS_settimeofday),
    ("swapoff", libc::SYS_swapoff),
    ("swapon", libc::SYS_swapon),
    ("_sysctl", libc::SYS__sysctl),
    ("syslog", libc::SYS_syslog),
    ("umount2", libc::SYS_umount2),
    ("unshare", libc::SYS_unshare),
    ("uselib", libc::SYS_uselib),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("ustat", libc::SYS_ustat),
    ("vhangup", libc::SYS_vhangup),
    // Denied by Docker's default profile too (it allows them only with capabilities a
    // runner never has, or not at all).
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("mbind", libc::SYS_mbind),
    ("migrate_pages", libc::SYS_migrate_pages),
    ("modify_ldt", libc::SYS_modify_ldt),
    ("move_pages", libc::SYS_move_pages),
    ("pidfd_getfd", libc::SYS_pidfd_getfd),
    ("set_mempolicy", libc::SYS_set_mempolicy),
];

/// Also denied at `strict`.
const STRICT_ALSO: &[(&str, i64)] = &[
    ("personality", libc::SYS_personality),
    ("process_madvise", libc::SYS_process_madvise),
    ("remap_file_pages", libc::SYS_remap_file_pages),
    ("sysfs", libc::SYS_sysfs),
];

/// Calls whose x32 number is not the x86_64 one with [`X32_BIT`] set (the x32 ABI has
/// variants of its own from 512): denied under those numbers too.
const X32_VARIANTS: &[(&str, i64)] = &[
    ("kexec_load", 528),
    ("move_pages", 533),
    ("process_vm_readv", 539),
    ("process_vm_writev", 540),
    ("ptrace", 521),
];

/// `socket` fails with `EPERM` for these address families (argument 0).
const SOCKET_FAMILIES: &[(&str, i32)] = &[("AF_VSOCK", libc::AF_VSOCK)];

/// `clone` fails with `EPERM` when its flags (argument 0) ask for any of these.
const CLONE_NAMESPACES: &[(&str, i32)] = &[
    ("CLONE_NEWNS", libc::CLONE_NEWNS),
    ("CLONE_NEWUTS", libc::CLONE_NEWUTS),
    ("CLONE_NEWIPC", libc::CLONE_NEWIPC),
    ("CLONE_NEWUSER", libc::CLONE_NEWUSER),
    ("CLONE_NEWPID", libc::CLONE_NEWPID),
    ("CLONE_NEWNET", libc::CLONE_NEWNET),
    ("CLONE_NEWCGROUP", libc::CLONE_NEWCGROUP),
];

/// System calls that fail with `ENOSYS`: the C library falls back to one the policy can
/// inspect.
const NOT_THERE: &[(&str, i64)] = &[("clone3", libc::SYS_clone3)];

/// x32 system calls reach the kernel with the x86_64 audit architecture and this bit set
/// in their number; each denied call is denied under that number too.
const X32_BIT: i64 = 0x4000_0000;

/// The names of the calls `level` denies with `EPERM` (unconditionally).
pub fn denied(level: SeccompLevel) -> Vec<&'static str> {
    let mut names: Vec<&str> = table(level).map(|(n, _)| *n).collect();
    names.sort_unstable();
    names
}

/// The calls `level` denies with `EPERM`, with their x86_64 numbers.
fn table(level: SeccompLevel) -> impl Iterator<Item = &'static (&'static str, i64)> {
    let (base, strict): (&[_], &[_]) = match level {
        SeccompLevel::Unconfined => (&[], &[]),
        SeccompLevel::Default => (DENIED, &[]),
        SeccompLevel::Strict => (DENIED, STRICT_ALSO),
    };
    base.iter().chain(strict)
}

/// The numbers `level` denies: each call's x86_64 number, and its x32 one.
fn denied_numbers(level: SeccompLevel) -> Vec<i64> {
    table(level)
        .flat_map(|(name, nr)| {
            let variant = X32_VARIANTS.iter().find(|(n, _)| n == name);
            [
                Some(*nr),
                Some(*nr | X32_BIT),
                variant.map(|(_, v)| *v | X32_BIT),
            ]
        })
        .flatten()
        .collect()
}

/// The policy as shown to users (`GET /v1/profiles`, docs/security.md).
pub fn describe(level: SeccompLevel) -> Value {
    if level == SeccompLevel::Unconfined {
        return json!({"level": level, "filter": null,
                      "warning": "no system-call filter of Paddock's: code in the runner may mount, create namespaces, trace processes and reach the kernel's whole system-call surface as far as the other layers allow"});
    }
    json!({
        "level": level,
        "filter": "deny list, on top of namespaces, dropped capabilities and no_new_privs",
        "denied_with_eperm": denied(level),
        "clone_flags_denied_with_eperm": CLONE_NAMESPACES.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        "socket_families_denied_with_eperm": SOCKET_FAMILIES.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        "denied_with_enosys": NOT_THERE.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
    })
}

fn arch() -> Result<TargetArch, SeccompError> {
    if cfg!(target_arch = "x86_64") {
        Ok(TargetArch::x86_64)
    } else {
        Err(SeccompError::Arch(std::env::consts::ARCH))
    }
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    on_match: SeccompAction,
) -> Result<Vec<u8>, SeccompError> {
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, on_match, arch()?)
        .map_err(|e| SeccompError::Compile(e.to_string()))?;
    let program: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| SeccompError::Compile(e.to_string()))?;
    // `struct sock_filter` as the kernel (and bubblewrap) reads it.
    let mut bytes = Vec::with_capacity(program.len() * 8);
    for ins in &program {
        bytes.extend_from_slice(&ins.code.to_ne_bytes());
        bytes.push(ins.jt);
        bytes.push(ins.jf);
        bytes.extend_from_slice(&ins.k.to_ne_bytes());
    }
    Ok(bytes)
}

fn clone_rules() -> Result<Vec<SeccompRule>, SeccompError> {
    CLONE_NAMESPACES
        .iter()
        .map(|(_, flag)| {
            let flag = *flag as u64;
            let c = SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )
            .map_err(|e| SeccompError::Compile(e.to_string()))?;
            SeccompRule::new(vec![c]).map_err(|e| SeccompError::Compile(e.to_string()))
        })
        .collect()
}

fn socket_rules() -> Result<Vec<SeccompRule>, SeccompError> {
    SOCKET_FAMILIES
        .iter()
        .map(|(_, family)| {
            let c =
                SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, *family as u64)
                    .map_err(|e| SeccompError::Compile(e.to_string()))?;
            SeccompRule::new(vec![c]).map_err(|e| SeccompError::Compile(e.to_string()))
        })
        .collect()
}

/// The BPF programs (`struct sock_filter` arrays) that apply `level`, in the order to
/// install them: the `EPERM` one, then the `ENOSYS` one. None for `unconfined`.
pub fn bpf_programs(level: SeccompLevel) -> Result<Vec<Vec<u8>>, SeccompError> {
    if level == SeccompLevel::Unconfined {
        return Ok(vec![]);
    }
    let mut eperm: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in denied_numbers(level) {
        eperm.insert(nr, vec![]);
    }
    eperm.insert(libc::SYS_clone, clone_rules()?);
    eperm.insert(libc::SYS_clone | X32_BIT, clone_rules()?);
    eperm.insert(libc::SYS_socket, socket_rules()?);
    eperm.insert(libc::SYS_socket | X32_BIT, socket_rules()?);
    let mut enosys: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (_, nr) in NOT_THERE {
        enosys.insert(*nr, vec![]);
        enosys.insert(*nr | X32_BIT, vec![]);
    }
    Ok(vec![
        compile(eperm, SeccompAction::Errno(libc::EPERM as u32))?,
        compile(enosys, SeccompAction::Errno(libc::ENOSYS as u32))?,
    ])
}

/// `level` as a Docker seccomp profile (the JSON `docker run --security-opt seccomp=`
/// takes). None for `unconfined`.
pub fn docker_profile(level: SeccompLevel) -> Option<Value> {
    if level == SeccompLevel::Unconfined {
        return None;
    }
    let clone: Vec<Value> = CLONE_NAMESPACES
        .iter()
        .map(|(_, flag)| {
            json!({"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM,
                   "args": [{"index": 0, "value": *flag as u64, "valueTwo": *flag as u64,
                             "op": "SCMP_CMP_MASKED_EQ"}]})
        })
        .collect();
    let socket = SOCKET_FAMILIES.iter().map(|(_, family)| {
        json!({"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM,
               "args": [{"index": 0, "value": *family as u64, "op": "SCMP_CMP_EQ"}]})
    });
    let mut syscalls = vec![
        json!({"names": denied(level), "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM}),
        json!({"names": NOT_THERE.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
               "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS}),
    ];
    syscalls.extend(clone);
    syscalls.extend(socket);
    Some(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_nest_and_unconfined_is_empty() {
        let d = denied(SeccompLevel::Default);
        let s = denied(SeccompLevel::Strict);
        assert!(d.iter().all(|n| s.contains(n)));
        assert!(s.contains(&"personality") && !d.contains(&"personality"));
        assert!(d.contains(&"io_uring_setup"));
        assert!(d.contains(&"mount") && d.contains(&"ptrace") && d.contains(&"unshare"));
        assert!(bpf_programs(SeccompLevel::Unconfined).unwrap().is_empty());
        assert!(docker_profile(SeccompLevel::Unconfined).is_none());
    }

    #[test]
    fn programs_compile_to_whole_instructions() {
        for level in [SeccompLevel::Default, SeccompLevel::Strict] {
            let progs = bpf_programs(level).unwrap();
            assert_eq!(progs.len(), 2);
            for p in progs {
                assert!(!p.is_empty() && p.len() % 8 == 0);
            }
        }
    }

    #[test]
    fn the_docker_profile_names_the_same_calls() {
        let p = docker_profile(SeccompLevel::Default).unwrap();
        assert_eq!(p["defaultAction"], "SCMP_ACT_ALLOW");
        let names: Vec<&str> = p["syscalls"][0]["names"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(names, denied(SeccompLevel::Default));
        assert_eq!(p["syscalls"][1]["names"][0], "clone3");
    }
}
