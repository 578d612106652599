//! Placement on an LXD cluster: LXD's scheduler chooses a member, unless an affinity
//! rule forbids some. A container's `dr-of` twins must never share its member, so a new
//! instance with twins is created on an online member none of them is on (by name
//! order); if there is none, creation is refused with the reason.

use crate::error::RuntimeError;
use serde_json::Value;

/// A cluster member as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its name (`server_name`).
    pub name: String,
    /// Whether it is online and can take instances.
    pub online: bool,
}

/// The members in an answer of `GET /1.0/cluster/members?recursion=1`.
pub fn members(answer: &Value) -> Vec<Member> {
    answer
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            Some(Member {
                name: m["server_name"].as_str()?.to_string(),
                online: m["status"].as_str() == Some("Online"),
            })
        })
        .collect()
}

/// Where to create `name`, given its twins and the members they are on: `None` lets
/// LXD's scheduler choose; an error (`RuntimeError::Placement`) says why no member will do.
pub fn choose(
    members: &[Member],
    name: &str,
    twins: &[(String, Option<String>)],
) -> Result<Option<String>, RuntimeError> {
    let taken: Vec<&str> = twins.iter().filter_map(|(_, h)| h.as_deref()).collect();
    if taken.is_empty() {
        return Ok(None);
    }
    let mut free: Vec<&Member> = members
        .iter()
        .filter(|m| m.online && !taken.contains(&m.name.as_str()))
        .collect();
    free.sort_by(|a, b| a.name.cmp(&b.name));
    match free.first() {
        Some(m) => Ok(Some(m.name.clone())),
        None => {
            let where_: Vec<String> = twins
                .iter()
                .filter_map(|(t, h)| h.as_ref().map(|h| format!("'{t}' on {h}")))
                .collect();
            Err(RuntimeError::Placement(format!(
                "no online cluster member can take '{name}': its disaster-recovery twins ({}) \
                 occupy every one ({} online of {})",
                where_.join(", "),
                members.iter().filter(|m| m.online).count(),
                members.len()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The member chosen (`None`: LXD's scheduler's choice); panics on a refusal.
    fn pick(m: &[Member], name: &str, twins: &[(String, Option<String>)]) -> Option<String> {
        choose(m, name, twins).expect("a member")
    }

    /// The shape LXD 5.0 answers with (trimmed).
    fn cluster(statuses: &[(&str, &str)]) -> Vec<Member> {
        let answer: Vec<Value> = statuses
            .iter()
            .map(|(n, s)| {
                json!({"server_name": n, "url": format!("https://{n}:8443"), "roles": ["database"],
                    "architecture": "x86_64", "failure_domain": "default", "groups": ["default"],
                    "status": s, "message": "Fully operational"})
            })
            .collect();
        members(&Value::Array(answer))
    }

    #[test]
    fn without_twins_lxds_scheduler_chooses() {
        let m = cluster(&[("m1", "Online"), ("m2", "Online")]);
        assert_eq!(pick(&m, "web01", &[]), None);
        assert_eq!(
            pick(&m, "web01", &[("web01-dr".into(), None)]),
            None,
            "a twin not placed yet constrains nothing"
        );
    }

    #[test]
    fn a_twin_is_never_placed_on_its_partners_member() {
        let m = cluster(&[("m1", "Online"), ("m2", "Online"), ("m3", "Online")]);
        assert_eq!(
            pick(&m, "dr", &[("web01".into(), Some("m1".into()))]),
            Some("m2".into())
        );
        assert_eq!(
            pick(
                &m,
                "web01",
                &[
                    ("dr1".into(), Some("m2".into())),
                    ("dr2".into(), Some("m1".into()))
                ]
            ),
            Some("m3".into())
        );
    }

    #[test]
    fn offline_members_do_not_count_and_an_impossible_request_says_why() {
        let m = cluster(&[("m1", "Online"), ("m2", "Offline")]);
        let e = choose(&m, "dr", &[("web01".into(), Some("m1".into()))])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'web01' on m1") && e.contains("1 online of 2"),
            "{e}"
        );
        assert!(members(&json!({"not": "a list"})).is_empty());
    }
}
