//! Asciicast v2: the header line, event lines, an incremental writer that keeps every
//! event a complete line (so a crash loses at most the event being written), and a
//! reader that tolerates a torn last line.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{RecordingError, Result};

/// The first line of an asciicast v2 file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    /// Always 2.
    pub version: u8,
    /// Terminal width.
    pub width: u16,
    /// Terminal height.
    pub height: u16,
    /// Unix time of the start.
    pub timestamp: i64,
    /// The command of an exec session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Title (e.g. `alice@web01`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    /// A marker: a note in the recording (e.g. where a stream turned binary).
    Marker,
}

impl EventKind {
    /// The one-letter code in the file.
    pub fn code(self) -> &'static str {
        match self {
            EventKind::Output => "o",
            EventKind::Input => "i",
            EventKind::Resize => "r",
            EventKind::Marker => "m",
        }
    }

    fn from_code(code: &str) -> Option<Self> {
        match code {
            "o" => Some(EventKind::Output),
            "i" => Some(EventKind::Input),
            "r" => Some(EventKind::Resize),
            "m" => Some(EventKind::Marker),
            _ => None,
        }
    }
}

/// Encodes the header line (with the trailing newline).
pub fn encode_header(h: &Header) -> String {
    let mut s = serde_json::to_string(h).unwrap_or_else(|_| "{\"version\":2}".into());
    s.push('\n');
    s
}

/// Encodes one event line: `[seconds, "o", "data"]`.
pub fn encode_event(seconds: f64, kind: EventKind, text: &str) -> String {
    let mut s = Vec::new();
    encode_event_into(&mut s, seconds, kind, text);
    String::from_utf8(s).unwrap_or_default()
}

/// Encodes one event line into `out` (cleared first), reusing its allocation.
fn encode_event_into(out: &mut Vec<u8>, seconds: f64, kind: EventKind, text: &str) {
    out.clear();
    let t = (seconds * 1_000_000.0).round() / 1_000_000.0;
    // Serializing a float, a str and a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &(t, kind.code(), text));
    out.push(b'\n');
}

/// Splits byte chunks into text without breaking UTF-8 sequences across events: an
/// incomplete sequence at the end of a chunk waits for the next one.
#[derive(Debug, Default)]
pub struct Utf8Carry {
    pending: Vec<u8>,
}

impl Utf8Carry {
    /// The text of `chunk` (with what was carried), keeping a trailing partial sequence.
    pub fn push(&mut self, chunk: &[u8]) -> String {
        self.pending.extend_from_slice(chunk);
        let keep = incomplete_tail(&self.pending);
        let split = self.pending.len() - keep;
        let text = String::from_utf8_lossy(&self.pending[..split]).into_owned();
        self.pending.drain(..split);
        text
    }

    /// The bytes held back: the start of a UTF-8 sequence cut at the end of a chunk.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Takes the bytes held back.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }
}

/// How many bytes at the end of `b` start a UTF-8 sequence that is not complete yet.
fn incomplete_tail(b: &[u8]) -> usize {
    for back in 1..=3.min(b.len()) {
        let byte = b[b.len() - back];
        if byte & 0xC0 == 0x80 {
            continue; // continuation byte: look further back
        }
        let needed = match byte {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return 0,
        };
        return if back < needed { back } else { 0 };
    }
    0
}

/// Writes one asciicast file incrementally. It takes text: turning bytes into text (and
/// deciding what is not text) is [`crate::channel`]'s job.
pub struct CastWriter {
    file: File,
    start: Instant,
    line: Vec<u8>,
}

impl CastWriter {
    /// Creates the file (it must not exist) and writes the header.
    pub fn create(path: &Path, header: &Header) -> Result<Self> {
        let mut file = crate::private::new_file()
            .open(path)
            .map_err(|e| RecordingError::io("cannot create recording", path, e))?;
        file.write_all(encode_header(header).as_bytes())
            .map_err(|e| RecordingError::io("cannot write recording", path, e))?;
        Ok(CastWriter {
            file,
            start: Instant::now(),
            line: Vec::new(),
        })
    }

    /// Appends an event.
    pub fn text_event(&mut self, kind: EventKind, text: &str) -> std::io::Result<()> {
        encode_event_into(
            &mut self.line,
            self.start.elapsed().as_secs_f64(),
            kind,
            text,
        );
        // One write per event: a crash leaves whole lines plus at most one torn line.
        self.file.write_all(&self.line)
    }

    /// Flushes to disk.
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

/// One event read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Seconds since the start.
    pub time: f64,
    /// Its kind.
    pub kind: EventKind,
    /// Its text.
    pub data: String,
}

/// Reads a recording event by event, without loading it whole. At the end of the file
/// `next_event` returns `None`; if the file grows (a session still running), later calls
/// return the new events. A line is only returned once it is complete.
pub struct CastReader {
    path: std::path::PathBuf,
    reader: BufReader<File>,
    partial: String,
    line_no: usize,
}

impl CastReader {
    /// Opens a recording and reads its header.
    pub fn open(path: &Path) -> Result<(Header, CastReader)> {
        let file =
            File::open(path).map_err(|e| RecordingError::io("cannot open recording", path, e))?;
        let mut r = CastReader {
            path: path.to_path_buf(),
            reader: BufReader::new(file),
            partial: String::new(),
            line_no: 0,
        };
        let corrupt = |reason: String| RecordingError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let line = r.next_line()?.ok_or_else(|| corrupt("no header".into()))?;
        let header = serde_json::from_str(&line).map_err(|e| corrupt(format!("header: {e}")))?;
        Ok((header, r))
    }

    fn next_line(&mut self) -> Result<Option<String>> {
        let n = self
            .reader
            .read_line(&mut self.partial)
            .map_err(|e| RecordingError::io("cannot read recording", &self.path, e))?;
        if n == 0 || !self.partial.ends_with('\n') {
            return Ok(None);
        }
        self.line_no += 1;
        let line = std::mem::take(&mut self.partial);
        Ok(Some(line.trim_end_matches('\n').to_string()))
    }

    /// The next complete event, or `None` at the current end of the file.
    pub fn next_event(&mut self) -> Result<Option<Event>> {
        let Some(line) = self.next_line()? else {
            return Ok(None);
        };
        let (time, code, data): (f64, String, String) =
            serde_json::from_str(&line).map_err(|e| RecordingError::Corrupt {
                path: self.path.clone(),
                reason: format!("line {}: {e}", self.line_no),
            })?;
        match EventKind::from_code(&code) {
            Some(kind) => Ok(Some(Event { time, kind, data })),
            None => Err(RecordingError::Corrupt {
                path: self.path.clone(),
                reason: format!("line {}: unknown event type '{code}'", self.line_no),
            }),
        }
    }
}

/// Reads a recording: its header and every complete event (a torn last line, as a crash
/// may leave, is ignored; anything else malformed is an error).
pub fn read(path: &Path) -> Result<(Header, Vec<Event>)> {
    let file =
        File::open(path).map_err(|e| RecordingError::io("cannot open recording", path, e))?;
    read_from(BufReader::new(file), path)
}

/// Reads a recording from `input` as [`read`] does; `path` names it in errors.
pub fn read_from(input: impl BufRead, path: &Path) -> Result<(Header, Vec<Event>)> {
    let mut lines = input.lines();
    let bad = |why: String| RecordingError::Corrupt {
        path: path.to_path_buf(),
        reason: why,
    };
    let header_line = lines
        .next()
        .ok_or_else(|| bad("empty file".into()))?
        .map_err(|e| RecordingError::io("cannot read recording", path, e))?;
    let header: Header =
        serde_json::from_str(&header_line).map_err(|e| bad(format!("header: {e}")))?;
    let mut events = Vec::new();
    let mut lines = lines.peekable();
    let mut n = 1;
    while let Some(line) = lines.next() {
        n += 1;
        let line = line.map_err(|e| RecordingError::io("cannot read recording", path, e))?;
        let last = lines.peek().is_none();
        match serde_json::from_str::<(f64, String, String)>(&line) {
            Ok((time, code, data)) => match EventKind::from_code(&code) {
                Some(kind) => events.push(Event { time, kind, data }),
                None => return Err(bad(format!("line {n}: unknown event type '{code}'"))),
            },
            Err(_) if last => break,
            Err(e) => return Err(bad(format!("line {n}: {e}"))),
        }
    }
    Ok((header, events))
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
            command: None,
            title: None,
        };
        assert_eq!(
            encode_header(&h),
            "{\"version\":2,\"width\":80,\"height\":24,\"timestamp\":1}\n"
        );
        assert_eq!(
            encode_event(1.5, EventKind::Output, "hi\n"),
            "[1.5,\"o\",\"hi\\n\"]\n"
        );
    }

    #[test]
    fn utf8_is_not_split_across_events() {
        let mut c = Utf8Carry::default();
        let euro = "€".as_bytes();
        assert_eq!(c.push(&[b'a', euro[0]]), "a");
        assert_eq!(c.push(&euro[1..]), "€");
        assert_eq!(c.push(b"\xff"), "\u{fffd}");
    }

    #[test]
    fn write_then_read_back_even_with_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.cast");
        let h = Header {
            version: 2,
            width: 80,
            height: 24,
            timestamp: 0,
            command: Some("ls".into()),
            title: None,
        };
        let mut w = CastWriter::create(&p, &h).unwrap();
        w.text_event(EventKind::Output, "hello ").unwrap();
        w.text_event(EventKind::Input, "x").unwrap();
        w.text_event(EventKind::Resize, "100x30").unwrap();
        drop(w);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"[0.5, \"o\", \"tor")
            .unwrap();
        let (h, ev) = read(&p).unwrap();
        assert_eq!(h.command.as_deref(), Some("ls"));
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0].data, "hello ");
        assert_eq!(ev[2].kind, EventKind::Resize);
        assert!(
            CastWriter::create(&p, &h).is_err(),
            "overwrote an existing recording"
        );
        std::fs::write(
            &p,
            "{\"version\":2,\"width\":1,\"height\":1,\"timestamp\":0}\nnot json\n[1,\"o\",\"x\"]\n",
        )
        .unwrap();
        assert!(read(&p).is_err());
    }
}
