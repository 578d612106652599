//! The interactive container picker: `ssh alice@gw` with a terminal, when alice has
//! several containers. The client's terminal is in raw mode, so this echoes and edits.

use gatehouse_runtime::{ContainerRecord, PtySpec, WindowSize};
use russh::server::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};

/// The longest answer accepted.
const MAX_INPUT: usize = 64;

/// What the person typed, applied to the current input line.
#[derive(Debug, PartialEq, Eq)]
enum Key {
    /// Submit the line.
    Enter,
    /// Give up.
    Cancel,
    /// Remove the last character.
    Erase,
    /// Add a character.
    Char(char),
    /// Ignore.
    Other,
}

fn key(b: u8) -> Key {
    match b {
        b'\r' | b'\n' => Key::Enter,
        0x03 | 0x04 | b'q' => Key::Cancel,
        0x7f | 0x08 => Key::Erase,
        b if b.is_ascii_alphanumeric() || b == b'-' => Key::Char(b as char),
        _ => Key::Other,
    }
}

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
    let mut input = String::new();
    loop {
        match rx.wait().await? {
            ChannelMsg::Data { data } => {
                for b in data.iter() {
                    match key(*b) {
                        Key::Enter => {
                            if let Some(c) = pick(&input, list) {
                                tx.data_bytes("\r\n").await.ok()?;
                                return Some(c.name.clone());
                            }
                            input.clear();
                            tx.data_bytes(format!("\r\nno such choice; {prompt}"))
                                .await
                                .ok()?;
                        }
                        Key::Cancel => {
                            tx.data_bytes("\r\n").await.ok()?;
                            return None;
                        }
                        Key::Erase => {
                            if input.pop().is_some() {
                                tx.data_bytes("\x08 \x08").await.ok()?;
                            }
                        }
                        Key::Char(c) if input.len() < MAX_INPUT => {
                            input.push(c);
                            tx.data_bytes(c.to_string()).await.ok()?;
                        }
                        Key::Char(_) | Key::Other => {}
                    }
                }
            }
            ChannelMsg::WindowChange {
                col_width,
                row_height,
                pix_width,
                pix_height,
            } => {
                if let Some(p) = pty {
                    p.size = WindowSize::from_ssh(col_width, row_height, pix_width, pix_height);
                }
            }
            ChannelMsg::Eof | ChannelMsg::Close => return None,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str) -> ContainerRecord {
        ContainerRecord {
            name: name.into(),
            owner: "alice".into(),
            image: "debian-12".into(),
            purpose: String::new(),
            labels: Default::default(),
            limits: Default::default(),
            created: chrono::Utc::now(),
            last_login: None,
            address: None,
            idle_stop: None,
        }
    }

    #[test]
    fn answers() {
        let list = vec![rec("web01"), rec("db01")];
        assert_eq!(pick("2", &list).map(|c| c.name.as_str()), Some("db01"));
        assert_eq!(pick("web01", &list).map(|c| c.name.as_str()), Some("web01"));
        assert!(pick("0", &list).is_none());
        assert!(pick("3", &list).is_none());
        assert!(pick("", &list).is_none());
        assert_eq!(key(b'\r'), Key::Enter);
        assert_eq!(key(0x03), Key::Cancel);
        assert_eq!(key(0x7f), Key::Erase);
        assert_eq!(key(b';'), Key::Other);
        assert!(menu("alice", &list).contains(" 2) db01"));
    }
}
