//! Snapshots and backups of a native container: its own layer (`upper/`) and its
//! inventory record. Snapshots are copies under `containers/<name>/snapshots/<snap>/`;
//! backups are zstd-compressed tarballs (`container.json` + `upper/`) made and unpacked
//! with GNU tar, which keeps ownership, xattrs and overlayfs whiteouts. A running
//! container is frozen while its layer is read, so the copy is consistent.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::cgroups::Cgroup;
use super::layout::ContainerLayout;
use crate::error::{Result, RuntimeError};
use crate::inventory::{ContainerRecord, Inventory};
use crate::names::validate_container_name;

const TAR_FLAGS: &[&str] = &[
    "--xattrs",
    "--xattrs-include=*",
    "--acls",
    "--numeric-owner",
    "--sparse",
];

fn tool(what: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Tool(format!("{what}: {e}"))
}

/// Runs `f` with the container frozen when it runs (`cgroup` given), thawing after.
fn frozen<T>(cgroup: Option<&Cgroup>, f: impl FnOnce() -> Result<T>) -> Result<T> {
    if let Some(cg) = cgroup {
        cg.freeze(true)
            .map_err(|e| tool("cannot freeze the container", e))?;
    }
    let result = f();
    if let Some(cg) = cgroup {
        let _ = cg.freeze(false);
    }
    result
}

/// Copies the container's layer to `snapshots/<snap>` (on the host's filesystem, beside
/// the container's disk when it has one).
pub fn snapshot(layout: &ContainerLayout, snap: &str, cgroup: Option<&Cgroup>) -> Result<PathBuf> {
    let dir = &layout.dir;
    validate_container_name(snap)
        .map_err(|_| RuntimeError::Invalid(format!("invalid snapshot name '{snap}'")))?;
    let target = dir.join("snapshots").join(snap);
    if target.exists() {
        return Err(RuntimeError::Invalid(format!(
            "snapshot '{snap}' exists already"
        )));
    }
    std::fs::create_dir_all(&target).map_err(|e| RuntimeError::io("cannot create", &target, e))?;
    let result = frozen(cgroup, || {
        let status = Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(layout.upper())
            .arg(target.join("upper"))
            .status()
            .map_err(|e| tool("cp", e))?;
        if !status.success() {
            return Err(tool("cp", status));
        }
        let record = dir.join("container.json");
        std::fs::copy(&record, target.join("container.json"))
            .map(drop)
            .map_err(|e| RuntimeError::io("cannot copy", &record, e))
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&target);
    }
    result.map(|()| target)
}

/// Puts the container's layer back as snapshot `snap` holds it (the container is
/// stopped): the snapshot is copied in beside the layer, then swapped for it, so a
/// failure midway leaves the layer as it was.
pub fn rollback(layout: &ContainerLayout, snap: &str) -> Result<()> {
    validate_container_name(snap)
        .map_err(|_| RuntimeError::Invalid(format!("invalid snapshot name '{snap}'")))?;
    let saved = layout.dir.join("snapshots").join(snap).join("upper");
    if !saved.is_dir() {
        return Err(RuntimeError::Invalid(format!("no snapshot '{snap}'")));
    }
    let upper = layout.upper();
    let incoming = upper.with_file_name("upper.rollback");
    let outgoing = upper.with_file_name("upper.replaced");
    for stale in [&incoming, &outgoing] {
        if stale.exists() {
            std::fs::remove_dir_all(stale)
                .map_err(|e| RuntimeError::io("cannot remove", stale, e))?;
        }
    }
    let status = Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(&saved)
        .arg(&incoming)
        .status()
        .map_err(|e| tool("cp", e))?;
    if !status.success() {
        let _ = std::fs::remove_dir_all(&incoming);
        return Err(tool("cp", status));
    }
    std::fs::rename(&upper, &outgoing).map_err(|e| RuntimeError::io("cannot move", &upper, e))?;
    std::fs::rename(&incoming, &upper)
        .map_err(|e| RuntimeError::io("cannot move", &incoming, e))?;
    std::fs::remove_dir_all(&outgoing).map_err(|e| RuntimeError::io("cannot remove", &outgoing, e))
}

/// Writes `container.json` and `upper/` of the container to `file` (tar + zstd).
pub fn backup(layout: &ContainerLayout, file: &Path, cgroup: Option<&Cgroup>) -> Result<()> {
    let upper = layout.upper();
    let layers = upper.parent().unwrap_or(&layout.dir);
    // A backup holds the container's files (its /etc/shadow too): owner-only.
    let out = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(file)
            .map_err(|e| RuntimeError::io("cannot create", file, e))?
    };
    let result = frozen(cgroup, || {
        let mut tar = Command::new("tar")
            .args(TAR_FLAGS)
            .arg("-C")
            .arg(&layout.dir)
            .args(["-cf", "-", "container.json", "-C"])
            .arg(layers)
            .arg("upper")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| tool("cannot run tar", e))?;
        let mut encoder = zstd::stream::write::Encoder::new(out, 3).map_err(|e| tool("zstd", e))?;
        if let Some(mut stdout) = tar.stdout.take() {
            std::io::copy(&mut stdout, &mut encoder).map_err(|e| tool("writing the backup", e))?;
        }
        encoder
            .finish()
            .and_then(|f| f.sync_all())
            .map_err(|e| tool("writing the backup", e))?;
        let out = tar.wait_with_output().map_err(|e| tool("tar", e))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(tool("tar", String::from_utf8_lossy(&out.stderr).trim()))
        }
    });
    if result.is_err() {
        let _ = std::fs::remove_file(file);
    }
    result
}

/// Unpacks a backup into a new container directory under `inventory`, named as in the
/// backup or `as_name`. The restored container is stopped; its address is kept unless
/// another container holds it, in which case it gets a new one on start.
pub fn restore(
    inventory: &Inventory,
    root: &Path,
    file: &Path,
    as_name: Option<&str>,
) -> Result<String> {
    let staging = root.join(format!(".restore-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)
        .map_err(|e| RuntimeError::io("cannot create", &staging, e))?;
    let result = (|| {
        unpack(file, &staging)?;
        let record_path = staging.join("container.json");
        let text = std::fs::read_to_string(&record_path).map_err(|_| {
            RuntimeError::Invalid(format!(
                "{} is not a gatehouse backup (no container.json)",
                file.display()
            ))
        })?;
        let mut record: ContainerRecord = serde_json::from_str(&text).map_err(|e| {
            RuntimeError::Invalid(format!("{}: corrupt container.json: {e}", file.display()))
        })?;
        if !staging.join("upper").is_dir() {
            return Err(RuntimeError::Invalid(format!(
                "{} has no upper/ layer",
                file.display()
            )));
        }
        if let Some(n) = as_name {
            record.name = n.to_string();
        }
        validate_container_name(&record.name)?;
        let taken = inventory.list()?;
        if taken.iter().any(|r| r.name == record.name) {
            return Err(RuntimeError::ContainerExists(record.name.clone()));
        }
        if record.address.is_some() && taken.iter().any(|r| r.address == record.address) {
            record.address = None;
        }
        let target = inventory.container_dir(&record.name)?;
        std::fs::rename(&staging, &target)
            .map_err(|e| RuntimeError::io("cannot install", &target, e))?;
        if let Some(bytes) = record.limits.disk {
            // Its layer goes back onto a disk of the size it had.
            if let Err(e) = super::disk::adopt(&target, bytes) {
                if !super::disk::is_mounted(&target) {
                    let _ = std::fs::remove_dir_all(&target);
                }
                return Err(e);
            }
        }
        inventory.save(&record)?;
        Ok(record.name)
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// Unpacks backup `file` into `dest` with GNU tar (ownership, xattrs, ACLs, whiteouts).
/// GNU tar runs as host root and would make any device node the archive names, so the
/// same tar first lists the archive (the very parser that would unpack it), and a backup
/// holding a device node other than a whiteout is refused before anything is written.
/// What was unpacked is checked once more (the file could change between the passes).
fn unpack(file: &Path, dest: &Path) -> Result<()> {
    let mut device = None;
    run_tar(file, &["--numeric-owner", "-tvf", "-"], &mut |line| {
        if device.is_none() && crate::devices::listed_device(line) {
            device = Some(line.to_string());
        }
    })?;
    if let Some(line) = device {
        return Err(holds_a_device(file, &line));
    }
    let mut args: Vec<std::ffi::OsString> = TAR_FLAGS.iter().map(|a| a.into()).collect();
    for a in ["--same-permissions", "--no-overwrite-dir", "-C"] {
        args.push(a.into());
    }
    args.push(dest.into());
    args.push("-xf".into());
    args.push("-".into());
    run_tar(file, &args, &mut |_| {})?;
    match crate::devices::find(dest)?.first() {
        Some(path) => Err(holds_a_device(file, &path.display().to_string())),
        None => Ok(()),
    }
}

fn holds_a_device(file: &Path, what: &str) -> RuntimeError {
    RuntimeError::Invalid(format!(
        "refusing {}: it holds a device node ({}); a container's devices are made at its start",
        file.display(),
        what.trim()
    ))
}

/// Runs GNU tar with `args` on the zstd-decompressed `file`, handing each line it prints
/// on stdout to `line`.
fn run_tar<S: AsRef<std::ffi::OsStr>>(
    file: &Path,
    args: &[S],
    line: &mut dyn FnMut(&str),
) -> Result<()> {
    use std::io::BufRead;
    let input = std::fs::File::open(file).map_err(|e| RuntimeError::io("cannot open", file, e))?;
    let mut decoder = zstd::stream::read::Decoder::new(input).map_err(|e| tool("zstd", e))?;
    let mut tar = Command::new("tar")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| tool("cannot run tar", e))?;
    let stdin = tar.stdin.take();
    let stderr = tar.stderr.take();
    let feeder = std::thread::spawn(move || -> std::io::Result<()> {
        let Some(mut stdin) = stdin else {
            return Ok(());
        };
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = decoder.read(&mut buf)?;
            // tar may stop reading early (an error it reports itself).
            if n == 0 || stdin.write_all(&buf[..n]).is_err() {
                return Ok(());
            }
        }
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut e) = stderr {
            let _ = e.read_to_string(&mut text);
        }
        text
    });
    if let Some(out) = tar.stdout.take() {
        for l in std::io::BufReader::new(out).split(b'\n') {
            let l = l.map_err(|e| tool("tar", e))?;
            line(&String::from_utf8_lossy(&l));
        }
    }
    let status = tar.wait().map_err(|e| tool("tar", e))?;
    let fed = feeder
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("reader panicked")));
    let errors = errors.join().unwrap_or_default();
    if let Err(e) = fed {
        return Err(RuntimeError::Invalid(format!(
            "{} is not a zstd backup: {e}",
            file.display()
        )));
    }
    if status.success() {
        Ok(())
    } else {
        Err(RuntimeError::Invalid(format!(
            "cannot unpack {}: {}",
            file.display(),
            errors.trim()
        )))
    }
}
