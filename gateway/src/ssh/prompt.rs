//! Reading one line from a person at their terminal before the session starts (the
//! container picker, the reason for an access). The client's terminal is in raw mode, so
//! this echoes and edits.

use gatehouse_runtime::{PtySpec, WindowSize};
use russh::server::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};

/// What a byte typed does to the line.
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
}

fn key(b: u8, quit: Option<char>) -> Key {
    match b {
        b'\r' | b'\n' => Key::Enter,
        0x03 | 0x04 => Key::Cancel,
        b if Some(b as char) == quit => Key::Cancel,
        0x7f | 0x08 => Key::Erase,
        b => Key::Char(b as char),
    }
}

/// Reads a line of at most `max` characters that `accept` allows (others are ignored);
/// `quit` (and Ctrl-C, Ctrl-D) cancels. `None` when cancelled or the channel ends. Window
/// changes meanwhile update `pty`.
pub async fn read_line(
    rx: &mut ChannelReadHalf,
    tx: &ChannelWriteHalf<Msg>,
    pty: &mut Option<PtySpec>,
    max: usize,
    accept: impl Fn(char) -> bool,
    quit: Option<char>,
) -> Option<String> {
    let mut input = String::new();
    loop {
        match rx.wait().await? {
            ChannelMsg::Data { data } => {
                for b in data.iter() {
                    match key(*b, quit) {
                        Key::Enter => {
                            tx.data_bytes("\r\n").await.ok()?;
                            return Some(input);
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
                        Key::Char(c) if accept(c) && input.len() < max => {
                            input.push(c);
                            tx.data_bytes(c.to_string()).await.ok()?;
                        }
                        Key::Char(_) => {}
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

    #[test]
    fn keys() {
        assert_eq!(key(b'\r', None), Key::Enter);
        assert_eq!(key(0x03, None), Key::Cancel);
        assert_eq!(key(b'q', Some('q')), Key::Cancel);
        assert_eq!(key(b'q', None), Key::Char('q'));
        assert_eq!(key(0x7f, None), Key::Erase);
    }
}
