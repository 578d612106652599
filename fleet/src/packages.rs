//! A container's installed packages, from the text of its dpkg status database
//! (`/var/lib/dpkg/status`).

use crate::{FleetError, Result};
use debversion::Version;
use serde::Serialize;

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    /// Binary package name.
    pub name: String,
    /// Installed version.
    pub version: String,
    /// Architecture (`amd64`, `all`).
    pub arch: String,
    /// Source package name.
    pub source: String,
    /// Source package version (the binary's unless the status says otherwise).
    pub source_version: String,
}

impl Package {
    /// The source version, parsed (checked when the list was read).
    pub fn source_version(&self) -> Option<Version> {
        self.source_version.parse().ok()
    }
}

/// The packages the status text lists as installed (`Status: install ok installed`, or
/// held), sorted by name and architecture. A paragraph of another state (removed with
/// its configuration left, half-installed) is not installed and is left out.
pub fn parse_status(text: &str) -> Result<Vec<Package>> {
    let doc: deb822_fast::Deb822 = text
        .parse()
        .map_err(|e: deb822_fast::Error| FleetError::Status(e.to_string()))?;
    let mut out = Vec::new();
    for (i, para) in doc.iter().enumerate() {
        let installed = para
            .get("Status")
            .is_some_and(|s| s.split_whitespace().last() == Some("installed"));
        if !installed {
            continue;
        }
        out.push(package(para, i)?);
    }
    out.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
    Ok(out)
}

/// One installed package from its paragraph (the `i`th, for errors).
fn package(para: &deb822_fast::Paragraph, i: usize) -> Result<Package> {
    let name = para.get("Package").map(str::trim).unwrap_or_default();
    let bad = |reason: String| FleetError::Package {
        package: if name.is_empty() {
            format!("paragraph {}", i + 1)
        } else {
            name.to_string()
        },
        reason,
    };
    if name.is_empty() {
        return Err(bad("no Package field".into()));
    }
    let version = para
        .get("Version")
        .map(str::trim)
        .ok_or_else(|| bad("no Version field".into()))?;
    check_version(version).map_err(bad)?;
    let arch = para.get("Architecture").map_or("", str::trim);
    // `Source: name` or `Source: name (version)`.
    let (source, source_version) = match para.get("Source").map(str::trim) {
        None | Some("") => (name, version),
        Some(s) => match s.split_once(' ') {
            None => (s, version),
            Some((n, v)) => {
                let v = v
                    .trim()
                    .trim_start_matches('(')
                    .trim_end_matches(')')
                    .trim();
                check_version(v).map_err(bad)?;
                (n, v)
            }
        },
    };
    Ok(Package {
        name: name.to_string(),
        version: version.to_string(),
        arch: arch.to_string(),
        source: source.to_string(),
        source_version: source_version.to_string(),
    })
}

fn check_version(v: &str) -> std::result::Result<(), String> {
    v.parse::<Version>()
        .map(|_| ())
        .map_err(|e| format!("bad version '{}': {e}", v.escape_debug()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Package: zlib1g
Status: install ok installed
Priority: optional
Architecture: amd64
Multi-Arch: same
Source: zlib
Version: 1:1.2.13.dfsg-1
Description: compression library - runtime
 zlib is a library implementing the deflate compression method.

Package: libssl3
Status: install ok installed
Architecture: amd64
Source: openssl (3.0.15-1~deb12u1)
Version: 3.0.15-1~deb12u1
Description: Secure Sockets Layer toolkit

Package: oldthing
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: bash
Status: hold ok installed
Architecture: amd64
Version: 5.2.15-2+b7
";

    #[test]
    fn installed_packages_with_their_sources() {
        let p = parse_status(STATUS).unwrap();
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["bash", "libssl3", "zlib1g"]);
        assert_eq!(p[0].source, "bash");
        assert_eq!(p[0].source_version, "5.2.15-2+b7");
        assert_eq!(p[1].source, "openssl");
        assert_eq!(p[1].source_version, "3.0.15-1~deb12u1");
        assert_eq!(p[2].source, "zlib");
        assert_eq!(p[2].source_version, "1:1.2.13.dfsg-1");
        assert_eq!(p[2].arch, "amd64");
    }

    #[test]
    fn bad_input_is_an_error_naming_the_package_not_a_panic() {
        let e = parse_status("Package: x\nStatus: install ok installed\n").unwrap_err();
        assert!(e.to_string().contains("package x: no Version"), "{e}");
        let e = parse_status("Status: install ok installed\nVersion: 1\n").unwrap_err();
        assert!(e.to_string().contains("paragraph 1"), "{e}");
        for bad in ["1 2", "ä"] {
            let text = format!("Package: y\nStatus: install ok installed\nVersion: {bad}\n");
            let e = parse_status(&text).unwrap_err();
            assert!(e.to_string().contains("bad version"), "{e}");
        }
        for junk in [
            "",
            "\n\n\n",
            "garbage without colon\n",
            "\u{0}\u{1}: \u{2}\n",
        ] {
            let _ = parse_status(junk);
        }
    }
}
