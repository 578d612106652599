//! Rights on the control plane: `[[admin]]` rules delegate admin commands (a team lead
//! may power-cycle the team's containers, an auditor may read recordings), and
//! `[[self_service]]` rules let people create and manage containers of their own from
//! named images within quotas. Members of the configured admin group may do everything;
//! that is the gateway's business, not this module's.

use std::collections::BTreeMap;

use crate::rules::{Names, Origin};
use crate::{Subject, Target};

/// Every admin command, as rules name them.
pub const COMMANDS: &[&str] = &[
    "container.list",
    "container.show",
    "container.create",
    "container.set",
    "container.start",
    "container.stop",
    "container.restart",
    "container.delete",
    "container.snapshot",
    "container.console",
    "container.rebase",
    "fleet.packages",
    "fleet.updates",
    "fleet.vulns",
    "fleet.report",
    "fleet.vuln-data",
    "fleet.patch",
    "sessions.list",
    "sessions.search",
    "replay",
    "audit.verify",
];

/// Commands a rule grants only by naming them: a wildcard written before they existed
/// must not grant them. `container.console` reaches a container's console, around its
/// own login; `fleet.patch` runs apt as root in the containers it covers.
pub const NAMED_ONLY: &[&str] = &["container.console", "fleet.patch"];

/// Other names rules may use for a command (`patch`, as PRODUCT.md first named it).
pub fn canonical(command: &str) -> &str {
    match command {
        "patch" => "fleet.patch",
        other => other,
    }
}

/// Commands over many containers at once: a rule limited to some containers grants
/// them on those (the others are left out), as `container.list` shows only those.
pub fn over_containers(command: &str) -> bool {
    command == "container.list" || (command.starts_with("fleet.") && command != "fleet.vuln-data")
}

/// Whether a command pattern (`container.start`, `container.*`, `*`) names `command`
/// (wildcards never name the commands of [`NAMED_ONLY`]).
pub fn pattern_matches(pattern: &str, command: &str) -> bool {
    if pattern == command {
        return true;
    }
    if NAMED_ONLY.contains(&command) {
        return false;
    }
    pattern == "*"
        || pattern
            .strip_suffix(".*")
            .is_some_and(|p| command.split_once('.').is_some_and(|(group, _)| group == p))
}

/// An `[[admin]]` rule.
#[derive(Debug, Clone)]
pub struct AdminRule {
    /// Its name.
    pub name: String,
    /// Where it was written.
    pub origin: Origin,
    /// Users it applies to.
    pub users: Vec<String>,
    /// Groups it applies to.
    pub groups: Vec<String>,
    /// Command patterns.
    pub commands: Vec<String>,
    /// Containers it covers (`None`: any), for commands on one container.
    pub containers: Option<Names>,
    /// Labels the container must carry.
    pub labels: BTreeMap<String, String>,
}

/// A `[[self_service]]` rule.
#[derive(Debug, Clone)]
pub struct SelfService {
    /// Its name.
    pub name: String,
    /// Where it was written.
    pub origin: Origin,
    /// Users it applies to.
    pub users: Vec<String>,
    /// Groups it applies to.
    pub groups: Vec<String>,
    /// Images containers may be created from.
    pub images: Vec<String>,
    /// How many containers one person may own.
    pub max_containers: u32,
    /// The most memory per container, in bytes (also the default).
    pub max_memory: Option<u64>,
    /// The most CPUs per container (also the default).
    pub max_cpus: Option<f64>,
    /// The most processes per container (also the default).
    pub max_pids: Option<u64>,
    /// The longest idle stop a person may choose (`None`: only the runtime's default).
    pub max_idle_stop: Option<std::time::Duration>,
    /// Label keys a person may set on their containers (none by default; never `dr-of`
    /// or a `gatehouse.` key).
    pub label_keys: Vec<String>,
    /// Labels put on every container created under the rule.
    pub labels: BTreeMap<String, String>,
}

/// Why a label key may not be left to self-service, if it may not: `dr-of` places
/// containers (one person's could keep another's from starting), and the `gatehouse.`
/// namespace is the gateway's own.
pub fn check_label_key(key: &str) -> Result<(), String> {
    if key == "dr-of" {
        Err("'dr-of' decides where containers may run; self-service may not set it".into())
    } else if key.starts_with("gatehouse.") {
        Err(format!(
            "'{key}': labels in the gatehouse. namespace are the gateway's own"
        ))
    } else {
        Ok(())
    }
}

fn names_subject(users: &[String], groups: &[String], s: &Subject) -> bool {
    users.contains(&s.user) || groups.iter().any(|g| s.groups.contains(g))
}

impl AdminRule {
    /// Whether the rule lets `s` run `command` (on `target`, for commands on one container).
    pub fn allows(&self, s: &Subject, command: &str, target: Option<&Target>) -> bool {
        if !names_subject(&self.users, &self.groups, s)
            || !self.commands.iter().any(|p| pattern_matches(p, command))
        {
            return false;
        }
        match target {
            // Commands on no one container need a rule not limited to some containers;
            // `container.list` is shown filtered to the containers the rule covers.
            None => {
                over_containers(command) || (self.containers.is_none() && self.labels.is_empty())
            }
            Some(t) => {
                self.containers
                    .as_ref()
                    .is_none_or(|n| n.set.is_match(&t.container))
                    && self.labels.iter().all(|(k, v)| t.labels.get(k) == Some(v))
            }
        }
    }
}

impl SelfService {
    /// Whether the rule applies to `s`.
    pub fn applies_to(&self, s: &Subject) -> bool {
        names_subject(&self.users, &self.groups, s)
    }
}

/// What a self-service request asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Wish {
    /// Image.
    pub image: String,
    /// Memory in bytes (`None`: the rule's maximum).
    pub memory: Option<u64>,
    /// CPUs (`None`: the rule's maximum).
    pub cpus: Option<f64>,
    /// Processes (`None`: the rule's maximum).
    pub pids: Option<u64>,
    /// Labels asked for.
    pub labels: Vec<(String, String)>,
    /// Idle stop asked for: `Some(None)` is "never", `None` the default.
    pub idle_stop: Option<Option<std::time::Duration>>,
}

/// What a self-service request gets: limits and labels to create the container with.
#[derive(Debug, Clone, PartialEq)]
pub struct Granted {
    /// The deciding rule.
    pub rule: String,
    /// Memory limit.
    pub memory: Option<u64>,
    /// CPU limit.
    pub cpus: Option<f64>,
    /// Process limit.
    pub pids: Option<u64>,
    /// Labels to add.
    pub labels: BTreeMap<String, String>,
}

/// Decides a self-service creation by `s`, who owns `owned` containers now: the first
/// rule that applies and allows it grants it; otherwise the refusal says why (of the
/// first rule that applies, or that none does).
pub fn self_service(
    rules: &[SelfService],
    s: &Subject,
    owned: usize,
    w: &Wish,
) -> Result<Granted, String> {
    let mut first_refusal = None;
    for r in rules.iter().filter(|r| r.applies_to(s)) {
        match check_quota(r, owned, w) {
            Ok(g) => return Ok(g),
            Err(e) => {
                first_refusal.get_or_insert(e);
            }
        }
    }
    Err(first_refusal.unwrap_or_else(|| {
        format!(
            "{} may not create containers (no self-service rule applies)",
            s.user
        )
    }))
}

fn check_quota(r: &SelfService, owned: usize, w: &Wish) -> Result<Granted, String> {
    if !r.images.contains(&w.image) {
        return Err(format!(
            "image '{}' is not offered for self-service (rule '{}' offers {})",
            w.image,
            r.name,
            r.images.join(", ")
        ));
    }
    if owned >= r.max_containers as usize {
        return Err(format!(
            "quota reached: you own {owned} containers, rule '{}' allows {}",
            r.name, r.max_containers
        ));
    }
    let limit =
        |asked: Option<u64>, max: Option<u64>, what: &str, show: &dyn Fn(u64) -> String| match (
            asked, max,
        ) {
            (Some(a), Some(m)) if a > m => Err(format!(
                "{what} {} is more than rule '{}' allows ({})",
                show(a),
                r.name,
                show(m)
            )),
            (a, m) => Ok(a.or(m)),
        };
    let mib = |b: u64| format!("{}M", b >> 20);
    let memory = limit(w.memory, r.max_memory, "memory", &mib)?;
    let pids = limit(w.pids, r.max_pids, "pids", &|p| p.to_string())?;
    let cpus = match (w.cpus, r.max_cpus) {
        (Some(a), Some(m)) if a > m => {
            return Err(format!(
                "cpus {a} is more than rule '{}' allows ({m})",
                r.name
            ))
        }
        (a, m) => a.or(m),
    };
    check_labels(r, &w.labels)?;
    check_idle_stop(r, w.idle_stop)?;
    Ok(Granted {
        rule: r.name.clone(),
        memory,
        cpus,
        pids,
        labels: r.labels.clone(),
    })
}

fn check_labels(r: &SelfService, labels: &[(String, String)]) -> Result<(), String> {
    for (key, _) in labels {
        check_label_key(key)?;
        if !r.label_keys.contains(key) {
            return Err(format!(
                "label '{key}' may not be set by self-service (rule '{}' allows {})",
                r.name,
                if r.label_keys.is_empty() {
                    "none".to_string()
                } else {
                    r.label_keys.join(", ")
                }
            ));
        }
    }
    Ok(())
}

fn check_idle_stop(
    r: &SelfService,
    asked: Option<Option<std::time::Duration>>,
) -> Result<(), String> {
    let Some(asked) = asked else {
        return Ok(());
    };
    let show = |d: std::time::Duration| humantime::format_duration(d).to_string();
    match (asked, r.max_idle_stop) {
        (Some(a), Some(max)) if a <= max => Ok(()),
        (_, None) => Err(format!(
            "rule '{}' lets the idle stop be only the default",
            r.name
        )),
        (a, Some(max)) => Err(format!(
            "idle stop {} is longer than rule '{}' allows ({})",
            a.map(show).unwrap_or_else(|| "never".into()),
            r.name,
            show(max)
        )),
    }
}

/// Parses a memory size: bytes, or a number with K, M, G or T (powers of 1024).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 1u64 << 10),
        (i, 'M' | 'm') => (&s[..i], 1 << 20),
        (i, 'G' | 'g') => (&s[..i], 1 << 30),
        (i, 'T' | 't') => (&s[..i], 1 << 40),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(user: &str, groups: &[&str]) -> Subject {
        Subject {
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn rule() -> SelfService {
        SelfService {
            name: "devs-boxes".into(),
            origin: Origin {
                file: "p.toml".into(),
                line: 1,
            },
            users: vec![],
            groups: vec!["devs".into()],
            images: vec!["debian-12".into()],
            max_containers: 2,
            max_memory: Some(1 << 30),
            max_cpus: Some(2.0),
            max_pids: None,
            max_idle_stop: Some(std::time::Duration::from_secs(3600)),
            label_keys: vec!["team".into()],
            labels: BTreeMap::from([("origin".to_string(), "self-service".to_string())]),
        }
    }

    fn wish(memory: Option<u64>) -> Wish {
        Wish {
            image: "debian-12".into(),
            memory,
            cpus: None,
            pids: None,
            labels: vec![],
            idle_stop: None,
        }
    }

    #[test]
    fn self_service_sets_only_the_label_keys_and_idle_stop_its_rule_allows() {
        let rules = [rule()];
        let dev = subject("dave", &["devs"]);
        let with = |labels: &[(&str, &str)], idle: Option<Option<u64>>| Wish {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            idle_stop: idle.map(|d| d.map(std::time::Duration::from_secs)),
            ..wish(None)
        };
        assert!(self_service(&rules, &dev, 0, &with(&[("team", "a")], Some(Some(60)))).is_ok());
        for (labels, idle, why) in [
            (&[("dr-of", "web01")][..], None, "'dr-of' decides where"),
            (
                &[("gatehouse.self-service", "x")][..],
                None,
                "gateway's own",
            ),
            (
                &[("owner", "alice")][..],
                None,
                "rule 'devs-boxes' allows team",
            ),
            (&[][..], Some(Some(7200)), "idle stop 2h is longer"),
            (&[][..], Some(None), "idle stop never is longer"),
        ] {
            let e = self_service(&rules, &dev, 0, &with(labels, idle)).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        let mut strict = rule();
        strict.max_idle_stop = None;
        strict.label_keys.clear();
        let e = self_service(&[strict.clone()], &dev, 0, &with(&[], Some(Some(60)))).unwrap_err();
        assert!(e.contains("only the default"), "{e}");
        let e = self_service(&[strict], &dev, 0, &with(&[("team", "a")], None)).unwrap_err();
        assert!(e.contains("allows none"), "{e}");
    }

    #[test]
    fn quotas() {
        let rules = [rule()];
        let dev = subject("dave", &["devs"]);
        let g = self_service(&rules, &dev, 0, &wish(None)).unwrap();
        assert_eq!((g.memory, g.cpus), (Some(1 << 30), Some(2.0)));
        assert_eq!(g.labels["origin"], "self-service");
        assert!(self_service(&rules, &dev, 1, &wish(Some(512 << 20))).is_ok());
        let e = self_service(&rules, &dev, 2, &wish(None)).unwrap_err();
        assert!(e.contains("quota reached: you own 2 containers"), "{e}");
        let e = self_service(&rules, &dev, 0, &wish(Some(2 << 30))).unwrap_err();
        assert!(
            e.contains("memory 2048M is more than rule 'devs-boxes' allows (1024M)"),
            "{e}"
        );
        let mut w = wish(None);
        w.image = "alpine".into();
        assert!(self_service(&rules, &dev, 0, &w)
            .unwrap_err()
            .contains("not offered"));
        let e = self_service(&rules, &subject("eve", &["sales"]), 0, &wish(None)).unwrap_err();
        assert!(e.contains("no self-service rule applies"), "{e}");
    }

    #[test]
    fn command_patterns_and_sizes() {
        assert!(pattern_matches("container.*", "container.stop"));
        assert!(!pattern_matches("container.*", "sessions.list"));
        assert!(pattern_matches("*", "replay"));
        assert!(!pattern_matches("container.st", "container.stop"));
        assert!(pattern_matches("container.console", "container.console"));
        assert!(!pattern_matches("container.*", "container.console"));
        assert!(!pattern_matches("*", "container.console"));
        assert!(!pattern_matches("*", "fleet.patch"));
        assert!(!pattern_matches("fleet.*", "fleet.patch"));
        assert!(pattern_matches("fleet.patch", "fleet.patch"));
        assert!(pattern_matches(canonical("patch"), "fleet.patch"));
        assert!(pattern_matches("fleet.*", "fleet.report"));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("x"), None);
    }
}
