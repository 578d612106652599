//! The inventory kept in LXD itself: a container's record (owner, image, purpose, labels,
//! limits, dates) as instance config keys — `user.gatehouse.*` for ours and LXD's own
//! `limits.*` — so LXD is the single source of truth and several gateways can share it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::error::{Result, RuntimeError};
use crate::inventory::ContainerRecord;
use crate::limits::Limits;

/// The prefix of every key gatehouse writes.
pub const PREFIX: &str = "user.gatehouse.";
/// The key that marks an instance as one of gatehouse's.
pub const OWNER: &str = "user.gatehouse.owner";
const LABEL: &str = "user.gatehouse.label.";

/// The config keys that hold `record`. Keys it no longer has (a removed label or limit)
/// are given as empty strings, which LXD's PATCH removes.
pub fn to_config(
    record: &ContainerRecord,
    previous: Option<&Map<String, Value>>,
) -> Map<String, Value> {
    let mut c = Map::new();
    let mut put = |k: &str, v: String| {
        c.insert(k.to_string(), Value::String(v));
    };
    put(OWNER, record.owner.clone());
    put("user.gatehouse.image", record.image.clone());
    put("user.gatehouse.purpose", record.purpose.clone());
    put("user.gatehouse.created", record.created.to_rfc3339());
    put(
        "user.gatehouse.last_login",
        record
            .last_login
            .map(|t| t.to_rfc3339())
            .unwrap_or_default(),
    );
    put(
        "user.gatehouse.idle_stop",
        record.idle_stop.clone().unwrap_or_default(),
    );
    // LXD's own switch for containers that run containers (its AppArmor profile then
    // allows nested user namespaces and the mounts they need).
    put(
        "security.nesting",
        if record.nesting { "true" } else { "" }.to_string(),
    );
    for (k, v) in &record.labels {
        put(&format!("{LABEL}{k}"), v.clone());
    }
    let l = &record.limits;
    put(
        "limits.memory",
        l.memory.map(|m| m.to_string()).unwrap_or_default(),
    );
    put(
        "limits.cpu",
        l.cpus
            .map(|c| (c.ceil() as u64).max(1).to_string())
            .unwrap_or_default(),
    );
    put(
        "limits.cpu.allowance",
        l.cpus
            .filter(|c| c.fract() != 0.0)
            .map(|c| format!("{}ms/100ms", (c * 100.0).round() as u64))
            .unwrap_or_default(),
    );
    put(
        "limits.processes",
        l.pids.map(|p| p.to_string()).unwrap_or_default(),
    );
    if let Some(prev) = previous {
        for k in prev.keys().filter(|k| k.starts_with(LABEL)) {
            c.entry(k.clone()).or_insert(Value::String(String::new()));
        }
    }
    c
}

/// The record an instance's config holds; `None` if it is not one of gatehouse's.
pub fn from_instance(instance: &Value) -> Result<Option<ContainerRecord>> {
    let name = instance["name"].as_str().unwrap_or_default().to_string();
    let config = match instance["config"].as_object() {
        Some(c) => c,
        None => return Ok(None),
    };
    let get = |k: &str| config.get(k).and_then(Value::as_str).unwrap_or_default();
    if get(OWNER).is_empty() {
        return Ok(None);
    }
    let corrupt = |what: &str, e: &dyn std::fmt::Display| {
        RuntimeError::Engine(format!("instance {name}: bad {what}: {e}"))
    };
    let time = |k: &str| -> Result<Option<DateTime<Utc>>> {
        match get(k) {
            "" => Ok(None),
            t => DateTime::parse_from_rfc3339(t)
                .map(|d| Some(d.with_timezone(&Utc)))
                .map_err(|e| corrupt(k, &e)),
        }
    };
    let number = |k: &str| -> Result<Option<u64>> {
        match get(k) {
            "" => Ok(None),
            t => t.parse().map(Some).map_err(|e| corrupt(k, &e)),
        }
    };
    let labels: BTreeMap<String, String> = config
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(LABEL)?.to_string(), v.as_str()?.to_string())))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let cpus = match (get("limits.cpu.allowance"), number("limits.cpu")?) {
        (a, _) if a.ends_with("ms/100ms") => a
            .trim_end_matches("ms/100ms")
            .parse::<f64>()
            .ok()
            .map(|ms| ms / 100.0),
        (_, c) => c.map(|c| c as f64),
    };
    Ok(Some(ContainerRecord {
        name: name.clone(),
        owner: get(OWNER).to_string(),
        image: get("user.gatehouse.image").to_string(),
        generation: None,
        purpose: get("user.gatehouse.purpose").to_string(),
        labels,
        limits: Limits {
            memory: crate::limits::parse_memory(get("limits.memory")).ok(),
            cpus,
            pids: number("limits.processes")?,
            // LXD sizes disks through its storage pools, not here.
            disk: None,
        },
        created: time("user.gatehouse.created")?.unwrap_or_else(Utc::now),
        last_login: time("user.gatehouse.last_login")?,
        address: None,
        host: instance["location"]
            .as_str()
            .filter(|l| !l.is_empty() && *l != "none")
            .map(str::to_string),
        idle_stop: Some(get("user.gatehouse.idle_stop").to_string()).filter(|s| !s.is_empty()),
        nesting: get("security.nesting") == "true",
        id_base: None,
        // LXD always boots the image's init.
        init: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record() -> ContainerRecord {
        ContainerRecord {
            name: "web01".into(),
            owner: "alice".into(),
            image: "debian-12".into(),
            generation: None,
            purpose: "the shop".into(),
            labels: [("env".to_string(), "prod".to_string())].into(),
            limits: Limits {
                memory: Some(512 * 1024 * 1024),
                cpus: Some(1.5),
                pids: Some(300),
                disk: None,
            },
            created: "2026-11-27T01:00:00Z".parse().unwrap(),
            last_login: Some("2026-11-27T02:00:00Z".parse().unwrap()),
            address: None,
            host: None,
            nesting: false,
            id_base: None,
            idle_stop: Some("2h".into()),
            init: None,
        }
    }

    #[test]
    fn a_record_survives_the_trip_through_instance_config() {
        let r = record();
        let config = to_config(&r, None);
        assert_eq!(config["limits.cpu"], "2");
        assert_eq!(config["limits.cpu.allowance"], "150ms/100ms");
        let back = from_instance(&json!({"name": "web01", "config": config}))
            .unwrap()
            .unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn removed_labels_are_cleared_and_foreign_instances_ignored() {
        let mut r = record();
        let before = to_config(&r, None);
        r.labels.clear();
        let after = to_config(&r, Some(&before));
        assert_eq!(after["user.gatehouse.label.env"], "");
        assert!(
            from_instance(&json!({"name": "x", "config": {"limits.cpu": "1"}}))
                .unwrap()
                .is_none()
        );
        let bad = json!({"name": "x", "config": {OWNER: "a", "limits.processes": "lots"}});
        assert!(from_instance(&bad).is_err());
    }
}
