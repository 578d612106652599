//! A repository's indexes: its `Release` file (which index files it has, with their
//! SHA-256 and size) and a `Packages` index (what it offers: name, version, architecture,
//! the `.deb`'s path, SHA-256 and size). The caller fetches them, checks the Release's
//! signature, and checks each Packages file against the Release before parsing it here.

use std::collections::HashMap;

use deb822_fast::borrowed::BorrowedParagraphIter;
use serde::Serialize;

use crate::{FleetError, Result};

/// A repository's `Release` (the signed text of `InRelease`, or `Release`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Release {
    /// `Suite:` (`stable`, `oldstable-security`).
    pub suite: String,
    /// `Codename:` (`bookworm`, `bookworm-security`).
    pub codename: String,
    /// `Label:` (`Debian-Security`).
    pub label: String,
    /// The index files it lists, by path under the suite: (SHA-256, size).
    pub files: HashMap<String, (String, u64)>,
}

/// Reads a Release's text.
pub fn parse_release(text: &str) -> Result<Release> {
    let doc: deb822_fast::Deb822 = text
        .parse()
        .map_err(|e: deb822_fast::Error| FleetError::Index(format!("Release: {e}")))?;
    let para = doc
        .iter()
        .next()
        .ok_or_else(|| FleetError::Index("Release: empty".into()))?;
    let field = |f: &str| {
        para.get(f)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let mut files = HashMap::new();
    for (i, line) in para.get("SHA256").unwrap_or_default().lines().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            [] => {}
            [hash, size, path] if is_sha256(hash) => {
                let size = size.parse().map_err(|_| {
                    FleetError::Index(format!("Release: SHA256 line {}: bad size", i + 1))
                })?;
                files.insert(path.to_string(), (hash.to_ascii_lowercase(), size));
            }
            _ => {
                return Err(FleetError::Index(format!(
                    "Release: SHA256 line {} is not 'hash size path'",
                    i + 1
                )))
            }
        }
    }
    Ok(Release {
        suite: field("Suite"),
        codename: field("Codename"),
        label: field("Label"),
        files,
    })
}

/// Whether `s` is a SHA-256 in hex.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// One package a repository offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Available {
    /// Binary package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Architecture.
    pub arch: String,
    /// Source package name.
    pub source: String,
    /// The `.deb`'s path under the repository's URI.
    pub filename: String,
    /// Its SHA-256.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The packages of a Packages index that `wanted` names (the rest are skipped without
/// being kept). A paragraph lacking a field, or with a bad version, path or digest, is
/// an error naming the package.
pub fn parse_packages(text: &str, wanted: &dyn Fn(&str) -> bool) -> Result<Vec<Available>> {
    let mut out = Vec::new();
    for (i, para) in BorrowedParagraphIter::new(text).enumerate() {
        let para = para.map_err(|e| FleetError::Index(format!("Packages: {e}")))?;
        let name = para.get_single("Package").unwrap_or_default().trim();
        if !wanted(name) {
            continue;
        }
        let bad = |reason: &str| FleetError::Index(format!("Packages, {name}: {reason}"));
        let get = |f: &str| para.get_single(f).map(str::trim).filter(|v| !v.is_empty());
        let (Some(version), Some(filename), Some(sha256), Some(size)) =
            (get("Version"), get("Filename"), get("SHA256"), get("Size"))
        else {
            return Err(bad(&format!(
                "paragraph {} lacks Version, Filename, SHA256 or Size",
                i + 1
            )));
        };
        if version.parse::<debversion::Version>().is_err() {
            return Err(bad(&format!("bad version '{version}'")));
        }
        if !is_sha256(sha256) {
            return Err(bad("SHA256 is not a digest"));
        }
        if !clean_path(filename) {
            return Err(bad(&format!(
                "Filename '{filename}' is not a plain relative path"
            )));
        }
        let size = size.parse().map_err(|_| bad("bad Size"))?;
        let source = get("Source")
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or(name);
        out.push(Available {
            name: name.to_string(),
            version: version.to_string(),
            arch: get("Architecture").unwrap_or_default().to_string(),
            source: source.to_string(),
            filename: filename.to_string(),
            sha256: sha256.to_ascii_lowercase(),
            size,
        });
    }
    Ok(out)
}

/// A relative path of plain names (no `..`, no empty part, no query characters).
fn clean_path(p: &str) -> bool {
    !p.starts_with('/')
        && p.split('/')
            .filter(|c| *c != ".")
            .all(|c| !c.is_empty() && c != "..")
        && p.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'?' | b'#' | b'%'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "9e0b5aabb2465b3d2e7a7fe27f9913846277833f7a2826e7767acccff5b588c5";

    #[test]
    fn release_lists_files_with_digest_and_size() {
        let text = format!(
            "Origin: Debian\nLabel: Debian-Security\nSuite: oldstable-security\n\
             Codename: bookworm-security\nSHA256:\n {SHA}  8790396 main/binary-amd64/Packages.xz\n"
        );
        let r = parse_release(&text).unwrap();
        assert_eq!(r.codename, "bookworm-security");
        assert_eq!(
            r.files["main/binary-amd64/Packages.xz"],
            (SHA.to_string(), 8790396)
        );
        assert!(parse_release("SHA256:\n abc 1 x\n").is_err());
        assert!(parse_release("").is_err());
    }

    #[test]
    fn packages_keep_what_is_wanted_and_check_each_field() {
        let para = |name: &str, file: &str| {
            format!(
                "Package: {name}\nSource: src (1.0)\nVersion: 1.0-2\nArchitecture: amd64\n\
                 Filename: {file}\nSize: 10\nSHA256: {SHA}\nDescription: x\n more\n\n"
            )
        };
        let text = para("a", "pool/main/a/a_1.0-2_amd64.deb") + &para("b", "b.deb");
        let got = parse_packages(&text, &|n| n == "a").unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].source, "src");
        assert_eq!(got[0].filename, "pool/main/a/a_1.0-2_amd64.deb");
        for file in ["../../etc/shadow", "/etc/shadow", "a?b.deb", "pool//a.deb"] {
            let text = para("a", file);
            assert!(parse_packages(&text, &|_| true).is_err(), "{file}");
        }
        let flat = para("a", "./a_1.0-2_amd64.deb");
        assert!(parse_packages(&flat, &|_| true).is_ok());
        let no_sha = "Package: a\nVersion: 1\nFilename: a.deb\nSize: 1\n";
        assert!(parse_packages(no_sha, &|_| true).is_err());
    }
}
