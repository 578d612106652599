//! Files replaced whole: readers see the old content or the new, never a torn write
//! (container records, image metadata).

use std::path::Path;

use crate::error::{Result, RuntimeError};

/// Writes `data` to `path` through a temporary file and a rename, so readers see either
/// the old or the new content, never a torn write.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // A name of our own, so concurrent writers never rename each other's file.
    let tmp = path.with_extension(format!("tmp.{}.{n}", std::process::id()));
    let mut f =
        std::fs::File::create(&tmp).map_err(|e| RuntimeError::io("cannot create", &tmp, e))?;
    let written = f.write_all(data).and_then(|()| f.sync_all());
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(RuntimeError::io("cannot write", path, e));
    }
    Ok(())
}
