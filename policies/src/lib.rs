//! Access policies for gatehouse: who may reach which container, as which login, to do
//! what. This crate is pure: it decides from the facts it is given and does no I/O.
//!
//! The full policy language (rules in TOML files, groups, labels, conditions) builds on
//! this interface; the built-in [`OwnerPolicy`] is the default until policy files exist:
//! a person may use the containers they own, as any login, and nothing else.

use std::collections::BTreeMap;
use std::fmt;

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
    /// Port forwarding.
    PortForward,
    /// Agent forwarding.
    AgentForward,
    /// X11 forwarding.
    X11,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Shell => "shell",
            Action::Exec => "exec",
            Action::Sftp => "sftp",
            Action::PortForward => "port-forward",
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
}

/// The answer, with the rule that gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by `rule`.
    Allow {
        /// The deciding rule.
        rule: String,
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
    /// Decides one request.
    fn decide(&self, request: &Request) -> Decision;
}

/// The built-in policy: owners may use their own containers, as any login; everything
/// else is denied.
#[derive(Debug, Clone, Copy, Default)]
pub struct OwnerPolicy;

impl Policy for OwnerPolicy {
    fn decide(&self, r: &Request) -> Decision {
        if r.subject.user == r.target.owner {
            Decision::Allow {
                rule: "builtin:owner".into(),
            }
        } else {
            Decision::Deny {
                rule: None,
                reason: format!(
                    "{} may not use container '{}' (it belongs to someone else)",
                    r.subject.user, r.target.container
                ),
            }
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
