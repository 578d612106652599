//! Real-time playback of a recording in the terminal: `--speed`, `--idle-limit`, and
//! keys while it plays (space pause/resume, `+`/`-` faster/slower, `.` skip the current
//! pause, `q` quit). A session still running is followed as it is written.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::time::Duration;

use gatehouse_recordings::cast::{CastReader, EventKind};
use tokio::sync::mpsc;

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Key {
    Pause,
    Faster,
    Slower,
    Skip,
    Quit,
}

fn key(b: u8) -> Option<Key> {
    match b {
        b' ' => Some(Key::Pause),
        b'+' | b'=' => Some(Key::Faster),
        b'-' | b'_' => Some(Key::Slower),
        b'.' | b'n' => Some(Key::Skip),
        b'q' | 0x03 => Some(Key::Quit),
        _ => None,
    }
}

/// Puts the terminal in raw mode for as long as it lives.
struct RawMode(Option<nix::sys::termios::Termios>);

impl RawMode {
    fn enable() -> Self {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return RawMode(None);
        }
        let Ok(saved) = nix::sys::termios::tcgetattr(&stdin) else {
            return RawMode(None);
        };
        let mut raw = saved.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        raw.output_flags = saved.output_flags; // keep \n → \r\n for the output
        let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &raw);
        RawMode(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
    }
}

/// Keys from the terminal, if there is one.
fn keys() -> mpsc::Receiver<Key> {
    let (tx, rx) = mpsc::channel(16);
    if std::io::stdin().is_terminal() {
        std::thread::spawn(move || {
            let mut b = [0u8; 1];
            while std::io::stdin().read(&mut b).is_ok_and(|n| n == 1) {
                if let Some(k) = key(b[0]) {
                    if tx.blocking_send(k).is_err() {
                        return;
                    }
                }
            }
        });
    }
    rx
}

/// Plays `file`; `running` says whether the session is still being recorded.
pub async fn play(
    file: &Path,
    mut speed: f64,
    idle_limit: Option<f64>,
    running: &dyn Fn() -> bool,
) -> anyhow::Result<()> {
    let (_, mut reader) = CastReader::open(file)?;
    let _raw = RawMode::enable();
    let mut keys = keys();
    let mut out = std::io::stdout();
    let mut last = 0.0;
    let mut paused = false;
    loop {
        let event = match reader.next_event()? {
            Some(e) => e,
            None if running() => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            None => break,
        };
        if event.kind != EventKind::Output {
            continue;
        }
        let mut gap = (event.time - last).max(0.0);
        if let Some(limit) = idle_limit {
            gap = gap.min(limit);
        }
        last = event.time;
        let mut remaining = Duration::from_secs_f64(gap / speed);
        out.flush()?;
        while paused || !remaining.is_zero() {
            let step = if paused {
                Duration::from_secs(3600)
            } else {
                remaining
            };
            let started = tokio::time::Instant::now();
            tokio::select! {
                _ = tokio::time::sleep(step) => {
                    if !paused {
                        remaining = Duration::ZERO;
                    }
                }
                k = keys.recv() => {
                    remaining = remaining.saturating_sub(started.elapsed());
                    match k {
                        Some(Key::Pause) => paused = !paused,
                        Some(Key::Faster) => speed = (speed * 2.0).min(64.0),
                        Some(Key::Slower) => speed = (speed / 2.0).max(1.0 / 64.0),
                        Some(Key::Skip) => {
                            remaining = Duration::ZERO;
                            paused = false;
                        }
                        Some(Key::Quit) => return Ok(()),
                        None => {}
                    }
                }
            }
        }
        out.write_all(event.data.as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_map() {
        use super::{key, Key};
        assert_eq!(key(b' '), Some(Key::Pause));
        assert_eq!(key(b'+'), Some(Key::Faster));
        assert_eq!(key(b'-'), Some(Key::Slower));
        assert_eq!(key(b'.'), Some(Key::Skip));
        assert_eq!(key(b'q'), Some(Key::Quit));
        assert_eq!(key(b'x'), None);
    }
}
