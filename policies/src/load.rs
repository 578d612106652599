//! Reading policy files: TOML with `[[allow]]` and `[[deny]]` rules, checked strictly.
//! Every problem is reported with file, line and column, and all problems of a set are
//! reported at once.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobSetBuilder};
use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::admin::{canonical, parse_size, pattern_matches, AdminRule, SelfService, COMMANDS};
use crate::rules::{Effect, Grants, Names, Origin, Rule, OWN_LOGIN};
use crate::window::{parse_days, parse_hours, parse_zone, TimeWindow};
use crate::Action;

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The file.
    pub file: String,
    /// Line (1-based; 0 when the problem is the file itself).
    pub line: usize,
    /// Column (1-based, in characters).
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.col, self.message
            )
        }
    }
}

/// The problems of a policy set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    allow: Vec<Spanned<RawRule>>,
    #[serde(default)]
    deny: Vec<Spanned<RawRule>>,
    #[serde(default)]
    admin: Vec<Spanned<RawAdmin>>,
    #[serde(default)]
    self_service: Vec<Spanned<RawSelfService>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    name: Option<Spanned<String>>,
    #[serde(default)]
    users: Vec<Spanned<String>>,
    #[serde(default)]
    groups: Vec<Spanned<String>>,
    commands: Spanned<Vec<Spanned<String>>>,
    containers: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    labels: BTreeMap<String, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelfService {
    name: Option<Spanned<String>>,
    #[serde(default)]
    users: Vec<Spanned<String>>,
    #[serde(default)]
    groups: Vec<Spanned<String>>,
    images: Spanned<Vec<Spanned<String>>>,
    max_containers: Spanned<i64>,
    max_memory: Option<Spanned<String>>,
    max_cpus: Option<Spanned<f64>>,
    max_pids: Option<Spanned<i64>>,
    max_idle_stop: Option<Spanned<String>>,
    #[serde(default)]
    label_keys: Vec<Spanned<String>>,
    #[serde(default)]
    labels: BTreeMap<String, Spanned<String>>,
}

/// Everything a set of policy files holds.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    /// Access rules, in evaluation order.
    pub rules: Vec<Rule>,
    /// Delegated admin rights.
    pub admin: Vec<AdminRule>,
    /// Self-service rules, in order.
    pub self_service: Vec<SelfService>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<Spanned<String>>,
    #[serde(default)]
    users: Vec<Spanned<String>>,
    #[serde(default)]
    groups: Vec<Spanned<String>>,
    containers: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    labels: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    owned: bool,
    logins: Option<Spanned<Vec<Spanned<String>>>>,
    actions: Option<Spanned<Vec<Spanned<String>>>>,
    ports: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    sudo: Option<Spanned<bool>>,
    days: Option<Spanned<String>>,
    hours: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    #[serde(default)]
    from: Vec<Spanned<String>>,
    max_session: Option<Spanned<String>>,
    idle_timeout: Option<Spanned<String>>,
    require_reason: Option<Spanned<bool>>,
    message: Option<Spanned<String>>,
}

/// Turns byte offsets into line and column.
struct Positions<'a> {
    file: &'a str,
    text: &'a str,
}

impl Positions<'_> {
    fn at(&self, span: Range<usize>, message: impl Into<String>) -> PolicyError {
        let start = span.start.min(self.text.len());
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let col = before
            .rfind('\n')
            .map_or(before, |nl| &before[nl + 1..])
            .chars()
            .count()
            + 1;
        PolicyError {
            file: self.file.to_string(),
            line,
            col,
            message: message.into(),
        }
    }
}

/// The values of a list, without their positions.
fn plain(list: Vec<Spanned<String>>) -> Vec<String> {
    list.into_iter().map(Spanned::into_inner).collect()
}

/// A valid user name (as the directory and the SSH grammar accept them).
fn valid_user(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_lowercase() || c == b'_')
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_.-".contains(&c))
        && s.len() <= 32
}

/// A glob that can match a container name uses only what names and globs are made of.
fn glob_chars_ok(s: &str) -> bool {
    s.bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"-*?[]{},!^".contains(&c))
}

/// Parses every file of a policy set: each path a file or a directory of `*.toml`
/// files (read in name order). Rules keep that order: the first matching allow rule
/// decides.
pub fn load(paths: &[PathBuf]) -> Result<Parsed, PolicyErrors> {
    let mut errors = Vec::new();
    let mut files = Vec::new();
    for p in paths {
        match list_files(p) {
            Ok(mut f) => files.append(&mut f),
            Err(e) => errors.push(e),
        }
    }
    let mut all = Parsed::default();
    for f in &files {
        let name = f.display().to_string();
        match std::fs::read_to_string(f) {
            Ok(text) => match parse(&name, &text) {
                Ok(mut p) => {
                    all.rules.append(&mut p.rules);
                    all.admin.append(&mut p.admin);
                    all.self_service.append(&mut p.self_service);
                }
                Err(mut e) => errors.append(&mut e.0),
            },
            Err(e) => errors.push(file_error(&name, format!("cannot read: {e}"))),
        }
    }
    let mut seen: HashMap<String, Origin> = HashMap::new();
    let named = all
        .rules
        .iter()
        .map(|r| (&r.name, &r.origin))
        .chain(all.admin.iter().map(|r| (&r.name, &r.origin)))
        .chain(all.self_service.iter().map(|r| (&r.name, &r.origin)));
    for (name, origin) in named {
        if let Some(first) = seen.get(name) {
            errors.push(PolicyError {
                file: origin.file.clone(),
                line: origin.line,
                col: 1,
                message: format!("rule name '{name}' is already used at {first}"),
            });
        } else {
            seen.insert(name.clone(), origin.clone());
        }
    }
    if errors.is_empty() {
        Ok(all)
    } else {
        Err(PolicyErrors(errors))
    }
}

fn file_error(file: &str, message: String) -> PolicyError {
    PolicyError {
        file: file.to_string(),
        line: 0,
        col: 0,
        message,
    }
}

fn list_files(p: &Path) -> Result<Vec<PathBuf>, PolicyError> {
    let name = p.display().to_string();
    let meta = std::fs::metadata(p).map_err(|e| file_error(&name, format!("cannot open: {e}")))?;
    if !meta.is_dir() {
        return Ok(vec![p.to_path_buf()]);
    }
    let entries =
        std::fs::read_dir(p).map_err(|e| file_error(&name, format!("cannot list: {e}")))?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|f| f.extension().is_some_and(|x| x == "toml") && f.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Parses one file's text (`file` names it in errors and origins).
pub fn parse(file: &str, text: &str) -> Result<Parsed, PolicyErrors> {
    let pos = Positions { file, text };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim().replace('\n', " ");
        PolicyErrors(vec![pos.at(span, message)])
    })?;
    let mut errors = Vec::new();
    let mut rules = Vec::new();
    let stem = Path::new(file)
        .file_name()
        .map_or(file.to_string(), |f| f.to_string_lossy().into_owned());
    let all = raw
        .allow
        .into_iter()
        .map(|r| (Effect::Allow, r))
        .chain(raw.deny.into_iter().map(|r| (Effect::Deny, r)));
    let mut n = 0;
    for (effect, spanned) in all {
        n += 1;
        let span = spanned.span();
        let mut c = Compiler {
            pos: &pos,
            errors: &mut errors,
        };
        if let Some(rule) = c.rule(effect, spanned.into_inner(), span, &stem, n) {
            rules.push(rule);
        }
    }
    rules.sort_by_key(|r| r.origin.line);
    let mut admin = Vec::new();
    for spanned in raw.admin {
        n += 1;
        let span = spanned.span();
        let mut c = Compiler {
            pos: &pos,
            errors: &mut errors,
        };
        if let Some(rule) = c.admin(spanned.into_inner(), span, &stem, n) {
            admin.push(rule);
        }
    }
    let mut self_service = Vec::new();
    for spanned in raw.self_service {
        n += 1;
        let span = spanned.span();
        let mut c = Compiler {
            pos: &pos,
            errors: &mut errors,
        };
        if let Some(rule) = c.self_service(spanned.into_inner(), span, &stem, n) {
            self_service.push(rule);
        }
    }
    if errors.is_empty() {
        Ok(Parsed {
            rules,
            admin,
            self_service,
        })
    } else {
        errors.sort_by_key(|e| (e.line, e.col));
        Err(PolicyErrors(errors))
    }
}

/// A self-service rule's quotas, as read.
struct Quotas {
    max_containers: u32,
    max_memory: Option<u64>,
    max_cpus: Option<f64>,
    max_pids: Option<u64>,
    max_idle_stop: Option<std::time::Duration>,
}

/// Where a rule has the keys only allow rules (grants) or only deny rules (message) may.
struct OnlyOneKind {
    grants: [(&'static str, Option<Range<usize>>); 4],
    message: Option<Range<usize>>,
}

impl OnlyOneKind {
    fn of(raw: &RawRule) -> Self {
        let span = |s: &Option<Spanned<bool>>| s.as_ref().map(Spanned::span);
        let text = |s: &Option<Spanned<String>>| s.as_ref().map(Spanned::span);
        OnlyOneKind {
            grants: [
                ("sudo", span(&raw.sudo)),
                ("max_session", text(&raw.max_session)),
                ("idle_timeout", text(&raw.idle_timeout)),
                ("require_reason", span(&raw.require_reason)),
            ],
            message: text(&raw.message),
        }
    }
}

struct Compiler<'a, 'b> {
    pos: &'a Positions<'a>,
    errors: &'b mut Vec<PolicyError>,
}

impl Compiler<'_, '_> {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors.push(self.pos.at(span, message));
    }

    fn rule(
        &mut self,
        effect: Effect,
        raw: RawRule,
        span: Range<usize>,
        stem: &str,
        n: usize,
    ) -> Option<Rule> {
        let before = self.errors.len();
        let only = OnlyOneKind::of(&raw);
        let table = effect.to_string();
        let (origin, name) = self.head(
            &table,
            raw.name,
            &raw.users,
            &raw.groups,
            span.clone(),
            stem,
            n,
        );
        let containers = raw.containers.and_then(|list| self.names(list));
        let labels = Self::labels(raw.labels);
        let logins = raw.logins.map(|l| self.logins(l));
        let actions = raw.actions.map(|a| self.actions(a));
        let ports = raw.ports.map_or_else(Vec::new, |p| self.ports(p, &actions));
        let from = self.sources(&raw.from);
        let window = self.window(raw.days, raw.hours, raw.timezone);
        let grants = Grants {
            sudo: raw.sudo.as_ref().is_some_and(|s| *s.get_ref()),
            max_session: self.duration(raw.max_session.clone()),
            idle_timeout: self.duration(raw.idle_timeout.clone()),
            require_reason: raw.require_reason.as_ref().is_some_and(|s| *s.get_ref()),
        };
        let message = raw.message.as_ref().map(|m| m.get_ref().clone());
        self.effect_keys(effect, only);
        if self.errors.len() > before {
            return None;
        }
        Some(Rule {
            name,
            effect,
            origin,
            users: plain(raw.users),
            groups: plain(raw.groups),
            containers,
            labels,
            owned: raw.owned,
            // An allow rule without logins gives the person's own account only.
            logins: logins.or_else(|| (effect == Effect::Allow).then(|| vec![OWN_LOGIN.into()])),
            // An allow rule without actions gives shell and exec.
            actions: actions
                .or_else(|| (effect == Effect::Allow).then(|| vec![Action::Shell, Action::Exec])),
            ports,
            from,
            window,
            grants,
            message,
        })
    }

    /// The logins a rule names: `$user`, root or account names.
    fn logins(&mut self, l: Spanned<Vec<Spanned<String>>>) -> Vec<String> {
        if l.get_ref().is_empty() {
            self.err(l.span(), "an empty list of logins can never match");
        }
        let mut out = Vec::new();
        for login in l.into_inner() {
            let s = login.get_ref();
            if s != OWN_LOGIN && !valid_user(s) {
                self.err(
                    login.span(),
                    format!("'{s}' is not a login (use $user, root or an account name)"),
                );
            }
            out.push(login.into_inner());
        }
        out
    }

    /// The actions a rule names.
    fn actions(&mut self, a: Spanned<Vec<Spanned<String>>>) -> Vec<Action> {
        if a.get_ref().is_empty() {
            self.err(a.span(), "an empty list of actions can never match");
        }
        let mut out = Vec::new();
        for action in a.into_inner() {
            match Action::parse(action.get_ref()) {
                Some(x) => out.push(x),
                None => self.err(
                    action.span(),
                    format!(
                        "unknown action '{}' (known: shell, exec, sftp, scp, port-forward, remote-forward, agent-forward, x11)",
                        action.get_ref()
                    ),
                ),
            }
        }
        out
    }

    /// The address ranges a rule's `from` names (a plain address is its own range).
    fn sources(&mut self, list: &[Spanned<String>]) -> Vec<IpNet> {
        let mut from = Vec::new();
        for f in list {
            let s = f.get_ref();
            let parsed = s
                .parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from));
            match parsed {
                Ok(net) => from.push(net.trunc()),
                Err(_) => self.err(
                    f.span(),
                    format!("'{s}' is not an address range (like 10.0.0.0/8 or 2001:db8::/32)"),
                ),
            }
        }
        from
    }

    /// A session time limit: a duration other than zero.
    fn duration(&mut self, d: Option<Spanned<String>>) -> Option<std::time::Duration> {
        let d = d?;
        match humantime::parse_duration(d.get_ref()) {
            Ok(v) if !v.is_zero() => Some(v),
            Ok(_) => {
                self.err(
                    d.span(),
                    "a duration of zero would end every session at once",
                );
                None
            }
            Err(e) => {
                self.err(
                    d.span(),
                    format!("'{}' is not a duration like 8h or 30m: {e}", d.get_ref()),
                );
                None
            }
        }
    }

    /// The keys only one kind of rule may have: grants for allow rules, the message for
    /// deny rules.
    fn effect_keys(&mut self, effect: Effect, only: OnlyOneKind) {
        match effect {
            Effect::Deny => {
                for (key, at) in only.grants {
                    if let Some(at) = at {
                        self.err(
                            at,
                            format!(
                                "'{key}' is granted by allow rules; a deny rule cannot have it"
                            ),
                        );
                    }
                }
            }
            Effect::Allow => {
                if let Some(at) = only.message {
                    self.err(at, "'message' is what a deny rule tells the person; an allow rule cannot have it");
                }
            }
        }
    }

    /// Checks who a rule names: valid user names, at least one user or group.
    fn subjects(
        &mut self,
        users: &[Spanned<String>],
        groups: &[Spanned<String>],
        span: Range<usize>,
        what: &str,
    ) {
        for u in users {
            if !valid_user(u.get_ref()) {
                self.err(
                    u.span(),
                    format!(
                        "'{}' is not a valid user name, so it can never match",
                        u.get_ref()
                    ),
                );
            }
        }
        if users.is_empty() && groups.is_empty() {
            self.err(
                span,
                format!("{what} names no users or groups, so it can never match"),
            );
        }
    }

    fn origin(&self, offset: usize, table: &str) -> Origin {
        Origin {
            file: self.pos.file.to_string(),
            line: self.header_line(offset, table),
        }
    }

    fn labels(raw: BTreeMap<String, Spanned<String>>) -> BTreeMap<String, String> {
        raw.into_iter().map(|(k, v)| (k, v.into_inner())).collect()
    }

    /// What every kind of rule starts with: where it is, its name (given or `FILE#N`),
    /// and a check of who it names.
    #[allow(clippy::too_many_arguments)]
    fn head(
        &mut self,
        table: &str,
        name: Option<Spanned<String>>,
        users: &[Spanned<String>],
        groups: &[Spanned<String>],
        span: Range<usize>,
        stem: &str,
        n: usize,
    ) -> (Origin, String) {
        let origin = self.origin(span.start, table);
        let name = name.map_or_else(|| format!("{stem}#{n}"), Spanned::into_inner);
        let what = format!("{} rule '{name}'", table.replace('_', "-"));
        self.subjects(users, groups, span, &what);
        (origin, name)
    }

    fn admin(
        &mut self,
        raw: RawAdmin,
        span: Range<usize>,
        stem: &str,
        n: usize,
    ) -> Option<AdminRule> {
        let before = self.errors.len();
        let (origin, name) = self.head("admin", raw.name, &raw.users, &raw.groups, span, stem, n);
        if raw.commands.get_ref().is_empty() {
            self.err(
                raw.commands.span(),
                "an empty list of commands grants nothing",
            );
        }
        let mut commands = Vec::new();
        for c in raw.commands.into_inner() {
            let name = canonical(c.get_ref());
            if COMMANDS.iter().any(|known| pattern_matches(name, known)) {
                commands.push(name.to_string());
            } else {
                self.err(
                    c.span(),
                    format!(
                        "unknown command '{}' (known: {}, or group.* and *)",
                        c.get_ref(),
                        COMMANDS.join(", ")
                    ),
                );
            }
        }
        let containers = raw.containers.and_then(|list| self.names(list));
        if self.errors.len() > before {
            return None;
        }
        Some(AdminRule {
            name,
            origin,
            users: plain(raw.users),
            groups: plain(raw.groups),
            commands,
            containers,
            labels: Self::labels(raw.labels),
        })
    }

    fn self_service(
        &mut self,
        raw: RawSelfService,
        span: Range<usize>,
        stem: &str,
        n: usize,
    ) -> Option<SelfService> {
        let before = self.errors.len();
        let (origin, name) = self.head(
            "self_service",
            raw.name.clone(),
            &raw.users,
            &raw.groups,
            span,
            stem,
            n,
        );
        if raw.images.get_ref().is_empty() {
            self.err(raw.images.span(), "an empty list of images grants nothing");
        }
        let q = self.quotas(&raw);
        for key in &raw.label_keys {
            if let Err(why) = crate::admin::check_label_key(key.get_ref()) {
                self.err(key.span(), why);
            }
        }
        if self.errors.len() > before {
            return None;
        }
        Some(SelfService {
            name,
            origin,
            users: plain(raw.users),
            groups: plain(raw.groups),
            images: plain(raw.images.into_inner()),
            max_containers: q.max_containers,
            max_memory: q.max_memory,
            max_cpus: q.max_cpus,
            max_pids: q.max_pids,
            max_idle_stop: q.max_idle_stop,
            label_keys: plain(raw.label_keys),
            labels: Self::labels(raw.labels),
        })
    }

    /// A self-service rule's quotas, each checked.
    fn quotas(&mut self, raw: &RawSelfService) -> Quotas {
        let max_containers = match u32::try_from(*raw.max_containers.get_ref()) {
            Ok(v) if v > 0 => v,
            _ => {
                self.err(
                    raw.max_containers.span(),
                    "max_containers is a number from 1",
                );
                0
            }
        };
        let max_memory = raw
            .max_memory
            .as_ref()
            .and_then(|m| match parse_size(m.get_ref()) {
                Some(v) if v >= 16 << 20 => Some(v),
                _ => {
                    self.err(
                        m.span(),
                        format!(
                            "'{}' is not a memory size of at least 16M (like 2G)",
                            m.get_ref()
                        ),
                    );
                    None
                }
            });
        let max_cpus = raw.max_cpus.as_ref().and_then(|c| {
            let v = *c.get_ref();
            if v > 0.0 && v.is_finite() {
                Some(v)
            } else {
                self.err(c.span(), "max_cpus is a number above 0");
                None
            }
        });
        let max_pids = raw
            .max_pids
            .as_ref()
            .and_then(|p| match u64::try_from(*p.get_ref()) {
                Ok(v) if v >= 8 => Some(v),
                _ => {
                    self.err(p.span(), "max_pids is a number from 8");
                    None
                }
            });
        let max_idle_stop =
            raw.max_idle_stop
                .as_ref()
                .and_then(|d| match humantime::parse_duration(d.get_ref()) {
                    Ok(v) if !v.is_zero() => Some(v),
                    _ => {
                        self.err(
                            d.span(),
                            format!("'{}' is not a duration like 8h or 30m", d.get_ref()),
                        );
                        None
                    }
                });
        Quotas {
            max_containers,
            max_memory,
            max_cpus,
            max_pids,
            max_idle_stop,
        }
    }

    /// The line of the `[[table]]` header before `offset`.
    fn header_line(&self, offset: usize, table: &str) -> usize {
        let text = &self.pos.text[..offset.min(self.pos.text.len())];
        let header = format!("[[{table}]]");
        let at = text.rfind(&header).unwrap_or(offset.min(text.len()));
        text[..at].matches('\n').count() + 1
    }

    fn names(&mut self, list: Spanned<Vec<Spanned<String>>>) -> Option<Names> {
        if list.get_ref().is_empty() {
            self.err(list.span(), "an empty list of containers can never match");
            return None;
        }
        let mut builder = GlobSetBuilder::new();
        let mut text = Vec::new();
        for g in list.into_inner() {
            let s = g.get_ref();
            if !glob_chars_ok(s) {
                self.err(
                    g.span(),
                    format!("'{s}' can never match: container names are lowercase letters, digits and '-'"),
                );
                continue;
            }
            match Glob::new(s) {
                Ok(glob) => {
                    builder.add(glob);
                    text.push(s.clone());
                }
                Err(e) => self.err(g.span(), format!("bad glob '{s}': {}", e.kind())),
            }
        }
        match builder.build() {
            Ok(set) => Some(Names { text, set }),
            Err(e) => {
                self.errors.push(PolicyError {
                    file: self.pos.file.to_string(),
                    line: 0,
                    col: 0,
                    message: format!("glob set: {e}"),
                });
                None
            }
        }
    }

    fn ports(
        &mut self,
        list: Spanned<Vec<Spanned<toml::Value>>>,
        actions: &Option<Vec<Action>>,
    ) -> Vec<(u16, u16)> {
        if !actions
            .as_ref()
            .is_some_and(|a| a.contains(&Action::PortForward) || a.contains(&Action::RemoteForward))
        {
            self.err(
                list.span(),
                "'ports' only limit port-forward and remote-forward, which this rule's actions do not include",
            );
        }
        let mut out = Vec::new();
        for p in list.into_inner() {
            let parsed = match p.get_ref() {
                toml::Value::Integer(n) => {
                    u16::try_from(*n).ok().filter(|n| *n > 0).map(|n| (n, n))
                }
                toml::Value::String(s) => s.split_once('-').and_then(|(a, b)| {
                    let (a, b) = (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?);
                    (a > 0 && a <= b).then_some((a, b))
                }),
                _ => None,
            };
            match parsed {
                Some(r) => out.push(r),
                None => self.err(
                    p.span(),
                    "a port is a number 1-65535 or a range like \"8000-8100\"",
                ),
            }
        }
        out
    }

    fn window(
        &mut self,
        days: Option<Spanned<String>>,
        hours: Option<Spanned<String>>,
        zone: Option<Spanned<String>>,
    ) -> Option<TimeWindow> {
        let tz = match &zone {
            Some(z) => match parse_zone(z.get_ref()) {
                Ok(tz) => tz,
                Err(e) => {
                    self.err(z.span(), e);
                    return None;
                }
            },
            None => chrono_tz::UTC,
        };
        if days.is_none() && hours.is_none() {
            if let Some(z) = zone {
                self.err(
                    z.span(),
                    "'timezone' without 'days' or 'hours' has nothing to apply to",
                );
            }
            return None;
        }
        let day_set = match &days {
            Some(d) => match parse_days(d.get_ref()) {
                Ok(v) => v,
                Err(e) => {
                    self.err(d.span(), e);
                    return None;
                }
            },
            None => [true; 7],
        };
        let minutes = match &hours {
            Some(h) => match parse_hours(h.get_ref()) {
                Ok(v) => Some(v),
                Err(e) => {
                    self.err(h.span(), e);
                    return None;
                }
            },
            None => None,
        };
        let text = [
            days.as_ref().map(|d| d.get_ref().clone()),
            hours.as_ref().map(|h| h.get_ref().clone()),
            Some(tz.name().to_string()),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        Some(TimeWindow {
            days: day_set,
            minutes,
            zone: tz,
            text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        parse("p.toml", text)
            .err()
            .map(|e| e.0.iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    #[test]
    fn unknown_keys_and_bad_toml_have_positions() {
        let e = errors("[[allow]]\ngroups = [\"ops\"]\nacions = [\"shell\"]\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("p.toml:3:1: unknown field `acions`"),
            "{e:?}"
        );
        let e = errors("[[allow]]\ngroups = [\"ops\"\n");
        assert!(e[0].starts_with("p.toml:3:1: invalid array"), "{e:?}");
        let e = errors("[[permit]]\nusers = [\"a\"]\n");
        assert!(e[0].contains("unknown field `permit`"), "{e:?}");
    }

    #[test]
    fn semantic_errors_point_at_the_value() {
        let text = "\n[[allow]]\ngroups = [\"ops\"]\nactions = [\"shell\", \"sftpp\"]\ncontainers = [\"Web*\", \"db[\"]\nhours = \"9-17\"\n\n[[deny]]\nname = \"d\"\nsudo = true\n";
        let e = errors(text);
        assert!(
            e.iter()
                .any(|l| l.starts_with("p.toml:4:21: unknown action 'sftpp'")),
            "{e:#?}"
        );
        assert!(
            e.iter()
                .any(|l| l.starts_with("p.toml:5:15: 'Web*' can never match")),
            "{e:#?}"
        );
        assert!(
            e.iter()
                .any(|l| l.starts_with("p.toml:5:23: bad glob 'db['")),
            "{e:#?}"
        );
        assert!(
            e.iter()
                .any(|l| l.starts_with("p.toml:6:9: '9-17'") || l.starts_with("p.toml:6:9: '9'")),
            "{e:#?}"
        );
        assert!(
            e.iter().any(
                |l| l.contains("deny rule 'd' names no users or groups, so it can never match")
            ),
            "{e:#?}"
        );
        assert!(
            e.iter()
                .any(|l| l.starts_with("p.toml:10:8: 'sudo' is granted by allow rules")),
            "{e:#?}"
        );
    }

    #[test]
    fn rules_that_cannot_match_are_errors() {
        let e = errors("[[allow]]\nusers = [\"Alice\"]\nlogins = []\n");
        assert!(
            e.iter()
                .any(|l| l.contains("'Alice' is not a valid user name")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|l| l.contains("empty list of logins")),
            "{e:?}"
        );
        let e = errors("[[allow]]\nusers = [\"a\"]\nports = [22]\n");
        assert!(e[0].contains("'ports' only limit port-forward"), "{e:?}");
        let e = errors("[[allow]]\nusers = [\"a\"]\nactions = [\"port-forward\"]\nports = [0, \"90-80\", 8080, \"1-2\"]\n");
        assert_eq!(e.len(), 2, "{e:?}");
    }

    #[test]
    fn defaults_and_origins() {
        let rules = parse(
            "dir/p.toml",
            "# c\n[[allow]]\nusers = [\"a\"]\n\n[[deny]]\nname = \"x\"\ngroups = [\"g\"]\n",
        )
        .unwrap()
        .rules;
        assert_eq!(rules[0].name, "p.toml#1");
        assert_eq!(rules[0].origin.to_string(), "dir/p.toml:2");
        assert_eq!(rules[0].logins.as_deref(), Some(&["$user".to_string()][..]));
        assert_eq!(
            rules[0].actions.as_deref(),
            Some(&[Action::Shell, Action::Exec][..])
        );
        assert_eq!(rules[1].origin.line, 5);
        assert!(rules[1].logins.is_none() && rules[1].actions.is_none());
    }

    #[test]
    fn admin_and_self_service_rules() {
        let text = "[[admin]]\nname = \"leads\"\ngroups = [\"leads\"]\ncommands = [\"container.*\", \"replay\"]\ncontainers = [\"team-*\"]\n\n[[self_service]]\ngroups = [\"devs\"]\nimages = [\"debian-12\"]\nmax_containers = 2\nmax_memory = \"1G\"\n";
        let p = parse("p.toml", text).unwrap();
        assert_eq!(p.admin[0].commands.len(), 2);
        assert_eq!(p.admin[0].origin.line, 1);
        // `patch` is read as `fleet.patch`.
        let p2 = parse(
            "p.toml",
            "[[admin]]\nusers = [\"a\"]\ncommands = [\"patch\"]\n",
        )
        .unwrap();
        assert_eq!(p2.admin[0].commands, ["fleet.patch"]);
        assert_eq!(p.self_service[0].max_memory, Some(1 << 30));
        assert_eq!(p.self_service[0].origin.line, 7);
        assert!(p.self_service[0].label_keys.is_empty());
        assert_eq!(p.self_service[0].max_idle_stop, None);
        let text = "[[self_service]]\ngroups = [\"devs\"]\nimages = [\"debian-12\"]\nmax_containers = 2\nlabel_keys = [\"team\", \"dr-of\", \"gatehouse.x\"]\nmax_idle_stop = \"soon\"\n";
        let shown = errors(text).join("\n");
        assert!(shown.contains("p.toml:5:23: 'dr-of' decides"), "{shown}");
        assert!(shown.contains("p.toml:5:32: 'gatehouse.x'"), "{shown}");
        assert!(
            shown.contains("p.toml:6:17: 'soon' is not a duration"),
            "{shown}"
        );
        let e = errors("[[admin]]\nusers = [\"a\"]\ncommands = [\"container.nuke\"]\n[[self_service]]\nusers = [\"a\"]\nimages = []\nmax_containers = 0\nmax_memory = \"lots\"\n");
        assert!(
            e.iter()
                .any(|l| l.starts_with("p.toml:3:13: unknown command 'container.nuke'")),
            "{e:#?}"
        );
        assert!(
            e.iter()
                .any(|l| l.starts_with("p.toml:6:10: an empty list of images")),
            "{e:#?}"
        );
        assert!(
            e.iter()
                .any(|l| l.starts_with("p.toml:7:18: max_containers")),
            "{e:#?}"
        );
        assert!(
            e.iter()
                .any(|l| l.starts_with("p.toml:8:14: 'lots' is not a memory size")),
            "{e:#?}"
        );
    }

    #[test]
    fn a_set_reports_every_file_and_duplicate_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.toml"),
            "[[allow]]\nname = \"r\"\nusers = [\"a\"]\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.toml"),
            "[[allow]]\nname = \"r\"\nusers = [\"b\"]\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let e = load(&[dir.path().to_path_buf(), dir.path().join("missing.toml")]).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("missing.toml: cannot open"), "{text}");
        assert!(
            text.contains("b.toml:1:1: rule name 'r' is already used at"),
            "{text}"
        );
    }
}
