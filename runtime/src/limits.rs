//! Resource limits of a container and their textual forms (`1G`, `1.5`, `1024`).

use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};

/// Resource limits; `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Memory limit in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// CPU limit in CPUs (1.5 = one and a half cores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Maximum number of processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
    /// Size in bytes of the container's own disk, which its writable layer cannot grow
    /// past (`None`: it shares the host's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<u64>,
}

/// Parses a memory size: a number with an optional K, M, G or T suffix (powers of 1024).
pub fn parse_memory(text: &str) -> Result<u64> {
    let t = text.trim();
    let (digits, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => 0,
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: u64 = digits.parse().ok().filter(|_| mult != 0).ok_or_else(|| {
        RuntimeError::Invalid(format!(
            "invalid memory size '{text}': use a number with an optional K, M, G or T suffix, e.g. 512M"
        ))
    })?;
    let bytes = n
        .checked_mul(mult)
        .filter(|b| *b >= 4 << 20)
        .ok_or_else(|| {
            RuntimeError::Invalid(format!(
                "memory size '{text}' is out of range (at least 4M)"
            ))
        })?;
    Ok(bytes)
}

/// Parses a CPU count such as `1`, `0.5` or `1.5`.
pub fn parse_cpus(text: &str) -> Result<f64> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.01..=4096.0).contains(&v) => Ok(v),
        _ => Err(RuntimeError::Invalid(format!(
            "invalid CPU count '{text}': use a number between 0.01 and 4096, e.g. 1.5"
        ))),
    }
}

/// Parses a process-count limit.
pub fn parse_pids(text: &str) -> Result<u64> {
    match text.trim().parse::<u64>() {
        Ok(v) if (8..=4_194_304).contains(&v) => Ok(v),
        _ => Err(RuntimeError::Invalid(format!(
            "invalid process limit '{text}': use a whole number between 8 and 4194304"
        ))),
    }
}

/// Parses a duration such as `90s`, `30m`, `1h30m` or `1d` (the grammar policy files use);
/// `never` gives `None`.
pub fn parse_duration(text: &str) -> Result<Option<std::time::Duration>> {
    let t = text.trim();
    if t == "never" {
        return Ok(None);
    }
    // The grammar policy files use too (humantime's: `30m`, `1h30m`, `2days`).
    let d = humantime::parse_duration(t).map_err(|e| {
        RuntimeError::Invalid(format!(
            "invalid duration '{text}' ({e}): use a number with s, m, h or d (e.g. 30m, 1h30m), or never"
        ))
    })?;
    if d < std::time::Duration::from_secs(1) || d > std::time::Duration::from_secs(366 * 86400) {
        return Err(RuntimeError::Invalid(format!(
            "duration '{text}' must be between 1s and 366d"
        )));
    }
    Ok(Some(d))
}

/// Formats a byte count the way [`parse_memory`] reads it.
pub fn format_memory(bytes: u64) -> String {
    for (suffix, unit) in [
        ("T", 1u64 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ] {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory() {
        assert_eq!(parse_memory("1G").unwrap(), 1 << 30);
        assert_eq!(parse_memory("512m").unwrap(), 512 << 20);
        assert_eq!(parse_memory("8388608").unwrap(), 8 << 20);
        for bad in ["", "G", "1X", "-1G", "1.5G", "1K", "99999999999T"] {
            assert!(parse_memory(bad).is_err(), "{bad}");
        }
        assert_eq!(format_memory(1 << 30), "1G");
        assert_eq!(format_memory(1536 << 20), "1536M");
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("30m").unwrap(),
            Some(std::time::Duration::from_secs(1800))
        );
        assert_eq!(
            parse_duration("2s").unwrap(),
            Some(std::time::Duration::from_secs(2))
        );
        assert_eq!(parse_duration("never").unwrap(), None);
        // Policy files' grammar: combined units.
        assert_eq!(
            parse_duration("1h30m").unwrap(),
            Some(std::time::Duration::from_secs(5400))
        );
        for bad in [
            "",
            "30",
            "m",
            "0s",
            "500ms",
            "2y",
            "-1m",
            "99999999999999999999d",
            "400d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cpus_and_pids() {
        assert_eq!(parse_cpus("1.5").unwrap(), 1.5);
        assert!(parse_cpus("0").is_err());
        assert!(parse_cpus("NaN").is_err());
        assert_eq!(parse_pids("1024").unwrap(), 1024);
        assert!(parse_pids("1").is_err());
        assert!(parse_pids("x").is_err());
    }
}
