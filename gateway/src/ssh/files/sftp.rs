//! Reads an SFTP conversation as it passes through the gateway (the client's requests and
//! the server's answers) and turns it into file events: opens, reads and writes (with the
//! size and SHA-256 of what moved, reported when the file is closed), removals, renames,
//! new and removed directories, attribute changes, links. It only watches: the bytes go on
//! to their destination unchanged, whichever SFTP server answers.

use std::collections::HashMap;

use bytes::{Buf, Bytes, BytesMut};
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};
use serde_json::{json, Map, Value};

use super::digest::{HoldBudget, OrderedDigest, Summary};
use super::FileEvent;
use crate::audit::FileKind;

/// The longest SFTP message followed (OpenSSH's limit is 256 KiB).
const MAX_MESSAGE: usize = 1024 * 1024;
/// Requests awaiting an answer that are remembered (OpenSSH's clients keep 64 in flight).
const MAX_PENDING: usize = 4 * 1024;

/// The longest path kept for the record (Linux's PATH_MAX: a longer one cannot name a
/// file, and the server refuses it).
const MAX_PATH: usize = 4096;

/// The longest handle a server may give (the SFTP drafts' limit).
const MAX_HANDLE: usize = 256;
/// Open handles followed at once (OpenSSH's sftp-server allows 512).
const MAX_HANDLES: usize = 4096;

/// Cuts a byte stream into SFTP messages.
#[derive(Default)]
struct Framer {
    buf: BytesMut,
}

impl Framer {
    /// Adds bytes; returns the complete messages (without their length), or an error if a
    /// message claims to be longer than any real one.
    fn push(&mut self, data: &[u8]) -> Result<Vec<Bytes>, String> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        while self.buf.len() >= 4 {
            let len =
                u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
            if len > MAX_MESSAGE {
                return Err(format!("a message of {len} bytes"));
            }
            if self.buf.len() < 4 + len {
                break;
            }
            let mut message = self.buf.split_to(4 + len);
            message.advance(4);
            out.push(message.freeze());
        }
        Ok(out)
    }
}

/// A request waiting for its answer.
enum Pending {
    Open {
        path: String,
        flags: OpenFlags,
    },
    Read {
        handle: String,
        offset: u64,
    },
    Write {
        handle: String,
    },
    Close {
        handle: String,
    },
    /// An operation reported once answered: its event kind and details.
    Op(FileKind, Value),
}

/// A file the client has open.
struct Tracked {
    path: String,
    flags: OpenFlags,
    read: OrderedDigest,
    write: OrderedDigest,
    write_errors: u32,
    /// The server copied data into it (`copy-data`): what it holds did not pass here.
    copied_into: bool,
}

/// The observer of one SFTP channel.
#[derive(Default)]
pub struct SftpWatch {
    from_client: Framer,
    from_server: Framer,
    pending: HashMap<u32, Pending>,
    handles: HashMap<String, Tracked>,
    /// What the digests of the open files may hold back together.
    held: HoldBudget,
    /// Set once the conversation could not be followed; nothing more is reported.
    lost: bool,
}

fn flag_names(flags: OpenFlags) -> Vec<&'static str> {
    [
        (OpenFlags::READ, "read"),
        (OpenFlags::WRITE, "write"),
        (OpenFlags::APPEND, "append"),
        (OpenFlags::CREATE, "create"),
        (OpenFlags::TRUNCATE, "truncate"),
        (OpenFlags::EXCLUDE, "exclusive"),
    ]
    .into_iter()
    .filter(|(f, _)| flags.contains(*f))
    .map(|(_, n)| n)
    .collect()
}

/// The attributes a `SETSTAT` changes, for the audit record.
fn changes(attrs: &FileAttributes) -> Value {
    let mut m = Map::new();
    if let Some(s) = attrs.size {
        m.insert("size".into(), json!(s));
    }
    if let Some(p) = attrs.permissions {
        m.insert("mode".into(), json!(format!("{:04o}", p & 0o7777)));
    }
    if let Some(u) = attrs.uid {
        m.insert("uid".into(), json!(u));
    }
    if let Some(g) = attrs.gid {
        m.insert("gid".into(), json!(g));
    }
    if let Some(t) = attrs.mtime {
        m.insert("mtime".into(), json!(t));
    }
    Value::Object(m)
}

/// A request that changes a path (not an open file): its id and what to report when
/// the server answers.
fn path_op(packet: Packet) -> Option<(u32, Pending)> {
    Some(match packet {
        Packet::OpenDir(d) => (
            d.id,
            Pending::Op(FileKind::List, json!({"path": bounded(d.path)})),
        ),
        Packet::Remove(r) => (
            r.id,
            Pending::Op(FileKind::Remove, json!({"path": bounded(r.filename)})),
        ),
        Packet::MkDir(m) => (
            m.id,
            Pending::Op(FileKind::Mkdir, json!({"path": bounded(m.path)})),
        ),
        Packet::RmDir(r) => (
            r.id,
            Pending::Op(FileKind::Rmdir, json!({"path": bounded(r.path)})),
        ),
        Packet::Rename(r) => (
            r.id,
            Pending::Op(
                FileKind::Rename,
                json!({"from": bounded(r.oldpath), "to": bounded(r.newpath)}),
            ),
        ),
        Packet::SetStat(s) => (
            s.id,
            Pending::Op(
                FileKind::Setstat,
                json!({"path": bounded(s.path), "set": changes(&s.attrs)}),
            ),
        ),
        // OpenSSH (and every client after it) sends the target first, then the link.
        Packet::Symlink(s) => (
            s.id,
            Pending::Op(
                FileKind::Symlink,
                json!({"target": bounded(s.linkpath), "path": bounded(s.targetpath)}),
            ),
        ),
        _ => return None,
    })
}

/// Reads one SSH string from the front of an extended request's data.
fn take_string(data: &mut &[u8]) -> Option<String> {
    let (len, rest) = data.split_first_chunk::<4>()?;
    let len = u32::from_be_bytes(*len) as usize;
    let text = rest.get(..len)?;
    *data = &rest[len..];
    Some(bounded(String::from_utf8_lossy(text).into_owned()))
}

/// A path as kept for the record: at most [`MAX_PATH`] bytes, marked when cut.
fn bounded(mut path: String) -> String {
    if path.len() > MAX_PATH {
        let mut end = MAX_PATH;
        while !path.is_char_boundary(end) {
            end -= 1;
        }
        path.truncate(end);
        path.push_str("…(cut)");
    }
    path
}

/// Reads one big-endian u64 from the front of an extended request's data.
fn take_u64(data: &mut &[u8]) -> Option<u64> {
    let (n, rest) = data.split_first_chunk::<8>()?;
    *data = rest;
    Some(u64::from_be_bytes(*n))
}

/// A digest's summary as audit fields.
fn summary_fields(path: &str, s: Summary) -> Value {
    let mut v = json!({"path": path, "size": s.bytes});
    match s.sha256 {
        Ok(hex) => v["sha256"] = json!(hex),
        Err(why) => v["sha256_missing"] = json!(why),
    }
    v
}

impl SftpWatch {
    /// Follows bytes the client sent.
    pub fn client(&mut self, data: &[u8], events: &mut Vec<FileEvent>) {
        if self.lost {
            return;
        }
        match self.from_client.push(data) {
            Ok(messages) => {
                for m in messages {
                    self.request(m, events);
                }
            }
            Err(e) => self.lose(format!("the client sent {e}"), events),
        }
    }

    /// Follows bytes the server sent.
    pub fn server(&mut self, data: &[u8], events: &mut Vec<FileEvent>) {
        if self.lost {
            return;
        }
        match self.from_server.push(data) {
            Ok(messages) => {
                for m in messages {
                    self.answer(m, events);
                }
            }
            Err(e) => self.lose(format!("the server sent {e}"), events),
        }
    }

    /// The channel ended: files still open are reported as they stand.
    pub fn finish(&mut self, events: &mut Vec<FileEvent>) {
        let open: Vec<String> = self.handles.keys().cloned().collect();
        for handle in open {
            self.closed(
                &handle,
                Some("the channel ended with the file open"),
                events,
            );
        }
    }

    fn lose(&mut self, why: String, events: &mut Vec<FileEvent>) {
        self.lost = true;
        events.push(FileEvent::lost(format!(
            "the SFTP conversation can no longer be followed: {why}"
        )));
        self.pending.clear();
        self.handles.clear();
    }

    fn expect(&mut self, id: u32, pending: Pending, events: &mut Vec<FileEvent>) {
        if self.pending.len() >= MAX_PENDING {
            self.lose("too many requests without an answer".into(), events);
            return;
        }
        self.pending.insert(id, pending);
    }

    fn request(&mut self, mut message: Bytes, events: &mut Vec<FileEvent>) {
        let packet = match Packet::try_from(&mut message) {
            Ok(p) => p,
            // The server answers what it cannot read with an error; nothing happened.
            Err(_) => return,
        };
        let (id, pending) = match packet {
            Packet::Open(o) => (
                o.id,
                Pending::Open {
                    path: bounded(o.filename),
                    flags: o.pflags,
                },
            ),
            Packet::Close(c) => (c.id, Pending::Close { handle: c.handle }),
            Packet::Read(r) => (
                r.id,
                Pending::Read {
                    handle: r.handle,
                    offset: r.offset,
                },
            ),
            Packet::Write(w) => {
                if let Some(t) = self.handles.get_mut(&w.handle) {
                    t.write.add(w.offset, &w.data);
                }
                (w.id, Pending::Write { handle: w.handle })
            }
            Packet::FSetStat(s) => {
                let path = self.handles.get(&s.handle).map(|t| t.path.clone());
                (
                    s.id,
                    Pending::Op(
                        FileKind::Setstat,
                        json!({"path": path, "set": changes(&s.attrs)}),
                    ),
                )
            }
            Packet::Extended(e) => match self.extended(&e.request, &e.data) {
                Some(op) => (e.id, op),
                None => return,
            },
            other => match path_op(other) {
                Some(op) => op,
                None => return,
            },
        };
        // A handle no server gives names no open file: the server refuses it.
        if let Pending::Read { handle, .. }
        | Pending::Write { handle }
        | Pending::Close { handle } = &pending
        {
            if handle.len() > MAX_HANDLE {
                return;
            }
        }
        self.expect(id, pending, events);
    }

    /// What an extended request does to files, if anything: renames and links are
    /// reported as such, `copy-data` as a copy (and the file it writes is marked, since its
    /// bytes never pass here), read-only queries not at all, and any other request as
    /// `file.extended` with its name, so that nothing a server does unseen goes unaudited.
    fn extended(&mut self, request: &str, data: &[u8]) -> Option<Pending> {
        let mut data = data;
        let op = match request {
            "posix-rename@openssh.com" | "hardlink@openssh.com" => {
                let (from, to) = (take_string(&mut data), take_string(&mut data));
                let mut detail = json!({"from": from, "to": to});
                if request.starts_with("posix-rename") {
                    detail["replace"] = json!(true);
                    Pending::Op(FileKind::Rename, detail)
                } else {
                    Pending::Op(FileKind::Link, detail)
                }
            }
            "copy-data" => {
                let from = take_string(&mut data);
                let (offset, length) = (take_u64(&mut data), take_u64(&mut data));
                let to = take_string(&mut data);
                let to_offset = take_u64(&mut data);
                let path = |h: &Option<String>| {
                    h.as_ref()
                        .and_then(|h| self.handles.get(h))
                        .map(|t| t.path.clone())
                };
                let detail = json!({"from": path(&from), "to": path(&to), "offset": offset,
                    "length": length, "to_offset": to_offset});
                if let Some(t) = to.as_ref().and_then(|h| self.handles.get_mut(h)) {
                    t.copied_into = true;
                }
                Pending::Op(FileKind::Copy, detail)
            }
            "lsetstat@openssh.com" => {
                let path = take_string(&mut data);
                Pending::Op(FileKind::Setstat, json!({"path": path, "nofollow": true}))
            }
            "fsync@openssh.com"
            | "statvfs@openssh.com"
            | "fstatvfs@openssh.com"
            | "limits@openssh.com"
            | "expand-path@openssh.com"
            | "home-directory"
            | "users-groups-by-id@openssh.com"
            | "check-file-name"
            | "check-file-handle" => return None,
            other => Pending::Op(
                FileKind::Extended,
                json!({"request": other.chars().take(256).collect::<String>()}),
            ),
        };
        Some(op)
    }

    fn answer(&mut self, mut message: Bytes, events: &mut Vec<FileEvent>) {
        let Ok(packet) = Packet::try_from(&mut message) else {
            return;
        };
        match packet {
            Packet::Handle(h) => match self.pending.remove(&h.id) {
                Some(Pending::Open { path, flags }) => {
                    events.push(FileEvent::new(
                        FileKind::Open,
                        json!({"path": path, "flags": flag_names(flags)}),
                    ));
                    if h.handle.len() > MAX_HANDLE {
                        let len = h.handle.len();
                        return self.lose(format!("a handle of {len} bytes"), events);
                    }
                    if self.handles.len() < MAX_HANDLES {
                        self.handles.insert(
                            h.handle,
                            Tracked {
                                path,
                                flags,
                                read: OrderedDigest::within(self.held.clone()),
                                write: OrderedDigest::within(self.held.clone()),
                                write_errors: 0,
                                copied_into: false,
                            },
                        );
                    }
                }
                Some(Pending::Op(kind, detail)) => events.push(FileEvent::new(kind, detail)),
                _ => {}
            },
            Packet::Data(d) => {
                if let Some(Pending::Read { handle, offset }) = self.pending.remove(&d.id) {
                    if let Some(t) = self.handles.get_mut(&handle) {
                        t.read.add(offset, &d.data);
                    }
                }
            }
            Packet::Status(s) => {
                let error = (s.status_code != StatusCode::Ok).then(|| {
                    if s.error_message.is_empty() {
                        s.status_code.to_string()
                    } else {
                        s.error_message.clone()
                    }
                });
                match self.pending.remove(&s.id) {
                    Some(Pending::Open { path, flags }) => events.push(FileEvent::new(
                        FileKind::Open,
                        json!({"path": path, "flags": flag_names(flags), "error": error}),
                    )),
                    Some(Pending::Close { handle }) => self.closed(&handle, None, events),
                    Some(Pending::Write { handle }) if error.is_some() => {
                        if let Some(t) = self.handles.get_mut(&handle) {
                            t.write_errors += 1;
                        }
                    }
                    Some(Pending::Op(kind, mut detail)) => {
                        if let Some(e) = error {
                            detail["error"] = json!(e);
                        }
                        events.push(FileEvent::new(kind, detail));
                    }
                    _ => {}
                }
            }
            // Answers to stat, realpath, readdir and readlink and extensions.
            Packet::Name(n) => {
                self.pending.remove(&n.id);
            }
            Packet::Attrs(a) => {
                self.pending.remove(&a.id);
            }
            Packet::ExtendedReply(r) => {
                self.pending.remove(&r.id);
            }
            _ => {}
        }
    }

    /// Reports what moved through a closed (or abandoned) file.
    fn closed(&mut self, handle: &str, note: Option<&str>, events: &mut Vec<FileEvent>) {
        let Some(t) = self.handles.remove(handle) else {
            return;
        };
        let writing = t.flags.contains(OpenFlags::WRITE);
        if writing {
            let mut v = summary_fields(&t.path, t.write.finish());
            if t.copied_into {
                if let Some(m) = v.as_object_mut() {
                    m.remove("sha256");
                    m.remove("size");
                }
                v["sha256_missing"] =
                    json!("the server copied data into the file (copy-data); see file.copy");
            }
            if t.write_errors > 0 {
                v["write_errors"] = json!(t.write_errors);
            }
            if let Some(n) = note {
                v["note"] = json!(n);
            }
            events.push(FileEvent::new(FileKind::Write, v));
        }
        if !writing || !t.read.is_empty() {
            let mut v = summary_fields(&t.path, t.read.finish());
            if let Some(n) = note {
                v["note"] = json!(n);
            }
            events.push(FileEvent::new(FileKind::Read, v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Copies one direction of a conversation, showing each chunk to the watch.
    async fn pass(
        mut from: impl tokio::io::AsyncRead + Unpin,
        mut to: impl tokio::io::AsyncWrite + Unpin,
        watch: Arc<Mutex<(SftpWatch, Vec<FileEvent>)>>,
        client: bool,
    ) {
        let mut buf = vec![0u8; 7000];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            {
                let mut w = watch.lock().unwrap();
                let (watch, events) = &mut *w;
                if client {
                    watch.client(&buf[..n], events);
                } else {
                    watch.server(&buf[..n], events);
                }
            }
            if to.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    }

    #[tokio::test]
    async fn a_real_conversation_yields_each_file_with_its_digest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_string_lossy().into_owned();
        std::fs::write(dir.path().join("down.bin"), vec![9u8; 200_000]).unwrap();
        let (client_end, middle_a) = tokio::io::duplex(16 * 1024);
        let (middle_b, server_end) = tokio::io::duplex(16 * 1024);
        let watch = Arc::new(Mutex::new((SftpWatch::default(), Vec::new())));
        let (a_read, a_write) = tokio::io::split(middle_a);
        let (b_read, b_write) = tokio::io::split(middle_b);
        tokio::spawn(pass(a_read, b_write, watch.clone(), true));
        tokio::spawn(pass(b_read, a_write, watch.clone(), false));
        tokio::spawn(gatehouse_runtime::sftp::serve(server_end));
        let sftp = russh_sftp::client::SftpSession::new(client_end)
            .await
            .unwrap();

        let up: Vec<u8> = (0..150_000u32).map(|i| (i * 7 % 256) as u8).collect();
        let mut f = sftp.create(format!("{root}/up.bin")).await.unwrap();
        f.write_all(&up).await.unwrap();
        f.shutdown().await.unwrap();
        drop(f);
        let down = sftp.read(format!("{root}/down.bin")).await.unwrap();
        sftp.create_dir(format!("{root}/d")).await.unwrap();
        sftp.rename(format!("{root}/up.bin"), format!("{root}/d/up.bin"))
            .await
            .unwrap();
        assert!(sftp.remove_file(format!("{root}/absent")).await.is_err());
        sftp.remove_file(format!("{root}/d/up.bin")).await.unwrap();
        sftp.close().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;

        let hex = |d: &[u8]| super::super::digest::hex(&sha2::Sha256::digest(d));
        let (_, events) = &*watch.lock().unwrap();
        let find = |kind: &str| {
            events
                .iter()
                .filter(|e| e.kind == kind)
                .map(|e| e.detail.clone())
                .collect::<Vec<_>>()
        };
        let written = find("file.write");
        assert_eq!(written.len(), 1, "{events:?}");
        assert_eq!(written[0]["path"], format!("{root}/up.bin"));
        assert_eq!(written[0]["size"], up.len());
        assert_eq!(written[0]["sha256"], hex(&up));
        let read = find("file.read");
        assert_eq!(read.len(), 1, "{events:?}");
        assert_eq!(read[0]["size"], down.len());
        assert_eq!(read[0]["sha256"], hex(&down));
        assert_eq!(find("file.open").len(), 2);
        assert_eq!(find("file.mkdir")[0]["path"], format!("{root}/d"));
        assert_eq!(find("file.rename")[0]["to"], format!("{root}/d/up.bin"));
        let removed = find("file.remove");
        assert_eq!(removed.len(), 2);
        assert!(removed[0]["error"].is_string(), "{removed:?}");
        assert!(removed[1].get("error").is_none());
    }

    #[test]
    fn garbage_is_reported_once_and_never_panics() {
        let mut w = SftpWatch::default();
        let mut events = Vec::new();
        w.client(&[0, 0, 0, 5, 3, 1, 2], &mut events);
        w.client(&[9, 9, 0, 0, 0, 1, 200], &mut events);
        w.server(&[0, 0, 0, 1, 101], &mut events);
        assert!(events.is_empty(), "{events:?}");
        w.client(&[0x7f, 0xff, 0xff, 0xff], &mut events);
        w.client(&[0; 64], &mut events);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, "file.audit_lost");
        assert!(events[0].ends_session);
    }

    /// One client message: length, type, id, then `body`.
    fn message(kind: u8, id: u32, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(body);
        let mut out = (m.len() as u32).to_be_bytes().to_vec();
        out.extend(m);
        out
    }

    fn string(s: &str) -> Vec<u8> {
        let mut out = (s.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(s.as_bytes());
        out
    }

    #[test]
    fn copy_data_and_unknown_extensions_are_audited() {
        let mut w = SftpWatch::default();
        let mut events = Vec::new();
        // A file open for writing, as handle "h2" (a server's answers are faked).
        w.handles.insert(
            "h2".into(),
            Tracked {
                path: "/tmp/copy".into(),
                flags: OpenFlags::WRITE | OpenFlags::CREATE,
                read: OrderedDigest::default(),
                write: OrderedDigest::default(),
                write_errors: 0,
                copied_into: false,
            },
        );
        let mut body = string("copy-data");
        body.extend(string("h1"));
        body.extend(0u64.to_be_bytes());
        body.extend(15u64.to_be_bytes());
        body.extend(string("h2"));
        body.extend(0u64.to_be_bytes());
        w.client(&message(200, 7, &body), &mut events);
        let mut other = string("evil@example.com");
        other.extend(string("/etc/shadow"));
        w.client(&message(200, 8, &other), &mut events);
        let status = |id: u32| {
            let mut b = 0u32.to_be_bytes().to_vec();
            b.extend(string("ok"));
            b.extend(string(""));
            message(101, id, &b)
        };
        w.server(&status(7), &mut events);
        w.server(&status(8), &mut events);
        w.finish(&mut events);
        let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["file.copy", "file.extended", "file.write"]);
        assert_eq!(events[0].detail["to"], "/tmp/copy");
        assert_eq!(events[0].detail["length"], 15);
        assert_eq!(events[1].detail["request"], "evil@example.com");
        assert!(events[2].detail.get("sha256").is_none(), "{:?}", events[2]);
        assert!(events[2].detail["sha256_missing"]
            .as_str()
            .unwrap()
            .contains("copy-data"));
    }

    #[test]
    fn too_many_unanswered_requests_end_the_session() {
        let mut w = SftpWatch::default();
        let mut events = Vec::new();
        for id in 0..=MAX_PENDING as u32 {
            w.client(&message(11, id, &string("/")), &mut events);
        }
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(events[0].ends_session);
    }

    #[test]
    fn paths_and_handles_are_kept_bounded() {
        let mut w = SftpWatch::default();
        let mut events = Vec::new();
        // An OPEN of a 1 MiB path that the server (container root's) never answers.
        let long = "/".to_string() + &"a".repeat(1024 * 1024 - 64);
        let mut open = string(&long);
        open.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
        w.client(&message(3, 1, &open), &mut events);
        match w.pending.get(&1) {
            Some(Pending::Open { path, .. }) => {
                assert!(
                    path.len() <= MAX_PATH + 8 && path.ends_with("…(cut)"),
                    "{}",
                    path.len()
                )
            }
            _ => panic!("the open is not followed"),
        }
        // A read on a handle no server gives is not kept at all.
        let mut read = string(&"h".repeat(MAX_HANDLE + 1));
        read.extend_from_slice(&[0; 12]);
        w.client(&message(5, 2, &read), &mut events);
        assert!(!w.pending.contains_key(&2));
        // A server's answer with such a handle: the audit is lost, and says so.
        w.server(
            &message(102, 1, &string(&"h".repeat(MAX_HANDLE + 1))),
            &mut events,
        );
        assert!(events.iter().any(|e| e.ends_session), "{events:?}");
        assert!(w.handles.is_empty());
    }
}
