//! Which of a container's installed packages have newer versions in the indexes of its
//! own apt sources, in dpkg's version ordering, and which of those come from a security
//! suite (as `unattended-upgrades` counts them).

use debversion::Version;
use serde::Serialize;

use crate::index::Available;
use crate::packages::Package;

/// What one repository suite offers, and whether it is a security suite.
#[derive(Debug, Clone, Copy)]
pub struct Offer<'a> {
    /// The repository's URI (what `Available::filename` is under).
    pub uri: &'a str,
    /// Whether it is a security suite.
    pub security: bool,
    /// The packages it offers (those the fleet has installed).
    pub packages: &'a [Available],
}

/// A version to move to and where its `.deb` is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// The version.
    pub version: String,
    /// The `.deb`'s URL.
    pub url: String,
    /// Its SHA-256.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// One pending update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Update {
    /// Binary package name.
    pub name: String,
    /// Architecture.
    pub arch: String,
    /// The installed version.
    pub installed: String,
    /// The newest version offered.
    pub candidate: Target,
    /// The newest version a security suite offers, when it is newer than the installed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security: Option<Target>,
}

impl Update {
    /// The version to install: with `security_only`, the security one (`None` if there is
    /// none), else the newest.
    pub fn target(&self, security_only: bool) -> Option<&Target> {
        if security_only {
            self.security.as_ref()
        } else {
            Some(&self.candidate)
        }
    }
}

/// The pending updates of `installed` against `offers`, by name. An offer of another
/// architecture (other than `all` for an `all` package) does not count, nor does an
/// unparsable version on either side.
pub fn updates(installed: &[Package], offers: &[Offer]) -> Vec<Update> {
    let mut out = Vec::new();
    for p in installed {
        let Ok(have) = p.version.parse::<Version>() else {
            continue;
        };
        let mut best: Option<(Version, Target)> = None;
        let mut security: Option<(Version, Target)> = None;
        for offer in offers {
            for a in offer
                .packages
                .iter()
                .filter(|a| a.name == p.name && a.arch == p.arch)
            {
                let Ok(v) = a.version.parse::<Version>() else {
                    continue;
                };
                if v <= have {
                    continue;
                }
                let target = || Target {
                    version: a.version.clone(),
                    url: format!("{}/{}", offer.uri, a.filename.trim_start_matches("./")),
                    sha256: a.sha256.clone(),
                    size: a.size,
                };
                if best.as_ref().is_none_or(|(b, _)| v > *b) {
                    best = Some((v.clone(), target()));
                }
                if offer.security && security.as_ref().is_none_or(|(b, _)| v > *b) {
                    security = Some((v, target()));
                }
            }
        }
        if let Some((_, candidate)) = best {
            out.push(Update {
                name: p.name.clone(),
                arch: p.arch.clone(),
                installed: p.version.clone(),
                candidate,
                security: security.map(|(_, t)| t),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installed(name: &str, version: &str) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            source: name.into(),
            source_version: version.into(),
        }
    }

    fn offered(name: &str, version: &str) -> Available {
        Available {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            source: name.into(),
            filename: format!("pool/{name}_{version}.deb"),
            sha256: "0".repeat(64),
            size: 1,
        }
    }

    #[test]
    fn newer_versions_in_dpkg_order_and_security_ones_apart() {
        let have = [
            installed("libc6", "2.36-9+deb12u7"),
            installed("bash", "5.2.15-2+b7"),
            installed("curl", "7.88.1-10+deb12u8"),
        ];
        let main = [
            offered("libc6", "2.36-9+deb12u10"),
            offered("bash", "5.2.15-2+b2"),
            offered("curl", "7.88.1-10+deb12u8"),
        ];
        let sec = [offered("libc6", "2.36-9+deb12u9")];
        let offers = [
            Offer {
                uri: "http://m/debian",
                security: false,
                packages: &main,
            },
            Offer {
                uri: "http://m/debian-security",
                security: true,
                packages: &sec,
            },
        ];
        let got = updates(&have, &offers);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].candidate.version, "2.36-9+deb12u10");
        assert_eq!(
            got[0].candidate.url,
            "http://m/debian/pool/libc6_2.36-9+deb12u10.deb"
        );
        let sec = got[0].target(true).unwrap();
        assert_eq!(sec.version, "2.36-9+deb12u9");
        assert!(sec.url.starts_with("http://m/debian-security/"));
    }

    #[test]
    fn other_architectures_and_bad_versions_do_not_count() {
        let have = [installed("a", "1.0")];
        let mut other = offered("a", "2.0");
        other.arch = "arm64".into();
        let mut bad = offered("a", "9");
        bad.version = "not a version!".into();
        let offers = [Offer {
            uri: "http://m",
            security: false,
            packages: &[other, bad],
        }];
        assert!(updates(&have, &offers).is_empty());
        assert!(updates(&have, &[]).is_empty());
    }
}
