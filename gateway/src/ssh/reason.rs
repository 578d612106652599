//! The reason for an access (a change reference such as a ticket number) where a policy
//! rule requires one: from the `GATEHOUSE_REASON` environment variable the client sends
//! (`ssh -o SetEnv=GATEHOUSE_REASON=CHG-1234 …`), or asked for at the terminal.

use gatehouse_runtime::PtySpec;
use russh::server::Msg;
use russh::{ChannelReadHalf, ChannelWriteHalf};

use super::prompt::read_line;

/// The environment variable that carries the reason.
pub const ENV: &str = "GATEHOUSE_REASON";

/// The longest reason kept.
const MAX: usize = 200;

/// What the person is told when a reason is needed and none was given.
pub const MISSING: &str =
    "this access requires a reason (a change reference such as a ticket number): \
connect with ssh -o SetEnv=GATEHOUSE_REASON=CHG-1234 …, or with a terminal to be asked";

/// A reason as given, checked: printable, not empty, not too long.
pub fn clean(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err(MISSING.into());
    }
    if t.chars().count() > MAX {
        return Err(format!("the reason is longer than {MAX} characters"));
    }
    if t.chars().any(char::is_control) {
        return Err("the reason contains control characters".into());
    }
    Ok(t.to_string())
}

/// The reason: the one `given`, or with a terminal, the one typed when asked.
pub async fn obtain(
    given: Option<&str>,
    rx: &mut ChannelReadHalf,
    tx: &ChannelWriteHalf<Msg>,
    pty: &mut Option<PtySpec>,
) -> Result<String, String> {
    if let Some(g) = given {
        return clean(g);
    }
    if pty.is_none() {
        return Err(MISSING.into());
    }
    let ask = "gatehouse: this access requires a reason (change reference): ";
    tx.data_bytes(ask).await.map_err(|_| MISSING.to_string())?;
    let printable = |c: char| c == ' ' || c.is_ascii_graphic();
    match read_line(rx, tx, pty, MAX, printable, None).await {
        Some(line) => clean(&line),
        None => Err("no reason given".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_checked() {
        assert_eq!(clean("  CHG-1234 ").unwrap(), "CHG-1234");
        assert!(clean("   ").unwrap_err().contains("GATEHOUSE_REASON"));
        assert!(clean("a\u{1b}[2J").is_err());
        assert!(clean(&"x".repeat(201)).is_err());
    }
}
