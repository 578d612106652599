//! Device nodes in images, imports and restores. A container never gets a device node
//! from its files: its `/dev` is made at start from a fixed list of the host's harmless
//! devices, and its overlay is mounted `nodev`. Archives and builds are kept free of them
//! as well, so no copy on the host holds one: image archives' device entries are left out,
//! debootstrap's are removed, and a backup holding one is refused (overlayfs whiteouts,
//! character devices 0:0, are the only ones a container's layer has and keeps).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{Result, RuntimeError};

/// Whether `meta` is an overlayfs whiteout (a character device 0:0).
pub fn is_whiteout(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Whether `meta` is a device node that could reach a device (not a whiteout).
pub fn is_device(meta: &std::fs::Metadata) -> bool {
    let t = meta.file_type();
    (t.is_char_device() || t.is_block_device()) && !is_whiteout(meta)
}

/// Every device node under `root` (symlinks are not followed; whiteouts are not devices).
pub fn find(root: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    crate::tree::walk(root, |path, meta| {
        if is_device(meta) {
            found.push(path.to_path_buf());
        }
        Ok(())
    })?;
    Ok(found)
}

/// Removes every device node under `root` (an image being built); returns how many.
pub fn drop_all(root: &Path) -> Result<usize> {
    let found = find(root)?;
    for path in &found {
        std::fs::remove_file(path).map_err(|e| RuntimeError::io("cannot remove", path, e))?;
    }
    Ok(found.len())
}

/// The note for `count` device nodes left out of an image.
pub fn dropped_note(count: usize) -> Option<String> {
    (count > 0).then(|| {
        format!("{count} device node(s) left out of the image (a container's /dev is made at its start)")
    })
}

/// Whether a line of `tar --numeric-owner -tv` lists a device node: `b…` (block) or
/// `c…` (character) with a major,minor other than `0,0` (a whiteout).
pub fn listed_device(line: &str) -> bool {
    let mut fields = line.split_whitespace();
    match (fields.next(), fields.nth(1)) {
        (Some(mode), _) if mode.starts_with('b') => true,
        (Some(mode), Some(numbers)) if mode.starts_with('c') => numbers != "0,0",
        (Some(mode), None) if mode.starts_with('c') => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_listings_name_devices_but_not_whiteouts_or_files() {
        assert!(listed_device(
            "crw-r--r-- 0/0 5,1 2024-01-01 00:00 upper/dev/console"
        ));
        assert!(listed_device(
            "brw-rw---- 0/6 8,0 2024-01-01 00:00 upper/tmp/disk"
        ));
        assert!(!listed_device(
            "c--------- 1000000/1000000 0,0 2024-01-01 00:00 upper/etc/gone"
        ));
        assert!(!listed_device(
            "-rw-r--r-- 1000000/1000000 12 2024-01-01 00:00 upper/crw-r--r-- 0/0 5,1"
        ));
        assert!(!listed_device(
            "drwxr-xr-x 1000000/1000000 0 2024-01-01 00:00 upper/"
        ));
        assert!(!listed_device(""));
    }

    #[test]
    fn devices_are_found_and_dropped_but_whiteouts_and_files_stay() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir(root.join("dev")).unwrap();
        std::fs::write(root.join("dev/file"), b"x").unwrap();
        std::os::unix::fs::symlink("/dev/null", root.join("dev/link")).unwrap();
        let mknod = |p: &Path, dev: u64| {
            nix::sys::stat::mknod(
                p,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::from_bits_truncate(0o600),
                dev,
            )
        };
        if mknod(&root.join("dev/console"), nix::sys::stat::makedev(5, 1)).is_err() {
            eprintln!("skipped: mknod needs root");
            return;
        }
        mknod(&root.join("dev/whiteout"), 0).unwrap();
        assert_eq!(find(root).unwrap(), [root.join("dev/console")]);
        assert_eq!(drop_all(root).unwrap(), 1);
        assert!(find(root).unwrap().is_empty());
        assert!(root.join("dev/whiteout").exists());
        assert!(root.join("dev/file").exists());
    }
}
