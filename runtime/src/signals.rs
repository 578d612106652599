//! Signals as SSH names them (`TERM`, `INT`, …) and their Linux numbers, shared by the
//! runtimes.

/// SSH's signal names and their numbers.
const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("ABRT", libc::SIGABRT),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("SEGV", libc::SIGSEGV),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("BUS", libc::SIGBUS),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("WINCH", libc::SIGWINCH),
    ("SYS", libc::SIGSYS),
    ("TRAP", libc::SIGTRAP),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
];

/// The number of an SSH signal name (`TERM`, `INT`, …).
pub fn signal_number(name: &str) -> Option<i32> {
    SIGNALS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// The SSH name of a signal number, if SSH has one.
pub fn known_signal(number: i32) -> Option<&'static str> {
    SIGNALS.iter().find(|(_, v)| *v == number).map(|(n, _)| *n)
}

/// The SSH name of a signal number (`KILL` for one SSH has no name for).
pub fn signal_name(number: i32) -> &'static str {
    known_signal(number).unwrap_or("KILL")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_round_trip() {
        for (n, v) in SIGNALS {
            assert_eq!(signal_number(n), Some(*v));
            assert_eq!(signal_name(*v), *n);
        }
        assert_eq!(signal_number("NOPE"), None);
    }

    #[test]
    fn ssh_signal_names_map_to_linux_numbers() {
        assert_eq!(signal_number("HUP"), Some(1));
        assert_eq!(signal_number("KILL"), Some(9));
        assert_eq!(signal_number("TERM"), Some(15));
        assert_eq!(signal_number("NOPE"), None);
        assert_eq!(known_signal(9), Some("KILL"));
        assert_eq!(known_signal(0), None);
    }
}
