//! Confinement applied to every process a container starts from outside (its init and
//! each session): a trimmed capability bounding set and a seccomp denylist in the
//! spirit of LXC/Incus. `no_new_privs` is deliberately not set, so sudo and other
//! setuid programs inside keep working; the filter is installed with the container
//! root's CAP_SYS_ADMIN instead.

use std::collections::BTreeMap;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

/// Syscalls refused with EPERM: kernel modules, kexec, handle-based opens that escape
/// mounts, the non-namespaced keyring, clock and swap changes, raw I/O ports, BPF and
/// perf, userfaultfd, process accounting, quotas.
const DENIED: &[&str] = &[
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "open_by_handle_at",
    "name_to_handle_at",
    "keyctl",
    "add_key",
    "request_key",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "swapon",
    "swapoff",
    "iopl",
    "ioperm",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "acct",
    "quotactl",
    "lookup_dcookie",
    "syslog",
];

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
        "clock_adjtime" => libc::SYS_clock_adjtime,
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
        "lookup_dcookie" => libc::SYS_lookup_dcookie,
        "syslog" => libc::SYS_syslog,
        _ => return None,
    };
    Some(n)
}

/// The compiled denylist for this machine's architecture.
pub fn filter() -> Result<BpfProgram, String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| format!("seccomp: {e}"))?;
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> = DENIED
        .iter()
        .filter_map(|n| syscall_number(n))
        .map(|n| (n, vec![]))
        .collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| format!("seccomp: {e}"))?;
    BpfProgram::try_from(filter).map_err(|e| format!("seccomp: {e}"))
}

/// Trims the bounding set and installs the filter on the calling process (inherited by
/// everything it forks or execs). Needs CAP_SETPCAP and CAP_SYS_ADMIN in its user namespace.
pub fn apply(program: &BpfProgram) -> Result<(), String> {
    for cap in DROPPED_CAPS {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, *cap, 0, 0, 0) } != 0 {
            return Err(format!(
                "cannot drop capability {cap}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
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
        ));
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
            if *name == "iopl" || *name == "ioperm" {
                continue;
            }
            assert!(syscall_number(name).is_some(), "{name}");
        }
        let prog = filter().unwrap();
        assert!(prog.len() > DENIED.len());
        assert_eq!(
            std::mem::size_of::<seccompiler::sock_filter>(),
            std::mem::size_of::<libc::sock_filter>()
        );
    }

    #[test]
    fn the_filter_refuses_and_allows_in_a_child() {
        // Installing needs no_new_privs or CAP_SYS_ADMIN; a forked child keeps the test
        // process clean.
        let prog = filter().unwrap();
        // SAFETY: the child only makes raw syscalls and exits.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let ok = apply(&prog).is_ok()
                    // SAFETY: raw syscalls with harmless arguments.
                    && unsafe { libc::syscall(libc::SYS_delete_module, c"none".as_ptr(), 0) } == -1
                    && std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
                    && unsafe { libc::syscall(libc::SYS_getpid) } > 0;
                unsafe { libc::_exit(if ok { 0 } else { 1 }) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }
}
