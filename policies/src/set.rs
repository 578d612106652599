//! A policy set: the rules of every policy file, evaluated default-deny. Any matching
//! deny rule wins; otherwise the first matching allow rule (files in name order, rules in
//! file order) decides. Every evaluation can explain itself rule by rule.

use std::fmt;
use std::path::PathBuf;

use crate::admin::{AdminRule, SelfService};
use crate::load::{load, Parsed, PolicyErrors};
use crate::rules::{Effect, Rule};
use crate::{Decision, Policy, Request};

/// What one rule made of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// The rule's name.
    pub rule: String,
    /// Allow or deny.
    pub effect: Effect,
    /// `file:line`.
    pub origin: String,
    /// `None` if it matched; otherwise why not.
    pub mismatch: Option<String>,
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} '{}' ({}): ", self.effect, self.rule, self.origin)?;
        match &self.mismatch {
            None => f.write_str("matches"),
            Some(why) => f.write_str(why),
        }
    }
}

/// A decision with the reasoning behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The decision.
    pub decision: Decision,
    /// Every rule, in evaluation order, and what it made of the request.
    pub traces: Vec<Trace>,
}

impl Explanation {
    /// The traces as lines (for the audit log).
    pub fn lines(&self) -> Vec<String> {
        self.traces.iter().map(ToString::to_string).collect()
    }
}

/// The rules of a set of policy files.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    rules: Vec<Rule>,
    admin: Vec<AdminRule>,
    self_service: Vec<SelfService>,
}

impl PolicySet {
    /// Reads and checks every file under `paths`.
    pub fn load(paths: &[PathBuf]) -> Result<Self, PolicyErrors> {
        load(paths).map(Self::from_parsed)
    }

    /// A set of parsed files.
    pub fn from_parsed(p: Parsed) -> Self {
        PolicySet {
            rules: p.rules,
            admin: p.admin,
            self_service: p.self_service,
        }
    }

    /// The access rules, in evaluation order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}

fn trace(rule: &Rule, mismatch: Option<String>) -> Trace {
    Trace {
        rule: rule.name.clone(),
        effect: rule.effect,
        origin: rule.origin.to_string(),
        mismatch,
    }
}

impl Policy for PolicySet {
    fn admin_rules(&self) -> &[AdminRule] {
        &self.admin
    }

    fn self_service_rules(&self) -> &[SelfService] {
        &self.self_service
    }

    fn explain(&self, r: &Request) -> Explanation {
        let mut traces = Vec::new();
        let mut deny: Option<&Rule> = None;
        let mut allow: Option<&Rule> = None;
        for rule in self.rules.iter().filter(|r| r.effect == Effect::Deny) {
            let result = rule.check(r);
            if result.is_ok() && deny.is_none() {
                deny = Some(rule);
            }
            traces.push(trace(rule, result.err()));
        }
        for rule in self.rules.iter().filter(|r| r.effect == Effect::Allow) {
            let result = rule.check(r);
            let mismatch = match (&result, deny, allow) {
                (Err(why), ..) => Some(why.clone()),
                (Ok(()), Some(d), _) => Some(format!("matches, but deny rule '{}' wins", d.name)),
                (Ok(()), None, Some(first)) => Some(format!(
                    "matches, but allow rule '{}' came first",
                    first.name
                )),
                (Ok(()), None, None) => {
                    allow = Some(rule);
                    None
                }
            };
            traces.push(trace(rule, mismatch));
        }
        let decision = match (deny, allow) {
            (Some(d), _) => Decision::Deny {
                rule: Some(d.name.clone()),
                reason: d
                    .message
                    .clone()
                    .unwrap_or_else(|| "a policy rule forbids it".into()),
            },
            (None, Some(a)) => Decision::Allow {
                rule: a.name.clone(),
                grants: a.grants.clone(),
            },
            (None, None) => Decision::Deny {
                rule: None,
                reason: format!(
                    "no policy gives {} {} access to '{}' as {}",
                    r.subject.user, r.action, r.target.container, r.login
                ),
            },
        };
        Explanation { decision, traces }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::parse;
    use crate::{Action, Subject, Target};
    use chrono::{TimeZone, Utc};
    use std::collections::BTreeMap;

    const FILE: &str = r#"
[[deny]]
name = "no-contractors-on-prod"
groups = ["contractors"]
labels = { env = "prod" }
message = "contractors have no access to production"

[[allow]]
name = "ops-prod"
groups = ["ops"]
labels = { env = "prod" }
logins = ["root", "$user"]
actions = ["shell", "exec", "sftp"]
require_reason = true
max_session = "8h"

[[allow]]
name = "own"
groups = ["devs"]
owned = true
sudo = true

[[allow]]
name = "office-hours"
users = ["carol"]
containers = ["web*"]
days = "mon-fri"
hours = "08:00-18:00"
timezone = "Europe/Berlin"
from = ["10.0.0.0/8"]
"#;

    fn req(
        user: &str,
        groups: &[&str],
        container: &str,
        owner: &str,
        env: &str,
        login: &str,
    ) -> Request {
        let mut labels = BTreeMap::new();
        labels.insert("env".to_string(), env.to_string());
        Request {
            subject: Subject {
                user: user.into(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
            },
            target: Target {
                container: container.into(),
                owner: owner.into(),
                labels,
            },
            login: login.into(),
            action: Action::Shell,
            source: Some("10.1.2.3".parse().unwrap()),
            port: None,
            // A Thursday, 10:00 in Berlin.
            time: Utc.with_ymd_and_hms(2026, 11, 26, 9, 0, 0).unwrap(),
        }
    }

    fn set() -> PolicySet {
        PolicySet::from_parsed(parse("p.toml", FILE).unwrap())
    }

    #[test]
    fn ops_get_root_on_prod_with_a_reason_required() {
        let e = set().explain(&req("olga", &["ops"], "db1", "x", "prod", "root"));
        match e.decision {
            Decision::Allow { rule, grants } => {
                assert_eq!(rule, "ops-prod");
                assert!(grants.require_reason);
                assert_eq!(
                    grants.max_session,
                    Some(std::time::Duration::from_secs(8 * 3600))
                );
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn deny_wins_and_is_named() {
        let e = set().explain(&req(
            "cid",
            &["ops", "contractors"],
            "db1",
            "x",
            "prod",
            "root",
        ));
        assert_eq!(
            e.decision,
            Decision::Deny {
                rule: Some("no-contractors-on-prod".into()),
                reason: "contractors have no access to production".into()
            }
        );
        let ops = e.traces.iter().find(|t| t.rule == "ops-prod").unwrap();
        assert_eq!(
            ops.mismatch.as_deref(),
            Some("matches, but deny rule 'no-contractors-on-prod' wins")
        );
    }

    #[test]
    fn default_deny_explains_every_rule() {
        let e = set().explain(&req("dave", &["devs"], "web1", "erin", "dev", "dave"));
        assert!(!e.decision.is_allowed());
        let lines = e.lines();
        assert!(lines.contains(&"deny 'no-contractors-on-prod' (p.toml:2): dave (groups [devs]) is not in groups [contractors]".to_string()), "{lines:#?}");
        assert!(lines
            .iter()
            .any(|l| l.contains("'web1' is owned by erin, not dave")));
        assert!(lines
            .iter()
            .any(|l| l.contains("dave is not among users [carol]")));
        // Own container: allowed, with sudo; root is not their own login.
        let own = set().explain(&req("dave", &["devs"], "web1", "dave", "dev", "dave"));
        assert!(
            matches!(own.decision, Decision::Allow { ref rule, ref grants } if rule == "own" && grants.sudo)
        );
        let root = set().explain(&req("dave", &["devs"], "web1", "dave", "dev", "root"));
        assert!(root
            .lines()
            .iter()
            .any(|l| l.contains("login 'root' is not among [$user]")));
    }

    #[test]
    fn conditions_time_and_source() {
        let s = set();
        let mut r = req("carol", &[], "web1", "x", "dev", "carol");
        assert!(s.explain(&r).decision.is_allowed());
        r.source = Some("192.168.1.1".parse().unwrap());
        let e = s.explain(&r);
        assert!(
            e.lines()
                .iter()
                .any(|l| l.contains("source 192.168.1.1 is not in [10.0.0.0/8]")),
            "{:?}",
            e.lines()
        );
        r.source = Some("::ffff:10.9.9.9".parse().unwrap());
        assert!(s.explain(&r).decision.is_allowed());
        r.time = Utc.with_ymd_and_hms(2026, 11, 26, 18, 2, 0).unwrap();
        let e = s.explain(&r);
        assert!(
            e.lines()
                .iter()
                .any(|l| l.contains("Thu 19:02 CET is outside mon-fri 08:00-18:00 Europe/Berlin")),
            "{:?}",
            e.lines()
        );
    }
}
