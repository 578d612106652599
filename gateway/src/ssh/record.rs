//! The recording side of a session channel: output (and input, when configured) go to
//! the session's asciicast files as they pass. A failed write is reported once on a
//! channel, and the session ends (fail closed).

use std::sync::{Arc, Mutex};

use gatehouse_recordings::cast::{CastWriter, EventKind};
use tokio::sync::mpsc;

/// Which stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// stdout, or the terminal.
    Out,
    /// stderr of an exec without a terminal.
    Err,
}

/// A channel's recording.
pub struct Recorder {
    main: CastWriter,
    stderr: Option<CastWriter>,
    record_input: bool,
    failed: Option<mpsc::Sender<String>>,
}

/// A recorder shared by the channel's pumps.
#[derive(Clone)]
pub struct Tap(Arc<Mutex<Recorder>>);

impl Tap {
    /// A tap over the cast files; a write failure is sent on `failed`.
    pub fn new(
        main: CastWriter,
        stderr: Option<CastWriter>,
        record_input: bool,
        failed: mpsc::Sender<String>,
    ) -> Self {
        Tap(Arc::new(Mutex::new(Recorder {
            main,
            stderr,
            record_input,
            failed: Some(failed),
        })))
    }

    fn with(&self, f: impl FnOnce(&mut Recorder) -> std::io::Result<()>) {
        let Ok(mut r) = self.0.lock() else { return };
        if r.failed.is_none() {
            return; // already failed: the session is ending
        }
        if let Err(e) = f(&mut r) {
            if let Some(tx) = r.failed.take() {
                let _ = tx.try_send(format!(
                    "the session recording cannot be written ({e}); session ended"
                ));
            }
        }
    }

    /// Output from the process.
    pub fn output(&self, stream: Stream, data: &[u8]) {
        self.with(|r| {
            r.main.event(EventKind::Output, data)?;
            match (stream, r.stderr.as_mut()) {
                (Stream::Err, Some(e)) => e.event(EventKind::Output, data),
                _ => Ok(()),
            }
        });
    }

    /// Input from the person (if input recording is on).
    pub fn input(&self, data: &[u8]) {
        self.with(|r| {
            if r.record_input {
                r.main.event(EventKind::Input, data)
            } else {
                Ok(())
            }
        });
    }

    /// A terminal resize.
    pub fn resize(&self, cols: u32, rows: u32) {
        self.with(|r| {
            r.main
                .event(EventKind::Resize, format!("{cols}x{rows}").as_bytes())
        });
    }

    /// Flushes to disk at the end.
    pub fn sync(&self) {
        self.with(|r| {
            r.main.sync()?;
            if let Some(e) = r.stderr.as_mut() {
                e.sync()?;
            }
            Ok(())
        });
    }
}
