//! The built-in minimal init: PID 1 of a container whose image has no init that works
//! in a container. It reaps orphans and, on SIGTERM/SIGPWR/SIGRTMIN+3, terminates every
//! process in the container, waits a little, kills what is left and exits.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How long processes get to exit after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// Runs the init loop; never returns.
pub fn run() -> ! {
    let all = SigSet::all();
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), None);
    loop {
        match wait_signal(None) {
            Some(libc::SIGCHLD) => {
                reap();
            }
            Some(s) if is_shutdown(s) => shutdown(),
            _ => {}
        }
    }
}

fn is_shutdown(sig: i32) -> bool {
    sig == libc::SIGTERM
        || sig == libc::SIGINT
        || sig == libc::SIGPWR
        || sig == libc::SIGRTMIN() + 3
}

/// Waits for any signal, with an optional timeout; returns its number.
fn wait_signal(timeout: Option<Duration>) -> Option<i32> {
    let all = SigSet::all();
    // SAFETY: sigtimedwait/sigwaitinfo with a valid set and out-pointers we own.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = match timeout {
            Some(t) => {
                let ts = libc::timespec {
                    tv_sec: t.as_secs() as libc::time_t,
                    tv_nsec: t.subsec_nanos() as libc::c_long,
                };
                libc::sigtimedwait(all.as_ref(), &mut info, &ts)
            }
            None => libc::sigwaitinfo(all.as_ref(), &mut info),
        };
        (r > 0).then_some(r)
    }
}

/// Reaps every exited child; returns false when no children are left.
fn reap() -> bool {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return true,
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
}

fn shutdown() -> ! {
    let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline {
        if !reap() && no_other_processes() {
            std::process::exit(0);
        }
        let _ = wait_signal(Some(Duration::from_millis(100)));
    }
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    reap();
    std::process::exit(0);
}

/// True when PID 1 is alone in the container (sessions are not its children).
fn no_other_processes() -> bool {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                })
                .all(|e| e.file_name() == "1")
        })
        .unwrap_or(true)
}
