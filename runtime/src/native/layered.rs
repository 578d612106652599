//! Reading a container's file from the host without entering it or starting anything in
//! it (the fleet inventory reads `/var/lib/dpkg/status` and `/etc/os-release` so): the
//! path is looked up through the container's layers as overlayfs would (its own layer
//! first, whiteouts and opaque directories hiding the image below, then the image).
//!
//! The container's root writes its layer, so nothing there is followed: each step opens
//! one name beneath a directory descriptor with `openat2` (no symlinks, no magic links,
//! no mount crossing), and a symbolic link met on the way is read as text and resolved
//! by this module inside the container's root (`..` stops at it), then looked up again
//! from the top, a few times at most. Only regular files are read, up to a size; a
//! FIFO, device or socket where the file should be is an error, not a hang.

use super::error::NativeError;
use crate::guest_path;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};

/// Links followed in one lookup before giving up (the kernel allows 40; real paths use 1).
const MAX_LINKS: usize = 8;
/// The overlay xattr marking a directory of the upper layer opaque.
const OPAQUE: &str = "trusted.overlay.opaque";

/// What a lookup found.
enum Found {
    /// The file, open.
    File(OwnedFd),
    /// Nothing there (or hidden by a whiteout).
    Absent,
    /// A symbolic link at component `at` (0-based) with this target.
    Link(usize, String),
    /// A directory: the container's and the image's (either may be absent).
    Dir(Option<OwnedFd>, Option<OwnedFd>),
}

/// What is at one name in one layer.
enum Entry {
    Dir,
    File,
    Link(String),
    Whiteout,
    Other,
}

/// Reads `path` (absolute, inside the container) through the layers `upper` (the
/// container's own) over `lower` (its image): `None` when it is not there. At most
/// `max` bytes; a larger file is an error.
pub fn read(
    upper: &Path,
    lower: &Path,
    path: &str,
    max: u64,
) -> Result<Option<Vec<u8>>, NativeError> {
    let mut parts = guest_path::components(path).map_err(NativeError::Failed)?;
    for _ in 0..=MAX_LINKS {
        match lookup(upper, lower, &parts)? {
            Found::Absent => return Ok(None),
            Found::File(fd) => return read_fd(fd, path, max).map(Some),
            Found::Dir(..) => return Err(format!("{path} is a directory").into()),
            Found::Link(at, target) => {
                parts = guest_path::follow(&parts[..=at], &target, &parts[at + 1..]);
            }
        }
    }
    Err(format!("{path}: too many symbolic links in the container").into())
}

/// Looks `parts` up through both layers.
fn lookup(upper: &Path, lower: &Path, parts: &[String]) -> Result<Found, NativeError> {
    let mut up = open_root(upper)?;
    let mut low = open_root(lower)?;
    for (i, name) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let here = |e: NativeError| NativeError::Failed(format!("/{}: {e}", parts[..=i].join("/")));
        let mut opaque = false;
        match up
            .as_ref()
            .map(|d| entry(d, name))
            .transpose()
            .map_err(here)?
            .flatten()
        {
            Some(Entry::Whiteout) => return Ok(Found::Absent),
            Some(Entry::Link(t)) => return Ok(Found::Link(i, t)),
            Some(Entry::File) if last => return open_file(up.as_ref(), name).map(Found::File),
            Some(Entry::File) => return Ok(Found::Absent),
            Some(Entry::Other) => return Err(here("not a regular file".into())),
            Some(Entry::Dir) => {
                let dir = up
                    .as_ref()
                    .map(|d| open_dir(d, name))
                    .transpose()
                    .map_err(here)?;
                opaque = dir.as_ref().is_some_and(is_opaque);
                up = dir;
                // The image's directory below shows through unless this one is opaque.
                if opaque {
                    low = None;
                }
            }
            None => up = None,
        }
        if opaque {
            continue;
        }
        let upper_dir = up.is_some();
        match low
            .as_ref()
            .map(|d| entry(d, name))
            .transpose()
            .map_err(here)?
            .flatten()
        {
            // Directories of both layers merge.
            Some(Entry::Dir) => {
                low = low
                    .as_ref()
                    .map(|d| open_dir(d, name))
                    .transpose()
                    .map_err(here)?;
            }
            // The container's own directory hides whatever else the image has here.
            _ if upper_dir => low = None,
            Some(Entry::Link(t)) => return Ok(Found::Link(i, t)),
            Some(Entry::File) if last => return open_file(low.as_ref(), name).map(Found::File),
            Some(Entry::Other) if last => return Err(here("not a regular file".into())),
            _ => return Ok(Found::Absent),
        }
    }
    Ok(Found::Dir(up, low))
}

/// The names in the directory at `path` (absolute, inside the container) through the
/// layers, as overlayfs shows them: the container's own entries, and the image's that
/// no whiteout hides (none under an opaque directory). `None` when it is not there; at
/// most `max` names.
pub fn list(
    upper: &Path,
    lower: &Path,
    path: &str,
    max: usize,
) -> Result<Option<Vec<String>>, NativeError> {
    let mut parts = guest_path::components(path).map_err(NativeError::Failed)?;
    for _ in 0..=MAX_LINKS {
        match lookup(upper, lower, &parts)? {
            Found::Absent => return Ok(None),
            Found::File(_) => return Err(format!("{path} is not a directory").into()),
            Found::Dir(up, low) => return merged_names(up, low, path, max).map(Some),
            Found::Link(at, target) => {
                parts = guest_path::follow(&parts[..=at], &target, &parts[at + 1..]);
            }
        }
    }
    Err(format!("{path}: too many symbolic links in the container").into())
}

/// The names of a directory of both layers, whiteouts applied.
fn merged_names(
    up: Option<OwnedFd>,
    low: Option<OwnedFd>,
    path: &str,
    max: usize,
) -> Result<Vec<String>, NativeError> {
    let mut shown = std::collections::BTreeSet::new();
    let mut hidden = std::collections::BTreeSet::new();
    for (dir, upper) in [(up, true), (low, false)] {
        let Some(dir) = dir else { continue };
        for name in names(&dir, path)? {
            if hidden.contains(&name) {
                continue;
            }
            if upper && matches!(entry(&dir, &name)?, Some(Entry::Whiteout)) {
                hidden.insert(name);
                continue;
            }
            shown.insert(name);
            if shown.len() > max {
                return Err(format!("{path} in the container holds more than {max} names").into());
            }
        }
    }
    Ok(shown.into_iter().collect())
}

/// What the container's own layer (`upper`) holds of dpkg's database
/// (`/var/lib/dpkg`): the names there besides dpkg's lock files, or the path itself
/// when the container replaced a directory on the way with something else. Empty when
/// the container left the image's database alone.
pub fn own_package_changes(upper: &Path) -> Result<Vec<String>, NativeError> {
    let Some(root) = open_root(upper)? else {
        return Ok(vec![]);
    };
    let mut dir = root;
    for name in ["var", "lib", "dpkg"] {
        match entry(&dir, name)? {
            None => return Ok(vec![]),
            Some(Entry::Dir) => dir = open_dir(&dir, name)?,
            Some(_) => return Ok(vec![format!("/{name} replaced")]),
        }
    }
    let mut out: Vec<String> = names(&dir, "/var/lib/dpkg")?
        .into_iter()
        .filter(|n| !matches!(n.as_str(), "lock" | "lock-frontend" | "triggers"))
        .collect();
    if matches!(entry(&dir, "triggers")?, Some(Entry::Dir)) {
        let triggers = open_dir(&dir, "triggers")?;
        if names(&triggers, "/var/lib/dpkg/triggers")?
            .iter()
            .any(|n| n != "Lock")
        {
            out.push("triggers".into());
        }
    }
    out.sort();
    Ok(out)
}

/// The names in one layer's directory (not `.` and `..`).
fn names(dir: &OwnedFd, path: &str) -> Result<Vec<String>, NativeError> {
    let fd = open_beneath(dir, ".", OFlags::RDONLY | OFlags::DIRECTORY)
        .map_err(|e| NativeError::Failed(format!("{path}: cannot open: {e}")))?;
    let mut out = Vec::new();
    for e in rustix::fs::Dir::read_from(&fd).map_err(|e| NativeError::Failed(e.to_string()))? {
        let e = e.map_err(|e| NativeError::Failed(format!("{path}: {e}")))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name != "." && name != ".." {
            out.push(name);
        }
    }
    Ok(out)
}

/// A layer's top directory (`None` when the layer does not exist).
fn open_root(dir: &Path) -> Result<Option<OwnedFd>, NativeError> {
    match rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(NativeError::io("open", dir)(e.into())),
    }
}

/// One name beneath `dir`, never following anything.
fn open_beneath(dir: &OwnedFd, name: &str, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    let resolve = ResolveFlags::BENEATH
        | ResolveFlags::NO_SYMLINKS
        | ResolveFlags::NO_MAGICLINKS
        | ResolveFlags::NO_XDEV;
    rustix::fs::openat2(
        dir,
        name,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        resolve,
    )
}

/// What is at `name` in `dir`; `None` when nothing is.
fn entry(dir: &OwnedFd, name: &str) -> Result<Option<Entry>, NativeError> {
    let st = match rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(NativeError::Failed(e.to_string())),
    };
    Ok(Some(match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => Entry::Dir,
        FileType::RegularFile => Entry::File,
        FileType::Symlink => {
            let target = rustix::fs::readlinkat(dir, name, Vec::new())
                .map_err(|e| NativeError::Failed(e.to_string()))?;
            Entry::Link(target.to_string_lossy().into_owned())
        }
        // overlayfs marks a deleted name with a 0/0 character device.
        FileType::CharacterDevice if st.st_rdev == 0 => Entry::Whiteout,
        _ => Entry::Other,
    }))
}

fn open_dir(dir: &OwnedFd, name: &str) -> Result<OwnedFd, NativeError> {
    open_beneath(dir, name, OFlags::PATH | OFlags::DIRECTORY)
        .map_err(|e| NativeError::Failed(format!("cannot open the directory: {e}")))
}

fn open_file(dir: Option<&OwnedFd>, name: &str) -> Result<OwnedFd, NativeError> {
    let dir = dir.ok_or_else(|| NativeError::from("no layer"))?;
    open_beneath(
        dir,
        name,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
    )
    .map_err(|e| NativeError::Failed(format!("{name}: cannot open: {e}")))
}

/// Whether an upper directory hides the image's below it.
fn is_opaque(dir: &OwnedFd) -> bool {
    // An O_PATH descriptor takes no fgetxattr; /proc/self/fd/N reaches the same inode.
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(dir));
    let mut value = [0u8; 4];
    matches!(rustix::fs::getxattr(path.as_str(), OPAQUE, &mut value), Ok(1) if value[0] == b'y')
}

/// Reads an opened file: a regular one of at most `max` bytes.
fn read_fd(fd: OwnedFd, path: &str, max: u64) -> Result<Vec<u8>, NativeError> {
    let file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(NativeError::io("read", path))?;
    if !meta.is_file() {
        return Err(format!("{path} is not a regular file in the container").into());
    }
    if meta.len() > max {
        return Err(format!("{path} in the container is larger than {max} bytes").into());
    }
    let mut data = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut data)
        .map_err(NativeError::io("read", path))?;
    if data.len() as u64 > max {
        return Err(format!("{path} in the container grew past {max} bytes").into());
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// An image and a container layer over it, in a temporary directory.
    fn layers() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let (upper, lower) = (t.path().join("upper"), t.path().join("lower"));
        for d in ["etc", "var/lib/dpkg", "usr/lib"] {
            std::fs::create_dir_all(lower.join(d)).unwrap();
        }
        std::fs::write(lower.join("var/lib/dpkg/status"), "image").unwrap();
        std::fs::write(lower.join("usr/lib/os-release"), "ID=debian").unwrap();
        symlink("../usr/lib/os-release", lower.join("etc/os-release")).unwrap();
        std::fs::create_dir_all(&upper).unwrap();
        (t, upper, lower)
    }

    fn get(upper: &Path, lower: &Path, path: &str) -> Option<String> {
        read(upper, lower, path, 1 << 20)
            .unwrap()
            .map(|d| String::from_utf8(d).unwrap())
    }

    #[test]
    fn the_containers_layer_wins_else_the_images_shows() {
        let (_t, upper, lower) = layers();
        assert_eq!(
            get(&upper, &lower, "/var/lib/dpkg/status").as_deref(),
            Some("image")
        );
        // An image's link resolves inside the container, through both layers.
        assert_eq!(
            get(&upper, &lower, "/etc/os-release").as_deref(),
            Some("ID=debian")
        );
        std::fs::create_dir_all(upper.join("usr/lib")).unwrap();
        std::fs::write(upper.join("usr/lib/os-release"), "ID=changed").unwrap();
        assert_eq!(
            get(&upper, &lower, "/etc/os-release").as_deref(),
            Some("ID=changed")
        );
        std::fs::create_dir_all(upper.join("var/lib/dpkg")).unwrap();
        std::fs::write(upper.join("var/lib/dpkg/status"), "own").unwrap();
        assert_eq!(
            get(&upper, &lower, "/var/lib/dpkg/status").as_deref(),
            Some("own")
        );
        assert_eq!(get(&upper, &lower, "/nothing/here"), None);
        assert!(read(&upper, &lower, "relative", 10).is_err());
        assert!(read(&upper, &lower, "/var/lib/dpkg", 10).is_err());
        assert!(read(&upper, &lower, "/var/lib/dpkg/status", 2).is_err());
    }

    #[test]
    fn a_whiteout_hides_the_images_file() {
        let (_t, upper, lower) = layers();
        std::fs::create_dir_all(upper.join("var/lib/dpkg")).unwrap();
        nix::sys::stat::mknod(
            &upper.join("var/lib/dpkg/status"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0),
            0,
        )
        .unwrap();
        assert_eq!(get(&upper, &lower, "/var/lib/dpkg/status"), None);
    }

    #[test]
    fn links_planted_by_container_root_stay_inside_the_container() {
        let (t, upper, lower) = layers();
        let host = t.path().join("host-secret");
        std::fs::write(&host, "secret").unwrap();
        std::fs::create_dir_all(upper.join("var/lib")).unwrap();
        // An absolute link to a host path means that path inside the container.
        symlink(&host, upper.join("var/lib/dpkg")).unwrap();
        let got = read(&upper, &lower, "/var/lib/dpkg/status", 1 << 20).unwrap();
        assert_eq!(got, None);
        std::fs::remove_file(upper.join("var/lib/dpkg")).unwrap();
        // Climbing out with .. stops at the container's root.
        std::fs::create_dir_all(upper.join("var/lib/dpkg")).unwrap();
        let up = format!("../../../../../../../..{}", host.display());
        symlink(&up, upper.join("var/lib/dpkg/status")).unwrap();
        assert_eq!(get(&upper, &lower, "/var/lib/dpkg/status"), None);
        // A loop ends with an error.
        std::fs::remove_file(upper.join("var/lib/dpkg/status")).unwrap();
        symlink("status", upper.join("var/lib/dpkg/status")).unwrap();
        assert!(read(&upper, &lower, "/var/lib/dpkg/status", 10).is_err());
        // A FIFO is refused at once rather than read.
        std::fs::remove_file(upper.join("var/lib/dpkg/status")).unwrap();
        nix::unistd::mkfifo(
            &upper.join("var/lib/dpkg/status"),
            nix::sys::stat::Mode::S_IRWXU,
        )
        .unwrap();
        assert!(read(&upper, &lower, "/var/lib/dpkg/status", 10).is_err());
    }

    #[test]
    fn a_directory_lists_both_layers_without_what_was_deleted() {
        let (_t, upper, lower) = layers();
        std::fs::write(lower.join("etc/hosts"), "").unwrap();
        std::fs::write(lower.join("etc/gone"), "").unwrap();
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::write(upper.join("etc/own"), "").unwrap();
        let list = |p: &str| list(&upper, &lower, p, 100).unwrap();
        assert_eq!(
            list("/etc").unwrap(),
            ["gone", "hosts", "os-release", "own"]
        );
        // A whiteout (0/0 character device) hides the image's name.
        if nix::sys::stat::mknod(
            &upper.join("etc/gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .is_ok()
        {
            assert_eq!(list("/etc").unwrap(), ["hosts", "os-release", "own"]);
        }
        assert_eq!(list("/nothing"), None);
        assert!(super::list(&upper, &lower, "/etc/hosts", 100).is_err());
        assert!(super::list(&upper, &lower, "/etc", 2).is_err());
        // A link planted in the container's layer resolves inside it.
        symlink("/etc", upper.join("conf")).unwrap();
        assert_eq!(list("/conf").unwrap().len(), 3);
    }

    #[test]
    fn package_changes_are_what_dpkg_wrote_in_the_containers_layer() {
        let (t, upper, _lower) = layers();
        assert!(own_package_changes(&upper).unwrap().is_empty());
        std::fs::create_dir_all(upper.join("var/lib/dpkg/triggers")).unwrap();
        std::fs::write(upper.join("var/lib/dpkg/lock"), "").unwrap();
        std::fs::write(upper.join("var/lib/dpkg/triggers/Lock"), "").unwrap();
        assert!(own_package_changes(&upper).unwrap().is_empty());
        std::fs::write(upper.join("var/lib/dpkg/status"), "").unwrap();
        assert_eq!(own_package_changes(&upper).unwrap(), ["status"]);
        // A link planted on the way counts as a change, and is not followed.
        let other = tempfile::tempdir().unwrap();
        std::fs::remove_dir_all(upper.join("var")).unwrap();
        symlink(other.path(), upper.join("var")).unwrap();
        assert_eq!(own_package_changes(&upper).unwrap(), ["/var replaced"]);
        let _ = t;
    }

    #[test]
    fn an_opaque_directory_hides_the_images_contents() {
        let (_t, upper, lower) = layers();
        std::fs::create_dir_all(upper.join("var/lib/dpkg")).unwrap();
        let dir = upper.join("var/lib/dpkg");
        if rustix::fs::setxattr(&dir, OPAQUE, b"y", rustix::fs::XattrFlags::empty()).is_err() {
            eprintln!("no trusted xattrs here (not root?): skipped");
            return;
        }
        assert_eq!(get(&upper, &lower, "/var/lib/dpkg/status"), None);
        let _ = &lower;
    }
}
