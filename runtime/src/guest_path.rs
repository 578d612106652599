//! Paths inside a container, resolved by text as the container would see them: `..`
//! stops at its root, and a symbolic link's target (read, never followed by the kernel)
//! is taken relative to the link's directory, or to the root when absolute. Both ways of
//! reading a container's files from outside use it (`native::layered`, `lxd::files`).

/// The normal components of `path`: absolute, inside the container, not its root.
pub fn components(path: &str) -> Result<Vec<String>, String> {
    if !path.starts_with('/') || path.contains('\0') {
        return Err(format!("'{}' is not an absolute path", path.escape_debug()));
    }
    let mut out = Vec::new();
    push(&mut out, path);
    if out.is_empty() {
        return Err("the container's root is not a file".into());
    }
    Ok(out)
}

/// Where the link whose path is `link` (its components) and whose target is `target`
/// leads, followed by `rest` (the components after the link in the path looked up).
pub fn follow(link: &[String], target: &str, rest: &[String]) -> Vec<String> {
    let mut out = if target.starts_with('/') {
        Vec::new()
    } else {
        link[..link.len().saturating_sub(1)].to_vec()
    };
    push(&mut out, target);
    for r in rest {
        push(&mut out, r);
    }
    out
}

/// `/` followed by `parts`.
pub fn join(parts: &[String]) -> String {
    format!("/{}", parts.join("/"))
}

fn push(out: &mut Vec<String>, path: &str) {
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(p: &str) -> Vec<String> {
        components(p).unwrap()
    }

    #[test]
    fn links_resolve_inside_the_root() {
        let at = |link: &str, target: &str| join(&follow(&parts(link), target, &[]));
        assert_eq!(
            at("/etc/os-release", "../usr/lib/os-release"),
            "/usr/lib/os-release"
        );
        assert_eq!(at("/a/b", "/x/./y"), "/x/y");
        assert_eq!(at("/a/b", "../../../../etc/shadow"), "/etc/shadow");
        let rest = parts("/dpkg/status");
        assert_eq!(
            join(&follow(&parts("/var/lib"), "/srv/lib", &rest)),
            "/srv/lib/dpkg/status"
        );
        assert_eq!(
            join(&parts("/var//lib/./dpkg/status")),
            "/var/lib/dpkg/status"
        );
        assert!(components("var/lib").is_err());
        assert!(components("/..").is_err());
        assert!(components("/a\0b").is_err());
    }
}
