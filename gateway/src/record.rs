//! The recording side of session channels. A few recorder threads, shared by all sessions,
//! do the encoding and disk writes beside the relay: a channel's pumps hand each chunk to
//! its thread over a bounded queue (a slow disk slows sessions rather than growing memory),
//! and the thread writes it with the channel's [`ChannelRecorder`]. An idle session costs
//! a map entry, not a thread. A failed write is reported once, and the session ends (fail
//! closed).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use gatehouse_recordings::cast::EventKind;
use gatehouse_recordings::channel::{ChannelRecorder, Source};
use tokio::sync::{mpsc, oneshot};

/// Chunks queued towards one recorder thread before the sessions feeding it wait.
const QUEUE: usize = 1024;

/// Which stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// stdout, or the terminal.
    Out,
    /// stderr of an exec without a terminal.
    Err,
}

enum Item {
    Open(Box<ChannelRecorder>, mpsc::Sender<String>),
    Output(Stream, Bytes),
    Input(Bytes),
    Resize(u32, u32),
    Finish(oneshot::Sender<()>),
    /// The channel's taps are gone (normally after `Finish`): forget it.
    Close,
}

type Queue = mpsc::Sender<(u64, Item)>;

/// The recorder threads.
#[derive(Clone)]
pub struct Recorders {
    queues: Arc<[Queue]>,
    next: Arc<AtomicU64>,
}

impl Recorders {
    /// Starts `threads` recorder threads.
    pub fn start(threads: usize) -> std::io::Result<Self> {
        let mut queues = Vec::new();
        for n in 0..threads.max(1) {
            let (tx, rx) = mpsc::channel(QUEUE);
            std::thread::Builder::new()
                .name(format!("recorder-{n}"))
                .spawn(move || write_loop(rx))?;
            queues.push(tx);
        }
        Ok(Recorders {
            queues: queues.into(),
            next: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Hands a channel's recorder to a thread; a write failure is sent on `failed`.
    pub async fn tap(
        &self,
        recorder: ChannelRecorder,
        record_input: bool,
        failed: mpsc::Sender<String>,
    ) -> Tap {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let queue = self.queues[(id % self.queues.len() as u64) as usize].clone();
        let _ = queue
            .send((id, Item::Open(Box::new(recorder), failed)))
            .await;
        Tap {
            inner: Arc::new(TapInner { queue, id }),
            record_input,
        }
    }
}

struct TapInner {
    queue: Queue,
    id: u64,
}

impl Drop for TapInner {
    fn drop(&mut self) {
        let close = (self.id, Item::Close);
        if let Err(mpsc::error::TrySendError::Full(close)) = self.queue.try_send(close) {
            let queue = self.queue.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = queue.send(close).await;
                });
            }
        }
    }
}

/// A channel's recording, shared by its pumps.
#[derive(Clone)]
pub struct Tap {
    inner: Arc<TapInner>,
    record_input: bool,
}

impl Tap {
    async fn send(&self, item: Item) {
        // A closed queue means the thread is gone; the failure was reported already.
        let _ = self.inner.queue.send((self.inner.id, item)).await;
    }

    /// Output from the process.
    pub async fn output(&self, stream: Stream, data: Bytes) {
        self.send(Item::Output(stream, data)).await;
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
        self.send(Item::Finish(done)).await;
        let _ = wait.await;
    }
}

/// A channel being recorded by a thread.
struct Open {
    recorder: ChannelRecorder,
    failed: mpsc::Sender<String>,
    /// Raw data is buffered: written out once nothing more is waiting.
    unflushed: bool,
}

fn write_loop(mut rx: mpsc::Receiver<(u64, Item)>) {
    let mut open: HashMap<u64, Open> = HashMap::new();
    while let Some((id, item)) = rx.blocking_recv() {
        let item = match item {
            Item::Open(recorder, failed) => {
                open.insert(
                    id,
                    Open {
                        recorder: *recorder,
                        failed,
                        unflushed: false,
                    },
                );
                continue;
            }
            Item::Close => {
                open.remove(&id);
                continue;
            }
            other => other,
        };
        // A channel whose recording failed is gone: what it still sends is dropped.
        let Some(ch) = open.get_mut(&id) else {
            if let Item::Finish(done) = item {
                let _ = done.send(());
            }
            continue;
        };
        let rec = &mut ch.recorder;
        let result = match item {
            Item::Output(Stream::Out, data) => rec.data(Source::Stdout, &data),
            Item::Output(Stream::Err, data) => rec.data(Source::Stderr, &data),
            Item::Input(data) => rec.data(Source::Stdin, &data),
            Item::Resize(c, r) => rec.event(EventKind::Resize, &format!("{c}x{r}")),
            Item::Finish(done) => {
                let synced = rec.sync();
                let _ = done.send(());
                synced
            }
            Item::Open(..) | Item::Close => Ok(()),
        };
        ch.unflushed = true;
        if let Err(e) = result {
            let _ = ch.failed.try_send(format!(
                "the session recording cannot be written ({e}); session ended"
            ));
            open.remove(&id);
        }
        if rx.is_empty() {
            flush_all(&mut open);
        }
    }
}

/// Writes out every channel's buffered raw data; a channel that fails is reported and
/// dropped.
fn flush_all(open: &mut HashMap<u64, Open>) {
    open.retain(|_, ch| {
        if !std::mem::take(&mut ch.unflushed) {
            return true;
        }
        match ch.recorder.flush() {
            Ok(()) => true,
            Err(e) => {
                let _ = ch.failed.try_send(format!(
                    "the session recording cannot be written ({e}); session ended"
                ));
                false
            }
        }
    });
}
