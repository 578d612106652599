//! Turning an authenticated person and their SSH target into a container and a login,
//! with the policy's decision. Every refusal is one line that is safe to show them.

use std::net::IpAddr;

use gatehouse_policies::{Action, Decision, Grants, Request, Subject, Target as PolicyTarget};
use gatehouse_runtime::{ContainerRecord, RuntimeError};

use crate::app::App;
use crate::audit::{AuditEvent, SessionRefused};
use crate::directory::User;
use crate::grammar::Target;

/// The container and login a session will use.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The container.
    pub container: ContainerRecord,
    /// The account inside.
    pub login: String,
    /// The rule that allowed it.
    pub rule: String,
    /// What the rule grants beyond access.
    pub grants: Grants,
    /// The question that was allowed (asked again when the policy changes).
    pub request: Request,
}

/// The access question for `user` on container `c`.
pub fn request(
    user: &User,
    c: &ContainerRecord,
    login: &str,
    action: Action,
    source: Option<IpAddr>,
    port: Option<u16>,
) -> Request {
    Request {
        subject: Subject {
            user: user.name.clone(),
            groups: user.groups.clone(),
        },
        target: PolicyTarget {
            container: c.name.clone(),
            owner: c.owner.clone(),
            labels: c.labels.clone(),
        },
        login: login.to_string(),
        action,
        port,
        source,
        time: chrono::Utc::now(),
    }
}

/// Why a target could not be resolved.
#[derive(Debug, Clone)]
pub enum Refusal {
    /// The person has several containers and named none; they may choose one.
    Choose(Vec<ContainerRecord>),
    /// Refused; the text is safe to show them.
    Denied(String),
}

impl Refusal {
    /// The one line shown to the person.
    pub fn message(&self, user: &str) -> String {
        match self {
            Refusal::Denied(m) => m.clone(),
            Refusal::Choose(list) => {
                let names: Vec<&str> = list.iter().map(|c| c.name.as_str()).collect();
                format!(
                    "{user} has several containers ({}); choose one with ssh {user}@CONTAINER@…",
                    names.join(", ")
                )
            }
        }
    }
}

impl From<String> for Refusal {
    fn from(m: String) -> Self {
        Refusal::Denied(m)
    }
}

impl From<&str> for Refusal {
    fn from(m: &str) -> Self {
        Refusal::Denied(m.to_string())
    }
}

/// Finds the container and checks the policy.
pub async fn resolve(
    app: &App,
    user: &User,
    target: &Target,
    action: Action,
    source: Option<IpAddr>,
    port: Option<u16>,
) -> Result<Resolved, Refusal> {
    let login = target.login().to_string();
    let policy = app.policy.current();
    let container = match &target.container {
        Some(name) => match app.runtime.get(name).await {
            Ok(c) => c,
            Err(RuntimeError::NoSuchContainer(_)) => {
                return Err(format!("no container named '{name}'").into())
            }
            Err(e) => return Err(unavailable(app, user, e).await),
        },
        None => {
            let all = match app.runtime.list().await {
                Ok(all) => all,
                Err(e) => return Err(unavailable(app, user, e).await),
            };
            let mine: Vec<ContainerRecord> = all
                .into_iter()
                .filter(|c| {
                    policy
                        .decide(&request(user, c, &login, action, source, port))
                        .is_allowed()
                })
                .collect();
            match mine.len() {
                0 => return Err(format!("{} has no containers to log into", user.name).into()),
                1 => mine.into_iter().next().ok_or("no container")?,
                _ => return Err(Refusal::Choose(mine)),
            }
        }
    };
    let req = request(user, &container, &login, action, source, port);
    let explained = policy.explain(&req);
    let decision = explained.decision.clone();
    tracing::info!(
        user = %req.subject.user,
        groups = ?req.subject.groups,
        container = %req.target.container,
        login = %req.login,
        action = %req.action,
        allowed = decision.is_allowed(),
        rule = ?match &decision { Decision::Allow { rule, .. } => Some(rule.as_str()), Decision::Deny { rule, .. } => rule.as_deref() },
        "policy decision"
    );
    let rule = match &decision {
        Decision::Allow { rule, .. } => Some(rule.clone()),
        Decision::Deny { rule, .. } => rule.clone(),
    };
    app.audit
        .note(AuditEvent::PolicyDecision {
            user: &req.subject.user,
            groups: &req.subject.groups,
            container: &req.target.container,
            login: &req.login,
            action: req.action.to_string(),
            allowed: decision.is_allowed(),
            rule: rule.as_deref(),
            source: source.map(|s| s.to_string()),
            port,
            explanation: explained.lines(),
        })
        .await;
    match decision {
        Decision::Allow { rule, grants } => Ok(Resolved {
            container,
            login,
            rule,
            grants,
            request: req,
        }),
        Decision::Deny { reason, .. } => Err(format!("access denied: {reason}").into()),
    }
}

/// The runtime could not be asked (LXD unreachable, a state file unreadable): logged,
/// audited with the details, and refused with a message that names the runtime.
async fn unavailable(app: &App, user: &User, e: RuntimeError) -> Refusal {
    tracing::error!("inventory: {e}");
    let refused = SessionRefused {
        session: None,
        user: &user.name,
        peer: None,
        container: None,
        login: None,
        rule: None,
        runtime: Some(app.runtime.kind()),
        reason: format!("the container runtime is unavailable: {e}"),
    };
    app.audit.note(AuditEvent::SessionRefused(refused)).await;
    format!(
        "the container runtime ({}) is unavailable; try again later (the administrators have the details)",
        app.runtime.kind()
    )
    .into()
}
