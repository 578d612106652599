//! Confinement applied to every process a container starts from outside (its init and
//! each session): a trimmed capability bounding set and a seccomp denylist in the
//! spirit of LXC/Incus. `no_new_privs` is deliberately not set, so sudo and other
//! setuid programs inside keep working; the filter is installed with the container
//! root's CAP_SYS_ADMIN instead.

use super::error::NativeError;
use std::collections::BTreeMap;

use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

/// Syscalls refused with EPERM: kernel modules, kexec, handle-based opens that escape
/// mounts, clock and swap changes, raw I/O ports, BPF and
/// perf, userfaultfd, process accounting, quotas, io_uring (a long history of kernel
/// bugs, and a way around this filter: its operations are not syscalls), kcmp.
const DENIED: &[&str] = &[
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "open_by_handle_at",
    "settimeofday",
    "clock_settime",
    "swapon",
    "swapoff",
    "iopl",
    "ioperm",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "acct",
    "quotactl",
    "quotactl_fd",
    "lookup_dcookie",
    "syslog",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "kcmp",
    // Obsolete calls Docker's profile leaves out too.
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "nfsservctl",
];

/// Syscalls answered ENOSYS, as if the kernel lacked them, so that programs fall back to
/// the older call the filter can judge: `clone3` (its flags are in memory a filter cannot
/// read; glibc falls back to `clone`) and the new mount API (libmount falls back to
/// `mount(2)` on ENOSYS only). A container configured for nesting keeps `clone3`.
///
/// The non-namespaced keyring (`keyctl`, `add_key`, `request_key`) and
/// `name_to_handle_at` (harmless alone, but paired with the refused `open_by_handle_at`)
/// are answered ENOSYS too, as LXC does: systemd and PAM take ENOSYS as "no keyring" or
/// "no handles" and go on, where EPERM stops them.
const NOT_IMPLEMENTED: &[&str] = &[
    "keyctl",
    "add_key",
    "request_key",
    "name_to_handle_at",
    "clone3",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
];

/// `personality(2)` values allowed (Docker's list): Linux, with or without the
/// 32-bit address space, with or without UNAME26's opposite, and the query.
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// x32 system calls carry this bit in their number; the filter's rules are for the
/// plain x86-64 numbers, so every x32 call is refused.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// `clone`/`unshare` flag for a new user namespace.
const CLONE_NEWUSER: u64 = 0x1000_0000;

/// Socket families refused: the kernel's crypto API (AF_ALG) and VM sockets (AF_VSOCK,
/// which would reach the hypervisor's services on a virtual host).
const DENIED_FAMILIES: &[u64] = &[38, 40];

/// Capabilities removed from the bounding set (no use inside, risky if ever mapped).
const DROPPED_CAPS: &[libc::c_ulong] = &[
    16, // CAP_SYS_MODULE
    17, // CAP_SYS_RAWIO
    25, // CAP_SYS_TIME
    30, // CAP_AUDIT_CONTROL
    32, // CAP_MAC_OVERRIDE
    33, // CAP_MAC_ADMIN
    34, // CAP_SYSLOG
    35, // CAP_WAKE_ALARM
    36, // CAP_BLOCK_SUSPEND
];

/// What a container may do beyond the default confinement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Profile {
    /// Nested user namespaces (`unshare -U`, `clone(CLONE_NEWUSER)`, `clone3`): for
    /// containers that run containers or sandboxes of their own.
    pub nesting: bool,
}

fn syscall_number(name: &str) -> Option<i64> {
    let n = match name {
        "kexec_load" => libc::SYS_kexec_load,
        "kexec_file_load" => libc::SYS_kexec_file_load,
        "init_module" => libc::SYS_init_module,
        "finit_module" => libc::SYS_finit_module,
        "delete_module" => libc::SYS_delete_module,
        "open_by_handle_at" => libc::SYS_open_by_handle_at,
        "name_to_handle_at" => libc::SYS_name_to_handle_at,
        "keyctl" => libc::SYS_keyctl,
        "add_key" => libc::SYS_add_key,
        "request_key" => libc::SYS_request_key,
        "settimeofday" => libc::SYS_settimeofday,
        "clock_settime" => libc::SYS_clock_settime,
        "swapon" => libc::SYS_swapon,
        "swapoff" => libc::SYS_swapoff,
        #[cfg(target_arch = "x86_64")]
        "iopl" => libc::SYS_iopl,
        #[cfg(target_arch = "x86_64")]
        "ioperm" => libc::SYS_ioperm,
        "bpf" => libc::SYS_bpf,
        "perf_event_open" => libc::SYS_perf_event_open,
        "userfaultfd" => libc::SYS_userfaultfd,
        "acct" => libc::SYS_acct,
        "quotactl" => libc::SYS_quotactl,
        "quotactl_fd" => libc::SYS_quotactl_fd,
        "lookup_dcookie" => libc::SYS_lookup_dcookie,
        "syslog" => libc::SYS_syslog,
        "io_uring_setup" => libc::SYS_io_uring_setup,
        "io_uring_enter" => libc::SYS_io_uring_enter,
        "io_uring_register" => libc::SYS_io_uring_register,
        "kcmp" => libc::SYS_kcmp,
        #[cfg(target_arch = "x86_64")]
        "uselib" => libc::SYS_uselib,
        #[cfg(target_arch = "x86_64")]
        "ustat" => libc::SYS_ustat,
        #[cfg(target_arch = "x86_64")]
        "sysfs" => libc::SYS_sysfs,
        #[cfg(target_arch = "x86_64")]
        "_sysctl" => libc::SYS__sysctl,
        #[cfg(target_arch = "x86_64")]
        "nfsservctl" => libc::SYS_nfsservctl,
        "clone3" => libc::SYS_clone3,
        "open_tree" => libc::SYS_open_tree,
        "move_mount" => libc::SYS_move_mount,
        "fsopen" => libc::SYS_fsopen,
        "fsconfig" => libc::SYS_fsconfig,
        "fsmount" => libc::SYS_fsmount,
        "fspick" => libc::SYS_fspick,
        "mount_setattr" => libc::SYS_mount_setattr,
        _ => return None,
    };
    Some(n)
}

fn seccomp_error(e: impl std::fmt::Display) -> NativeError {
    NativeError::Seccomp(e.to_string())
}

/// One condition on a syscall's argument `index` (32 bits compared).
fn arg(index: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, NativeError> {
    SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value).map_err(seccomp_error)
}

/// The rules refused with EPERM that look at arguments.
fn argument_rules(profile: Profile) -> Result<Vec<(i64, Vec<SeccompRule>)>, String> {
    let rule = |conditions| SeccompRule::new(conditions).map_err(seccomp_error);
    let mut rules = vec![];
    // personality: anything but the allowed values (the conditions are ANDed).
    let not_allowed = PERSONALITIES
        .iter()
        .map(|v| arg(0, SeccompCmpOp::Ne, *v))
        .collect::<Result<Vec<_>, _>>()?;
    rules.push((libc::SYS_personality, vec![rule(not_allowed)?]));
    let families = DENIED_FAMILIES
        .iter()
        .map(|f| rule(vec![arg(0, SeccompCmpOp::Eq, *f)?]))
        .collect::<Result<Vec<_>, _>>()?;
    rules.push((libc::SYS_socket, families));
    if !profile.nesting {
        let new_user = || -> Result<Vec<SeccompRule>, NativeError> {
            Ok(vec![rule(vec![arg(
                0,
                SeccompCmpOp::MaskedEq(CLONE_NEWUSER),
                CLONE_NEWUSER,
            )?])?])
        };
        rules.push((libc::SYS_clone, new_user()?));
        rules.push((libc::SYS_unshare, new_user()?));
    }
    Ok(rules)
}

/// Hand-written BPF run before seccompiler's program: x32 calls and the
/// [`NOT_IMPLEMENTED`] syscalls return ENOSYS; everything else falls through to the
/// rules. (seccompiler matches exact numbers and answers one errno per filter.)
fn enosys_prelude(profile: Profile) -> Vec<sock_filter> {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
    const JA: u16 = 0x05; // BPF_JMP | BPF_JA
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const RET_ERRNO: u32 = 0x0005_0000; // SECCOMP_RET_ERRNO
    let numbers: Vec<u32> = NOT_IMPLEMENTED
        .iter()
        .filter(|n| !(profile.nesting && **n == "clone3"))
        .filter_map(|n| syscall_number(n))
        .filter_map(|n| u32::try_from(n).ok())
        .collect();
    let m = numbers.len() as u8;
    let op = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    // [0] load nr, [1] x32?, [2..2+m) each number, [2+m] skip, [3+m] return ENOSYS.
    let mut prog = vec![
        op(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        op(JGE_K, m + 1, 0, X32_SYSCALL_BIT),
    ];
    for (j, n) in numbers.iter().enumerate() {
        prog.push(op(JEQ_K, m - j as u8, 0, *n));
    }
    prog.push(op(JA, 0, 0, 1));
    prog.push(op(RET_K, 0, 0, RET_ERRNO | libc::ENOSYS as u32));
    prog
}

/// The compiled filter for this machine's architecture and `profile`.
pub fn filter(profile: Profile) -> Result<BpfProgram, NativeError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(seccomp_error)?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = DENIED
        .iter()
        .filter_map(|n| syscall_number(n))
        .map(|n| (n, vec![]))
        .collect();
    rules.extend(argument_rules(profile)?);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(seccomp_error)?;
    let rules = BpfProgram::try_from(filter).map_err(seccomp_error)?;
    let mut prog = enosys_prelude(profile);
    prog.extend(rules);
    Ok(prog)
}

/// Trims the bounding set and installs the filter on the calling process (inherited by
/// everything it forks or execs). Needs CAP_SETPCAP and CAP_SYS_ADMIN in its user namespace.
pub fn apply(program: &BpfProgram) -> Result<(), NativeError> {
    for cap in DROPPED_CAPS {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, *cap, 0, 0, 0) } != 0 {
            return Err(format!(
                "cannot drop capability {cap}: {}",
                std::io::Error::last_os_error()
            )
            .into());
        }
    }
    apply_filter(program)
}

/// Installs the filter alone.
fn apply_filter(program: &BpfProgram) -> Result<(), NativeError> {
    let prog = libc::sock_fprog {
        len: program.len() as libc::c_ushort,
        // seccompiler's sock_filter has the kernel's layout (code, jt, jf, k).
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `program`, which outlives the call.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(format!(
            "cannot install seccomp filter: {}",
            std::io::Error::last_os_error()
        )
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_denied_syscall_is_known_and_the_filter_compiles() {
        for name in DENIED {
            #[cfg(not(target_arch = "x86_64"))]
            if [
                "iopl",
                "ioperm",
                "uselib",
                "ustat",
                "sysfs",
                "_sysctl",
                "nfsservctl",
            ]
            .contains(name)
            {
                continue;
            }
            assert!(syscall_number(name).is_some(), "{name}");
        }
        for name in NOT_IMPLEMENTED {
            assert!(syscall_number(name).is_some(), "{name}");
        }
        let prog = filter(Profile::default()).unwrap();
        assert!(prog.len() > DENIED.len());
        assert_eq!(
            std::mem::size_of::<seccompiler::sock_filter>(),
            std::mem::size_of::<libc::sock_filter>()
        );
    }

    /// Runs `f` in a forked child with `profile`'s filter installed; true if it says so.
    fn in_confined_child(profile: Profile, f: fn() -> bool) -> bool {
        // Installing needs no_new_privs or CAP_SYS_ADMIN; a forked child keeps the test
        // process clean.
        let prog = filter(profile).unwrap();
        // SAFETY: the child only makes raw syscalls and exits.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                // SAFETY: no_new_privs lets an unprivileged test install the filter.
                unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
                let ok = apply_filter(&prog).is_ok() && f();
                // SAFETY: _exit in a forked child.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                status == nix::sys::wait::WaitStatus::Exited(child, 0)
            }
        }
    }

    fn errno() -> Option<i32> {
        std::io::Error::last_os_error().raw_os_error()
    }

    /// A raw syscall with up to three arguments; its result and errno.
    fn call(
        n: libc::c_long,
        a: libc::c_long,
        b: libc::c_long,
        c: libc::c_long,
    ) -> (i64, Option<i32>) {
        // SAFETY: the calls tested take integers or null pointers, refused before use.
        let r = unsafe { libc::syscall(n, a, b, c) };
        (r as i64, errno())
    }

    #[test]
    fn each_class_is_refused_and_ordinary_calls_pass() {
        assert!(in_confined_child(Profile::default(), || {
            let eperm = Some(libc::EPERM);
            let enosys = Some(libc::ENOSYS);
            call(libc::SYS_delete_module, 0, 0, 0) == (-1, eperm)
                && call(libc::SYS_io_uring_setup, 8, 0, 0) == (-1, eperm)
                && call(libc::SYS_kcmp, 0, 0, 0) == (-1, eperm)
                && call(libc::SYS_unshare, CLONE_NEWUSER as i64, 0, 0) == (-1, eperm)
                && call(
                    libc::SYS_clone,
                    (CLONE_NEWUSER | libc::SIGCHLD as u64) as i64,
                    0,
                    0,
                ) == (-1, eperm)
                && call(libc::SYS_clone3, 0, 0, 0) == (-1, enosys)
                && call(libc::SYS_fsopen, 0, 0, 0) == (-1, enosys)
                && call(libc::SYS_open_tree, 0, 0, 0) == (-1, enosys)
                && call(libc::SYS_mount_setattr, 0, 0, 0) == (-1, enosys)
                && call(libc::SYS_keyctl, 0, 0, 0) == (-1, enosys)
                && call(libc::SYS_name_to_handle_at, 0, 0, 0) == (-1, enosys)
                && call(libc::SYS_open_by_handle_at, 0, 0, 0) == (-1, eperm)
                && call(libc::SYS_personality, 0x0040000, 0, 0) == (-1, eperm)
                && call(libc::SYS_personality, 0xffff_ffff, 0, 0).0 >= 0
                && call(libc::SYS_socket, 40, libc::SOCK_STREAM as i64, 0) == (-1, eperm)
                && call(libc::SYS_socket, 38, libc::SOCK_SEQPACKET as i64, 0) == (-1, eperm)
                && call((X32_SYSCALL_BIT as i64) | libc::SYS_getpid, 0, 0, 0) == (-1, enosys)
                && call(libc::SYS_getpid, 0, 0, 0).0 > 0
                && call(libc::SYS_unshare, 0, 0, 0).0 == 0
        }));
    }

    #[test]
    fn a_nesting_container_may_make_user_namespaces() {
        assert!(in_confined_child(Profile { nesting: true }, || {
            call(libc::SYS_clone3, 0, 0, 0).1 != Some(libc::ENOSYS)
                && call(libc::SYS_unshare, CLONE_NEWUSER as i64, 0, 0).1 != Some(libc::EPERM)
                && call(libc::SYS_io_uring_setup, 8, 0, 0) == (-1, Some(libc::EPERM))
        }));
    }
}
