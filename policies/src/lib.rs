//! Access policies for gatehouse: who may reach which container, as which login, to do
//! what. This crate is pure: it decides from the facts it is given and does no I/O
//! beyond reading policy files.
//!
//! Policy files ([`load`]) hold `[[allow]]` and `[[deny]]` rules ([`rules`]) naming
//! subjects (users, groups), targets (container globs, labels, owned containers), logins,
//! actions and conditions (time windows, [`window`]; source ranges); a [`PolicySet`]
//! evaluates them default-deny, deny first, and explains every decision. Without policy
//! files the built-in [`OwnerPolicy`] applies: a person may use the containers they own,
//! as any login, and nothing else.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, Utc};

pub mod admin;
pub mod load;
pub mod rules;
pub mod set;
pub mod window;

pub use load::{PolicyError, PolicyErrors};
pub use rules::Grants;
pub use set::{Explanation, PolicySet, Trace};

/// The person asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// Their user name.
    pub user: String,
    /// Their directory groups.
    pub groups: Vec<String>,
}

/// The container asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its name.
    pub container: String,
    /// Its owner.
    pub owner: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// What the person wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// An interactive shell.
    Shell,
    /// A command.
    Exec,
    /// File transfer.
    Sftp,
    /// Local port forwarding (`ssh -L`, `-D`): connections into the container.
    PortForward,
    /// Remote port forwarding (`ssh -R`): a port listening inside the container.
    RemoteForward,
    /// Agent forwarding.
    AgentForward,
    /// X11 forwarding.
    X11,
}

impl Action {
    /// Parses an action's name as policy files write it (`scp` is `sftp`).
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "shell" => Action::Shell,
            "exec" => Action::Exec,
            "sftp" | "scp" => Action::Sftp,
            "port-forward" => Action::PortForward,
            "remote-forward" => Action::RemoteForward,
            "agent-forward" => Action::AgentForward,
            "x11" => Action::X11,
            _ => return None,
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Shell => "shell",
            Action::Exec => "exec",
            Action::Sftp => "sftp",
            Action::PortForward => "port-forward",
            Action::RemoteForward => "remote-forward",
            Action::AgentForward => "agent-forward",
            Action::X11 => "x11",
        })
    }
}

/// One access question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Who.
    pub subject: Subject,
    /// Where.
    pub target: Target,
    /// As which account inside.
    pub login: String,
    /// To do what.
    pub action: Action,
    /// The destination port, for port forwarding.
    pub port: Option<u16>,
    /// Where the connection comes from.
    pub source: Option<IpAddr>,
    /// When.
    pub time: DateTime<Utc>,
}

/// The answer, with the rule that gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by `rule`.
    Allow {
        /// The deciding rule.
        rule: String,
        /// What it grants beyond access.
        grants: Grants,
    },
    /// Denied; `reason` is safe to show the person.
    Deny {
        /// The deciding rule, if one matched (default deny otherwise).
        rule: Option<String>,
        /// A short reason for the person.
        reason: String,
    },
}

impl Decision {
    /// True for [`Decision::Allow`].
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

/// Anything that answers access questions.
pub trait Policy: Send + Sync {
    /// Decides one request, with the reasoning.
    fn explain(&self, request: &Request) -> Explanation;

    /// Decides one request.
    fn decide(&self, request: &Request) -> Decision {
        self.explain(request).decision
    }

    /// Delegated admin rights (`[[admin]]` rules).
    fn admin_rules(&self) -> &[admin::AdminRule] {
        &[]
    }

    /// Self-service rules (`[[self_service]]`).
    fn self_service_rules(&self) -> &[admin::SelfService] {
        &[]
    }
}

/// The built-in policy: owners may use their own containers, as any login; everything
/// else is denied.
#[derive(Debug, Clone, Copy, Default)]
pub struct OwnerPolicy;

impl Policy for OwnerPolicy {
    fn explain(&self, r: &Request) -> Explanation {
        let owner = r.subject.user == r.target.owner;
        let decision = if owner {
            Decision::Allow {
                rule: "builtin:owner".into(),
                grants: Grants::default(),
            }
        } else {
            Decision::Deny {
                rule: None,
                reason: format!(
                    "{} may not use container '{}' (it belongs to someone else)",
                    r.subject.user, r.target.container
                ),
            }
        };
        let trace = Trace {
            rule: "builtin:owner".into(),
            effect: rules::Effect::Allow,
            origin: "built in (no [policy] paths)".into(),
            mismatch: (!owner).then(|| {
                format!(
                    "'{}' is owned by {}, not {}",
                    r.target.container, r.target.owner, r.subject.user
                )
            }),
        };
        Explanation {
            decision,
            traces: vec![trace],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(user: &str, owner: &str, login: &str) -> Request {
        Request {
            subject: Subject {
                user: user.into(),
                groups: vec![],
            },
            target: Target {
                container: "web01".into(),
                owner: owner.into(),
                labels: BTreeMap::new(),
            },
            login: login.into(),
            action: Action::Shell,
            port: None,
            source: None,
            time: Utc::now(),
        }
    }

    #[test]
    fn owner_policy() {
        assert!(OwnerPolicy
            .decide(&req("alice", "alice", "alice"))
            .is_allowed());
        assert!(OwnerPolicy
            .decide(&req("alice", "alice", "root"))
            .is_allowed());
        let d = OwnerPolicy.decide(&req("bob", "alice", "bob"));
        assert!(!d.is_allowed());
        assert!(matches!(d, Decision::Deny { reason, .. } if reason.contains("web01")));
    }
}
