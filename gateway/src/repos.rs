//! The fleet's apt repositories, read on the host once for every container that names
//! them: each suite's Release (its signature checked with `gpgv` against `[fleet]
//! keyring` unless the repository is one of `unsigned_repositories`), its Packages
//! indexes (checked against the Release's SHA-256 and size, kept in the cache by digest
//! so an unchanged index is not fetched again), and the `.deb`s a patch installs
//! (checked against the index, kept by digest). A container's sources name what is
//! fetched, but only repositories the admin listed are: a container's root cannot make
//! the host fetch anything else.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gatehouse_fleet::index::{parse_packages, parse_release, Available, Release};
use gatehouse_fleet::sources::Source;
use sha2::{Digest, Sha256};

use crate::config::FleetConfig;
use crate::fetch::{self, FetchError};

/// The largest Release file read.
const MAX_RELEASE: usize = 16 << 20;
/// The largest compressed Packages index read.
const MAX_INDEX: usize = 256 << 20;
/// The largest uncompressed Packages index kept.
const MAX_INDEX_TEXT: u64 = 1 << 30;
/// The largest package downloaded.
const MAX_DOWNLOAD: usize = 2 << 30;
/// How long one download may take.
const WITHIN: Duration = Duration::from_secs(300);

/// Why a repository's data could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RepoError {
    /// A container names a repository the configuration does not list.
    #[error("{0} is not among the repositories the host reads ([fleet] repositories)")]
    NotListed(String),
    /// A download failed.
    #[error("{0}")]
    Fetch(String),
    /// A Release's signature does not check out.
    #[error("{url}: its signature does not check out against {keyring}: {why}")]
    Signature {
        /// The `InRelease` file.
        url: String,
        /// The keyring.
        keyring: String,
        /// What gpgv said.
        why: String,
    },
    /// A file is not what the signed index says it is.
    #[error("{0}: its size or SHA-256 is not what the repository's index says")]
    Digest(String),
    /// A file cannot be read as what it should be.
    #[error("{url}: {why}")]
    Index {
        /// The file.
        url: String,
        /// What is wrong.
        why: String,
    },
}

impl From<FetchError> for RepoError {
    fn from(e: FetchError) -> Self {
        RepoError::Fetch(e.to_string())
    }
}

fn index(url: &str, why: impl std::fmt::Display) -> RepoError {
    RepoError::Index {
        url: url.to_string(),
        why: why.to_string(),
    }
}

/// What one suite offers the fleet.
#[derive(Debug)]
pub struct SuiteIndex {
    /// The repository's URI.
    pub uri: String,
    /// Whether it is a security suite.
    pub security: bool,
    /// The packages it offers that the fleet has installed.
    pub packages: Vec<Available>,
}

/// The repositories read in one command: each suite at most once.
pub struct Repositories {
    signed: Vec<String>,
    unsigned: Vec<String>,
    keyring: PathBuf,
    cache: PathBuf,
    arch: String,
    wanted: Arc<HashSet<String>>,
    suites: HashMap<Source, Result<Arc<SuiteIndex>, RepoError>>,
}

impl Repositories {
    /// The repositories `config` allows, caching under `cache`, keeping only the
    /// packages named in `wanted` (the fleet's installed ones).
    pub fn new(config: &FleetConfig, cache: &Path, wanted: HashSet<String>) -> Repositories {
        let trim = |v: &Vec<String>| {
            v.iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .collect()
        };
        Repositories {
            signed: trim(&config.repositories),
            unsigned: trim(&config.unsigned_repositories),
            keyring: config.keyring.clone(),
            cache: cache.to_path_buf(),
            arch: host_arch().to_string(),
            wanted: Arc::new(wanted),
            suites: HashMap::new(),
        }
    }

    /// What `source` offers (fetched on first use), or why it cannot be read.
    pub async fn suite(&mut self, source: &Source) -> Result<Arc<SuiteIndex>, RepoError> {
        if let Some(got) = self.suites.get(source) {
            return got.clone();
        }
        let got = self.read_suite(source).await.map(Arc::new);
        self.suites.insert(source.clone(), got.clone());
        got
    }

    async fn read_suite(&self, source: &Source) -> Result<SuiteIndex, RepoError> {
        let signed = if self.signed.contains(&source.uri) {
            true
        } else if self.unsigned.contains(&source.uri) {
            false
        } else {
            return Err(RepoError::NotListed(source.uri.clone()));
        };
        if !source.archs.is_empty() && !source.archs.contains(&self.arch) {
            return Ok(SuiteIndex {
                uri: source.uri.clone(),
                security: source.is_security(),
                packages: vec![],
            });
        }
        let base = suite_base(source);
        let release = self.release(&base, signed).await?;
        let mut packages = Vec::new();
        let parts: Vec<String> = if source.is_flat() {
            vec![String::new()]
        } else {
            source
                .components
                .iter()
                .map(|c| format!("{c}/binary-{}/", self.arch))
                .collect()
        };
        for part in parts {
            let text = self.packages_index(&base, &part, release.as_ref()).await?;
            let wanted = self.wanted.clone();
            let url = format!("{base}{part}Packages");
            let found = tokio::task::spawn_blocking(move || {
                parse_packages(&text, &|n| wanted.contains(n)).map_err(|e| index(&url, e))
            })
            .await
            .map_err(|e| index(&base, e))??;
            packages.extend(found);
        }
        let security = source.is_security()
            || release.as_ref().is_some_and(|r| {
                r.codename.ends_with("-security") || r.label.ends_with("-Security")
            });
        Ok(SuiteIndex {
            uri: source.uri.clone(),
            security,
            packages,
        })
    }

    /// The suite's Release: signed (`InRelease`, checked) or, for an unsigned repository,
    /// `InRelease`'s text or `Release`; `None` when an unsigned flat repository has none.
    async fn release(&self, base: &str, signed: bool) -> Result<Option<Release>, RepoError> {
        let inrelease = format!("{base}InRelease");
        match fetch::get(&inrelease, MAX_RELEASE, WITHIN, 0).await {
            Ok(data) => {
                let text = if signed {
                    verify(&self.keyring, &inrelease, &data).await?
                } else {
                    String::from_utf8_lossy(&data).into_owned()
                };
                let body = clearsigned_body(&text).unwrap_or(&text);
                return parse_release(body)
                    .map(Some)
                    .map_err(|e| index(&inrelease, e));
            }
            Err(FetchError::NotFound(_)) if !signed => {}
            Err(FetchError::NotFound(_)) => {
                return Err(index(
                    &inrelease,
                    "not found (a signed InRelease is required)",
                ))
            }
            Err(e) => return Err(e.into()),
        }
        let plain = format!("{base}Release");
        match fetch::get(&plain, MAX_RELEASE, WITHIN, 0).await {
            Ok(data) => parse_release(&String::from_utf8_lossy(&data))
                .map(Some)
                .map_err(|e| index(&plain, e)),
            Err(FetchError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// One Packages index as text: the first of `.xz`, `.gz` or plain the Release lists
    /// (checked against it, served from the cache when held), or, with no Release, the
    /// first the server has.
    async fn packages_index(
        &self,
        base: &str,
        part: &str,
        release: Option<&Release>,
    ) -> Result<String, RepoError> {
        for ext in ["xz", "gz", ""] {
            let file = if ext.is_empty() {
                format!("{part}Packages")
            } else {
                format!("{part}Packages.{ext}")
            };
            let url = format!("{base}{file}");
            let data = match release {
                Some(r) => match r.files.get(&file) {
                    Some((sha, size)) => self.cached(&url, sha, *size).await?,
                    None => continue,
                },
                None => match fetch::get(&url, MAX_INDEX, WITHIN, 0).await {
                    Ok(d) => d.to_vec(),
                    Err(FetchError::NotFound(_)) => continue,
                    Err(e) => return Err(e.into()),
                },
            };
            let ext = ext.to_string();
            return tokio::task::spawn_blocking(move || decompress(&ext, &data))
                .await
                .map_err(|e| index(&url, e))?
                .map_err(|e| index(&url, e));
        }
        Err(index(base, format!("no Packages index for '{part}'")))
    }

    /// The file at `url` whose digest is `sha256`: from the cache, or fetched, checked
    /// and kept there.
    pub async fn cached(&self, url: &str, sha256: &str, size: u64) -> Result<Vec<u8>, RepoError> {
        let path = self.cache.join(sha256.to_ascii_lowercase());
        if let Ok(data) = std::fs::read(&path) {
            if digest(&data) == sha256 {
                return Ok(data);
            }
        }
        let max = usize::try_from(size)
            .ok()
            .filter(|s| *s <= MAX_DOWNLOAD)
            .ok_or_else(|| index(url, format!("larger than {MAX_DOWNLOAD} bytes")))?;
        let data = fetch::get(url, max.saturating_add(1), WITHIN, 0).await?;
        if data.len() as u64 != size || digest(&data) != sha256 {
            return Err(RepoError::Digest(url.to_string()));
        }
        keep(&self.cache, &path, &data).map_err(|e| index(&path.display().to_string(), e))?;
        Ok(data.to_vec())
    }
}

/// Where a suite's Release and indexes are.
fn suite_base(source: &Source) -> String {
    if source.is_flat() {
        let path = source.suite.trim_start_matches("./");
        format!("{}/{path}", source.uri)
    } else {
        format!("{}/dists/{}/", source.uri, source.suite)
    }
}

/// The hex SHA-256 of `data`.
pub fn digest(data: &[u8]) -> String {
    let d = Sha256::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a cache file whole (beside it, then renamed), owner-only.
fn keep(dir: &Path, path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(data)?;
    tmp.persist(path).map(drop).map_err(|e| e.error)
}

/// An index's text, uncompressed (`xz`, `gz` or plain), bounded.
fn decompress(ext: &str, data: &[u8]) -> Result<String, String> {
    let reader: Box<dyn Read> = match ext {
        "xz" => Box::new(liblzma::read::XzDecoder::new(data)),
        "gz" => Box::new(flate2::read::GzDecoder::new(data)),
        _ => Box::new(data),
    };
    let mut text = Vec::new();
    reader
        .take(MAX_INDEX_TEXT + 1)
        .read_to_end(&mut text)
        .map_err(|e| format!("cannot uncompress: {e}"))?;
    if text.len() as u64 > MAX_INDEX_TEXT {
        return Err(format!("larger than {MAX_INDEX_TEXT} bytes uncompressed"));
    }
    String::from_utf8(text).map_err(|_| "not UTF-8 text".to_string())
}

/// Checks a clear-signed file (fetched from `url`) with `gpgv` against `keyring`; the
/// signed text on success.
async fn verify(keyring: &Path, url: &str, data: &[u8]) -> Result<String, RepoError> {
    let failed = |why: String| RepoError::Signature {
        url: url.to_string(),
        keyring: keyring.display().to_string(),
        why,
    };
    let dir = tempfile::tempdir().map_err(|e| failed(e.to_string()))?;
    let (input, output) = (dir.path().join("InRelease"), dir.path().join("Release"));
    std::fs::write(&input, data).map_err(|e| failed(e.to_string()))?;
    let out = tokio::process::Command::new("gpgv")
        .arg("--keyring")
        .arg(keyring)
        .arg("--output")
        .arg(&output)
        .arg(&input)
        .output()
        .await
        .map_err(|e| failed(format!("cannot run gpgv: {e}")))?;
    if !out.status.success() {
        return Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    let text = std::fs::read(&output).map_err(|e| failed(e.to_string()))?;
    String::from_utf8(text).map_err(|_| index(url, "the signed Release is not UTF-8"))
}

/// The text of a clear-signed message (`None` when it is not one).
fn clearsigned_body(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("-----BEGIN PGP SIGNED MESSAGE-----")?;
    let start = rest.find("\n\n")? + 2;
    let end = rest.find("\n-----BEGIN PGP SIGNATURE-----")?;
    rest.get(start..end)
}

/// Debian's name for the host's architecture (the containers run on it).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        "arm" => "armhf",
        "powerpc64" => "ppc64el",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clearsigned_text_is_what_is_between_the_armour() {
        let text = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nSuite: x\n-----BEGIN PGP SIGNATURE-----\nabc\n";
        assert_eq!(clearsigned_body(text), Some("Suite: x"));
        assert_eq!(clearsigned_body("Suite: x\n"), None);
    }

    #[test]
    fn flat_and_pool_suites_have_their_bases() {
        let mut s = Source {
            uri: "http://h/repo".into(),
            suite: "./".into(),
            components: vec![],
            archs: vec![],
        };
        assert_eq!(suite_base(&s), "http://h/repo/");
        s.suite = "bookworm".into();
        s.components = vec!["main".into()];
        assert_eq!(suite_base(&s), "http://h/repo/dists/bookworm/");
    }

    #[test]
    fn compressed_indexes_read_back() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"Package: a\n").unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(decompress("gz", &gz).unwrap(), "Package: a\n");
        assert!(decompress("xz", b"not xz").is_err());
        assert!(decompress("", &[0xff, 0xfe]).is_err());
    }

    #[tokio::test]
    async fn an_unlisted_repository_is_not_fetched() {
        let config = FleetConfig::default();
        let mut repos = Repositories::new(&config, Path::new("/nonexistent"), HashSet::new());
        let evil = Source {
            uri: "http://169.254.169.254/latest".into(),
            suite: "./".into(),
            components: vec![],
            archs: vec![],
        };
        let e = repos.suite(&evil).await.unwrap_err();
        assert!(matches!(e, RepoError::NotListed(_)), "{e}");
    }
}
