//! The interactive container picker: `ssh alice@gw` with a terminal, when alice has
//! several containers. The client's terminal is in raw mode, so this echoes and edits.

use gatehouse_runtime::{ContainerRecord, PtySpec};
use russh::server::Msg;
use russh::{ChannelReadHalf, ChannelWriteHalf};

use super::prompt::read_line;

/// The longest answer accepted.
const MAX_INPUT: usize = 64;

/// Parses an answer: a number from the list or a container's name.
fn pick<'a>(answer: &str, list: &'a [ContainerRecord]) -> Option<&'a ContainerRecord> {
    match answer.parse::<usize>() {
        Ok(n) if (1..=list.len()).contains(&n) => list.get(n - 1),
        _ => list.iter().find(|c| c.name == answer),
    }
}

fn menu(user: &str, list: &[ContainerRecord]) -> String {
    let mut s = format!("gatehouse: {user} has {} containers:\r\n", list.len());
    let width = list.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for (i, c) in list.iter().enumerate() {
        s.push_str(&format!(
            "  {:>2}) {:<width$}  {}\r\n",
            i + 1,
            c.name,
            c.purpose
        ));
    }
    s
}

/// Shows the list and reads a choice; `None` when the person cancels or leaves.
pub async fn choose(
    rx: &mut ChannelReadHalf,
    tx: &ChannelWriteHalf<Msg>,
    pty: &mut Option<PtySpec>,
    user: &str,
    list: &[ContainerRecord],
) -> Option<String> {
    let prompt = format!("choose 1-{} or a name (q to quit): ", list.len());
    tx.data_bytes(format!("{}{prompt}", menu(user, list)))
        .await
        .ok()?;
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '-';
    loop {
        let answer = read_line(rx, tx, pty, MAX_INPUT, name_char, Some('q')).await?;
        if let Some(c) = pick(&answer, list) {
            return Some(c.name.clone());
        }
        tx.data_bytes(format!("no such choice; {prompt}"))
            .await
            .ok()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str) -> ContainerRecord {
        ContainerRecord::new(name, "alice", "debian-12")
    }

    #[test]
    fn answers() {
        let list = vec![rec("web01"), rec("db01")];
        assert_eq!(pick("2", &list).map(|c| c.name.as_str()), Some("db01"));
        assert_eq!(pick("web01", &list).map(|c| c.name.as_str()), Some("web01"));
        assert!(pick("0", &list).is_none());
        assert!(pick("3", &list).is_none());
        assert!(pick("", &list).is_none());
        assert!(menu("alice", &list).contains(" 2) db01"));
    }
}
