//! A container's console, as a VM has one: a terminal from the container's own devpts,
//! bound over its `/dev/console` before its init runs, so the init's standard streams,
//! its boot messages and a getty (systemd starts `console-getty.service` in a container)
//! are there. The supervisor holds the master: it reads it all the time (an init writing
//! to a console nobody reads would block), keeps the latest output in a bounded history,
//! and relays it to the viewers attached (`gatehouse container console`); what they type
//! goes to the console. Each viewer has a bounded backlog: one that does not read is let
//! go rather than slowing the console or growing the supervisor.

use super::error::NativeError;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::mount::MsFlags;
use nix::poll::PollFlags;

use super::syscall::Syscall;

/// The console output kept for viewers who attach later.
pub const HISTORY: usize = 64 * 1024;
/// Output queued towards one viewer before it is let go.
const BACKLOG: usize = 256 * 1024;
/// Input queued towards the console before more is dropped.
const INPUT: usize = 64 * 1024;
/// The most viewers attached at once.
pub const MAX_VIEWERS: usize = 8;
/// How long the master is left alone after it reported a hang-up (nobody has the
/// console open, as between a getty's `vhangup` and its reopening): it would report it
/// again at once, for ever.
const QUIET: Duration = Duration::from_millis(200);

/// A descriptor to poll, with what to poll it for.
pub type Polled<'a> = (BorrowedFd<'a>, PollFlags);

/// The console of one running container.
pub struct Console {
    master: std::fs::File,
    /// The supervisor's own hold on the console, so that it stays open while the
    /// container's processes close and reopen it.
    _slave: OwnedFd,
    history: VecDeque<u8>,
    input: Vec<u8>,
    quiet_until: Option<Instant>,
    viewers: Vec<Viewer>,
}

struct Viewer {
    stream: UnixStream,
    backlog: VecDeque<u8>,
    gone: bool,
}

/// Allocates the console from the devpts at `root/dev/pts` and binds it over
/// `root/dev/console`, owned by the container's root (`id_base`) and its `tty` group.
/// Called by the supervisor before the container's init goes on, in the mount namespace
/// the init's is copied from (so the bind is locked there), on a `/dev` it mounted
/// itself and no process of the container has run in yet.
pub fn open(sys: &dyn Syscall, root: &Path, id_base: u32) -> Result<Console, NativeError> {
    let (master, slave) = super::pty::allocate_from(&root.join("dev/pts/ptmx"))?;
    nix::unistd::fchown(
        slave.as_raw_fd(),
        Some(nix::unistd::Uid::from_raw(id_base)),
        Some(nix::unistd::Gid::from_raw(id_base + 5)),
    )
    .map_err(NativeError::sys("cannot give the console to the container"))?;
    nix::sys::stat::fchmod(
        slave.as_raw_fd(),
        nix::sys::stat::Mode::from_bits_truncate(0o620),
    )
    .map_err(NativeError::sys("cannot set the console's mode"))?;
    let target = root.join("dev/console");
    sys.touch(&target)
        .map_err(NativeError::io("create", &target))?;
    let source = format!("/proc/self/fd/{}", slave.as_raw_fd());
    sys.mount(
        Some(Path::new(&source)),
        &target,
        None,
        MsFlags::MS_BIND,
        None,
    )
    .map_err(NativeError::sys_at("bind the console on", &target))?;
    Console::new(master, slave)
}

impl Console {
    /// A console over a terminal pair (non-blocking from here on).
    pub fn new(master: OwnedFd, slave: OwnedFd) -> Result<Console, NativeError> {
        let flags = nix::fcntl::fcntl(master.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)
            .map_err(NativeError::sys("console flags"))?;
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(master.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags))
            .map_err(NativeError::sys("console flags"))?;
        Ok(Console {
            master: std::fs::File::from(master),
            _slave: slave,
            history: VecDeque::new(),
            input: Vec::new(),
            quiet_until: None,
            viewers: Vec::new(),
        })
    }

    /// Whether another viewer may attach.
    pub fn has_room(&self) -> bool {
        self.viewers.len() < MAX_VIEWERS
    }

    /// A descriptor of the master for the viewer's window size, which it sets.
    pub fn master_for_resize(&self) -> std::io::Result<OwnedFd> {
        self.master.as_fd().try_clone_to_owned()
    }

    /// Attaches a viewer (the console's history first), sized `cols`×`rows`.
    pub fn attach(&mut self, stream: UnixStream, cols: u16, rows: u16) {
        if cols > 0 && rows > 0 {
            let _ = super::pty::set_size(self.master.as_raw_fd(), cols, rows, 0, 0);
        }
        let _ = stream.set_nonblocking(true);
        let mut viewer = Viewer {
            stream,
            backlog: self.history.clone(),
            gone: false,
        };
        viewer.flush();
        self.viewers.push(viewer);
    }

    /// When the master is to be polled again after a hang-up.
    pub fn deadline(&self) -> Option<Instant> {
        self.quiet_until
    }

    /// What to poll: the master (unless it is being left alone), then each viewer.
    pub fn interest(&self, now: Instant) -> (Option<Polled<'_>>, Vec<Polled<'_>>) {
        let master = match self.quiet_until {
            Some(t) if now < t => None,
            _ => {
                let mut flags = PollFlags::POLLIN;
                if !self.input.is_empty() {
                    flags |= PollFlags::POLLOUT;
                }
                Some((self.master.as_fd(), flags))
            }
        };
        let viewers = self
            .viewers
            .iter()
            .map(|v| {
                let mut flags = PollFlags::POLLIN;
                if !v.backlog.is_empty() {
                    flags |= PollFlags::POLLOUT;
                }
                (v.stream.as_fd(), flags)
            })
            .collect();
        (master, viewers)
    }

    /// Acts on what poll reported for the parts [`Console::interest`] named, in its order.
    pub fn on_events(&mut self, master: Option<PollFlags>, viewers: &[PollFlags]) {
        for (v, ev) in self.viewers.iter_mut().zip(viewers) {
            if ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                v.read_into(&mut self.input);
            }
            if ev.contains(PollFlags::POLLOUT) {
                v.flush();
            }
        }
        if let Some(ev) = master {
            if !ev.is_empty() {
                self.read_master();
            }
        }
        self.write_input();
        self.viewers.retain(|v| !v.gone);
    }

    /// Reads what the console wrote, into the history and every viewer's backlog.
    fn read_master(&mut self) {
        let mut buf = [0u8; 16 * 1024];
        for _ in 0..16 {
            match self.master.read(&mut buf) {
                Ok(0) => return self.hung_up(),
                Ok(n) => self.output(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // EIO: nobody has the console open just now.
                Err(_) => return self.hung_up(),
            }
        }
    }

    fn hung_up(&mut self) {
        self.quiet_until = Some(Instant::now() + QUIET);
    }

    /// Console output: kept, and passed on.
    fn output(&mut self, chunk: &[u8]) {
        self.quiet_until = None;
        self.history.extend(chunk);
        let excess = self.history.len().saturating_sub(HISTORY);
        self.history.drain(..excess);
        for v in &mut self.viewers {
            v.backlog.extend(chunk);
            v.flush();
            if v.backlog.len() > BACKLOG {
                v.gone = true;
            }
        }
    }

    /// Writes what viewers typed to the console, as far as it takes it now.
    fn write_input(&mut self) {
        while !self.input.is_empty() {
            match self.master.write(&self.input) {
                Ok(0) => break,
                Ok(n) => {
                    self.input.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }
}

impl Viewer {
    /// Reads what the viewer typed; marks it gone when it left.
    fn read_into(&mut self, input: &mut Vec<u8>) {
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.gone = true;
                    return;
                }
                Ok(n) => {
                    let room = INPUT.saturating_sub(input.len());
                    input.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.gone = true;
                    return;
                }
            }
        }
    }

    /// Sends as much of the backlog as the viewer takes now.
    fn flush(&mut self) {
        while !self.backlog.is_empty() && !self.gone {
            let (front, _) = self.backlog.as_slices();
            match self.stream.write(front) {
                Ok(0) => self.gone = true,
                Ok(n) => {
                    self.backlog.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => self.gone = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A console over a pair from the host's devpts, and the slave side to play init.
    fn console() -> (Console, std::fs::File) {
        let (master, slave) = super::super::pty::allocate_from(Path::new("/dev/ptmx")).unwrap();
        let init = std::fs::File::from(slave.try_clone().unwrap());
        // Raw, so that what is written arrives as written.
        let mut t = nix::sys::termios::tcgetattr(&init).unwrap();
        nix::sys::termios::cfmakeraw(&mut t);
        nix::sys::termios::tcsetattr(&init, nix::sys::termios::SetArg::TCSANOW, &t).unwrap();
        (Console::new(master, slave).unwrap(), init)
    }

    /// Polls and handles events until `done` or a second passes.
    fn pump(c: &mut Console, mut done: impl FnMut(&mut Console) -> bool) {
        let end = Instant::now() + Duration::from_millis(300);
        while !done(c) && Instant::now() < end {
            let (m, vs) = c.interest(Instant::now());
            let mut fds: Vec<_> = m
                .iter()
                .chain(vs.iter())
                .map(|(fd, f)| nix::poll::PollFd::new(*fd, *f))
                .collect();
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(20u16));
            let mut ev: Vec<PollFlags> = fds
                .iter()
                .map(|f| f.revents().unwrap_or(PollFlags::empty()))
                .collect();
            let master = m.map(|_| ev.remove(0));
            drop(fds);
            c.on_events(master, &ev);
        }
    }

    fn read_all(s: &mut UnixStream) -> Vec<u8> {
        let _ = s.set_nonblocking(true);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    #[test]
    fn a_viewer_gets_the_history_then_what_follows_and_types_into_the_console() {
        let (mut c, mut init) = console();
        init.write_all(b"Welcome to Debian\n").unwrap();
        pump(&mut c, |c| !c.history.is_empty());
        let (mine, mut theirs) = UnixStream::pair().unwrap();
        c.attach(mine, 100, 30);
        init.write_all(b"web01 login: ").unwrap();
        pump(&mut c, |c| c.history.len() >= 31);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(read_all(&mut theirs), b"Welcome to Debian\nweb01 login: ");
        theirs.write_all(b"root\n").unwrap();
        // Until the console has had it (the init side is not polled here).
        pump(&mut c, |_| false);
        let mut typed = [0u8; 5];
        init.read_exact(&mut typed).unwrap();
        assert_eq!(&typed, b"root\n");
        // The size the viewer gave.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        assert_eq!(
            unsafe { libc::ioctl(init.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) },
            0
        );
        assert_eq!((ws.ws_col, ws.ws_row), (100, 30));
    }

    #[test]
    fn history_is_bounded_and_a_viewer_that_does_not_read_is_let_go() {
        let (mut c, mut init) = console();
        let (mine, _theirs) = UnixStream::pair().unwrap();
        c.attach(mine, 0, 0);
        let writer = std::thread::spawn(move || {
            let chunk = [b'x'; 4096];
            for _ in 0..200 {
                if init.write_all(&chunk).is_err() {
                    break;
                }
            }
            init
        });
        pump(&mut c, |c| c.viewers.is_empty());
        assert!(
            c.viewers.is_empty(),
            "a viewer that never reads must be let go"
        );
        pump(&mut c, |c| c.history.len() == HISTORY);
        while !writer.is_finished() {
            pump(&mut c, |_| false);
        }
        let _init = writer.join().unwrap();
        assert!(c.history.len() <= HISTORY);
    }

    #[test]
    fn a_console_nobody_holds_is_left_alone_for_a_while() {
        let (master, slave) = super::super::pty::allocate_from(Path::new("/dev/ptmx")).unwrap();
        // No process holds the slave but the console itself: drop it to see the hang-up.
        let (_m2, s2) = super::super::pty::allocate_from(Path::new("/dev/ptmx")).unwrap();
        let mut c = Console::new(master, s2).unwrap();
        drop(slave);
        c.read_master();
        assert!(c.deadline().is_some());
        assert!(c.interest(Instant::now()).0.is_none());
    }
}
