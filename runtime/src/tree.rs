//! Walking a directory tree on the host without following symbolic links: what the image
//! and container layers hold is whatever their roots put there, so nothing in them may
//! lead the walk elsewhere.

use std::path::Path;

use crate::error::{Result, RuntimeError};

/// Calls `visit` with every entry under `root` (itself included) and its metadata (of the
/// entry itself, never a link's target), descending into directories after visiting them.
pub fn walk(
    root: &Path,
    mut visit: impl FnMut(&Path, &std::fs::Metadata) -> Result<()>,
) -> Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| RuntimeError::io("cannot stat", &path, e))?;
        visit(&path, &meta)?;
        if meta.is_dir() {
            let entries =
                std::fs::read_dir(&path).map_err(|e| RuntimeError::io("cannot list", &path, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| RuntimeError::io("cannot list", &path, e))?;
                stack.push(entry.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_is_visited_and_links_are_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("a/b")).unwrap();
        std::fs::write(tmp.path().join("a/b/f"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", tmp.path().join("a/link")).unwrap();
        let mut seen = vec![];
        walk(tmp.path(), |p, m| {
            seen.push((
                p.strip_prefix(tmp.path()).unwrap().to_path_buf(),
                m.is_symlink(),
            ));
            Ok(())
        })
        .unwrap();
        seen.sort();
        let names: Vec<_> = seen.iter().map(|(p, _)| p.display().to_string()).collect();
        assert_eq!(names, ["", "a", "a/b", "a/b/f", "a/link"]);
        assert!(seen.iter().any(|(p, link)| p.ends_with("link") && *link));
    }
}
