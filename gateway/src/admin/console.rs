//! `ssh -t alice@+admin@gw container console web01`: a container's console over the
//! admin control plane, for members of the admin group and people an `[[admin]]` rule
//! names `container.console` for (a wildcard does not grant it). Recorded and audited
//! like a session ([`crate::commands::console`]); Ctrl-] detaches.

use std::sync::Arc;

use clap::Parser;
use gatehouse_runtime::{Process, WindowSize};
use russh::server::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::io::AsyncReadExt;

use super::{authorized, AdminCli, AdminCommand, Caller, Done};
use crate::app::App;
use crate::commands::console::{ConsoleSession, Viewer};
use crate::commands::container::ContainerCommand;

/// The container a command line asks the console of, if that is what it asks.
pub(super) fn wanted(line: &str) -> Option<String> {
    let words = shlex::split(line)?;
    match AdminCli::try_parse_from(words).ok()?.command {
        AdminCommand::Container(ContainerCommand::Console { name }) => Some(name),
        _ => None,
    }
}

/// A window size from an SSH request.
pub(super) fn size(cols: u32, rows: u32) -> WindowSize {
    WindowSize::from_ssh(cols, rows, 0, 0)
}

/// Authorizes, attaches and relays until the person detaches, leaves, or the console
/// ends; then closes the channel.
pub(super) async fn serve(
    mut rx: ChannelReadHalf,
    tx: ChannelWriteHalf<Msg>,
    app: &Arc<App>,
    caller: &Caller,
    name: &str,
    terminal: Option<WindowSize>,
) {
    let done = match attach(app, caller, name, terminal).await {
        Ok((process, mut session)) => {
            let how = relay(process, &mut session, &mut rx, &tx).await;
            session.end(&how).await;
            Done::failed(format!("\r\ngatehouse: {how}\r\n"), 0)
        }
        Err(done) => done,
    };
    let _ = tx.extended_data(1, done.err.as_bytes()).await;
    let _ = tx.exit_status(done.code).await;
    let _ = tx.eof().await;
    let _ = tx.close().await;
}

/// Decides, opens the console and its records.
async fn attach(
    app: &Arc<App>,
    caller: &Caller,
    name: &str,
    terminal: Option<WindowSize>,
) -> Result<(Process, ConsoleSession), Done> {
    let line = format!("container console {name}");
    let mut command = AdminCommand::Container(ContainerCommand::Console {
        name: name.to_string(),
    });
    let (rights, _) = authorized(app, caller, &mut command, &line).await?;
    let Caller::Ssh { user, peer } = caller else {
        return Err(Done::failed(
            "gatehouse: the console is attached over SSH or on the host\n".into(),
            1,
        ));
    };
    let Some(size) = terminal else {
        let hint = format!(
            "gatehouse: the console needs a terminal: ssh -t {}@+admin@GATEWAY {line}\n",
            user.name
        );
        return Err(Done::failed(hint, 2));
    };
    let failed = |e: String| Done::failed(format!("gatehouse: {e}\n"), 1);
    let process = app
        .runtime
        .console(name, size)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let viewer = Viewer {
        user: user.name.clone(),
        peer: peer.clone(),
        rights: rights.describe(),
    };
    let dims = (size.cols, size.rows);
    let config = &app.config.recording;
    let session = ConsoleSession::begin(&app.audit, &app.recordings, config, &viewer, name, dims)
        .await
        .map_err(|e| failed(format!("{e:#}")))?;
    tracing::info!(container = %name, user = %user.name, session = %session.id(), "console attached");
    Ok((process, session))
}

/// Copies between the channel and the console; returns how it ended.
async fn relay(
    process: Process,
    session: &mut ConsoleSession,
    rx: &mut ChannelReadHalf,
    tx: &ChannelWriteHalf<Msg>,
) -> String {
    let Process {
        mut stdin,
        mut stdout,
        control,
        ..
    } = process;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            n = stdout.read(&mut buf) => {
                let shown = match session.shown(n, &buf) {
                    Ok(shown) => shown,
                    Err(how) => return how,
                };
                if tx.data(shown).await.is_err() {
                    return "the client went away".into();
                }
            }
            msg = rx.wait() => match msg {
                Some(ChannelMsg::Data { data }) => {
                    if let Some(how) = session.type_into(&data, &mut stdin).await {
                        return how;
                    }
                }
                Some(ChannelMsg::WindowChange { col_width, row_height, .. }) => {
                    let size = size(col_width, row_height);
                    let _ = session.resize(size.cols, size.rows);
                    let _ = control.resize(size).await;
                }
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => return "detached (the client left)".into(),
                Some(_) => {}
            }
        }
    }
}
