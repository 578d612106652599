//! Reading an instance's file through LXD's file API (`GET /1.0/instances/NAME/files`),
//! which works on stopped instances and remote daemons and starts nothing inside. LXD
//! answers a symbolic link with its target (`X-LXD-type: symlink`): the target is
//! resolved here, inside the instance's root, and asked for again, a few times at most.

use super::client::LxdClient;
use crate::error::{Result, RuntimeError};
use crate::guest_path;

/// Links followed before giving up.
const MAX_LINKS: usize = 8;
/// How long one read may take. LXD 5.0 opens whatever is at the path: a FIFO there
/// keeps its `forkfile` helper busy and the answer never comes, so the read gives up.
const READ_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// What LXD answered for a path, links followed.
enum Answer {
    File(Vec<u8>),
    Directory(Vec<u8>),
}

/// Reads `path` (absolute, inside the instance): `None` when it is not there; at most
/// `max` bytes; a directory or anything but a file is an error.
pub async fn read(client: &LxdClient, name: &str, path: &str, max: u64) -> Result<Option<Vec<u8>>> {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    match get(client, name, path, max).await? {
        None => Ok(None),
        Some(Answer::File(data)) => Ok(Some(data)),
        Some(Answer::Directory(_)) => Err(RuntimeError::Invalid(format!(
            "{path} in '{name}' is a directory, not a file"
        ))),
    }
}

/// The names in the directory at `path` (absolute, inside the instance): `None` when it
/// is not there; more than `max` names, or a file, is an error.
pub async fn list(
    client: &LxdClient,
    name: &str,
    path: &str,
    max: usize,
) -> Result<Option<Vec<String>>> {
    // A name is at most 255 bytes, quoted in a JSON list.
    let bytes = max.saturating_mul(260).saturating_add(4096);
    let listing = match get(client, name, path, bytes).await? {
        None => return Ok(None),
        Some(Answer::File(_)) => {
            return Err(RuntimeError::Invalid(format!(
                "{path} in '{name}' is not a directory"
            )))
        }
        Some(Answer::Directory(body)) => body,
    };
    #[derive(serde::Deserialize)]
    struct Listing {
        #[serde(default)]
        metadata: Vec<String>,
    }
    let listing: Listing = serde_json::from_slice(&listing)
        .map_err(|e| RuntimeError::Engine(format!("LXD's listing of {path} in '{name}': {e}")))?;
    let mut names = listing.metadata;
    if names.len() > max {
        return Err(RuntimeError::Invalid(format!(
            "{path} in '{name}' holds more than {max} names"
        )));
    }
    names.retain(|n| !n.is_empty() && !n.contains('/') && n != "." && n != "..");
    names.sort();
    Ok(Some(names))
}

/// Asks LXD for `path`, resolving links inside the instance.
async fn get(client: &LxdClient, name: &str, path: &str, max: usize) -> Result<Option<Answer>> {
    let mut parts = guest_path::components(path).map_err(RuntimeError::Invalid)?;
    for _ in 0..=MAX_LINKS {
        let current = guest_path::join(&parts);
        let encoded =
            percent_encoding::utf8_percent_encode(&current, percent_encoding::NON_ALPHANUMERIC);
        let url = format!("/1.0/instances/{name}/files?path={encoded}");
        let Some((kind, body)) = client
            .fetch_raw(&url, "X-LXD-type", max, READ_WITHIN)
            .await?
        else {
            return Ok(None);
        };
        if body.len() > max {
            return Err(RuntimeError::Invalid(format!(
                "{path} in '{name}' is larger than {max} bytes"
            )));
        }
        match kind.as_deref() {
            Some("file") | None => return Ok(Some(Answer::File(body.to_vec()))),
            Some("directory") => return Ok(Some(Answer::Directory(body.to_vec()))),
            Some("symlink") => {
                let target = String::from_utf8_lossy(&body);
                parts = guest_path::follow(&parts, target.trim_end_matches('\n'), &[]);
            }
            Some(other) => {
                return Err(RuntimeError::Invalid(format!(
                    "{current} in '{name}' is a {other}, not a file"
                )))
            }
        }
    }
    Err(RuntimeError::Invalid(format!(
        "{path} in '{name}': too many symbolic links"
    )))
}
