//! Terminals: allocated from the container's own devpts instance (so `/dev/pts/N` exists
//! inside), and the gateway-side asynchronous wrapper of the master.

use super::error::NativeError;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Opens a new PTY pair from the devpts instance at `/dev/pts` of the calling process's
/// root (called inside the container, so `/dev/pts/N` exists there and belongs to it).
/// Returns (master, slave).
pub fn allocate() -> Result<(OwnedFd, OwnedFd), NativeError> {
    allocate_from(std::path::Path::new("/dev/pts/ptmx"))
}

/// Opens a new PTY pair from the devpts instance whose `ptmx` is at `path`.
/// Returns (master, slave).
pub fn allocate_from(path: &std::path::Path) -> Result<(OwnedFd, OwnedFd), NativeError> {
    let master = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(NativeError::step("cannot open the container's ptmx"))?;
    let master = OwnedFd::from(master);
    // SAFETY: ioctls on the master we just opened; TIOCGPTPEER returns a new descriptor.
    unsafe {
        let unlock: libc::c_int = 0;
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) < 0 {
            return Err(format!("unlockpt: {}", io::Error::last_os_error()).into());
        }
        let slave = libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if slave < 0 {
            return Err(format!("TIOCGPTPEER: {}", io::Error::last_os_error()).into());
        }
        Ok((master, OwnedFd::from_raw_fd(slave)))
    }
}

use std::os::unix::fs::OpenOptionsExt;

/// Sets a terminal's window size.
pub fn set_size(
    fd: RawFd,
    cols: u16,
    rows: u16,
    px_width: u16,
    px_height: u16,
) -> Result<(), NativeError> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: px_width,
        ws_ypixel: px_height,
    };
    // SAFETY: TIOCSWINSZ with a valid winsize.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(format!("TIOCSWINSZ: {}", io::Error::last_os_error()).into());
    }
    Ok(())
}

/// The master side of a PTY as an async byte stream. Reading returns end-of-file once
/// every process holding the slave side is gone (the kernel's EIO).
pub struct PtyMaster {
    fd: AsyncFd<OwnedFd>,
}

impl PtyMaster {
    /// Wraps a master descriptor (made non-blocking here).
    pub fn new(fd: OwnedFd) -> io::Result<Self> {
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: we own `fd` and nothing else registers it with the reactor.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|e| io::Error::other(e.to_string()))?;
        Ok(PtyMaster { fd })
    }
}

impl AsyncRead for PtyMaster {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = match self.fd.poll_read_ready(cx) {
                Poll::Ready(Ok(g)) => g,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            let unfilled = buf.initialize_unfilled();
            // SAFETY: reading into an initialised buffer we hold.
            let n = unsafe {
                libc::read(
                    guard.get_inner().as_raw_fd(),
                    unfilled.as_mut_ptr().cast(),
                    unfilled.len(),
                )
            };
            if n >= 0 {
                buf.advance(n as usize);
                return Poll::Ready(Ok(()));
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EAGAIN) => guard.clear_ready(),
                Some(libc::EIO) => return Poll::Ready(Ok(())),
                Some(libc::EINTR) => {}
                _ => return Poll::Ready(Err(err)),
            }
        }
    }
}

impl AsyncWrite for PtyMaster {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = match self.fd.poll_write_ready(cx) {
                Poll::Ready(Ok(g)) => g,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            // SAFETY: writing from a slice we hold.
            let n = unsafe {
                libc::write(
                    guard.get_inner().as_raw_fd(),
                    data.as_ptr().cast(),
                    data.len(),
                )
            };
            if n >= 0 {
                return Poll::Ready(Ok(n as usize));
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EAGAIN) => guard.clear_ready(),
                Some(libc::EINTR) => {}
                _ => return Poll::Ready(Err(err)),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
