//! Validation of the names that reach paths and commands: container names, user and
//! login names, image names. Every name from outside passes through here before it is
//! used to build a path.

use crate::error::RuntimeError;

/// The longest container name accepted (a DNS label).
pub const MAX_CONTAINER_NAME: usize = 63;
/// The longest user, login or image name accepted.
pub const MAX_USER_NAME: usize = 32;

/// Checks that `name` is a DNS label: `[a-z0-9]([a-z0-9-]*[a-z0-9])?`, at most 63 bytes.
pub fn validate_container_name(name: &str) -> Result<(), RuntimeError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_CONTAINER_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::InvalidName {
            kind: "container",
            name: shorten(name),
            rule: "a DNS label: lowercase letters, digits and '-', 1 to 63 characters, not starting or ending with '-'",
        })
    }
}

/// Checks that `name` is a user or login name: `[a-z_][a-z0-9_.-]*`, at most 32 bytes.
pub fn validate_user_name(name: &str) -> Result<(), RuntimeError> {
    if is_user_name(name) {
        Ok(())
    } else {
        Err(RuntimeError::InvalidName {
            kind: "user",
            name: shorten(name),
            rule: "lowercase letters, digits, '_', '.' and '-', starting with a letter or '_', at most 32 characters",
        })
    }
}

/// True when `name` is a valid user or login name (see [`validate_user_name`]).
pub fn is_user_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_lowercase() || b == b'_' => {}
        _ => return false,
    }
    name.len() <= MAX_USER_NAME
        && bytes.all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.' || b == b'-'
        })
}

/// Checks an image name: like a container name, with '.' allowed inside (`debian-12`).
pub fn validate_image_name(name: &str) -> Result<(), RuntimeError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_CONTAINER_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::InvalidName {
            kind: "image",
            name: shorten(name),
            rule: "lowercase letters, digits, '-' and '.', 1 to 63 characters, starting and ending with a letter or digit",
        })
    }
}

/// A name cut to a printable length for error messages, with control characters escaped.
pub fn shorten(name: &str) -> String {
    let mut out: String = name
        .chars()
        .take(40)
        .flat_map(char::escape_default)
        .collect();
    if name.chars().count() > 40 {
        out.push('…');
    }
    out
}

/// 16 random hex digits, for names others must not guess (agent socket directories).
/// From the kernel's getrandom(2), which needs no file: it works inside a container's
/// mount namespace too.
pub fn random_tag() -> crate::error::Result<String> {
    let mut random = [0u8; 8];
    getrandom::getrandom(&mut random).map_err(|e| {
        crate::error::RuntimeError::Tool(format!("no random numbers from the kernel: {e}"))
    })?;
    Ok(random.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names() {
        for good in ["web01", "a", "a-b", "0abc", &"x".repeat(63)] {
            assert!(validate_container_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "Web",
            "a_b",
            "../etc",
            "a.b",
            "a/b",
            &"x".repeat(64),
            "é",
        ] {
            assert!(validate_container_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn user_names() {
        for good in ["alice", "_svc", "a.b-c_d", "root", "u1"] {
            assert!(is_user_name(good), "{good}");
        }
        for bad in [
            "",
            "1a",
            "Alice",
            "a b",
            "*",
            "alice)(uid=*",
            "a\0b",
            "../x",
            &"a".repeat(33),
        ] {
            assert!(!is_user_name(bad), "{bad}");
        }
    }

    #[test]
    fn image_names() {
        assert!(validate_image_name("debian-12").is_ok());
        assert!(validate_image_name("debian.12").is_ok());
        for bad in ["", ".", "..", "../x", "a/b", "-a", "a."] {
            assert!(validate_image_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shorten_escapes_and_cuts() {
        assert_eq!(shorten("a\nb"), "a\\nb");
        assert!(shorten(&"x".repeat(300)).ends_with('…'));
    }
}
