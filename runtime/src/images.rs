//! Root filesystem images under `state_dir/images/<name>/rootfs`: built with
//! debootstrap, or imported from a tarball (plain, gzip or zstd; LXC/Incus image
//! tarballs with `metadata.yaml` and `rootfs/` too). Archives with absolute paths, `..`
//! or hard links leaving the root are refused before anything is written.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::error::{Result, RuntimeError};
use crate::names::validate_image_name;

/// Packages added to debootstrap's minimal base so the image is a usable machine: the
/// lean image (`image build --minimal`), which runs the built-in init.
pub const EXTRA_PACKAGES: &str =
    "procps,iproute2,iputils-ping,sudo,less,openssh-sftp-server,openssh-client,rsync";

/// What the full image adds to the lean one: systemd as its init, D-Bus, TLS roots,
/// curl and an editor — a machine like a VM's.
pub const FULL_PACKAGES: &str = "systemd-sysv,dbus,libpam-systemd,ca-certificates,curl,vim-tiny";

/// Which image `image build` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    /// Systemd and the usual tools (the default).
    #[default]
    Full,
    /// The lean image: no systemd, the built-in init (for density).
    Minimal,
}

impl Flavor {
    /// The packages debootstrap adds to its minimal base for this flavor.
    pub fn packages(self) -> String {
        match self {
            Flavor::Full => format!("{EXTRA_PACKAGES},{FULL_PACKAGES}"),
            Flavor::Minimal => EXTRA_PACKAGES.to_string(),
        }
    }
}

/// How an image is built: Debian `suite` from `mirror`, in a flavor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// The Debian suite (`bookworm`).
    pub suite: String,
    /// The mirror URL.
    pub mirror: String,
    /// Full or minimal.
    pub flavor: Flavor,
}

impl Recipe {
    /// How an image built so is described (`debootstrap SUITE MIRROR[ --minimal]`).
    pub fn source(&self) -> String {
        let minimal = if self.flavor == Flavor::Minimal {
            " --minimal"
        } else {
            ""
        };
        format!("debootstrap {} {}{minimal}", self.suite, self.mirror)
    }

    /// Reads [`Recipe::source`] back.
    pub fn from_source(source: &str) -> Option<Recipe> {
        let mut words = source.split_whitespace();
        if words.next()? != "debootstrap" {
            return None;
        }
        let (suite, mirror) = (words.next()?.to_string(), words.next()?.to_string());
        let flavor = match words.next() {
            Some("--minimal") => Flavor::Minimal,
            _ => Flavor::Full,
        };
        Some(Recipe {
            suite,
            mirror,
            flavor,
        })
    }
}

/// The default mirror for `image build`.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// What is known about an image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Its name.
    pub name: String,
    /// Where it came from (`debootstrap bookworm <mirror>` or `import <file>`).
    pub source: String,
    /// When it was made.
    pub created: DateTime<Utc>,
    /// The host uid/gid that root inside maps to, once the image's files have been
    /// shifted into the containers' id range (`None`: not shifted yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_base: Option<u32>,
}

/// The number of ids mapped into every container (uids and gids 0..65535).
pub const ID_RANGE: u32 = 65536;
/// Host uid of root inside every container (65,536 ids from here are mapped): root in
/// a container is an unprivileged user on the host. Images are shifted to it when built
/// or imported.
pub const ID_BASE: u32 = 1_000_000;

/// The lowest id range above the images' (which no container gets) that `taken` lacks.
pub fn free_id_base(taken: &[u32]) -> Option<u32> {
    (1..=MAX_RANGES)
        .map(|k| ID_BASE + k * ID_RANGE)
        .find(|b| !taken.contains(b))
}

/// How many containers can have id ranges of their own (the top one ends below 2^32-1).
const MAX_RANGES: u32 = (u32::MAX - ID_BASE) / ID_RANGE - 1;

/// The image store.
#[derive(Debug, Clone)]
pub struct Images {
    dir: PathBuf,
}

impl Images {
    /// The store at `dir`, created if missing.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| RuntimeError::io("cannot create", &dir, e))?;
        Ok(Images { dir })
    }

    /// The root filesystem of an existing image.
    pub fn rootfs(&self, name: &str) -> Result<PathBuf> {
        validate_image_name(name)?;
        let rootfs = self.dir.join(name).join("rootfs");
        if rootfs.join("bin").exists() || rootfs.join("usr").exists() {
            Ok(rootfs)
        } else {
            Err(RuntimeError::NoSuchImage(name.to_string()))
        }
    }

    /// The root filesystem of generation `generation` of an image (`None` or 1: the
    /// first, built by `image build`; later ones by [`Images::refresh`]).
    pub fn layer(&self, name: &str, generation: Option<u32>) -> Result<PathBuf> {
        let first = self.rootfs(name)?;
        match generation {
            None | Some(0) | Some(1) => Ok(first),
            Some(n) => {
                let rootfs = self.generation_dir(name, n).join("rootfs");
                if rootfs.join("usr").exists() {
                    Ok(rootfs)
                } else {
                    Err(RuntimeError::Invalid(format!(
                        "image {name} has no generation {n}"
                    )))
                }
            }
        }
    }

    /// The newest generation of an image (1 until it is refreshed).
    pub fn latest(&self, name: &str) -> Result<u32> {
        self.rootfs(name)?;
        let dir = self.dir.join(name).join("generations");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(1);
        };
        Ok(entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|n| self.generation_dir(name, *n).join("rootfs/usr").exists())
            .max()
            .unwrap_or(1)
            .max(1))
    }

    fn generation_dir(&self, name: &str, n: u32) -> PathBuf {
        self.dir.join(name).join("generations").join(n.to_string())
    }

    /// Builds the next generation of an existing image (debootstrap afresh, as the
    /// first generation was: today's packages); returns its number. Containers stay on
    /// theirs until rebased.
    pub fn refresh(&self, name: &str, progress: &mut dyn FnMut(&str)) -> Result<u32> {
        let r = self.recipe_of(name)?;
        let (next, staging, target) = self.next_generation(name)?;
        bootstrap_into(&staging, &r, progress)?;
        let source = format!("{} (generation {next})", r.source());
        self.commit_to(name, &staging, &target, source)?;
        Ok(next)
    }

    /// Imports a rootfs archive as the next generation of an existing image.
    pub fn import_generation(&self, name: &str, file: &Path) -> Result<u32> {
        let layout = scan(file)?;
        let (next, staging, target) = self.next_generation(name)?;
        if let Err(e) = unpack(file, &staging.join("rootfs"), layout.strip_rootfs) {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        let source = format!("import {} (generation {next})", file.display());
        self.commit_to(name, &staging, &target, source)?;
        Ok(next)
    }

    /// The next generation's number, a fresh staging directory for it, and its place.
    fn next_generation(&self, name: &str) -> Result<(u32, PathBuf, PathBuf)> {
        let next = self.latest(name)? + 1;
        let target = self.generation_dir(name, next);
        let staging = target.with_file_name(format!(".{next}.partial"));
        if staging.exists() {
            std::fs::remove_dir_all(&staging)
                .map_err(|e| RuntimeError::io("cannot clean up", &staging, e))?;
        }
        std::fs::create_dir_all(staging.join("rootfs"))
            .map_err(|e| RuntimeError::io("cannot create", &staging, e))?;
        Ok((next, staging, target))
    }

    /// How an image was built (its `image.json` source), to build it again.
    fn recipe_of(&self, name: &str) -> Result<Recipe> {
        self.rootfs(name)?;
        let meta = std::fs::read(self.dir.join(name).join("image.json")).ok();
        let info: Option<ImageInfo> = meta.and_then(|m| serde_json::from_slice(&m).ok());
        let source = info.map(|i| i.source).unwrap_or_default();
        Recipe::from_source(&source).ok_or_else(|| {
            RuntimeError::Invalid(format!(
                "image {name} was not built with debootstrap ({source}): import its next generation with `image import {name} FILE --refresh`"
            ))
        })
    }

    /// Whether the image exists.
    pub fn exists(&self, name: &str) -> bool {
        self.rootfs(name).is_ok()
    }

    /// All images.
    pub fn list(&self) -> Result<Vec<ImageInfo>> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| RuntimeError::io("cannot list", &self.dir, e))?;
        let mut out: Vec<ImageInfo> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| self.exists(n))
            .map(|n| {
                let meta = std::fs::read(self.dir.join(&n).join("image.json")).ok();
                meta.and_then(|m| serde_json::from_slice(&m).ok())
                    .unwrap_or(ImageInfo {
                        name: n,
                        source: "unknown".into(),
                        created: DateTime::<Utc>::UNIX_EPOCH,
                        id_base: None,
                    })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Deletes an image. Containers layered on it must be deleted first (the caller checks).
    pub fn delete(&self, name: &str) -> Result<()> {
        self.rootfs(name)?;
        let dir = self.dir.join(name);
        std::fs::remove_dir_all(&dir).map_err(|e| RuntimeError::io("cannot remove", &dir, e))
    }

    /// A fresh staging directory for image `name`; fails if the image exists.
    fn staging(&self, name: &str) -> Result<PathBuf> {
        validate_image_name(name)?;
        if self.exists(name) {
            return Err(RuntimeError::ImageExists(name.to_string()));
        }
        let staging = self.dir.join(format!(".{name}.partial"));
        if staging.exists() {
            std::fs::remove_dir_all(&staging)
                .map_err(|e| RuntimeError::io("cannot clean up", &staging, e))?;
        }
        std::fs::create_dir_all(staging.join("rootfs"))
            .map_err(|e| RuntimeError::io("cannot create", &staging, e))?;
        Ok(staging)
    }

    /// Shifts a finished staging directory into the containers' id range and moves it
    /// into place.
    fn commit(&self, name: &str, staging: &Path, source: String) -> Result<()> {
        self.commit_to(name, staging, &self.dir.join(name), source)
    }

    /// [`Images::commit`] to `target`.
    fn commit_to(&self, name: &str, staging: &Path, target: &Path, source: String) -> Result<()> {
        if let Err(e) = shift_tree(&staging.join("rootfs"), ID_BASE) {
            let _ = std::fs::remove_dir_all(staging);
            return Err(e);
        }
        let info = ImageInfo {
            name: name.to_string(),
            source,
            created: Utc::now(),
            id_base: Some(ID_BASE),
        };
        let json = serde_json::to_vec_pretty(&info).unwrap_or_default();
        write_atomic(&staging.join("image.json"), &json)?;
        if target.exists() {
            std::fs::remove_dir_all(target)
                .map_err(|e| RuntimeError::io("cannot replace", target, e))?;
        }
        std::fs::rename(staging, target).map_err(|e| RuntimeError::io("cannot install", target, e))
    }

    /// Makes sure the image's files belong to the containers' id range starting at
    /// `base` (root inside = `base` on the host), shifting every file's owner once.
    /// Serialised by a lock, so concurrent starts wait for one shift.
    pub fn ensure_shifted(&self, name: &str, base: u32) -> Result<()> {
        let rootfs = self.rootfs(name)?;
        let dir = self.dir.join(name);
        let _lock = crate::lockfile::lock(&dir.join(".shift.lock"))?;
        let meta_path = dir.join("image.json");
        let mut info: ImageInfo = std::fs::read(&meta_path)
            .ok()
            .and_then(|m| serde_json::from_slice(&m).ok())
            .unwrap_or(ImageInfo {
                name: name.to_string(),
                source: "unknown".into(),
                created: Utc::now(),
                id_base: None,
            });
        match info.id_base {
            Some(b) if b == base => return Ok(()),
            Some(b) => {
                return Err(RuntimeError::Invalid(format!(
                    "image {name} belongs to id range {b}, not {base}; rebuild or re-import it"
                )))
            }
            None => {}
        }
        shift_tree(&rootfs, base)?;
        info.id_base = Some(base);
        let json = serde_json::to_vec_pretty(&info).unwrap_or_default();
        write_atomic(&meta_path, &json)
    }

    /// Builds a Debian image with debootstrap. `progress` receives each line it prints.
    pub fn build(&self, name: &str, r: &Recipe, progress: &mut dyn FnMut(&str)) -> Result<()> {
        let staging = self.staging(name)?;
        bootstrap_into(&staging, r, progress)?;
        self.commit(name, &staging, r.source())
    }

    /// Imports a rootfs tarball (.tar, .tar.gz, .tar.zst, or an LXC/Incus image tarball).
    /// Device nodes in it are left out; returns how many were.
    pub fn import(&self, name: &str, file: &Path) -> Result<usize> {
        let layout = scan(file)?;
        let staging = self.staging(name)?;
        let dropped = match unpack(file, &staging.join("rootfs"), layout.strip_rootfs) {
            Ok(n) => n,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
        };
        self.commit(name, &staging, format!("import {}", file.display()))?;
        Ok(dropped)
    }
}

/// Runs debootstrap as `r` says into `staging/rootfs`; on failure the staging directory
/// is removed.
fn bootstrap_into(staging: &Path, r: &Recipe, progress: &mut dyn FnMut(&str)) -> Result<()> {
    let rootfs = staging.join("rootfs");
    let built = debootstrap(&rootfs, &r.suite, &r.mirror, &r.flavor.packages(), progress)
        .and_then(|()| settle(&rootfs));
    if built.is_err() {
        let _ = std::fs::remove_dir_all(staging);
    }
    built
}

/// Adds `base` to the owner and group of every file under `root` (not following
/// symlinks), keeping setuid/setgid bits, which chown clears.
fn shift_tree(root: &Path, base: u32) -> Result<()> {
    move_tree(root, 0, base)
}

/// Moves the owner and group of every file under `root` from the id range starting at
/// `from` to the one starting at `to` (a container given a range of its own); ids already
/// in the new range belong to an interrupted earlier move and stay.
pub fn move_tree(root: &Path, from: u32, to: u32) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let moved = |id: u32| {
        if (to..to + ID_RANGE).contains(&id) {
            Some(id)
        } else {
            id.checked_sub(from)
                .filter(|off| *off < ID_RANGE)
                .map(|off| to + off)
        }
    };
    crate::tree::walk(root, |path, meta| {
        // Overlayfs makes its whiteouts as the mounter (the host's root): they own nothing.
        if crate::devices::is_whiteout(meta) {
            return Ok(());
        }
        let (uid, gid) = (meta.uid(), meta.gid());
        let (Some(new_uid), Some(new_gid)) = (moved(uid), moved(gid)) else {
            return Err(RuntimeError::Invalid(format!(
                "{} is owned by {uid}:{gid}, outside the id range {from}-{}",
                path.display(),
                from + ID_RANGE - 1
            )));
        };
        if (new_uid, new_gid) != (uid, gid) {
            std::os::unix::fs::lchown(path, Some(new_uid), Some(new_gid))
                .map_err(|e| RuntimeError::io("cannot chown", path, e))?;
        }
        let mode = meta.mode() & 0o7777;
        if !meta.file_type().is_symlink() && mode & 0o6000 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| RuntimeError::io("cannot chmod", path, e))?;
        }
        Ok(())
    })
}

/// The Debian suite for an image name such as `debian-12`.
pub fn suite_for(name: &str) -> Option<&'static str> {
    match name {
        "debian-11" => Some("bullseye"),
        "debian-12" => Some("bookworm"),
        "debian-13" => Some("trixie"),
        _ => None,
    }
}

fn open_archive(file: &Path) -> Result<tar::Archive<Box<dyn Read>>> {
    let mut f = File::open(file).map_err(|e| RuntimeError::io("cannot open", file, e))?;
    let mut magic = [0u8; 4];
    let n = f
        .read(&mut magic)
        .map_err(|e| RuntimeError::io("cannot read", file, e))?;
    let f = File::open(file).map_err(|e| RuntimeError::io("cannot open", file, e))?;
    decompressed(&magic[..n], f).map_err(|e| RuntimeError::io("cannot read zstd", file, e))
}

/// A tar archive read from `input`, through gzip or zstd when `magic` (its first bytes)
/// says it is compressed.
fn decompressed<R: Read + 'static>(
    magic: &[u8],
    input: R,
) -> std::io::Result<tar::Archive<Box<dyn Read>>> {
    let reader: Box<dyn Read> = match magic {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(input)),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Box::new(zstd::stream::read::Decoder::new(input)?),
        _ => Box::new(input),
    };
    Ok(tar::Archive::new(reader))
}

struct ArchiveLayout {
    strip_rootfs: bool,
}

fn bad_archive(file: &Path, why: String) -> RuntimeError {
    RuntimeError::Invalid(format!("refusing image archive {}: {why}", file.display()))
}

/// Reads the whole archive once, checking every path before anything is written.
fn scan(file: &Path) -> Result<ArchiveLayout> {
    scan_archive(file, open_archive(file)?)
}

/// Checks an image archive held in memory as [`import`] does before unpacking it (for
/// the fuzz targets).
#[doc(hidden)]
pub fn check_archive(bytes: Vec<u8>) -> Result<()> {
    let file = Path::new("(in memory)");
    let magic = bytes.get(..4).unwrap_or(&bytes).to_vec();
    let archive = decompressed(&magic, std::io::Cursor::new(bytes))
        .map_err(|e| bad_archive(file, e.to_string()))?;
    scan_archive(file, archive).map(|_| ())
}

fn scan_archive<R: Read>(file: &Path, mut archive: tar::Archive<R>) -> Result<ArchiveLayout> {
    let mut has_metadata = false;
    let mut has_rootfs_dir = false;
    let mut count = 0usize;
    let entries = archive
        .entries()
        .map_err(|e| bad_archive(file, format!("not a tar archive ({e})")))?;
    for entry in entries {
        let entry = entry.map_err(|e| bad_archive(file, format!("corrupt entry ({e})")))?;
        let path = entry
            .path()
            .map_err(|e| bad_archive(file, format!("bad path ({e})")))?
            .into_owned();
        check_relative(&path).map_err(|why| bad_archive(file, why.to_string()))?;
        if entry.header().entry_type().is_hard_link() {
            if let Ok(Some(target)) = entry.link_name() {
                check_relative(&target)
                    .map_err(|why| bad_archive(file, format!("hard link {why}")))?;
            }
        }
        let clean: PathBuf = path
            .components()
            .filter(|c| *c != Component::CurDir)
            .collect();
        if clean == Path::new("metadata.yaml") {
            has_metadata = true;
        }
        if clean.starts_with("rootfs") {
            has_rootfs_dir = true;
        }
        count += 1;
    }
    if count == 0 {
        return Err(bad_archive(file, "it is empty".into()));
    }
    Ok(ArchiveLayout {
        strip_rootfs: has_metadata && has_rootfs_dir,
    })
}

/// A path in an archive that would leave the directory it is unpacked in.
#[derive(Debug, thiserror::Error)]
enum Leaves {
    #[error("absolute path '{}'", .0.display())]
    Absolute(PathBuf),
    #[error("path with '..': '{}'", .0.display())]
    Parent(PathBuf),
}

fn check_relative(path: &Path) -> std::result::Result<(), Leaves> {
    for c in path.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => {
                return Err(Leaves::Absolute(path.to_path_buf()))
            }
            Component::ParentDir => return Err(Leaves::Parent(path.to_path_buf())),
            _ => {}
        }
    }
    Ok(())
}

fn unpack_error(file: &Path, rel: &Path, e: &std::io::Error) -> RuntimeError {
    let cause = std::error::Error::source(e)
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    bad_archive(
        file,
        format!("cannot unpack '{}': {e}{cause}", rel.display()),
    )
}

/// Unpacks with `unpack_in` only, which refuses paths leaving the target, also through
/// symlinks, creating each parent with that check. An LXC/Incus image (`rootfs/` plus
/// metadata) is unpacked beside `dest` and its `rootfs/` moved into place. Device nodes
/// are left out (see [`crate::devices`]); returns how many were.
fn unpack(file: &Path, dest: &Path, strip_rootfs: bool) -> Result<usize> {
    let into = if strip_rootfs {
        dest.with_file_name("unpacked")
    } else {
        dest.to_path_buf()
    };
    std::fs::create_dir_all(&into).map_err(|e| RuntimeError::io("cannot create", &into, e))?;
    let mut archive = open_archive(file)?;
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_unpack_xattrs(true);
    let entries = archive
        .entries()
        .map_err(|e| bad_archive(file, e.to_string()))?;
    let mut dropped = 0;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad_archive(file, e.to_string()))?;
        let kind = entry.header().entry_type();
        if kind.is_character_special() || kind.is_block_special() {
            dropped += 1;
            continue;
        }
        let rel = entry
            .path()
            .map_err(|e| bad_archive(file, e.to_string()))?
            .into_owned();
        let ok = entry
            .unpack_in(&into)
            .map_err(|e| unpack_error(file, &rel, &e))?;
        if !ok {
            return Err(bad_archive(
                file,
                format!("'{}' leaves the root", rel.display()),
            ));
        }
    }
    if strip_rootfs {
        let rootfs = into.join("rootfs");
        std::fs::remove_dir(dest).map_err(|e| RuntimeError::io("cannot replace", dest, e))?;
        std::fs::rename(&rootfs, dest)
            .map_err(|e| RuntimeError::io("cannot install", &rootfs, e))?;
        std::fs::remove_dir_all(&into)
            .map_err(|e| RuntimeError::io("cannot clean up", &into, e))?;
    }
    Ok(dropped)
}

/// Unpacks a rootfs archive (plain, or an LXC/Incus image's `rootfs/`; .tar, .tar.gz,
/// .tar.zst) into `dest`, checking every path first; ownership is kept as in the archive.
/// Device nodes are left out; returns how many were.
pub(crate) fn unpack_rootfs(file: &Path, dest: &Path) -> Result<usize> {
    let layout = scan(file)?;
    std::fs::create_dir_all(dest).map_err(|e| RuntimeError::io("cannot create", dest, e))?;
    unpack(file, dest, layout.strip_rootfs)
}

/// Settings debootstrap leaves to the installer: the C.UTF-8 locale (built into glibc,
/// no locales package needed). Written into a tree debootstrap just made (no container has
/// run in it).
fn settle(rootfs: &Path) -> Result<()> {
    let path = rootfs.join("etc/default/locale");
    std::fs::write(&path, "LANG=C.UTF-8\n").map_err(|e| RuntimeError::io("cannot write", &path, e))
}

/// Runs debootstrap (`--variant=minbase`, with `packages`) for `suite` from `mirror` into
/// `rootfs`. `progress` receives each line it prints.
pub fn debootstrap(
    rootfs: &Path,
    suite: &str,
    mirror: &str,
    packages: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    if suite.is_empty()
        || !suite
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(RuntimeError::Invalid(format!("invalid suite '{suite}'")));
    }
    if !(mirror.starts_with("http://")
        || mirror.starts_with("https://")
        || mirror.starts_with("file:/"))
    {
        return Err(RuntimeError::Invalid(format!(
            "invalid mirror '{mirror}': use an http://, https:// or file:/ URL"
        )));
    }
    let mut child = Command::new("debootstrap")
        .args(["--variant=minbase", &format!("--include={packages}"), suite])
        .arg(rootfs)
        .arg(mirror)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            RuntimeError::Tool(format!(
                "cannot run debootstrap ({e}); install it with `apt-get install debootstrap`"
            ))
        })?;
    let stderr = child.stderr.take();
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut e) = stderr {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let mut last = String::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out)
            .lines()
            .map_while(std::result::Result::ok)
        {
            progress(&line);
            last = line;
        }
    }
    let status = child
        .wait()
        .map_err(|e| RuntimeError::Tool(format!("debootstrap: {e}")))?;
    let err = err_thread.join().unwrap_or_default();
    if !status.success() {
        let detail = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or(&last)
            .to_string();
        return Err(RuntimeError::Tool(format!(
            "debootstrap failed ({status}): {detail}"
        )));
    }
    // debootstrap makes /dev/console, /dev/null, … with mknod; a container's /dev is
    // made at its start, and no copy on the host keeps a device node.
    if let Some(note) = crate::devices::dropped_note(crate::devices::drop_all(rootfs)?) {
        progress(&note);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tarball(entries: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut b = tar::Builder::new(File::create(f.path()).unwrap());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            // Write the raw name so that malicious paths survive the builder's checks.
            let name = h.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.finish().unwrap();
        f
    }

    /// An LXC image whose `rootfs/lib` links to `outside`, then a file under `lib/sub/`.
    fn tarball_with_symlink(outside: &Path) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut b = tar::Builder::new(File::create(f.path()).unwrap());
        let mut meta = tar::Header::new_gnu();
        meta.set_size(1);
        meta.set_mode(0o644);
        b.append_data(&mut meta, "metadata.yaml", &b"x"[..])
            .unwrap();
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        link.set_mode(0o777);
        b.append_link(&mut link, "rootfs/lib", outside).unwrap();
        let mut evil = tar::Header::new_gnu();
        evil.set_size(1);
        evil.set_mode(0o644);
        b.append_data(&mut evil, "rootfs/lib/sub/evil", &b"x"[..])
            .unwrap();
        b.finish().unwrap();
        f
    }

    #[test]
    fn imports_plain_and_lxc_layouts() {
        if crate::test_needs_root("imports_plain_and_lxc_layouts") {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let images = Images::open(tmp.path()).unwrap();
        let plain = tarball(&[("bin/sh", b"x"), ("etc/os-release", b"ID=debian")]);
        images.import("plain", plain.path()).unwrap();
        assert!(images
            .rootfs("plain")
            .unwrap()
            .join("etc/os-release")
            .exists());
        let lxc = tarball(&[
            ("metadata.yaml", b"architecture: x86_64"),
            ("rootfs/bin/sh", b"x"),
        ]);
        images.import("lxc", lxc.path()).unwrap();
        assert!(images.rootfs("lxc").unwrap().join("bin/sh").exists());
        assert!(!images.rootfs("lxc").unwrap().join("metadata.yaml").exists());
        assert!(matches!(
            images.import("lxc", lxc.path()),
            Err(RuntimeError::ImageExists(_))
        ));
    }

    #[test]
    fn a_containers_files_move_to_its_own_range_and_ranges_never_overlap() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        let base = free_id_base(&[]).unwrap();
        assert_eq!(base, ID_BASE + ID_RANGE);
        assert_eq!(free_id_base(&[base]), Some(base + ID_RANGE));
        if !rustix::process::geteuid().is_root() {
            return;
        }
        std::os::unix::fs::lchown(&f, Some(ID_BASE + 5), Some(ID_BASE)).unwrap();
        move_tree(tmp.path().join("f").as_path(), ID_BASE, base).unwrap();
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&f).unwrap();
        assert_eq!((m.uid(), m.gid()), (base + 5, base));
        // Again (an interrupted move): nothing changes.
        move_tree(&f, ID_BASE, base).unwrap();
        assert_eq!(std::fs::metadata(&f).unwrap().uid(), base + 5);
        std::os::unix::fs::lchown(&f, Some(7), Some(7)).unwrap();
        assert!(move_tree(&f, ID_BASE, base).is_err());
    }

    #[test]
    fn shifting_moves_owners_into_the_range_once_and_keeps_setuid() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if crate::test_needs_root("shifting_moves_owners_into_the_range_once_and_keeps_setuid") {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let images = Images::open(tmp.path()).unwrap();
        let t = tarball(&[("bin/sh", b"x"), ("usr/bin/sudo", b"x")]);
        images.import("img", t.path()).unwrap();
        let rootfs = images.rootfs("img").unwrap();
        let sudo = rootfs.join("usr/bin/sudo");
        // Imported images are shifted already.
        assert_eq!(
            std::fs::metadata(rootfs.join("bin/sh")).unwrap().uid(),
            ID_BASE
        );
        // An image from before shifting (no id_base recorded) is shifted on demand.
        std::fs::remove_file(tmp.path().join("img/image.json")).unwrap();
        std::os::unix::fs::lchown(rootfs.join("bin/sh"), Some(1000), Some(5)).unwrap();
        std::os::unix::fs::lchown(&sudo, Some(0), Some(0)).unwrap();
        std::fs::set_permissions(&sudo, std::fs::Permissions::from_mode(0o4755)).unwrap();
        images.ensure_shifted("img", ID_BASE).unwrap();
        let m = std::fs::metadata(rootfs.join("bin/sh")).unwrap();
        assert_eq!((m.uid(), m.gid()), (ID_BASE + 1000, ID_BASE + 5));
        let m = std::fs::metadata(&sudo).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o7777), (ID_BASE, 0o4755));
        // Idempotent; a different base is refused.
        images.ensure_shifted("img", ID_BASE).unwrap();
        assert_eq!(
            std::fs::metadata(rootfs.join("bin/sh")).unwrap().uid(),
            ID_BASE + 1000
        );
        assert!(images.ensure_shifted("img", 2_000_000).is_err());
    }

    #[test]
    fn refuses_escaping_archives() {
        let tmp = tempfile::tempdir().unwrap();
        let images = Images::open(tmp.path().join("images")).unwrap();
        for bad in ["/etc/passwd", "../escape", "bin/../../escape"] {
            let t = tarball(&[("bin/sh", b"x"), (bad, b"pwned")]);
            let err = images.import("bad", t.path()).unwrap_err().to_string();
            assert!(err.contains("refusing"), "{bad}: {err}");
            assert!(!images.exists("bad"));
        }
        assert!(!tmp.path().join("escape").exists());
        // The LXC/Incus layout gets the same protection, also for parents made through a
        // symlink that points out of the root.
        let outside = tempfile::tempdir().unwrap();
        let t = tarball_with_symlink(outside.path());
        let err = images.import("lxcbad", t.path()).unwrap_err().to_string();
        assert!(err.contains("refusing"), "{err}");
        assert!(
            !outside.path().join("sub").exists(),
            "a directory was made outside the root"
        );
        assert!(!images.exists("lxcbad"));
        let empty = tempfile::NamedTempFile::new().unwrap();
        assert!(images.import("empty", empty.path()).is_err());
    }
}
