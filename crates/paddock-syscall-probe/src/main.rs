//! A small probe the contract suite runs inside a sandbox: it makes each system call
//! named on its command line (with harmless arguments) and prints one line per call,
//! `NAME ok` or `NAME ERRNO` (`EPERM`, `ENOSYS`, or `E<n>`).
//!
//! Names are the system calls' own, plus `clone_newuser` (`clone` asking for a new user
//! namespace), `socket_vsock` (a socket of the `AF_VSOCK` family), `ptrace_attach` (attaching to a child of the probe) and `process_vm_readv`
//! (reading the probe's own memory, which succeeds where nothing forbids it).

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn show(r: libc::c_long) -> String {
    if r >= 0 {
        return "ok".into();
    }
    match errno() {
        libc::EPERM => "EPERM".into(),
        libc::ENOSYS => "ENOSYS".into(),
        e => format!("E{e}"),
    }
}

fn number(name: &str) -> Option<libc::c_long> {
    Some(match name {
        "acct" => libc::SYS_acct,
        "add_key" => libc::SYS_add_key,
        "bpf" => libc::SYS_bpf,
        "clock_adjtime" => libc::SYS_clock_adjtime,
        "clock_settime" => libc::SYS_clock_settime,
        "clone3" => libc::SYS_clone3,
        "delete_module" => libc::SYS_delete_module,
        "finit_module" => libc::SYS_finit_module,
        "fsconfig" => libc::SYS_fsconfig,
        "fsmount" => libc::SYS_fsmount,
        "fsopen" => libc::SYS_fsopen,
        "fspick" => libc::SYS_fspick,
        "init_module" => libc::SYS_init_module,
        "io_uring_enter" => libc::SYS_io_uring_enter,
        "io_uring_register" => libc::SYS_io_uring_register,
        "io_uring_setup" => libc::SYS_io_uring_setup,
        "ioperm" => libc::SYS_ioperm,
        "iopl" => libc::SYS_iopl,
        "kcmp" => libc::SYS_kcmp,
        "kexec_file_load" => libc::SYS_kexec_file_load,
        "kexec_load" => libc::SYS_kexec_load,
        "keyctl" => libc::SYS_keyctl,
        "lookup_dcookie" => libc::SYS_lookup_dcookie,
        "mbind" => libc::SYS_mbind,
        "modify_ldt" => libc::SYS_modify_ldt,
        "migrate_pages" => libc::SYS_migrate_pages,
        "mount" => libc::SYS_mount,
        "mount_setattr" => libc::SYS_mount_setattr,
        "move_mount" => libc::SYS_move_mount,
        "move_pages" => libc::SYS_move_pages,
        "name_to_handle_at" => libc::SYS_name_to_handle_at,
        "nfsservctl" => libc::SYS_nfsservctl,
        "open_by_handle_at" => libc::SYS_open_by_handle_at,
        "open_tree" => libc::SYS_open_tree,
        "perf_event_open" => libc::SYS_perf_event_open,
        "personality" => libc::SYS_personality,
        "pidfd_getfd" => libc::SYS_pidfd_getfd,
        "pivot_root" => libc::SYS_pivot_root,
        "process_madvise" => libc::SYS_process_madvise,
        "process_vm_writev" => libc::SYS_process_vm_writev,
        "quotactl" => libc::SYS_quotactl,
        "quotactl_fd" => libc::SYS_quotactl_fd,
        "reboot" => libc::SYS_reboot,
        "remap_file_pages" => libc::SYS_remap_file_pages,
        "request_key" => libc::SYS_request_key,
        "set_mempolicy" => libc::SYS_set_mempolicy,
        "setns" => libc::SYS_setns,
        "settimeofday" => libc::SYS_settimeofday,
        "swapoff" => libc::SYS_swapoff,
        "swapon" => libc::SYS_swapon,
        "_sysctl" => libc::SYS__sysctl,
        "syslog" => libc::SYS_syslog,
        "sysfs" => libc::SYS_sysfs,
        "umount2" => libc::SYS_umount2,
        "unshare" => libc::SYS_unshare,
        "uselib" => libc::SYS_uselib,
        "userfaultfd" => libc::SYS_userfaultfd,
        "ustat" => libc::SYS_ustat,
        "vhangup" => libc::SYS_vhangup,
        _ => return None,
    })
}

/// A child that sleeps until it is killed.
fn sleeper() -> libc::pid_t {
    // SAFETY: fork(2) in a single-threaded program; the child only sleeps and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: async-signal-safe calls only.
        unsafe {
            libc::sleep(30);
            libc::_exit(0);
        }
    }
    pid
}

fn reap(pid: libc::pid_t) {
    // SAFETY: our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

fn probe(name: &str) -> String {
    match name {
        "ptrace" | "ptrace_attach" => {
            let child = sleeper();
            // SAFETY: PTRACE_ATTACH to our own child; it is killed right after.
            let r = unsafe { libc::ptrace(libc::PTRACE_ATTACH, child, 0, 0) };
            let out = show(r);
            reap(child);
            out
        }
        "process_vm_readv" => {
            let src = [7u8; 8];
            let mut dst = [0u8; 8];
            let local = libc::iovec {
                iov_base: dst.as_mut_ptr().cast(),
                iov_len: dst.len(),
            };
            let remote = libc::iovec {
                iov_base: src.as_ptr() as *mut libc::c_void,
                iov_len: src.len(),
            };
            // SAFETY: both buffers are ours and as long as the iovecs say.
            let r = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
            show(r as libc::c_long)
        }
        "socket_vsock" => {
            // SAFETY: socket(2) with plain integer arguments; the fd is closed.
            let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0) };
            let out = show(fd as libc::c_long);
            if fd >= 0 {
                // SAFETY: our own fd.
                unsafe { libc::close(fd) };
            }
            out
        }
        "clone_newuser" => {
            let flags = (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_long;
            // SAFETY: a fork-like clone (no new stack); the child exits at once.
            let r = unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) };
            if r == 0 {
                // SAFETY: the child of the clone above.
                unsafe { libc::_exit(0) }
            }
            let out = show(r);
            if r > 0 {
                reap(r as libc::pid_t);
            }
            out
        }
        other => match number(other) {
            // SAFETY: every listed call takes zero/NULL arguments harmlessly (it fails on
            // them, or does nothing: `unshare(0)`, `iopl(0)`, `settimeofday(NULL, NULL)`).
            Some(nr) => show(unsafe { libc::syscall(nr, 0, 0, 0, 0, 0, 0) }),
            None => "unknown".into(),
        },
    }
}

fn main() {
    for name in std::env::args().skip(1) {
        println!("{name} {}", probe(&name));
    }
}
