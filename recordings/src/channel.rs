//! Everything recorded of one channel. Terminal sessions are asciicast alone. A channel
//! without a terminal carries streams that may be data rather than text (`tar c`, an
//! image, `head -c 1G /dev/zero`): each of its streams is written to the asciicast files
//! while it is text, and from its first chunk that is not (a NUL byte or invalid UTF-8) to
//! a raw file beside them, byte for byte (`channel-N.stdout.bin`, `.stderr.bin`,
//! `.stdin.bin`), with a marker event in the cast saying so. Binary data is thus kept
//! exactly rather than mangled into replacement characters, and costs one byte on disk per
//! byte instead of up to six of JSON escapes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::cast::{CastWriter, EventKind, Utf8Carry};

/// Which stream of the channel a chunk belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// stdout, or the terminal's output.
    Stdout,
    /// stderr of an exec without a terminal.
    Stderr,
    /// What the person sent: keys or stdin.
    Stdin,
}

impl Source {
    fn index(self) -> usize {
        self as usize
    }

    /// The stream's name in file names and markers.
    pub fn name(self) -> &'static str {
        match self {
            Source::Stdout => "stdout",
            Source::Stderr => "stderr",
            Source::Stdin => "stdin",
        }
    }
}

/// One stream's state: text so far (with a partial UTF-8 sequence carried), or raw.
#[derive(Default)]
struct StreamState {
    carry: Utf8Carry,
    raw: Option<BufWriter<File>>,
}

/// Raw data gathered before a write: fewer, larger writes when data streams in.
const RAW_BUFFER: usize = 256 * 1024;

/// The recording of one channel: its cast file(s), and raw files for binary streams.
pub struct ChannelRecorder {
    main: CastWriter,
    stderr: Option<CastWriter>,
    /// Where raw files go and how they are named: `<dir>/<prefix>.<stream>.bin`.
    raw_base: Option<(PathBuf, String)>,
    streams: [StreamState; 3],
}

impl ChannelRecorder {
    /// A terminal channel: one cast, text only.
    pub fn terminal(main: CastWriter) -> Self {
        Self::new(main, None, None)
    }

    /// A channel without a terminal: the main cast (stdout, stderr and stdin), a cast of
    /// stderr alone, and raw files named `<prefix>.<stream>.bin` in `dir` for streams that
    /// turn out to be binary.
    pub fn streams(main: CastWriter, stderr: CastWriter, dir: &Path, prefix: &str) -> Self {
        Self::new(
            main,
            Some(stderr),
            Some((dir.to_path_buf(), prefix.to_string())),
        )
    }

    fn new(
        main: CastWriter,
        stderr: Option<CastWriter>,
        raw_base: Option<(PathBuf, String)>,
    ) -> Self {
        ChannelRecorder {
            main,
            stderr,
            raw_base,
            streams: Default::default(),
        }
    }

    /// The name of the raw file of `source`, for a channel that has them.
    pub fn raw_file_name(&self, source: Source) -> Option<String> {
        self.raw_base
            .as_ref()
            .map(|(_, prefix)| format!("{prefix}.{}.bin", source.name()))
    }

    /// Records a chunk of `source`.
    pub fn data(&mut self, source: Source, chunk: &[u8]) -> std::io::Result<()> {
        let i = source.index();
        if let Some(raw) = self.streams[i].raw.as_mut() {
            return raw.write_all(chunk);
        }
        if self.raw_base.is_some() && is_binary(self.streams[i].carry.pending(), chunk) {
            return self.switch_to_raw(source, chunk);
        }
        let text = self.streams[i].carry.push(chunk);
        self.text(source, &text)
    }

    fn text(&mut self, source: Source, text: &str) -> std::io::Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        match source {
            Source::Stdout => self.main.text_event(EventKind::Output, text),
            Source::Stderr => {
                self.main.text_event(EventKind::Output, text)?;
                match self.stderr.as_mut() {
                    Some(e) => e.text_event(EventKind::Output, text),
                    None => Ok(()),
                }
            }
            Source::Stdin => self.main.text_event(EventKind::Input, text),
        }
    }

    /// From this chunk on, `source` goes to its raw file; the cast(s) it went to say so.
    fn switch_to_raw(&mut self, source: Source, chunk: &[u8]) -> std::io::Result<()> {
        let (Some((dir, _)), Some(name)) = (self.raw_base.as_ref(), self.raw_file_name(source))
        else {
            return Ok(());
        };
        let path = dir.join(&name);
        let mut file =
            BufWriter::with_capacity(RAW_BUFFER, crate::private::new_file().open(&path)?);
        // The partial UTF-8 sequence held back belongs to the binary data.
        file.write_all(&self.streams[source.index()].carry.take())?;
        file.write_all(chunk)?;
        self.streams[source.index()].raw = Some(file);
        let note = format!(
            "{} is binary from here on; its bytes are in {name}",
            source.name()
        );
        self.main.text_event(EventKind::Marker, &note)?;
        if source == Source::Stderr {
            if let Some(e) = self.stderr.as_mut() {
                e.text_event(EventKind::Marker, &note)?;
            }
        }
        Ok(())
    }

    /// Appends an event that is not stream data (a resize) to the main cast.
    pub fn event(&mut self, kind: EventKind, text: &str) -> std::io::Result<()> {
        self.main.text_event(kind, text)
    }

    /// Writes out what raw data is buffered (call it when no more data is waiting, so a
    /// crash loses nothing that has been relayed for long).
    pub fn flush(&mut self) -> std::io::Result<()> {
        for s in &mut self.streams {
            if let Some(raw) = s.raw.as_mut() {
                raw.flush()?;
            }
        }
        Ok(())
    }

    /// Writes out and flushes everything to disk.
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.flush()?;
        self.main.sync()?;
        if let Some(e) = self.stderr.as_mut() {
            e.sync()?;
        }
        for s in &mut self.streams {
            if let Some(raw) = s.raw.as_mut() {
                raw.get_ref().sync_data()?;
            }
        }
        Ok(())
    }
}

/// Whether `chunk` (after the carried bytes `pending`) is data rather than text: a NUL byte,
/// or a byte sequence that is not UTF-8 (a sequence cut at the end is not yet either).
pub fn is_binary(pending: &[u8], chunk: &[u8]) -> bool {
    if chunk.contains(&0) {
        return true;
    }
    let check = |b: &[u8]| matches!(std::str::from_utf8(b), Err(e) if e.error_len().is_some());
    if pending.is_empty() {
        return check(chunk);
    }
    let mut joined = Vec::with_capacity(pending.len() + chunk.len());
    joined.extend_from_slice(pending);
    joined.extend_from_slice(chunk);
    check(&joined)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cast::{read, Header};

    fn header() -> Header {
        Header {
            version: 2,
            width: 80,
            height: 24,
            timestamp: 0,
            command: Some("x".into()),
            title: None,
        }
    }

    fn recorder(dir: &Path) -> ChannelRecorder {
        let main = CastWriter::create(&dir.join("channel-0.cast"), &header()).unwrap();
        let err = CastWriter::create(&dir.join("channel-0.stderr.cast"), &header()).unwrap();
        ChannelRecorder::streams(main, err, dir, "channel-0")
    }

    #[test]
    fn binary_streams_switch_to_raw_files_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = recorder(dir.path());
        let euro = "€".as_bytes();
        r.data(Source::Stdout, b"text first ").unwrap();
        r.data(Source::Stdout, &euro[..1]).unwrap(); // held back: maybe text still
        r.data(Source::Stdout, &[euro[1], 0, 0xff, 1]).unwrap(); // NUL: binary
        r.data(Source::Stdout, b"more").unwrap();
        r.data(Source::Stderr, b"warning\n").unwrap();
        r.data(Source::Stdin, b"\xc3\x28").unwrap(); // invalid UTF-8
        r.sync().unwrap();
        let raw = std::fs::read(dir.path().join("channel-0.stdout.bin")).unwrap();
        assert_eq!(raw, [euro[0], euro[1], 0, 0xff, 1, b'm', b'o', b'r', b'e']);
        let stdin = std::fs::read(dir.path().join("channel-0.stdin.bin")).unwrap();
        assert_eq!(stdin, b"\xc3\x28");
        assert!(!dir.path().join("channel-0.stderr.bin").exists());
        let (_, events) = read(&dir.path().join("channel-0.cast")).unwrap();
        let texts: Vec<(EventKind, &str)> =
            events.iter().map(|e| (e.kind, e.data.as_str())).collect();
        assert_eq!(
            texts,
            [
                (EventKind::Output, "text first "),
                (
                    EventKind::Marker,
                    "stdout is binary from here on; its bytes are in channel-0.stdout.bin"
                ),
                (EventKind::Output, "warning\n"),
                (
                    EventKind::Marker,
                    "stdin is binary from here on; its bytes are in channel-0.stdin.bin"
                ),
            ]
        );
        let (_, errs) = read(&dir.path().join("channel-0.stderr.cast")).unwrap();
        assert_eq!(errs.len(), 1);
    }

    #[test]
    fn terminals_stay_text() {
        let dir = tempfile::tempdir().unwrap();
        let main = CastWriter::create(&dir.path().join("c.cast"), &header()).unwrap();
        let mut r = ChannelRecorder::terminal(main);
        r.data(Source::Stdout, b"a\0b\xff").unwrap();
        let (_, events) = read(&dir.path().join("c.cast")).unwrap();
        assert_eq!(events[0].data, "a\0b\u{fffd}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn detects_binary() {
        assert!(!is_binary(b"", "plain ünïcode\n".as_bytes()));
        assert!(!is_binary(b"", &"€".as_bytes()[..2])); // cut, not wrong
        assert!(is_binary(b"", b"a\0"));
        assert!(is_binary(b"", b"\xff"));
        assert!(is_binary(&"€".as_bytes()[..1], b"x"));
    }
}
