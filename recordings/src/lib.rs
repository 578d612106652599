//! Session recordings for gatehouse. For now: the asciicast v2 encoding of a recording's
//! header and events; the writer, audit log, replay and search build on it.

use serde::Serialize;

/// The first line of an asciicast v2 file.
#[derive(Debug, Clone, Serialize)]
pub struct Header {
    /// Always 2.
    pub version: u8,
    /// Terminal width.
    pub width: u16,
    /// Terminal height.
    pub height: u16,
    /// Unix time of the start.
    pub timestamp: i64,
    /// Title (e.g. `alice@web01`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// The kind of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Output shown to the user.
    Output,
    /// Input typed by the user.
    Input,
    /// A terminal resize (`COLSxROWS`).
    Resize,
}

impl EventKind {
    fn code(self) -> &'static str {
        match self {
            EventKind::Output => "o",
            EventKind::Input => "i",
            EventKind::Resize => "r",
        }
    }
}

/// Encodes the header line (with the trailing newline).
pub fn encode_header(h: &Header) -> String {
    let mut s = serde_json::to_string(h).unwrap_or_else(|_| "{\"version\":2}".into());
    s.push('\n');
    s
}

/// Encodes one event line: `[seconds, "o", "data"]`. Invalid UTF-8 is replaced, as
/// asciicast v2 stores text.
pub fn encode_event(seconds: f64, kind: EventKind, data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    let mut s = serde_json::to_string(&(round_time(seconds), kind.code(), text.as_ref()))
        .unwrap_or_default();
    s.push('\n');
    s
}

fn round_time(t: f64) -> f64 {
    (t * 1_000_000.0).round() / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_lines() {
        let h = Header {
            version: 2,
            width: 80,
            height: 24,
            timestamp: 1,
            title: None,
        };
        assert_eq!(
            encode_header(&h),
            "{\"version\":2,\"width\":80,\"height\":24,\"timestamp\":1}\n"
        );
        assert_eq!(
            encode_event(1.5, EventKind::Output, b"hi\n"),
            "[1.5,\"o\",\"hi\\n\"]\n"
        );
        assert_eq!(
            encode_event(0.0, EventKind::Input, b"\xff"),
            "[0.0,\"i\",\"\u{fffd}\"]\n"
        );
    }
}
