//! The short messages the supervisor's family of processes pass over pipes and socket
//! pairs while a container or a session is set up (the gateway's socket protocol is
//! `protocol.rs`). One line each, a letter then its text:
//!
//! | message | from → to |
//! |---|---|
//! | `Ready` (`R`) | supervisor → its launcher; init → supervisor; session → supervisor (with its terminal) |
//! | `Go` (`G`) | supervisor → init, once its ids, cgroup, network and mounts are in place |
//! | `Started(pid)` (`P<pid>`) | exec helper → supervisor: the session's process |
//! | `Done(text)` (`S<text>`) | a forked job → supervisor (with its descriptor, if any) |
//! | `Failed(why)` (`E<why>`) | any of them, instead |
//!
//! A line that is none of these (or none at all: the writer died) decodes to an error
//! that says so; a failure's text has its newlines flattened so it stays one line.

use super::error::NativeError;

/// One message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// Set-up is done.
    Ready,
    /// Go on.
    Go,
    /// A session's process runs, with this pid in the supervisor's PID namespace.
    Started(i32),
    /// A forked job is done; its text.
    Done(String),
    /// What failed.
    Failed(String),
}

impl Handshake {
    /// The message as one line, newline included.
    pub fn encode(&self) -> Vec<u8> {
        let flat = |s: &str| s.replace(['\n', '\r'], " ");
        let line = match self {
            Handshake::Ready => "R".to_string(),
            Handshake::Go => "G".to_string(),
            Handshake::Started(pid) => format!("P{pid}"),
            Handshake::Done(text) => format!("S{}", flat(text)),
            Handshake::Failed(why) => format!("E{}", flat(why)),
        };
        format!("{line}\n").into_bytes()
    }

    /// Reads a message; `what` names the writer in the error for a line that is none.
    pub fn decode(line: &[u8], what: &str) -> Result<Handshake, NativeError> {
        let text = String::from_utf8_lossy(line);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let (tag, rest) = text.split_at(text.chars().next().map_or(0, char::len_utf8));
        match (tag, rest) {
            ("R", "") => Ok(Handshake::Ready),
            ("G", "") => Ok(Handshake::Go),
            ("P", pid) => pid
                .parse()
                .map(Handshake::Started)
                .map_err(|_| NativeError::Failed(format!("{what} sent a bad pid"))),
            ("S", text) => Ok(Handshake::Done(text.to_string())),
            ("E", why) => Ok(Handshake::Failed(why.to_string())),
            ("", _) => Err(NativeError::Failed(format!("{what} died"))),
            _ => Err(NativeError::Failed(format!(
                "{what} sent something unexpected"
            ))),
        }
    }

    /// Reads a message that must be `Ready`; a failure's text, or what else came, as
    /// the error.
    pub fn expect_ready(line: &[u8], what: &str) -> Result<(), NativeError> {
        match Handshake::decode(line, what)? {
            Handshake::Ready => Ok(()),
            Handshake::Failed(why) => Err(NativeError::Failed(why)),
            other => Err(NativeError::Failed(format!(
                "{what} sent {other:?} instead of ready"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_comes_back_as_sent() {
        for m in [
            Handshake::Ready,
            Handshake::Go,
            Handshake::Started(4242),
            Handshake::Done("text".into()),
            Handshake::Failed("cannot mount: busy".into()),
        ] {
            assert_eq!(Handshake::decode(&m.encode(), "test").unwrap(), m);
        }
    }

    #[test]
    fn a_failure_stays_one_line_and_nothing_else_passes() {
        let m = Handshake::Failed("two\nlines".into()).encode();
        assert_eq!(m, b"Etwo lines\n");
        let text = |r: Result<Handshake, NativeError>| r.unwrap_err().to_string();
        assert_eq!(text(Handshake::decode(b"", "init")), "init died");
        assert_eq!(
            text(Handshake::decode(b"ok", "init")),
            "init sent something unexpected"
        );
        assert!(Handshake::decode(b"Pabc", "helper").is_err());
        assert!(Handshake::decode("é".as_bytes(), "x").is_err());
        let e = Handshake::expect_ready(b"Eno room\n", "init").unwrap_err();
        assert_eq!(e.to_string(), "no room");
        assert!(Handshake::expect_ready(b"G\n", "init").is_err());
        assert!(Handshake::expect_ready(b"R\n", "init").is_ok());
    }
}
