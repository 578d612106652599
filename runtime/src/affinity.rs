//! Affinity rules as inventory constraints. A label `dr-of = "web01"` makes a container
//! web01's disaster-recovery twin: the two must never run on the same host. The native
//! runtime has one host, so it refuses to start either while the other runs and says
//! why; multi-host placement honours the same rule by choosing another host.

use crate::inventory::ContainerRecord;

/// The label naming the container this one must never share a host with.
pub const DR_OF: &str = "dr-of";

/// The containers in `records` that `name` must not share a host with: the one its
/// `dr-of` names, and those whose `dr-of` names it.
pub fn kept_apart(records: &[ContainerRecord], name: &str) -> Vec<String> {
    let twin_of = records
        .iter()
        .find(|r| r.name == name)
        .and_then(|r| r.labels.get(DR_OF));
    records
        .iter()
        .filter(|r| r.name != name)
        .filter(|r| twin_of == Some(&r.name) || r.labels.get(DR_OF).is_some_and(|o| o == name))
        .map(|r| r.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, dr_of: Option<&str>) -> ContainerRecord {
        let mut r: ContainerRecord = serde_json::from_value(serde_json::json!({
            "name": name, "owner": "alice", "image": "debian-12",
            "created": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        if let Some(o) = dr_of {
            r.labels.insert(DR_OF.into(), o.into());
        }
        r
    }

    #[test]
    fn pairs_both_ways() {
        let all = [
            rec("web01", None),
            rec("dr01", Some("web01")),
            rec("dr02", Some("web01")),
            rec("x", None),
        ];
        assert_eq!(kept_apart(&all, "web01"), ["dr01", "dr02"]);
        assert_eq!(kept_apart(&all, "dr01"), ["web01"]);
        assert!(kept_apart(&all, "x").is_empty());
        // A twin of a container that does not exist has nothing to keep apart from.
        assert!(kept_apart(&[rec("dr9", Some("../nowhere"))], "dr9").is_empty());
    }
}
