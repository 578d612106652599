//! Which known vulnerabilities a container's packages have: its installed source
//! versions against the tracker's fixed versions, in dpkg's ordering.

use std::collections::BTreeMap;

use debversion::Version;
use serde::Serialize;

use crate::packages::Package;
use crate::tracker::{State, Tracker, Urgency};

/// One open vulnerability of one source package in a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The issue (`CVE-2024-1234`).
    pub id: String,
    /// The source package.
    pub source: String,
    /// The binary packages installed from it.
    pub packages: Vec<String>,
    /// The installed source version.
    pub installed: String,
    /// The version that fixes it; `None` while no fix is in the release.
    pub fixed: Option<String>,
    /// Its urgency.
    pub urgency: Urgency,
    /// The start of its description.
    pub description: String,
}

/// The findings for `packages` at or above `min`, most urgent first, then by id. An
/// issue fixed in a version the container has (or never affecting the release, fixed
/// version `0`) is no finding; an open one is; an undetermined one is left out.
pub fn findings(packages: &[Package], tracker: &Tracker, min: Urgency) -> Vec<Finding> {
    // Each installed source version once, with its binaries.
    let mut sources: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
    for p in packages {
        sources
            .entry((p.source.as_str(), p.source_version.as_str()))
            .or_default()
            .push(p.name.clone());
    }
    let mut out = Vec::new();
    for ((source, installed), binaries) in sources {
        let Some(advisories) = tracker.sources.get(source) else {
            continue;
        };
        let Ok(have) = installed.parse::<Version>() else {
            continue;
        };
        for a in advisories.iter().filter(|a| a.urgency >= min) {
            let fixed = match &a.state {
                State::Fixed(v) => match v.parse::<Version>() {
                    Ok(fix) if have < fix => Some(v.clone()),
                    _ => continue,
                },
                State::Open => None,
                State::Undetermined => continue,
            };
            out.push(Finding {
                id: a.id.clone(),
                source: source.to_string(),
                packages: binaries.clone(),
                installed: installed.to_string(),
                fixed,
                urgency: a.urgency,
                description: a.description.clone(),
            });
        }
    }
    out.sort_by(|a, b| b.urgency.cmp(&a.urgency).then_with(|| a.id.cmp(&b.id)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::tests::DATA;

    fn pkg(name: &str, source: &str, version: &str) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            source: source.into(),
            source_version: version.into(),
        }
    }

    #[test]
    fn an_older_version_is_vulnerable_a_fixed_one_is_not() {
        let t = Tracker::read(DATA.as_bytes(), "bookworm").unwrap();
        let old = [
            pkg("libssl3", "openssl", "3.0.11-1~deb12u2"),
            pkg("openssl", "openssl", "3.0.11-1~deb12u2"),
            pkg("zlib1g", "zlib", "1:1.2.13.dfsg-1"),
        ];
        let f = findings(&old, &t, Urgency::Unimportant);
        let ids: Vec<&str> = f.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["CVE-2024-0001", "CVE-2024-0002"]);
        assert_eq!(f[0].packages, ["libssl3", "openssl"]);
        assert_eq!(f[0].fixed.as_deref(), Some("3.0.14-1~deb12u1"));
        assert_eq!(f[1].fixed, None);
        // At the fixed version (and beyond, by dpkg's ordering: ~ sorts early) only the
        // open one is left.
        for v in ["3.0.14-1~deb12u1", "3.0.14-1", "3.0.15-1~deb12u1"] {
            let f = findings(&[pkg("libssl3", "openssl", v)], &t, Urgency::Unimportant);
            assert_eq!(f.len(), 1, "{v}: {f:?}");
        }
        // A threshold drops the medium one.
        assert_eq!(findings(&old, &t, Urgency::High).len(), 1);
    }
}
