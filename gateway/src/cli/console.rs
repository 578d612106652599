//! `gatehouse container console NAME` on the gateway host: the host's terminal attached
//! to the container's console (raw, its size passed on), recorded and audited through
//! [`crate::commands::console`]. Ctrl-] detaches; so does the end of standard input.

use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;

use gatehouse_runtime::{Process, WindowSize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::commands::console::{ConsoleSession, Viewer};
use crate::config::Config;

/// Attaches this terminal to the console of `name` until detached or the console ends.
pub async fn run(config: &Config, name: &str) -> anyhow::Result<()> {
    gatehouse_runtime::names::validate_container_name(name)?;
    let runtime = crate::wiring::open_runtime(config)?;
    runtime.get(name).await?;
    let size = terminal_size();
    let process = runtime.console(name, size).await?;
    let state = &config.server.state_dir;
    let audit = crate::audit::Audit::open(state)?;
    let recordings = gatehouse_recordings::store::Recordings::open(state.join("recordings"))?;
    let viewer = Viewer {
        user: crate::commands::Console::local().by,
        peer: "local".into(),
        rights: "root on the gateway host".into(),
    };
    let dims = (size.cols, size.rows);
    let mut session =
        ConsoleSession::begin(&audit, &recordings, &config.recording, &viewer, name, dims).await?;
    eprint!(
        "gatehouse: attached to the console of {name} (session {}); Ctrl-] detaches\r\n",
        session.id()
    );
    let raw = RawMode::enter();
    let how = relay(process, &mut session).await;
    drop(raw);
    eprintln!("\r\ngatehouse: {how}");
    session.end(&how).await;
    Ok(())
}

/// Copies between the terminal and the console; returns how it ended.
async fn relay(process: Process, session: &mut ConsoleSession) -> String {
    let Process {
        mut stdin,
        mut stdout,
        control,
        ..
    } = process;
    let mut typed = keyboard();
    let mut winch =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok();
    let mut out = tokio::io::stdout();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            n = stdout.read(&mut buf) => {
                let shown = match session.shown(n, &buf) {
                    Ok(shown) => shown,
                    Err(how) => return how,
                };
                if out.write_all(shown).await.is_err() || out.flush().await.is_err() {
                    return "the terminal went away".into();
                }
            }
            keys = typed.recv() => {
                let Some(keys) = keys else {
                    return "detached (end of input)".into();
                };
                if let Some(how) = session.type_into(&keys, &mut stdin).await {
                    return how;
                }
            }
            Some(()) = async { match &mut winch { Some(w) => w.recv().await, None => None } } => {
                let size = terminal_size();
                let _ = session.resize(size.cols, size.rows);
                let _ = control.resize(size).await;
            }
        }
    }
}

/// What is typed, read by a thread of its own (a blocked read of standard input must not
/// hold the process when it ends); `None` at the end of input.
fn keyboard() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 4096];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// This terminal's size (80×24 when there is none).
fn terminal_size() -> WindowSize {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills the winsize we pass.
    let ok = unsafe { libc::ioctl(libc::STDIN_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 && ws.ws_row > 0 {
        WindowSize {
            cols: ws.ws_col,
            rows: ws.ws_row,
            px_width: ws.ws_xpixel,
            px_height: ws.ws_ypixel,
        }
    } else {
        WindowSize {
            cols: 80,
            rows: 24,
            px_width: 0,
            px_height: 0,
        }
    }
}

/// The terminal in raw mode (keys pass as typed, Ctrl-C included) until dropped.
struct RawMode {
    saved: Option<nix::sys::termios::Termios>,
}

impl RawMode {
    fn enter() -> RawMode {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return RawMode { saved: None };
        }
        let Ok(saved) = tcgetattr(stdin.as_fd()) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSADRAIN, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let stdin = std::io::stdin();
            let _ = nix::sys::termios::tcsetattr(
                stdin.as_fd(),
                nix::sys::termios::SetArg::TCSADRAIN,
                saved,
            );
            let _ = std::io::stderr().flush();
        }
    }
}
