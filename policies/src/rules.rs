//! A compiled rule and how it matches a request: each criterion either matches or says,
//! in one phrase, why not.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use globset::GlobSet;
use ipnet::IpNet;

use crate::window::TimeWindow;
use crate::{Action, Request};

/// The login that stands for the person's own account.
pub const OWN_LOGIN: &str = "$user";

/// Where a rule was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file, as given in `[policy] paths`.
    pub file: String,
    /// The line of its `[[allow]]`/`[[deny]]` header.
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Grants access (the first matching allow rule decides, unless a deny matches).
    Allow,
    /// Refuses access; any matching deny rule wins over every allow rule.
    Deny,
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        })
    }
}

/// What an allow rule gives beyond access itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Passwordless sudo inside the container for the person's own account.
    pub sudo: bool,
    /// Sessions end after this long.
    pub max_session: Option<Duration>,
    /// Sessions end after this long without input.
    pub idle_timeout: Option<Duration>,
    /// The person must give a reason (change reference).
    pub require_reason: bool,
}

/// Container names: globs, as written and compiled.
#[derive(Debug, Clone)]
pub struct Names {
    /// The globs as written.
    pub text: Vec<String>,
    /// The compiled set.
    pub set: GlobSet,
}

/// One rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Its name (given, or `FILE#N`).
    pub name: String,
    /// Allow or deny.
    pub effect: Effect,
    /// Where it was written.
    pub origin: Origin,
    /// Users it applies to.
    pub users: Vec<String>,
    /// Directory groups it applies to.
    pub groups: Vec<String>,
    /// Container name globs (`None`: any container).
    pub containers: Option<Names>,
    /// Labels every target must carry.
    pub labels: BTreeMap<String, String>,
    /// Only containers the person owns.
    pub owned: bool,
    /// Logins (`$user` = the person's own account; `None`: any login).
    pub logins: Option<Vec<String>>,
    /// Actions (`None`: any action).
    pub actions: Option<Vec<Action>>,
    /// Destination port ranges for port forwarding (empty: any port).
    pub ports: Vec<(u16, u16)>,
    /// Source address ranges (empty: anywhere).
    pub from: Vec<IpNet>,
    /// When it applies (`None`: always).
    pub window: Option<TimeWindow>,
    /// What an allow rule grants.
    pub grants: Grants,
    /// What a deny rule tells the person.
    pub message: Option<String>,
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    let v: Vec<String> = items.iter().map(ToString::to_string).collect();
    format!("[{}]", v.join(", "))
}

fn port_range(&(a, b): &(u16, u16)) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("{a}-{b}")
    }
}

impl Rule {
    /// `Ok` if the rule applies to the request, or why it does not.
    pub fn check(&self, r: &Request) -> Result<(), String> {
        self.check_subject(&r.subject)?;
        let s = &r.subject;
        let t = &r.target;
        if let Some(names) = &self.containers {
            if !names.set.is_match(&t.container) {
                return Err(format!(
                    "container '{}' does not match {}",
                    t.container,
                    list(&names.text)
                ));
            }
        }
        for (k, want) in &self.labels {
            match t.labels.get(k) {
                Some(v) if v == want => {}
                Some(v) => return Err(format!("label {k} is '{v}', not '{want}'")),
                None => return Err(format!("container '{}' has no label {k}", t.container)),
            }
        }
        if self.owned && t.owner != s.user {
            return Err(format!(
                "'{}' is owned by {}, not {}",
                t.container, t.owner, s.user
            ));
        }
        if let Some(logins) = &self.logins {
            let ok = logins
                .iter()
                .any(|l| *l == r.login || (l == OWN_LOGIN && r.login == s.user));
            if !ok {
                return Err(format!("login '{}' is not among {}", r.login, list(logins)));
            }
        }
        if let Some(actions) = &self.actions {
            if !actions.contains(&r.action) {
                return Err(format!(
                    "action '{}' is not among {}",
                    r.action,
                    list(actions)
                ));
            }
        }
        if let (Some(port), false) = (r.port, self.ports.is_empty()) {
            if !self.ports.iter().any(|&(a, b)| port >= a && port <= b) {
                let ranges: Vec<String> = self.ports.iter().map(port_range).collect();
                return Err(format!("port {port} is not among {}", list(&ranges)));
            }
        }
        if !self.from.is_empty() {
            match r.source.map(plain) {
                Some(ip) if self.from.iter().any(|n| n.contains(&ip)) => {}
                Some(ip) => return Err(format!("source {ip} is not in {}", list(&self.from))),
                None => return Err("the source address is unknown".into()),
            }
        }
        if let Some(w) = &self.window {
            if !w.contains(r.time) {
                return Err(format!("{} is outside {}", w.local(r.time), w.text));
            }
        }
        Ok(())
    }

    /// Whether the rule names the person, by name or group; why not, otherwise.
    fn check_subject(&self, s: &crate::Subject) -> Result<(), String> {
        let named = self.users.contains(&s.user);
        let in_group = self.groups.iter().any(|g| s.groups.contains(g));
        if !named && !in_group {
            let theirs = if s.groups.is_empty() {
                "no groups".to_string()
            } else {
                format!("groups {}", list(&s.groups))
            };
            return Err(match (self.users.is_empty(), self.groups.is_empty()) {
                (false, true) => format!("{} is not among users {}", s.user, list(&self.users)),
                (true, false) => format!(
                    "{} ({theirs}) is not in groups {}",
                    s.user,
                    list(&self.groups)
                ),
                _ => format!(
                    "{} ({theirs}) is not among users {} nor in groups {}",
                    s.user,
                    list(&self.users),
                    list(&self.groups)
                ),
            });
        }
        Ok(())
    }
}

/// An IPv4-mapped IPv6 address shown (and matched) as IPv4.
pub fn plain(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}
