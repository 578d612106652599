//! `gatehouse image build|import|list|delete`.

use std::path::PathBuf;

use clap::Subcommand;
use gatehouse_runtime::images::{suite_for, Images, DEFAULT_MIRROR};

use crate::config::Config;

/// Image commands.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build a Debian image with debootstrap.
    Build {
        /// Image name, e.g. debian-12.
        name: String,
        /// Debian suite (default from the name: debian-12 → bookworm).
        #[arg(long)]
        suite: Option<String>,
        /// Mirror URL.
        #[arg(long, default_value = DEFAULT_MIRROR)]
        mirror: String,
    },
    /// Import a rootfs tarball (.tar, .tar.gz, .tar.zst, LXC/Incus image).
    Import {
        /// Image name.
        name: String,
        /// The tarball.
        file: PathBuf,
    },
    /// List images.
    List,
    /// Delete an image no container uses.
    Delete {
        /// Image name.
        name: String,
    },
}

fn images(config: &Config) -> anyhow::Result<Images> {
    Ok(Images::open(config.server.state_dir.join("images"))?)
}

/// Builds `name` with a progress display on stderr.
pub fn build(images: &Images, name: &str, suite: Option<&str>, mirror: &str) -> anyhow::Result<()> {
    let suite = match suite.or_else(|| suite_for(name)) {
        Some(s) => s.to_string(),
        None => anyhow::bail!(
            "cannot tell the Debian suite from image name '{name}'; pass --suite (e.g. bookworm)"
        ),
    };
    let bar = spinner(format!("building image {name} (debootstrap {suite})"));
    let result = images.build(name, &suite, mirror, &mut |line| {
        bar.set_message(format!("{name}: {}", line.trim_start_matches("I: ")));
    });
    bar.finish_and_clear();
    result?;
    eprintln!("image {name} built");
    Ok(())
}

/// A spinner on stderr for a long image job.
fn spinner(message: String) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar.set_message(message);
    bar
}

/// Image commands against LXD's image store (`[runtime] kind = "lxd"`).
async fn run_lxd(config: &Config, cmd: ImageCommand) -> anyhow::Result<()> {
    let rt = gatehouse_runtime::lxd::LxdRuntime::new(config.runtime.lxd_settings()?)?;
    match cmd {
        ImageCommand::Build {
            name,
            suite,
            mirror,
        } => {
            let Some(suite) = suite.or_else(|| suite_for(&name).map(str::to_string)) else {
                anyhow::bail!(
                    "cannot tell the Debian suite from image name '{name}'; pass --suite (e.g. bookworm)"
                );
            };
            let bar = spinner(format!("building LXD image {name} (debootstrap {suite})"));
            let b = bar.clone();
            let n = name.clone();
            let progress = Box::new(move |line: &str| {
                b.set_message(format!("{n}: {}", line.trim_start_matches("I: ")));
            });
            let result = rt.build_image(&name, &suite, &mirror, progress).await;
            bar.finish_and_clear();
            result?;
            eprintln!("image {name} built and published to LXD");
        }
        ImageCommand::Import { name, file } => {
            rt.publish(&name, &file).await?;
            eprintln!("image {name} imported into LXD");
        }
        ImageCommand::List => {
            println!("{:<20} {:<25} FINGERPRINT", "NAME", "CREATED");
            for i in rt.images().await? {
                println!("{:<20} {:<25} {}", i.name, i.created, i.fingerprint);
            }
        }
        ImageCommand::Delete { name } => {
            rt.delete_image(&name).await?;
            eprintln!("image {name} deleted from LXD");
        }
    }
    Ok(())
}

/// Runs an image command.
pub async fn run(config: &Config, cmd: ImageCommand) -> anyhow::Result<()> {
    if config.runtime.kind == crate::config::RuntimeKind::Lxd {
        return run_lxd(config, cmd).await;
    }
    let images = images(config)?;
    match cmd {
        ImageCommand::Build {
            name,
            suite,
            mirror,
        } => {
            tokio::task::spawn_blocking(move || build(&images, &name, suite.as_deref(), &mirror))
                .await??
        }
        ImageCommand::Import { name, file } => {
            let n = name.clone();
            let dropped = tokio::task::spawn_blocking(move || images.import(&n, &file)).await??;
            if let Some(note) = gatehouse_runtime::devices::dropped_note(dropped) {
                eprintln!("note: {note}");
            }
            eprintln!("image {name} imported");
        }
        ImageCommand::List => {
            println!("{:<20} {:<25} SOURCE", "NAME", "CREATED");
            for i in images.list()? {
                println!(
                    "{:<20} {:<25} {}",
                    i.name,
                    i.created.format("%Y-%m-%d %H:%M:%S UTC"),
                    i.source
                );
            }
        }
        ImageCommand::Delete { name } => {
            let inventory =
                gatehouse_runtime::Inventory::open(config.server.state_dir.join("containers"))?;
            let users: Vec<String> = inventory
                .list()?
                .into_iter()
                .filter(|c| c.image == name)
                .map(|c| c.name)
                .collect();
            if !users.is_empty() {
                anyhow::bail!(
                    "image {name} is used by containers {}; delete them first",
                    users.join(", ")
                );
            }
            images.delete(&name)?;
            eprintln!("image {name} deleted");
        }
    }
    Ok(())
}
