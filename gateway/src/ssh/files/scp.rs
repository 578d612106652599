//! Reads a legacy scp transfer (`scp -O`: the remote side runs `scp -t` to receive or
//! `scp -f` to send) as it passes through the gateway, and reports each file with its size
//! and SHA-256. Only the sending side's stream is read: control lines (`C` file, `D`
//! directory, `E` end of directory, `T` times, `\x01`/`\x02` errors), each file's bytes,
//! and the byte that ends them.

use serde_json::json;

use super::digest::StreamDigest;
use super::FileEvent;
use crate::audit::FileKind;

/// The longest control line followed.
const MAX_LINE: usize = 64 * 1024;

/// Which way files move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `scp -t`: the client sends files into the container.
    Upload,
    /// `scp -f`: the container sends files to the client.
    Download,
}

/// A legacy scp command: its direction and the paths it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScpCommand {
    /// Which way files move.
    pub direction: Direction,
    /// The target (upload) or the sources (download) as the command gives them.
    pub paths: Vec<String>,
    /// Whether the target must be a directory (`-d`) or whole trees move (`-r`).
    pub directory: bool,
}

impl ScpCommand {
    /// Recognises the command line the OpenSSH client sends for a legacy transfer.
    pub fn parse(command: &str) -> Option<ScpCommand> {
        let words = shlex::split(command)?;
        let (program, rest) = words.split_first()?;
        if program.rsplit('/').next() != Some("scp") {
            return None;
        }
        let mut direction = None;
        let mut directory = false;
        let mut paths = Vec::new();
        let mut options = true;
        for w in rest {
            if options && w == "--" {
                options = false;
            } else if options && w.len() > 1 && w.starts_with('-') {
                for c in w[1..].chars() {
                    match c {
                        't' => direction = Some(Direction::Upload),
                        'f' => direction = Some(Direction::Download),
                        'd' | 'r' => directory = true,
                        _ => {}
                    }
                }
            } else {
                options = false;
                paths.push(w.clone());
            }
        }
        Some(ScpCommand {
            direction: direction?,
            paths,
            directory,
        })
    }
}

enum State {
    Line(Vec<u8>),
    Data {
        name: String,
        mode: String,
        remaining: u64,
        digest: StreamDigest,
    },
    /// The byte after a file's data.
    End,
    Lost,
}

/// The observer of one legacy scp channel.
pub struct ScpWatch {
    command: ScpCommand,
    state: State,
    dirs: Vec<String>,
}

impl ScpWatch {
    /// Watches a transfer made by `command`.
    pub fn new(command: ScpCommand) -> Self {
        ScpWatch {
            command,
            state: State::Line(Vec::new()),
            dirs: Vec::new(),
        }
    }

    /// Which way files move, so the caller feeds the sending side's bytes.
    pub fn direction(&self) -> Direction {
        self.command.direction
    }

    fn kind(&self) -> FileKind {
        match self.command.direction {
            Direction::Upload => FileKind::Write,
            Direction::Download => FileKind::Read,
        }
    }

    /// The file's path in the container, as far as the command and stream tell it.
    fn path(&self, name: &str) -> String {
        let mut parts: Vec<&str> = self.dirs.iter().map(String::as_str).collect();
        parts.push(name);
        let relative = parts.join("/");
        match (self.command.direction, self.command.paths.as_slice()) {
            (Direction::Upload, [target]) => {
                if self.command.directory || target.ends_with('/') || !self.dirs.is_empty() {
                    format!("{}/{relative}", target.trim_end_matches('/'))
                } else {
                    target.clone()
                }
            }
            (Direction::Download, [source]) if self.dirs.is_empty() => source.clone(),
            (Direction::Download, [source]) => {
                let base = source.rsplit_once('/').map_or("", |(b, _)| b);
                if base.is_empty() {
                    relative
                } else {
                    format!("{base}/{relative}")
                }
            }
            _ => relative,
        }
    }

    /// Follows bytes from the sending side.
    pub fn sent(&mut self, mut data: &[u8], events: &mut Vec<FileEvent>) {
        while !data.is_empty() {
            match std::mem::replace(&mut self.state, State::Lost) {
                State::Lost => return,
                State::Line(mut line) => match data.iter().position(|&b| b == b'\n') {
                    Some(end) => {
                        line.extend_from_slice(&data[..end]);
                        data = &data[end + 1..];
                        self.state = State::Line(Vec::new());
                        self.control(&line, events);
                    }
                    None => {
                        line.extend_from_slice(data);
                        data = &[];
                        if line.len() > MAX_LINE {
                            self.lose("a control line too long", events);
                        } else {
                            self.state = State::Line(line);
                        }
                    }
                },
                State::Data {
                    name,
                    mode,
                    remaining,
                    mut digest,
                } => {
                    let take = remaining.min(data.len() as u64) as usize;
                    digest.add(&data[..take]);
                    data = &data[take..];
                    let remaining = remaining - take as u64;
                    if remaining == 0 {
                        self.file_done(&name, &mode, digest, events);
                        self.state = State::End;
                    } else {
                        self.state = State::Data {
                            name,
                            mode,
                            remaining,
                            digest,
                        };
                    }
                }
                State::End => {
                    // A zero byte, or the start of an error line.
                    if data[0] == 0 {
                        data = &data[1..];
                    }
                    self.state = State::Line(Vec::new());
                }
            }
        }
    }

    /// The transfer ended.
    pub fn finish(&mut self, events: &mut Vec<FileEvent>) {
        if let State::Data {
            name,
            remaining,
            digest,
            ..
        } = std::mem::replace(&mut self.state, State::Lost)
        {
            let summary = digest.finish();
            events.push(FileEvent::new(
                self.kind(),
                json!({"path": self.path(&name), "name": name, "size": summary.bytes,
                    "error": format!("the transfer ended {remaining} bytes short")}),
            ));
        }
    }

    fn lose(&mut self, why: &str, events: &mut Vec<FileEvent>) {
        self.state = State::Lost;
        events.push(FileEvent::lost(format!(
            "the scp transfer can no longer be followed: {why}"
        )));
    }

    fn file_done(
        &mut self,
        name: &str,
        mode: &str,
        digest: StreamDigest,
        events: &mut Vec<FileEvent>,
    ) {
        let summary = digest.finish();
        let mut v =
            json!({"path": self.path(name), "name": name, "mode": mode, "size": summary.bytes});
        if let Ok(hex) = summary.sha256 {
            v["sha256"] = json!(hex);
        }
        events.push(FileEvent::new(self.kind(), v));
    }

    fn control(&mut self, line: &[u8], events: &mut Vec<FileEvent>) {
        let text = String::from_utf8_lossy(line);
        let Some(first) = text.chars().next() else {
            return;
        };
        let rest = &text[first.len_utf8()..];
        match first {
            'C' | 'D' => {
                let mut fields = rest.splitn(3, ' ');
                let (Some(mode), Some(size), Some(name)) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    return self.lose("a malformed file line", events);
                };
                let Ok(size) = size.parse::<u64>() else {
                    return self.lose("a malformed file size", events);
                };
                if first == 'D' {
                    self.dirs.push(name.to_string());
                    events.push(FileEvent::new(
                        FileKind::Mkdir,
                        json!({"path": self.path(""), "mode": mode}),
                    ));
                } else if size == 0 {
                    self.file_done(name, mode, StreamDigest::default(), events);
                    self.state = State::End;
                } else {
                    self.state = State::Data {
                        name: name.to_string(),
                        mode: mode.to_string(),
                        remaining: size,
                        digest: StreamDigest::default(),
                    };
                }
            }
            'E' => {
                self.dirs.pop();
            }
            '\u{1}' | '\u{2}' => {
                events.push(FileEvent::new(
                    self.kind(),
                    json!({"error": rest.trim_start_matches("scp: ")}),
                ));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    #[test]
    fn the_commands_openssh_sends_are_recognised() {
        let up = ScpCommand::parse("scp -v -d -t -- /tmp/in").unwrap();
        assert_eq!(up.direction, Direction::Upload);
        assert!(up.directory);
        assert_eq!(up.paths, vec!["/tmp/in"]);
        let down = ScpCommand::parse("scp -f 'a b' c").unwrap();
        assert_eq!(down.direction, Direction::Download);
        assert_eq!(down.paths, vec!["a b", "c"]);
        assert!(ScpCommand::parse("/usr/bin/scp -r -t .").is_some());
        assert!(ScpCommand::parse("scp a b").is_none());
        assert!(ScpCommand::parse("echo -t x").is_none());
        assert!(ScpCommand::parse("scp 'unclosed").is_none());
    }

    #[test]
    fn files_in_a_tree_are_reported_with_their_digests_across_any_split() {
        let body = vec![7u8; 5000];
        let mut stream = b"D0755 0 d\nC0644 5000 f.bin\n".to_vec();
        stream.extend_from_slice(&body);
        stream.extend_from_slice(b"\0C0600 0 empty\n\0E\n");
        for split in [1, 3, 4096, stream.len()] {
            let mut w = ScpWatch::new(ScpCommand::parse("scp -r -t /srv").unwrap());
            let mut events = Vec::new();
            for piece in stream.chunks(split) {
                w.sent(piece, &mut events);
            }
            w.finish(&mut events);
            let files: Vec<_> = events.iter().filter(|e| e.kind == "file.write").collect();
            assert_eq!(files.len(), 2, "split {split}: {events:?}");
            assert_eq!(files[0].detail["path"], "/srv/d/f.bin");
            assert_eq!(files[0].detail["size"], 5000);
            assert_eq!(
                files[0].detail["sha256"],
                super::super::digest::hex(&sha2::Sha256::digest(&body))
            );
            assert_eq!(files[1].detail["path"], "/srv/d/empty");
            assert_eq!(events[0].kind, "file.mkdir");
        }
    }

    #[test]
    fn errors_and_short_transfers_are_reported() {
        let mut w = ScpWatch::new(ScpCommand::parse("scp -f /nope").unwrap());
        let mut events = Vec::new();
        w.sent(b"\x01scp: /nope: No such file or directory\n", &mut events);
        assert_eq!(events[0].kind, "file.read");
        assert_eq!(
            events[0].detail["error"],
            "/nope: No such file or directory"
        );
        w.sent(b"C0644 10 x\nabc", &mut events);
        w.finish(&mut events);
        assert!(events[1].detail["error"]
            .as_str()
            .unwrap()
            .contains("7 bytes short"));
    }

    #[test]
    fn a_single_file_upload_lands_on_its_target() {
        let mut w = ScpWatch::new(ScpCommand::parse("scp -t /tmp/x.bin").unwrap());
        let mut events = Vec::new();
        w.sent(b"C0644 1 a\nz\0", &mut events);
        assert_eq!(events[0].detail["path"], "/tmp/x.bin");
        assert_eq!(events[0].detail["name"], "a");
    }
}
