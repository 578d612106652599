//! Network set-up inside a container's own network namespace.

use super::error::NativeError;

/// Brings the loopback interface up in the current network namespace.
pub fn loopback_up() -> Result<(), NativeError> {
    // SAFETY: plain socket and ioctl calls on a zeroed ifreq we own.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()).into());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let result = if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) < 0 {
            Err(format!("SIOCGIFFLAGS lo: {}", std::io::Error::last_os_error()).into())
        } else {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) < 0 {
                Err(format!("SIOCSIFFLAGS lo: {}", std::io::Error::last_os_error()).into())
            } else {
                Ok(())
            }
        };
        libc::close(fd);
        result
    }
}
