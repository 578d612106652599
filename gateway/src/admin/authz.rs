//! Who may run which admin command: the admin group may run all; `[[admin]]` rules
//! delegate commands on the containers they cover; `[[self_service]]` rules let people
//! create containers of their own within quotas, and manage the ones they created so.

use std::sync::Arc;

use gatehouse_policies::admin::{self_service, AdminRule, Wish};
use gatehouse_policies::{Subject, Target};
use gatehouse_runtime::ContainerRecord;

use crate::app::App;
use crate::commands::container::ContainerCommand;
use crate::directory::User;

pub use crate::commands::Visible;

/// The label put on containers created by self-service; its value names the rule.
pub const SELF_SERVICE_LABEL: &str = "gatehouse.self-service";

/// What a self-service owner may do with a container they created.
const OWNER_COMMANDS: &[&str] = &[
    "container.show",
    "container.start",
    "container.stop",
    "container.restart",
    "container.delete",
    "container.snapshot",
];

/// Why a command is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rights {
    /// Root on the gateway host.
    Host,
    /// A member of the admin group.
    Admin,
    /// An `[[admin]]` rule.
    Delegated(String),
    /// A `[[self_service]]` rule.
    SelfService(String),
    /// Public information anyone may read.
    Anyone,
}

impl Rights {
    /// One phrase for logs.
    pub fn describe(&self) -> String {
        match self {
            Rights::Host => "root on the gateway host".into(),
            Rights::Admin => "admin group".into(),
            Rights::Delegated(r) => format!("admin rule '{r}'"),
            Rights::SelfService(r) => format!("self-service rule '{r}'"),
            Rights::Anyone => "public information".into(),
        }
    }
}

/// The policy name of a container command.
pub fn command_key(cmd: &ContainerCommand) -> &'static str {
    match cmd {
        ContainerCommand::Create { .. } => "container.create",
        ContainerCommand::List { .. } => "container.list",
        ContainerCommand::Show { .. } => "container.show",
        ContainerCommand::Start { .. } => "container.start",
        ContainerCommand::Stop { .. } => "container.stop",
        ContainerCommand::Restart { .. } => "container.restart",
        ContainerCommand::Delete { .. } => "container.delete",
        ContainerCommand::Set { .. } => "container.set",
        ContainerCommand::Snapshot { .. } => "container.snapshot",
        ContainerCommand::Hostkeys { .. } => "container.hostkeys",
        ContainerCommand::Backup { .. } => "container.backup",
        ContainerCommand::Restore { .. } => "container.restore",
        ContainerCommand::Console { .. } => "container.console",
        ContainerCommand::Rebase { .. } => "container.rebase",
    }
}

fn target(r: &ContainerRecord) -> Target {
    Target {
        container: r.name.clone(),
        owner: r.owner.clone(),
        labels: r.labels.clone(),
    }
}

/// The container a command is about, if it is about one that exists.
fn named(cmd: &ContainerCommand) -> Option<&str> {
    match cmd {
        ContainerCommand::Show { name }
        | ContainerCommand::Start { name }
        | ContainerCommand::Stop { name }
        | ContainerCommand::Restart { name }
        | ContainerCommand::Delete { name }
        | ContainerCommand::Set { name, .. }
        | ContainerCommand::Console { name }
        | ContainerCommand::Rebase { name, .. }
        | ContainerCommand::Snapshot { name, .. } => Some(name),
        _ => None,
    }
}

/// Decides a command that concerns no one container (`sessions.list`, `replay`, …): the
/// admin group, or an `[[admin]]` rule naming it that is not limited to some containers.
pub fn unscoped(
    app: &Arc<App>,
    user: &User,
    key: &str,
) -> Result<(Rights, Option<Visible>), String> {
    if user.groups.contains(&app.config.server.admin_group) {
        return Ok((Rights::Admin, None));
    }
    let subject = Subject {
        user: user.name.clone(),
        groups: user.groups.clone(),
    };
    app.policy
        .current()
        .admin_rules()
        .iter()
        .find(|r| r.allows(&subject, key, None))
        .map(|r| (Rights::Delegated(r.name.clone()), None))
        .ok_or_else(|| format!("{} may not run {key}", user.name))
}

/// Decides a command over many containers (`fleet.*`, `fleet.patch`): the admin group on
/// all; else the containers the `[[admin]]` rules naming `key` cover (an error when
/// none does).
pub fn over_containers(
    app: &Arc<App>,
    user: &User,
    key: &'static str,
) -> Result<(Rights, Option<Visible>), String> {
    if user.groups.contains(&app.config.server.admin_group) {
        return Ok((Rights::Admin, None));
    }
    let asking = Asking::new(app, user, key);
    let any = asking
        .policy
        .admin_rules()
        .iter()
        .any(|r| r.allows(&asking.subject, key, None));
    if !any {
        return Err(format!("{} may not run {key}", user.name));
    }
    let policy = asking.policy.clone();
    let subject = asking.subject.clone();
    let visible: Visible = Box::new(move |rec| {
        policy
            .admin_rules()
            .iter()
            .any(|r| r.allows(&subject, key, Some(&target(rec))))
    });
    Ok((Rights::Delegated(key.into()), Some(visible)))
}

/// Decides whether `user` may run `cmd`; a self-service creation is rewritten to the
/// owner, limits and labels its rule grants. `Ok` carries the rights and, for `list`,
/// which containers to show.
pub async fn authorize(
    app: &Arc<App>,
    user: &User,
    cmd: &mut ContainerCommand,
) -> Result<(Rights, Option<Visible>), String> {
    if user.groups.contains(&app.config.server.admin_group) {
        return Ok((Rights::Admin, None));
    }
    let asking = Asking::new(app, user, command_key(cmd));
    match cmd {
        // Public keys, so that people can verify what they connect to.
        ContainerCommand::Hostkeys { .. } => Ok((Rights::Anyone, None)),
        ContainerCommand::List { .. } => asking.list().map(|(r, v)| (r, Some(v))),
        ContainerCommand::Create {
            name,
            owner,
            image,
            meta,
        } => {
            let wanted = Target {
                container: name.clone(),
                owner: owner.clone().unwrap_or_else(|| user.name.clone()),
                labels: meta.labels.iter().cloned().collect(),
            };
            if let Some(rule) = asking.delegated(Some(&wanted)) {
                return Ok((Rights::Delegated(rule), None));
            }
            asking.self_create(app, owner, image, meta).await
        }
        other => match named(other) {
            Some(name) => asking.on_named(app, name).await,
            None => Err(format!("{} may not run {}", user.name, asking.key)),
        },
    }
}

/// One person asking to run one admin command, under the policy in force.
struct Asking {
    policy: Arc<dyn gatehouse_policies::Policy>,
    subject: Subject,
    key: &'static str,
}

impl Asking {
    /// `user` asking for `key` under the policy in force.
    fn new(app: &Arc<App>, user: &User, key: &'static str) -> Asking {
        Asking {
            policy: app.policy.current(),
            subject: Subject {
                user: user.name.clone(),
                groups: user.groups.clone(),
            },
            key,
        }
    }

    /// The admin rule that lets the person run the command on `t`, if one does.
    fn delegated(&self, t: Option<&Target>) -> Option<String> {
        self.policy
            .admin_rules()
            .iter()
            .find(|r| r.allows(&self.subject, self.key, t))
            .map(|r| r.name.clone())
    }

    /// Whether a self-service rule applies to the person.
    fn serves_self(&self) -> bool {
        self.policy
            .self_service_rules()
            .iter()
            .any(|r| r.applies_to(&self.subject))
    }

    /// `container list`: the containers an admin rule shows them, and their own
    /// self-service ones.
    fn list(self) -> Result<(Rights, Visible), String> {
        let rules: Vec<AdminRule> = self
            .policy
            .admin_rules()
            .iter()
            .filter(|r| r.allows(&self.subject, self.key, None))
            .cloned()
            .collect();
        let serves_self = self.serves_self();
        if rules.is_empty() && !serves_self {
            return Err(format!("{} may not list containers", self.subject.user));
        }
        let (subject, key) = (self.subject, self.key);
        let visible: Visible = Box::new(move |rec| {
            rules
                .iter()
                .any(|r| r.allows(&subject, key, Some(&target(rec))))
                || (serves_self && rec.owner == subject.user)
        });
        Ok((Rights::Delegated(key.into()), visible))
    }

    /// A self-service creation: within the rule's quota, rewritten to what it grants.
    async fn self_create(
        &self,
        app: &Arc<App>,
        owner: &mut Option<String>,
        image: &mut Option<String>,
        meta: &mut crate::commands::container::MetaArgs,
    ) -> Result<(Rights, Option<Visible>), String> {
        let me = &self.subject.user;
        if owner.as_ref().is_some_and(|o| o != me) {
            return Err(format!("{me} may create containers only for themselves"));
        }
        if meta.nesting == Some(true) {
            return Err("nesting is for an administrator to allow, not self-service".into());
        }
        if meta.disk.is_some() {
            return Err(
                "a disk of its own is for an administrator to give, not self-service".into(),
            );
        }
        let wish = wish(app, image, meta)?;
        let owned = app
            .runtime
            .list()
            .await
            .map_err(inventory)?
            .iter()
            .filter(|c| c.owner == *me && c.labels.contains_key(SELF_SERVICE_LABEL))
            .count();
        let rules = self.policy.self_service_rules();
        let granted = self_service(rules, &self.subject, owned, &wish)?;
        *owner = Some(me.clone());
        *image = Some(wish.image);
        meta.memory = granted.memory.map(|m| m.to_string());
        meta.cpus = granted.cpus.map(|c| c.to_string());
        meta.pids = granted.pids.map(|p| p.to_string());
        // The rule's labels win over a person's own of the same key.
        meta.labels.retain(|(k, _)| !granted.labels.contains_key(k));
        meta.labels.extend(granted.labels.clone());
        meta.labels
            .push((SELF_SERVICE_LABEL.into(), granted.rule.clone()));
        Ok((Rights::SelfService(granted.rule), None))
    }

    /// A command on one named container: by an admin rule, or on their own self-service
    /// container for the commands an owner may run.
    async fn on_named(
        &self,
        app: &Arc<App>,
        name: &str,
    ) -> Result<(Rights, Option<Visible>), String> {
        let rec = app.runtime.get(name).await.map_err(|e| match e {
            gatehouse_runtime::RuntimeError::NoSuchContainer(_) => {
                format!("no container named '{name}'")
            }
            e => inventory(e),
        })?;
        if let Some(rule) = self.delegated(Some(&target(&rec))) {
            return Ok((Rights::Delegated(rule), None));
        }
        let own = self.serves_self()
            && rec.owner == self.subject.user
            && rec.labels.contains_key(SELF_SERVICE_LABEL)
            && OWNER_COMMANDS.contains(&self.key);
        if own {
            let rule = rec.labels[SELF_SERVICE_LABEL].clone();
            return Ok((Rights::SelfService(rule), None));
        }
        Err(format!(
            "{} may not run {} on '{name}'",
            self.subject.user, self.key
        ))
    }
}

/// The inventory could not be read: logged, and a short message for the person.
fn inventory(e: gatehouse_runtime::RuntimeError) -> String {
    tracing::error!("inventory: {e}");
    "the container inventory is unavailable; try again later".to_string()
}

/// What a self-service creation asks for, read from its arguments.
fn wish(
    app: &Arc<App>,
    image: &Option<String>,
    meta: &crate::commands::container::MetaArgs,
) -> Result<Wish, String> {
    let limit = |v: &Option<String>, f: fn(&str) -> gatehouse_runtime::Result<u64>| {
        v.as_deref().map(f).transpose().map_err(|e| e.to_string())
    };
    let cpus = meta
        .cpus
        .as_deref()
        .map(gatehouse_runtime::limits::parse_cpus);
    let idle_stop = match meta.idle_stop.as_deref() {
        None | Some("default") => None,
        Some(i) => Some(gatehouse_runtime::limits::parse_duration(i).map_err(|e| e.to_string())?),
    };
    Ok(Wish {
        image: image
            .clone()
            .unwrap_or_else(|| app.config.runtime.default_image.clone()),
        memory: limit(&meta.memory, gatehouse_runtime::limits::parse_memory)?,
        cpus: cpus.transpose().map_err(|e| e.to_string())?,
        pids: limit(&meta.pids, gatehouse_runtime::limits::parse_pids)?,
        labels: meta.labels.clone(),
        idle_stop,
    })
}
