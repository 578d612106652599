//! The listening socket of a forwarded SSH agent inside a (local) LXD instance. The
//! gateway reaches the instance's filesystem through its init's root
//! (`/proc/PID/root`), makes a private directory in its `/tmp` and binds the socket
//! there, owned by the login — mapped through the instance's uid map to the host ids
//! LXD gave it — so only that login can use it.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use crate::error::{Result, RuntimeError};

/// The host id that id `inner` of the instance maps to, from a `uid_map`/`gid_map` text.
pub fn map_id(map: &str, inner: u32) -> Option<u32> {
    map.lines().find_map(|l| {
        let f: Vec<u64> = l
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        match f.as_slice() {
            [inside, outside, count]
                if u64::from(inner) >= *inside && u64::from(inner) < inside + count =>
            {
                u32::try_from(outside + (u64::from(inner) - inside)).ok()
            }
            _ => None,
        }
    })
}

/// Binds an agent socket for the instance whose init is host process `pid`, for the
/// login with ids `uid`/`gid` inside; returns it and its path inside the instance.
pub fn listen(pid: i64, uid: u32, gid: u32) -> Result<(std::os::unix::net::UnixListener, String)> {
    let proc = format!("/proc/{pid}");
    let read = |f: &str| {
        std::fs::read_to_string(format!("{proc}/{f}"))
            .map_err(|e| RuntimeError::Engine(format!("cannot read {proc}/{f}: {e}")))
    };
    let (uid_map, gid_map) = (read("uid_map")?, read("gid_map")?);
    let (host_uid, host_gid) = match (map_id(&uid_map, uid), map_id(&gid_map, gid)) {
        (Some(u), Some(g)) => (u, g),
        _ => {
            return Err(RuntimeError::Engine(format!(
                "uid {uid} is not mapped in the instance"
            )))
        }
    };
    let mut suffix = [0u8; 6];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom")
            .map_err(|e| RuntimeError::Engine(e.to_string()))?,
        &mut suffix,
    )
    .map_err(|e| RuntimeError::Engine(e.to_string()))?;
    let hex: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let inside_dir = format!("/tmp/gatehouse-agent-{hex}");
    let dir = format!("{proc}/root{inside_dir}");
    let io =
        |what: &'static str, p: &str, e: std::io::Error| RuntimeError::io(what, Path::new(p), e);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| io("cannot create", &dir, e))?;
    let sock = format!("{dir}/agent.sock");
    let made = (|| {
        std::os::unix::fs::chown(&dir, Some(host_uid), Some(host_gid))
            .map_err(|e| io("cannot give", &dir, e))?;
        let listener = std::os::unix::net::UnixListener::bind(&sock)
            .map_err(|e| io("cannot bind", &sock, e))?;
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io("cannot protect", &sock, e))?;
        std::os::unix::fs::chown(&sock, Some(host_uid), Some(host_gid))
            .map_err(|e| io("cannot give", &sock, e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| io("cannot configure", &sock, e))?;
        Ok(listener)
    })();
    match made {
        Ok(l) => Ok((l, format!("{inside_dir}/agent.sock"))),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_through_the_instances_map() {
        let map = "         0     100000 10000001\n";
        assert_eq!(map_id(map, 0), Some(100000));
        assert_eq!(map_id(map, 10001), Some(110001));
        assert_eq!(map_id(map, 10000001), None);
        let split = "0 100000 1000\n1000 1000 1\n1001 101001 64535\n";
        assert_eq!(map_id(split, 1000), Some(1000));
        assert_eq!(map_id(split, 1001), Some(101001));
        assert_eq!(map_id("garbage", 1), None);
    }
}
