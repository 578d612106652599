//! The gateway's own SFTP server (protocol version 3, as OpenSSH speaks it), for images
//! that have no `sftp-server` of their own. It runs inside the container, in the session
//! process, after that process has become the login: every file operation is an ordinary
//! system call with the login's permissions on the container's filesystem. The protocol
//! itself comes from `russh-sftp`; this module maps its requests onto `std::fs`.

use std::collections::HashMap;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use russh_sftp::protocol::{
    Attrs, Data, FileAttributes, Handle, Name, OpenFlags, Packet, Status, StatusCode, Version,
};
use russh_sftp::server::StatusReply;

/// Where images keep OpenSSH's `sftp-server` (Debian, Alpine, Fedora, Arch).
pub const IMAGE_SERVERS: &[&str] = &[
    "/usr/lib/openssh/sftp-server",
    "/usr/lib/ssh/sftp-server",
    "/usr/libexec/openssh/sftp-server",
    "/usr/libexec/sftp-server",
];

/// A shell command that runs the first of [`IMAGE_SERVERS`] the image has, or says
/// that there is none (exit 127).
pub fn image_server_command() -> String {
    let paths = IMAGE_SERVERS.join(" ");
    format!(
        "for p in {paths}; do [ -x \"$p\" ] && exec \"$p\"; done; \
         echo 'gatehouse: this image has no sftp-server (install openssh-sftp-server in it)' >&2; \
         exit 127"
    )
}

/// The largest read answered at once (OpenSSH's clients ask for at most 256 KiB).
const MAX_READ: u32 = 256 * 1024;
/// Directory entries sent per `READDIR` answer.
const DIR_BATCH: usize = 128;
/// Handles one client may hold open at once (sftp-server allows 512).
const MAX_HANDLES: usize = 512;

/// Serves SFTP on standard input and output until the client goes away. Call it in the
/// session process, as the login, with nothing else running in the process.
pub fn serve_stdio() -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    runtime.block_on(async {
        // SAFETY: 0 and 1 are this process's own standard streams, taken over here for
        // the rest of its life.
        let (stdin, stdout) = unsafe { (OwnedFd::from_raw_fd(0), OwnedFd::from_raw_fd(1)) };
        let input = tokio::net::unix::pipe::Receiver::from_owned_fd(stdin)?;
        let output = tokio::net::unix::pipe::Sender::from_owned_fd(stdout)?;
        serve(tokio::io::join(input, output)).await;
        Ok(())
    })
}

/// Serves SFTP on `stream` until it ends, with this process's permissions and working
/// directory.
pub async fn serve<S>(stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let server = Server {
        handles: HashMap::new(),
        next: 0,
        _done: done_tx,
    };
    russh_sftp::server::run(stream, server).await;
    // The server's task drops the handler (and with it `_done`) when the stream ends.
    let _ = done_rx.await;
}

/// What a handle stands for.
enum Opened {
    File {
        file: File,
        append: bool,
    },
    Dir {
        entries: Vec<russh_sftp::protocol::File>,
    },
}

/// One client's state: its open handles.
struct Server {
    handles: HashMap<String, Opened>,
    next: u64,
    /// Dropped with the server, which tells [`serve_stdio`] the session is over.
    _done: tokio::sync::oneshot::Sender<()>,
}

/// A failed request, as the status the client receives.
struct Failure(StatusReply);

impl From<Failure> for StatusReply {
    fn from(f: Failure) -> Self {
        f.0
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        let code = match e.kind() {
            ErrorKind::NotFound => StatusCode::NoSuchFile,
            ErrorKind::PermissionDenied => StatusCode::PermissionDenied,
            _ => StatusCode::Failure,
        };
        Failure(StatusReply::new(code).with_message(e.to_string()))
    }
}

fn fail(code: StatusCode) -> Failure {
    Failure(StatusReply::new(code))
}

fn ok(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".into(),
        language_tag: "en-US".into(),
    }
}

/// The attributes SFTP carries, from a file's metadata.
fn attributes(m: &Metadata) -> FileAttributes {
    FileAttributes {
        size: Some(m.size()),
        uid: Some(m.uid()),
        user: None,
        gid: Some(m.gid()),
        group: None,
        permissions: Some(m.mode()),
        atime: Some(m.atime().clamp(0, i64::from(u32::MAX)) as u32),
        mtime: Some(m.mtime().clamp(0, i64::from(u32::MAX)) as u32),
    }
}

/// Applies the attributes a client set (size, owner, mode, times) to `path`.
fn apply(path: &Path, attrs: &FileAttributes) -> Result<(), Failure> {
    if let Some(size) = attrs.size {
        OpenOptions::new().write(true).open(path)?.set_len(size)?;
    }
    if let Some(mode) = attrs.permissions {
        fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777))?;
    }
    if attrs.uid.is_some() || attrs.gid.is_some() {
        std::os::unix::fs::chown(path, attrs.uid, attrs.gid)?;
    }
    if let (Some(atime), Some(mtime)) = (attrs.atime, attrs.mtime) {
        let spec = |t: u32| nix::sys::time::TimeSpec::new(i64::from(t), 0);
        nix::sys::stat::utimensat(
            None,
            path,
            &spec(atime),
            &spec(mtime),
            nix::sys::stat::UtimensatFlags::FollowSymlink,
        )
        .map_err(|e| Failure::from(std::io::Error::from(e)))?;
    }
    Ok(())
}

/// A path made absolute against the working directory and cleaned of `.` and `..`,
/// for `REALPATH` of a name that does not exist (yet).
fn lexical(path: &Path) -> PathBuf {
    let base = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let mut out = PathBuf::from("/");
    for c in base.join(path).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Reads one SSH string (u32 length, bytes) from the front of `data`.
fn take_string(data: &mut &[u8]) -> Option<String> {
    let (len, rest) = data.split_first_chunk::<4>()?;
    let len = u32::from_be_bytes(*len) as usize;
    let text = rest.get(..len)?;
    *data = &rest[len..];
    String::from_utf8(text.to_vec()).ok()
}

impl Server {
    fn insert(&mut self, opened: Opened) -> Result<Handle, Failure> {
        if self.handles.len() >= MAX_HANDLES {
            return Err(Failure(
                StatusReply::new(StatusCode::Failure).with_message("too many open handles"),
            ));
        }
        self.next += 1;
        let handle = self.next.to_string();
        self.handles.insert(handle.clone(), opened);
        Ok(Handle { id: 0, handle })
    }

    fn file(&self, handle: &str) -> Result<(&File, bool), Failure> {
        match self.handles.get(handle) {
            Some(Opened::File { file, append }) => Ok((file, *append)),
            _ => Err(fail(StatusCode::Failure)),
        }
    }
}

impl russh_sftp::server::Handler for Server {
    type Error = Failure;

    fn unimplemented(&self) -> Self::Error {
        fail(StatusCode::OpUnsupported)
    }

    async fn init(
        &mut self,
        _version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, Self::Error> {
        let mut v = Version::new();
        for ext in [
            "posix-rename@openssh.com",
            "hardlink@openssh.com",
            "fsync@openssh.com",
        ] {
            v.extensions.insert(ext.into(), "1".into());
        }
        Ok(v)
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        let mut options: OpenOptions = pflags.into();
        if !pflags.intersects(OpenFlags::READ | OpenFlags::WRITE) {
            options.read(true);
        }
        options.mode(attrs.permissions.unwrap_or(0o666) & 0o7777);
        let file = options.open(&filename)?;
        if file.metadata()?.is_dir() {
            return Err(Failure(
                StatusReply::new(StatusCode::Failure).with_message("is a directory"),
            ));
        }
        let append = pflags.contains(OpenFlags::APPEND);
        let mut handle = self.insert(Opened::File { file, append })?;
        handle.id = id;
        Ok(handle)
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        match self.handles.remove(&handle) {
            Some(_) => Ok(ok(id)),
            None => Err(fail(StatusCode::Failure)),
        }
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, Self::Error> {
        let (file, _) = self.file(&handle)?;
        let mut data = vec![0u8; len.min(MAX_READ) as usize];
        let mut filled = 0;
        while filled < data.len() {
            match file.read_at(&mut data[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        if filled == 0 && len > 0 {
            return Err(fail(StatusCode::Eof));
        }
        data.truncate(filled);
        Ok(Data { id, data })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        let (mut file, append) = self.file(&handle)?;
        if append {
            std::io::Write::write_all(&mut file, &data)?;
        } else {
            file.write_all_at(&data, offset)?;
        }
        Ok(ok(id))
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let attrs = attributes(&fs::symlink_metadata(path)?);
        Ok(Attrs { id, attrs })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let attrs = attributes(&fs::metadata(path)?);
        Ok(Attrs { id, attrs })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let (file, _) = self.file(&handle)?;
        let attrs = attributes(&file.metadata()?);
        Ok(Attrs { id, attrs })
    }

    async fn setstat(
        &mut self,
        id: u32,
        path: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        apply(Path::new(&path), &attrs)?;
        Ok(ok(id))
    }

    async fn fsetstat(
        &mut self,
        id: u32,
        handle: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        let (file, _) = self.file(&handle)?;
        use std::os::fd::AsRawFd;
        // The open file, by its descriptor: the name may have moved since.
        let path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        apply(&path, &attrs)?;
        Ok(ok(id))
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        let dir = Path::new(&path);
        let mut entries = Vec::new();
        for name in [".", ".."] {
            if let Ok(m) = fs::symlink_metadata(dir.join(name)) {
                entries.push(russh_sftp::protocol::File::new(name, attributes(&m)));
            }
        }
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let Ok(m) = entry.metadata() else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            entries.push(russh_sftp::protocol::File::new(name, attributes(&m)));
        }
        // Handed out from the end, so reverse to keep the directory's order.
        entries.reverse();
        let mut handle = self.insert(Opened::Dir { entries })?;
        handle.id = id;
        Ok(handle)
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        match self.handles.get_mut(&handle) {
            Some(Opened::Dir { entries }) if entries.is_empty() => Err(fail(StatusCode::Eof)),
            Some(Opened::Dir { entries }) => {
                let take = entries.len().min(DIR_BATCH);
                let files = entries.split_off(entries.len() - take);
                Ok(Name {
                    id,
                    files: files.into_iter().rev().collect(),
                })
            }
            _ => Err(fail(StatusCode::Failure)),
        }
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        fs::remove_file(filename)?;
        Ok(ok(id))
    }

    async fn mkdir(
        &mut self,
        id: u32,
        path: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        fs::DirBuilder::new()
            .mode(attrs.permissions.unwrap_or(0o777) & 0o7777)
            .create(path)?;
        Ok(ok(id))
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Result<Status, Self::Error> {
        fs::remove_dir(path)?;
        Ok(ok(id))
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let path = if path.is_empty() { ".".into() } else { path };
        let real = fs::canonicalize(&path).unwrap_or_else(|_| lexical(Path::new(&path)));
        Ok(Name {
            id,
            files: vec![russh_sftp::protocol::File::dummy(
                real.to_string_lossy().into_owned(),
            )],
        })
    }

    async fn rename(
        &mut self,
        id: u32,
        oldpath: String,
        newpath: String,
    ) -> Result<Status, Self::Error> {
        // Version 3 renames never replace an existing file (posix-rename does).
        if fs::symlink_metadata(&newpath).is_ok() {
            return Err(Failure(
                StatusReply::new(StatusCode::Failure).with_message("target exists"),
            ));
        }
        fs::rename(oldpath, newpath)?;
        Ok(ok(id))
    }

    async fn readlink(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let target = fs::read_link(path)?;
        Ok(Name {
            id,
            files: vec![russh_sftp::protocol::File::dummy(
                target.to_string_lossy().into_owned(),
            )],
        })
    }

    async fn symlink(
        &mut self,
        id: u32,
        linkpath: String,
        targetpath: String,
    ) -> Result<Status, Self::Error> {
        // OpenSSH sends the link's target first and the new link second (the reverse of
        // the draft), and every client follows it; so does its sftp-server.
        std::os::unix::fs::symlink(linkpath, targetpath)?;
        Ok(ok(id))
    }

    async fn extended(
        &mut self,
        id: u32,
        request: String,
        data: Vec<u8>,
    ) -> Result<Packet, Self::Error> {
        let mut rest = data.as_slice();
        let bad = || fail(StatusCode::BadMessage);
        match request.as_str() {
            "posix-rename@openssh.com" => {
                let from = take_string(&mut rest).ok_or_else(bad)?;
                let to = take_string(&mut rest).ok_or_else(bad)?;
                fs::rename(from, to)?;
            }
            "hardlink@openssh.com" => {
                let from = take_string(&mut rest).ok_or_else(bad)?;
                let to = take_string(&mut rest).ok_or_else(bad)?;
                fs::hard_link(from, to)?;
            }
            "fsync@openssh.com" => {
                let handle = take_string(&mut rest).ok_or_else(bad)?;
                self.file(&handle)?.0.sync_all()?;
            }
            _ => return Err(fail(StatusCode::OpUnsupported)),
        }
        Ok(Packet::Status(ok(id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_taken_one_at_a_time_and_short_input_is_refused() {
        let mut data: &[u8] = b"\0\0\0\x03abc\0\0\0\x01d";
        assert_eq!(take_string(&mut data).as_deref(), Some("abc"));
        assert_eq!(take_string(&mut data).as_deref(), Some("d"));
        assert_eq!(take_string(&mut data), None);
        let mut short: &[u8] = b"\0\0\0\x09abc";
        assert_eq!(take_string(&mut short), None);
    }

    #[test]
    fn missing_names_resolve_lexically() {
        assert_eq!(lexical(Path::new("/a/b/../c/./d")), PathBuf::from("/a/c/d"));
        assert_eq!(lexical(Path::new("/../..")), PathBuf::from("/"));
    }

    #[tokio::test]
    async fn a_client_writes_reads_lists_renames_and_removes_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_string_lossy().into_owned();
        let (client_end, server_end) = tokio::io::duplex(64 * 1024);
        let served = tokio::spawn(serve(server_end));
        let sftp = russh_sftp::client::SftpSession::new(client_end)
            .await
            .unwrap();
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut file = sftp.create(format!("{root}/a.bin")).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut file, &body)
            .await
            .unwrap();
        tokio::io::AsyncWriteExt::shutdown(&mut file).await.unwrap();
        drop(file);
        assert_eq!(std::fs::read(dir.path().join("a.bin")).unwrap(), body);
        assert_eq!(sftp.read(format!("{root}/a.bin")).await.unwrap(), body);
        sftp.create_dir(format!("{root}/sub")).await.unwrap();
        sftp.rename(format!("{root}/a.bin"), format!("{root}/sub/b.bin"))
            .await
            .unwrap();
        let names: Vec<String> = sftp
            .read_dir(format!("{root}/sub"))
            .await
            .unwrap()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec!["b.bin".to_string()]);
        assert_eq!(
            sftp.metadata(format!("{root}/sub/b.bin"))
                .await
                .unwrap()
                .size,
            Some(body.len() as u64)
        );
        // A plain rename never replaces a file.
        std::fs::write(dir.path().join("c"), b"c").unwrap();
        assert!(sftp
            .rename(format!("{root}/c"), format!("{root}/sub/b.bin"))
            .await
            .is_err());
        assert!(sftp.read(format!("{root}/missing")).await.is_err());
        sftp.remove_file(format!("{root}/sub/b.bin")).await.unwrap();
        sftp.remove_dir(format!("{root}/sub")).await.unwrap();
        assert!(!dir.path().join("sub").exists());
        sftp.close().await.unwrap();
        drop(sftp);
        tokio::time::timeout(std::time::Duration::from_secs(5), served)
            .await
            .expect("the server ends with its stream")
            .unwrap();
    }

    #[test]
    fn io_errors_become_sftp_statuses() {
        let code =
            |k: ErrorKind| StatusReply::from(Failure::from(std::io::Error::from(k))).status_code;
        assert_eq!(code(ErrorKind::NotFound), StatusCode::NoSuchFile);
        assert_eq!(
            code(ErrorKind::PermissionDenied),
            StatusCode::PermissionDenied
        );
        assert_eq!(code(ErrorKind::Other), StatusCode::Failure);
    }
}
