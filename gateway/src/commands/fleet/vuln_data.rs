//! `fleet vuln-data update`: fetches the Debian Security Tracker's data (the URL in
//! `[fleet] vulnerability_data`, Debian's by default) into the state directory, checked
//! to be the tracker's format before it replaces the copy in use.

use std::time::Duration;

use clap::Subcommand;
use gatehouse_fleet::tracker::Tracker;

use crate::commands::Console;
use crate::config::Config;

/// The largest tracker document fetched (Debian's is ≈ 50 MB and grows).
const MAX_TRACKER: usize = 1 << 30;
/// How long the download may take.
const WITHIN: Duration = Duration::from_secs(600);

/// The `fleet vuln-data` subcommands.
#[derive(Debug, Subcommand)]
pub enum VulnDataCommand {
    /// Fetch it now (where the network allows).
    Update {
        /// Fetch from here instead of the configured URL.
        #[arg(long)]
        from: Option<String>,
    },
}

/// Runs a `fleet vuln-data` command.
pub async fn run(config: &Config, cmd: VulnDataCommand, c: &mut Console) -> anyhow::Result<()> {
    let VulnDataCommand::Update { from } = cmd;
    let target = config.vuln_data();
    let Some(url) = from.or_else(|| config.vuln_data_url()) else {
        anyhow::bail!(
            "[fleet] vulnerability_data names a file ({}), not a URL: it is kept up to date by whoever writes it",
            target.display()
        );
    };
    let data = crate::fetch::get(&url, MAX_TRACKER, WITHIN, 3).await?;
    let size = data.len();
    let dir = target
        .parent()
        .ok_or_else(|| anyhow::anyhow!("{}: no directory", target.display()))?
        .to_path_buf();
    let path = target.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        // The whole document must read as the tracker's (any release: the shape counts).
        Tracker::read(&data[..], "bookworm")
            .map_err(|e| anyhow::anyhow!("{url} is not the tracker's data: {e}"))?;
        std::fs::create_dir_all(&dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
        std::io::Write::write_all(&mut tmp, &data)?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(())
    })
    .await??;
    c.note(format!(
        "vulnerability data updated: {} ({size} bytes)",
        target.display()
    ));
    Ok(())
}
