//! Root-only files and directories, whatever the umask: recordings hold what people typed
//! (sudo passwords included) and the audit log who did what, so neither is readable by
//! anyone but the gateway's own user.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of the directories.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the files.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) as 0700; an existing one loses every group and
/// other permission bit.
pub fn dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, Permissions::from_mode(mode & 0o7700))?;
    }
    Ok(())
}

/// Creates the directory `dir` (its parent must exist), 0700; it must not exist.
pub fn new_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().mode(DIR_MODE).create(dir)
}

/// Writes `data` as `path`, owner-only, through a temporary file beside it and a rename
/// (readers see the old content or the new, never a torn write).
pub fn write_replacing(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    new_file()
        .open(&tmp)
        .and_then(|mut f| std::io::Write::write_all(&mut f, data))
        .and_then(|()| std::fs::rename(&tmp, path))
}

/// Options for a new file only its owner may read or write (`create_new`, append).
pub fn new_file() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.create_new(true).append(true).mode(FILE_MODE);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_and_files_are_owner_only_whatever_the_umask() {
        let tmp = tempfile::tempdir().unwrap();
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, Permissions::from_mode(0o755)).unwrap();
        dir(&open).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&open), 0o700);
        let deep = tmp.path().join("a/b");
        dir(&deep).unwrap();
        assert_eq!(mode(&deep), 0o700);
        let file = deep.join("f");
        new_file().open(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        new_dir(&deep.join("c")).unwrap();
        assert_eq!(mode(&deep.join("c")), 0o700);
    }
}
