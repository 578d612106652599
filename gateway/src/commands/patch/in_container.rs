//! The upgrade inside one container, as a recorded session: the container's root
//! unpacks the `.deb`s it is handed (a tar on its standard input) into apt's archive
//! directory and gives them to its own `apt-get` (non-interactive, keeping changed
//! configuration files), then says what needs a restart. Everything it prints is
//! recorded (`replay --text` shows apt's output); the end of it is kept for the report.

use gatehouse_recordings::channel::Source;
use gatehouse_runtime::api::ExecSpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Context, Outcome};
use crate::commands::hosted::{HostedSession, Opening};

/// How much of the end of the output is kept for the report.
const TAIL: usize = 4096;
/// The marker of the script's own lines.
const MARK: &str = "gatehouse-patch:";

/// The script run by the container's root (`sh -c`).
const SCRIPT: &str = r#"set -u
export DEBIAN_FRONTEND=noninteractive
d=$(mktemp -d /var/cache/apt/archives/gatehouse-patch.XXXXXX) || exit 100
trap 'rm -rf "$d"' EXIT
tar -x -C "$d" || exit 100
apt-get install -y --only-upgrade --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$d"/*.deb
rc=$?
[ -e /run/reboot-required ] && echo "gatehouse-patch: restart reboot"
for p in /proc/[0-9]*; do
  grep -qs '\.so[.0-9]* (deleted)$' "$p/maps" && echo "gatehouse-patch: restart $(cat "$p/comm" 2>/dev/null)"
done | sort -u
exit $rc
"#;

/// Runs the upgrade in `name` with `debs` (file name, contents); records it under
/// `reason` and notes the session, restarts and failure in `out`.
pub async fn upgrade(
    cx: &Context<'_>,
    name: &str,
    reason: &str,
    debs: Vec<(String, Vec<u8>)>,
    out: &mut Outcome,
) -> anyhow::Result<()> {
    let archive = tokio::task::spawn_blocking(move || tar_of(&debs)).await??;
    let command = "apt-get install --only-upgrade (gatehouse patch)";
    let opening = Opening {
        viewer: &cx.viewer,
        container: name,
        login: "root",
        subsystem: "patch",
        command: Some(command),
        reason: Some(reason),
        pty: false,
        size: (120, 40),
    };
    let mut session =
        HostedSession::begin(cx.audit, cx.recordings, &cx.config.recording, &opening).await?;
    out.session = Some(session.id().to_string());
    let mut spec = ExecSpec::command("root", SCRIPT.to_string());
    spec.session = Some(session.id().to_string());
    let ran = relay(cx, name, spec, archive, &mut session).await;
    let how = match &ran {
        Ok((code, _)) => format!("code {code}"),
        Err(_) => "closed".to_string(),
    };
    session.end(&how).await;
    let _ = cx
        .rt
        .end_session(name, out.session.as_deref().unwrap_or_default(), true)
        .await;
    let (code, tail) = ran?;
    out.restart = restarts(&tail);
    if code != 0 {
        out.result = "failed".into();
        out.error = Some(format!(
            "apt-get failed (exit {code}):\n{}",
            last_lines(&tail, 20)
        ));
        anyhow::bail!("apt-get failed (exit {code})");
    }
    Ok(())
}

/// Starts the script, hands it the archive, records what it prints; its exit code and
/// the end of its output.
async fn relay(
    cx: &Context<'_>,
    name: &str,
    spec: ExecSpec,
    archive: Vec<u8>,
    session: &mut HostedSession,
) -> anyhow::Result<(i64, String)> {
    let mut process = cx.rt.exec(name, spec).await?;
    let mut stdin = process.stdin;
    let feed = async move {
        let _ = stdin.write_all(&archive).await;
        let _ = stdin.shutdown().await;
    };
    let mut stdout = process.stdout;
    let (mut stderr, has_stderr): (gatehouse_runtime::api::ByteReader, bool) =
        match process.stderr.take() {
            Some(s) => (s, true),
            None => (Box::pin(tokio::io::empty()), false),
        };
    let mut tail = Vec::new();
    let read = async {
        let (mut a, mut b) = ([0u8; 8192], [0u8; 8192]);
        let (mut out_open, mut err_open) = (true, has_stderr);
        while out_open || err_open {
            let (source, data) = tokio::select! {
                n = stdout.read(&mut a), if out_open => match n {
                    Ok(0) | Err(_) => { out_open = false; continue }
                    Ok(n) => (Source::Stdout, &a[..n]),
                },
                n = stderr.read(&mut b), if err_open => match n {
                    Ok(0) | Err(_) => { err_open = false; continue }
                    Ok(n) => (Source::Stderr, &b[..n]),
                },
            };
            session.output(source, data)?;
            tail.extend_from_slice(data);
            if tail.len() > 4 * TAIL {
                tail.drain(..tail.len() - TAIL);
            }
        }
        anyhow::Ok(())
    };
    let ((), read) = tokio::join!(feed, read);
    read.map_err(|e| {
        anyhow::anyhow!("the recording cannot be written ({e}): the upgrade's end is unknown")
    })?;
    let status = process.exit.await?;
    let code = match status {
        gatehouse_runtime::ExitStatus::Code(c) => i64::from(c),
        gatehouse_runtime::ExitStatus::Signal { .. } => -1,
    };
    let start = tail.len().saturating_sub(TAIL);
    Ok((code, String::from_utf8_lossy(&tail[start..]).into_owned()))
}

/// The archive of the `.deb`s.
fn tar_of(debs: &[(String, Vec<u8>)]) -> anyhow::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in debs {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        builder.append_data(&mut header, name, &data[..])?;
    }
    Ok(builder.into_inner()?)
}

/// What the script said needs a restart.
fn restarts(output: &str) -> Vec<String> {
    let mut out: Vec<String> = output
        .lines()
        .filter_map(|l| l.strip_prefix(MARK)?.trim().strip_prefix("restart "))
        .map(|w| {
            w.trim()
                .chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect()
        })
        .filter(|w: &String| !w.is_empty())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with(MARK)).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_and_tails_come_from_the_output() {
        let out = "Setting up x\ngatehouse-patch: restart reboot\ngatehouse-patch: restart sshd\ngatehouse-patch: restart sshd\n";
        assert_eq!(restarts(out), ["reboot", "sshd"]);
        assert_eq!(last_lines(out, 5), "Setting up x");
    }

    #[test]
    fn the_archive_holds_each_deb_by_name() {
        let tar = tar_of(&[("a_1.deb".into(), b"x".to_vec())]).unwrap();
        let mut a = tar::Archive::new(&tar[..]);
        let names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["a_1.deb"]);
    }
}
