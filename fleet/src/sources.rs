//! The apt sources a container is configured with: its `/etc/apt/sources.list` (one line
//! per source, `deb [options] URI SUITE [COMPONENT…]`) and the files of
//! `/etc/apt/sources.list.d` (`*.list` in that format, `*.sources` in deb822). Only
//! binary (`deb`) sources that are enabled count; `deb-src` and disabled ones are left
//! out. A line or paragraph that cannot be read is an error naming the file and line.

use serde::Serialize;

use crate::{FleetError, Result};

/// One binary package source: a repository and suite with its components.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Source {
    /// The repository's URI, without a trailing `/` (`http://deb.debian.org/debian`).
    pub uri: String,
    /// The suite (`bookworm-security`), or a path ending in `/` for a flat repository.
    pub suite: String,
    /// The components (`main`); empty for a flat repository.
    pub components: Vec<String>,
    /// The architectures it is limited to (`arch=` / `Architectures:`); empty for all.
    pub archs: Vec<String>,
}

impl Source {
    /// Whether it is a flat repository (`deb URI ./`): no `dists/`, no components.
    pub fn is_flat(&self) -> bool {
        self.suite.ends_with('/')
    }

    /// Whether it is a security suite: the suite is `*-security` or `*/updates`, or the
    /// repository is Debian's security archive.
    pub fn is_security(&self) -> bool {
        self.suite.ends_with("-security")
            || self.suite.ends_with("/updates")
            || self.uri.ends_with("/debian-security")
            || self.uri.contains("://security.debian.org")
    }
}

/// The sources of one file: `name` says which format (`.sources` is deb822, anything
/// else one-line) and names the file in errors.
pub fn parse_file(name: &str, text: &str) -> Result<Vec<Source>> {
    if name.ends_with(".sources") {
        parse_deb822(name, text)
    } else {
        parse_lines(name, text)
    }
}

/// The one-line format.
fn parse_lines(name: &str, text: &str) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let bad = |reason: &str| FleetError::Sources {
            file: name.to_string(),
            line: i + 1,
            reason: reason.to_string(),
        };
        let (kind, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim_start();
        let (options, rest) = match rest.strip_prefix('[') {
            Some(r) => r
                .split_once(']')
                .ok_or_else(|| bad("an option list without ']'"))?,
            None => ("", rest),
        };
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            return Err(bad("a source needs a URI and a suite"));
        };
        let components: Vec<String> = words.map(str::to_string).collect();
        match kind {
            "deb" => {}
            "deb-src" => continue,
            _ => return Err(bad("a source line starts with deb or deb-src")),
        }
        let archs = options
            .split_whitespace()
            .filter_map(|o| o.split_once('='))
            .filter(|(k, _)| *k == "arch")
            .flat_map(|(_, v)| v.split(',').map(str::to_string))
            .collect();
        out.push(source(uri, suite, components, archs).map_err(|r| bad(&r))?);
    }
    Ok(out)
}

/// The deb822 format (`Types:`, `URIs:`, `Suites:`, `Components:`, `Enabled:`).
fn parse_deb822(name: &str, text: &str) -> Result<Vec<Source>> {
    let doc: deb822_fast::Deb822 =
        text.parse()
            .map_err(|e: deb822_fast::Error| FleetError::Sources {
                file: name.to_string(),
                line: 0,
                reason: e.to_string(),
            })?;
    let mut out = Vec::new();
    for (i, para) in doc.iter().enumerate() {
        let list = |field: &str| -> Vec<String> {
            para.get(field)
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect()
        };
        let enabled = para.get("Enabled").is_none_or(|v| v.trim() != "no");
        if !enabled || !list("Types").iter().any(|t| t == "deb") {
            continue;
        }
        let bad = |reason: String| FleetError::Sources {
            file: name.to_string(),
            line: 0,
            reason: format!("paragraph {}: {reason}", i + 1),
        };
        let (uris, suites) = (list("URIs"), list("Suites"));
        if uris.is_empty() || suites.is_empty() {
            return Err(bad("a source needs URIs and Suites".into()));
        }
        for uri in &uris {
            for suite in &suites {
                out.push(
                    source(uri, suite, list("Components"), list("Architectures")).map_err(&bad)?,
                );
            }
        }
    }
    Ok(out)
}

/// One source, checked: an http(s) URI; components exactly when the suite is not flat.
fn source(
    uri: &str,
    suite: &str,
    components: Vec<String>,
    archs: Vec<String>,
) -> std::result::Result<Source, String> {
    let uri = uri.trim_end_matches('/');
    if !(uri.starts_with("http://") || uri.starts_with("https://")) {
        return Err(format!(
            "'{uri}': only http and https repositories are read"
        ));
    }
    let flat = suite.ends_with('/');
    if flat != components.is_empty() {
        return Err(format!(
            "suite '{suite}': a flat repository ('./') has no components, any other needs some"
        ));
    }
    let clean = |s: &str| {
        !s.is_empty()
            && !s.split('/').any(|p| p == "..")
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
    };
    if !clean(suite) || !components.iter().all(|c| clean(c)) {
        return Err(format!(
            "suite '{suite}' or its components hold characters not allowed"
        ));
    }
    Ok(Source {
        uri: uri.to_string(),
        suite: suite.to_string(),
        components,
        archs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_sources_with_options_comments_and_flat_repositories() {
        let text = "# the mirror\n\
                    deb http://deb.debian.org/debian bookworm main contrib\n\
                    deb-src http://deb.debian.org/debian bookworm main\n\
                    deb [arch=amd64 trusted=yes] http://10.0.0.1:8080/repo/ ./ # local\n";
        let s = parse_file("sources.list", text).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].uri, "http://deb.debian.org/debian");
        assert_eq!(s[0].components, ["main", "contrib"]);
        assert!(!s[0].is_flat() && !s[0].is_security());
        assert_eq!(s[1].uri, "http://10.0.0.1:8080/repo");
        assert!(s[1].is_flat());
        assert_eq!(s[1].archs, ["amd64"]);
    }

    #[test]
    fn deb822_sources_expand_uris_and_suites_and_skip_disabled() {
        let text = "Types: deb deb-src\n\
                    # a comment\n\
                    URIs: http://deb.debian.org/debian\n\
                    Suites: bookworm bookworm-updates\n\
                    Components: main\n\
                    \n\
                    Types: deb\n\
                    URIs: http://deb.debian.org/debian-security\n\
                    Suites: bookworm-security\n\
                    Components: main\n\
                    \n\
                    Types: deb\n\
                    Enabled: no\n\
                    URIs: http://example.org/x\n\
                    Suites: x\n\
                    Components: main\n";
        let s = parse_file("debian.sources", text).unwrap();
        let suites: Vec<&str> = s.iter().map(|s| s.suite.as_str()).collect();
        assert_eq!(
            suites,
            ["bookworm", "bookworm-updates", "bookworm-security"]
        );
        assert!(s[2].is_security());
    }

    #[test]
    fn bad_sources_are_positioned_errors() {
        for (name, text) in [
            ("a.list", "deb http://x/debian\n"),
            ("a.list", "deb [arch=amd64 http://x/debian bookworm main\n"),
            ("a.list", "rpm http://x bookworm main\n"),
            ("a.list", "deb file:/srv/repo bookworm main\n"),
            ("a.list", "deb http://x/debian ../../etc main\n"),
            ("a.list", "deb http://x/debian bookworm\n"),
            ("a.list", "deb http://x/debian ./ main\n"),
            ("b.sources", "Types: deb\nSuites: bookworm\n"),
        ] {
            let e = parse_file(name, text).unwrap_err().to_string();
            assert!(e.contains(name), "{e}");
        }
        let e = parse_file("a.list", "\n\ndeb http://x\n").unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
    }
}
