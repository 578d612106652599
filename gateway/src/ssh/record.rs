//! The recording side of a session channel. The pumps hand each chunk to a writer
//! thread over a bounded queue (so encoding and disk writes run beside the relay, and a
//! slow disk slows the session rather than growing memory); the thread writes the
//! asciicast files. A failed write is reported once, and the session ends (fail closed).

use bytes::Bytes;
use gatehouse_recordings::cast::{CastWriter, EventKind};
use tokio::sync::{mpsc, oneshot};

/// Chunks queued towards the writer before the session waits for it.
const QUEUE: usize = 256;

/// Which stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// stdout, or the terminal.
    Out,
    /// stderr of an exec without a terminal.
    Err,
}

enum Item {
    Output(Stream, Bytes),
    Input(Bytes),
    Resize(u32, u32),
    Finish(oneshot::Sender<()>),
}

/// A channel's recording, shared by its pumps.
#[derive(Clone)]
pub struct Tap {
    tx: mpsc::Sender<Item>,
    record_input: bool,
}

impl Tap {
    /// Starts the writer thread over the cast files; a write failure is sent on `failed`.
    pub fn new(
        main: CastWriter,
        stderr: Option<CastWriter>,
        record_input: bool,
        failed: mpsc::Sender<String>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || write_loop(rx, main, stderr, failed));
        if let Err(e) = spawned {
            tracing::error!("cannot start the recorder thread: {e}");
        }
        Tap { tx, record_input }
    }

    async fn send(&self, item: Item) {
        // A closed queue means the writer failed; the failure was reported already.
        let _ = self.tx.send(item).await;
    }

    /// Output from the process.
    pub async fn output(&self, stream: Stream, data: &[u8]) {
        self.send(Item::Output(stream, Bytes::copy_from_slice(data)))
            .await;
    }

    /// Input from the person (if input recording is on).
    pub async fn input(&self, data: &Bytes) {
        if self.record_input {
            self.send(Item::Input(data.clone())).await;
        }
    }

    /// A terminal resize.
    pub async fn resize(&self, cols: u32, rows: u32) {
        self.send(Item::Resize(cols, rows)).await;
    }

    /// Waits until everything queued is written and synced to disk.
    pub async fn finish(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Item::Finish(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

fn write_loop(
    mut rx: mpsc::Receiver<Item>,
    mut main: CastWriter,
    mut stderr: Option<CastWriter>,
    failed: mpsc::Sender<String>,
) {
    while let Some(item) = rx.blocking_recv() {
        let result =
            match item {
                Item::Output(stream, data) => main.event(EventKind::Output, &data).and_then(|()| {
                    match (stream, stderr.as_mut()) {
                        (Stream::Err, Some(e)) => e.event(EventKind::Output, &data),
                        _ => Ok(()),
                    }
                }),
                Item::Input(data) => main.event(EventKind::Input, &data),
                Item::Resize(c, r) => main.event(EventKind::Resize, format!("{c}x{r}").as_bytes()),
                Item::Finish(done) => {
                    let synced = main
                        .sync()
                        .and_then(|()| stderr.as_mut().map_or(Ok(()), CastWriter::sync));
                    let _ = done.send(());
                    synced
                }
            };
        if let Err(e) = result {
            let _ = failed.try_send(format!(
                "the session recording cannot be written ({e}); session ended"
            ));
            return; // dropping rx closes the queue
        }
    }
}
