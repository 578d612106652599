//! The Debian Security Tracker's data (`https://security-tracker.debian.org/tracker/data/json`):
//! for every source package, every issue (CVE, or a tracker id) with its state in each
//! release. Only one release's part is kept: the reader streams the document and skips
//! the rest, so the whole file (≈ 50 MB) is never held as a tree.

use std::collections::HashMap;
use std::fmt;

use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::{FleetError, Result};

/// How urgent the tracker rates an issue, least first. Ratings it marks as guessed
/// (`low**`) count as the rating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Urgency {
    /// Not a problem in Debian's packaging, or the release is out of support.
    Unimportant,
    /// Not rated yet.
    NotYetAssigned,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
}

impl Urgency {
    /// Reads the tracker's word (`low`, `medium**`, `not yet assigned`, …); an unknown
    /// word is not rated.
    pub fn parse(word: &str) -> Urgency {
        match word.trim().trim_end_matches('*') {
            "unimportant" | "end-of-life" => Urgency::Unimportant,
            "low" => Urgency::Low,
            "medium" => Urgency::Medium,
            "high" => Urgency::High,
            _ => Urgency::NotYetAssigned,
        }
    }

    /// Reads a threshold as a person writes it (`high`, `medium`, `low`, `any`).
    pub fn threshold(word: &str) -> Option<Urgency> {
        match word {
            "any" | "unimportant" => Some(Urgency::Unimportant),
            "not-yet-assigned" => Some(Urgency::NotYetAssigned),
            "low" => Some(Urgency::Low),
            "medium" => Some(Urgency::Medium),
            "high" => Some(Urgency::High),
            _ => None,
        }
    }
}

impl fmt::Display for Urgency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Urgency::Unimportant => "unimportant",
            Urgency::NotYetAssigned => "not-yet-assigned",
            Urgency::Low => "low",
            Urgency::Medium => "medium",
            Urgency::High => "high",
        })
    }
}

/// An issue's state in one release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Fixed in this source version (`0`: never affected).
    Fixed(String),
    /// Open: no fixed version in the release yet.
    Open,
    /// Not yet known whether the release is affected.
    Undetermined,
}

/// One issue of one source package in the release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advisory {
    /// `CVE-2024-1234` (or the tracker's own id).
    pub id: String,
    /// Its state in the release.
    pub state: State,
    /// Its urgency there.
    pub urgency: Urgency,
    /// The start of its description.
    pub description: String,
}

/// The tracker's data for one release: advisories by source package.
#[derive(Debug, Default)]
pub struct Tracker {
    /// The release (`bookworm`).
    pub release: String,
    /// Source package → its advisories.
    pub sources: HashMap<String, Vec<Advisory>>,
}

/// The longest description kept.
const DESCRIPTION: usize = 200;

impl Tracker {
    /// Reads the tracker's JSON from `reader`, keeping `release`'s part.
    pub fn read(reader: impl std::io::Read, release: &str) -> Result<Tracker> {
        let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::new(reader));
        let sources = Sources { release }
            .deserialize(&mut de)
            .and_then(|s| de.end().map(|()| s))
            .map_err(|e| FleetError::Tracker(e.to_string()))?;
        Ok(Tracker {
            release: release.to_string(),
            sources,
        })
    }

    /// The number of advisories kept.
    pub fn len(&self) -> usize {
        self.sources.values().map(Vec::len).sum()
    }

    /// Whether none were.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}

/// The top level: source package → issues.
struct Sources<'a> {
    release: &'a str,
}

impl<'de> DeserializeSeed<'de> for Sources<'_> {
    type Value = HashMap<String, Vec<Advisory>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Sources<'_> {
    type Value = HashMap<String, Vec<Advisory>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of source packages")
    }
    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut out = HashMap::new();
        while let Some(source) = map.next_key::<String>()? {
            let advisories = map.next_value_seed(Issues {
                release: self.release,
            })?;
            if !advisories.is_empty() {
                out.entry(source)
                    .or_insert_with(Vec::new)
                    .extend(advisories);
            }
        }
        Ok(out)
    }
}

/// One source package's issues: id → issue.
struct Issues<'a> {
    release: &'a str,
}

impl<'de> DeserializeSeed<'de> for Issues<'_> {
    type Value = Vec<Advisory>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Issues<'_> {
    type Value = Vec<Advisory>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of issues")
    }
    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(id) = map.next_key::<String>()? {
            let issue: Issue = map.next_value()?;
            let Some(r) = issue.releases.and_then(|mut r| r.remove(self.release)) else {
                continue;
            };
            let state = match (r.status.as_str(), r.fixed_version) {
                ("resolved", Some(v)) => State::Fixed(v),
                ("open", _) => State::Open,
                ("undetermined", _) => State::Undetermined,
                _ => continue,
            };
            let mut description = issue.description.unwrap_or_default();
            if let Some((cut, _)) = description.char_indices().nth(DESCRIPTION) {
                description.truncate(cut);
            }
            out.push(Advisory {
                id,
                state,
                urgency: Urgency::parse(r.urgency.as_deref().unwrap_or("")),
                description,
            });
        }
        Ok(out)
    }
}

/// An issue as the tracker writes it (fields it has beside these are skipped).
#[derive(Deserialize)]
struct Issue {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    releases: Option<HashMap<String, Release>>,
}

#[derive(Deserialize)]
struct Release {
    status: String,
    #[serde(default)]
    fixed_version: Option<String>,
    #[serde(default)]
    urgency: Option<String>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const DATA: &str = r#"{
  "openssl": {
    "CVE-2024-0001": {"description": "a flaw in openssl", "scope": "remote",
      "releases": {
        "bookworm": {"status": "resolved", "repositories": {"bookworm": "3.0.15-1~deb12u1"},
                     "fixed_version": "3.0.14-1~deb12u1", "urgency": "high"},
        "bullseye": {"status": "open", "repositories": {}, "urgency": "high"}}},
    "CVE-2024-0002": {"releases": {"bookworm": {"status": "open", "repositories": {}, "urgency": "medium**"}}}
  },
  "zlib": {
    "CVE-2022-37434": {"releases": {"bookworm": {"status": "resolved", "repositories": {},
                       "fixed_version": "0", "urgency": "unimportant"}}},
    "TEMP-0000001-ABCDEF": {"releases": {"trixie": {"status": "open", "urgency": "low"}}}
  },
  "gone": {"CVE-2000-0001": {"releases": {"bookworm": {"status": "undetermined", "urgency": "not yet assigned"}}}}
}"#;

    #[test]
    fn keeps_one_releases_part() {
        let t = Tracker::read(DATA.as_bytes(), "bookworm").unwrap();
        assert_eq!(t.len(), 4);
        let ssl = &t.sources["openssl"];
        assert_eq!(ssl[0].state, State::Fixed("3.0.14-1~deb12u1".into()));
        assert_eq!(ssl[0].urgency, Urgency::High);
        assert_eq!(ssl[0].description, "a flaw in openssl");
        assert_eq!(ssl[1].state, State::Open);
        assert_eq!(ssl[1].urgency, Urgency::Medium);
        assert_eq!(t.sources["zlib"].len(), 1);
        assert_eq!(t.sources["gone"][0].state, State::Undetermined);
        let trixie = Tracker::read(DATA.as_bytes(), "trixie").unwrap();
        assert_eq!(trixie.len(), 1);
    }

    #[test]
    fn bad_data_is_an_error() {
        for bad in [
            "",
            "[]",
            "{\"a\": 1}",
            "{\"a\": {\"CVE\": {\"releases\": {\"bookworm\": {}}}}}",
            "{} trailing",
        ] {
            assert!(Tracker::read(bad.as_bytes(), "bookworm").is_err(), "{bad}");
        }
        assert!(Tracker::read("{}".as_bytes(), "bookworm")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn urgencies_order_and_read() {
        assert!(Urgency::High > Urgency::Medium && Urgency::Low > Urgency::NotYetAssigned);
        assert_eq!(Urgency::parse("low**"), Urgency::Low);
        assert_eq!(Urgency::parse("end-of-life"), Urgency::Unimportant);
        assert_eq!(Urgency::threshold("high"), Some(Urgency::High));
        assert_eq!(Urgency::threshold("severe"), None);
    }
}
