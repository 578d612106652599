//! The SSH user-name grammar: `user`, `user@container`, `user@login@container`, and
//! `user@+admin` for the admin control plane (`+` is in no container or user name, so it
//! cannot collide with one).

use gatehouse_runtime::names::{is_user_name, shorten, validate_container_name};

/// What a person asked for with their SSH user name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Who they are (the directory name they authenticate as).
    pub user: String,
    /// The account inside the container, when not their own.
    pub login: Option<String>,
    /// The container, when named.
    pub container: Option<String>,
    /// The admin control plane rather than a container.
    pub admin: bool,
}

/// The name that stands for the admin control plane: `ssh alice@+admin@gw COMMAND`.
pub const ADMIN: &str = "+admin";

impl Target {
    /// The login to use: the named one or the user's own.
    pub fn login(&self) -> &str {
        self.login.as_deref().unwrap_or(&self.user)
    }
}

/// Parses an SSH user name. The error is one line, safe to log.
pub fn parse(name: &str) -> Result<Target, String> {
    if name.len() > 200 {
        return Err(format!("user name too long ({} bytes)", name.len()));
    }
    let parts: Vec<&str> = name.split('@').collect();
    if let [u, ADMIN] = parts.as_slice() {
        if !is_user_name(u) {
            return Err(format!("invalid user name '{}'", shorten(u)));
        }
        return Ok(Target {
            user: u.to_string(),
            login: None,
            container: None,
            admin: true,
        });
    }
    let (user, login, container) = match parts.as_slice() {
        [u] => (*u, None, None),
        [u, c] => (*u, None, Some(*c)),
        [u, l, c] => (*u, Some(*l), Some(*c)),
        _ => {
            return Err(format!(
                "cannot parse '{}': use user, user@container or user@login@container",
                shorten(name)
            ))
        }
    };
    if !is_user_name(user) {
        return Err(format!("invalid user name '{}'", shorten(user)));
    }
    if let Some(l) = login {
        if !is_user_name(l) {
            return Err(format!("invalid login name '{}'", shorten(l)));
        }
    }
    if let Some(c) = container {
        validate_container_name(c).map_err(|e| e.to_string())?;
    }
    Ok(Target {
        user: user.to_string(),
        login: login.map(str::to_owned),
        container: container.map(str::to_owned),
        admin: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(
            parse("alice").unwrap(),
            Target {
                user: "alice".into(),
                login: None,
                container: None,
                admin: false
            }
        );
        assert!(parse("alice@+admin").unwrap().admin);
        let t = parse("alice@web01").unwrap();
        assert_eq!(
            (t.container.as_deref(), t.login()),
            (Some("web01"), "alice")
        );
        let t = parse("alice@root@web01").unwrap();
        assert_eq!((t.container.as_deref(), t.login()), (Some("web01"), "root"));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "../etc",
            "alice@../etc",
            "alice@Web",
            "a@b@c@d",
            "alice@",
            "@web01",
            "alice@root@+admin",
            "+admin@web01",
            "alice@+admins",
            "alice)(uid=*",
            &"a".repeat(300),
            &format!("alice@{}", "x".repeat(64)),
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
