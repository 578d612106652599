//! Plain text of a recording, as a terminal would have shown it: output is run through a
//! terminal emulator (vt100), so escape sequences, carriage returns and backspaces end up
//! as the text a person saw, not as bytes.

use crate::cast::{Event, EventKind, Header};

/// Rows of the virtual terminal: tall, so that a session's text does not scroll away.
const ROWS: u16 = 5000;

/// The widest virtual terminal: a recording's width comes from the client's terminal
/// request, and a screen of 5000 rows of 65,535 columns would take gigabytes (each cell
/// is some 40 bytes, twice: the main and the alternate screen). Wider lines wrap, and
/// the text joins them again.
const MAX_COLUMNS: u16 = 200;

/// The text a recording showed, trailing blank lines removed.
pub fn render(header: &Header, events: &[Event]) -> String {
    let columns = header.width.clamp(20, MAX_COLUMNS);
    let mut parser = vt100::Parser::new(ROWS, columns, 0);
    for e in events {
        match e.kind {
            EventKind::Output => parser.process(e.data.as_bytes()),
            EventKind::Marker => parser.process(format!("\r\n[{}]\r\n", e.data).as_bytes()),
            _ => {}
        }
    }
    let text = parser.screen().contents();
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    let end = lines
        .iter()
        .rposition(|l| !l.is_empty())
        .map_or(0, |p| p + 1);
    let mut out = lines[..end].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// What was typed, line by line, with backspaces applied.
pub fn typed_lines(events: &[Event]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for e in events.iter().filter(|e| e.kind == EventKind::Input) {
        for c in e.data.chars() {
            match c {
                '\r' | '\n' => lines.push(std::mem::take(&mut cur)),
                '\u{7f}' | '\u{8}' => {
                    cur.pop();
                }
                c if c.is_control() => {}
                c => cur.push(c),
            }
        }
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, data: &str) -> Event {
        Event {
            time: 0.0,
            kind,
            data: data.into(),
        }
    }

    #[test]
    fn backspaces_and_escapes_do_not_hide_commands() {
        let h = Header {
            version: 2,
            width: 80,
            height: 24,
            timestamp: 0,
            command: None,
            title: None,
        };
        let out = [ev(
            EventKind::Output,
            "$ ecoh\x08\x08\x1b[Kho hi\r\nhi\r\n\x1b[1;31mred\x1b[0m\r\n",
        )];
        assert_eq!(render(&h, &out), "$ echo hi\nhi\nred\n");
        let typed = [
            ev(EventKind::Input, "ecoh\x7f\x7fho hi\r"),
            ev(EventKind::Input, "ls\r"),
        ];
        assert_eq!(typed_lines(&typed), ["echo hi", "ls"]);
    }

    #[test]
    fn a_huge_width_from_the_client_wraps_at_a_bounded_screen() {
        let header = Header {
            version: 2,
            width: u16::MAX,
            height: u16::MAX,
            timestamp: 1,
            command: None,
            title: None,
        };
        let text = render(&header, &[ev(EventKind::Output, &"x".repeat(500))]);
        // Soft-wrapped at 200 columns, and joined again: nothing is lost.
        assert_eq!(text, format!("{}\n", "x".repeat(500)));
    }
}
