//! The listening socket of a forwarded SSH agent inside a (local) LXD instance. The
//! gateway reaches the instance's filesystem through its init's root
//! (`/proc/PID/root`), makes a private directory in its `/tmp` and binds the socket
//! there, owned by the login — mapped through the instance's uid map to the host ids
//! LXD gave it — so only that login can use it.

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
///
/// Everything the instance controls is resolved inside its root: `tmp` with
/// `RESOLVE_IN_ROOT` (a symlinked `/tmp` cannot lead to the host's files), the new
/// directory by descriptor, and the socket is made and protected while the directory
/// still belongs to the host's root, before it is handed to the login.
pub fn listen(pid: i64, uid: u32, gid: u32) -> Result<(std::os::unix::net::UnixListener, String)> {
    use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
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
    let fail = |what: &str, e: rustix::io::Errno| {
        RuntimeError::Engine(format!("agent socket in the instance: {what}: {e}"))
    };
    let root = std::fs::File::open(format!("{proc}/root"))
        .map_err(|e| RuntimeError::Engine(format!("cannot open {proc}/root: {e}")))?;
    let dir_flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let tmp = rustix::fs::openat2(
        &root,
        "tmp",
        dir_flags,
        Mode::empty(),
        ResolveFlags::IN_ROOT,
    )
    .map_err(|e| fail("/tmp", e))?;
    let name = format!("gatehouse-agent-{}", crate::names::random_tag()?);
    rustix::fs::mkdirat(&tmp, name.as_str(), Mode::from_raw_mode(0o700))
        .map_err(|e| fail("mkdir", e))?;
    let dir = open_own_dir(&tmp, &name)?;
    let inside = format!("/tmp/{name}/agent.sock");
    let made = (|| {
        use std::os::fd::AsRawFd;
        let sock = format!("/proc/self/fd/{}/agent.sock", dir.as_raw_fd());
        let io =
            |what: &'static str, e: std::io::Error| RuntimeError::io(what, Path::new(&inside), e);
        let listener =
            std::os::unix::net::UnixListener::bind(&sock).map_err(|e| io("cannot bind", e))?;
        // By descriptor, in a directory only the host's root may change (checked above).
        rustix::fs::chmodat(
            &dir,
            "agent.sock",
            Mode::from_raw_mode(0o600),
            AtFlags::empty(),
        )
        .map_err(|e| fail("protect the socket", e))?;
        let owner = (
            Some(rustix::fs::Uid::from_raw(host_uid)),
            Some(rustix::fs::Gid::from_raw(host_gid)),
        );
        rustix::fs::chownat(
            &dir,
            "agent.sock",
            owner.0,
            owner.1,
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| fail("chown the socket", e))?;
        rustix::fs::chownat(&dir, "", owner.0, owner.1, AtFlags::EMPTY_PATH)
            .map_err(|e| fail("chown the directory", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| io("cannot configure", e))?;
        Ok(listener)
    })();
    match made {
        Ok(l) => Ok((l, inside)),
        Err(e) => {
            let _ = rustix::fs::unlinkat(&dir, "agent.sock", AtFlags::empty());
            let _ = rustix::fs::unlinkat(&tmp, name.as_str(), AtFlags::REMOVEDIR);
            Err(e)
        }
    }
}

/// Opens the directory just made as `name` in the instance's `tmp` and checks that it is
/// still ours: container root owns `/tmp` and can swap the name for a directory of its own
/// (holding a symlink where the socket goes) between the mkdir and this open. Ours is
/// owned by the host's root, whom the instance does not map, and 0700, so once this
/// check passes nothing in the instance can change what is inside.
fn open_own_dir(tmp: &impl std::os::fd::AsFd, name: &str) -> Result<std::os::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let dir = rustix::fs::openat(
        tmp,
        name,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )
    .map_err(|e| RuntimeError::Engine(format!("agent socket in the instance: open {name}: {e}")))?;
    let st = rustix::fs::fstat(&dir)
        .map_err(|e| RuntimeError::Engine(format!("agent socket in the instance: stat: {e}")))?;
    let ours = st.st_uid == rustix::process::geteuid().as_raw()
        && st.st_mode & 0o7777 == 0o700
        && rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory;
    if !ours {
        return Err(RuntimeError::Engine(format!(
            "agent socket in the instance: /tmp/{name} was replaced by the instance (owner {}, mode {:o}); not using it",
            st.st_uid,
            st.st_mode & 0o7777
        )));
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_swapped_in_by_the_instance_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let fd = std::fs::File::open(tmp.path()).unwrap();
        let ours = tmp.path().join("ours");
        std::fs::create_dir(&ours).unwrap();
        std::fs::set_permissions(&ours, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(open_own_dir(&fd, "ours").is_ok());
        // Container root's swap: a directory of its own, with a symlink where the socket
        // would go (a chmod through it would reach the host's files).
        let swapped = tmp.path().join("swapped");
        std::fs::create_dir(&swapped).unwrap();
        std::fs::set_permissions(&swapped, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink("/etc/shadow", swapped.join("agent.sock")).unwrap();
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(&swapped, Some(1_000_000), Some(1_000_000)).unwrap();
            let e = open_own_dir(&fd, "swapped").unwrap_err().to_string();
            assert!(e.contains("was replaced by the instance"), "{e}");
        }
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(open_own_dir(&fd, "open").is_err());
        std::os::unix::fs::symlink(&ours, tmp.path().join("link")).unwrap();
        assert!(open_own_dir(&fd, "link").is_err());
    }

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
