//! `gatehouse image build|import|list|delete`.

use std::path::PathBuf;

use clap::Subcommand;
use gatehouse_runtime::image_store::{ImageStore, NativeImages};
use gatehouse_runtime::images::{suite_for, Flavor, Recipe, DEFAULT_MIRROR};

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
        /// The lean image (no systemd; containers run the built-in init), for density.
        #[arg(long)]
        minimal: bool,
        /// Build the next generation of an existing image, as it was built (today's
        /// packages); `container rebase` moves containers onto it.
        #[arg(long, conflicts_with_all = ["suite", "mirror", "minimal"])]
        refresh: bool,
    },
    /// Import a rootfs tarball (.tar, .tar.gz, .tar.zst, LXC/Incus image).
    Import {
        /// Image name.
        name: String,
        /// The tarball.
        file: PathBuf,
        /// Import it as the next generation of an existing image.
        #[arg(long)]
        refresh: bool,
    },
    /// List images.
    List,
    /// Delete an image no container uses.
    Delete {
        /// Image name.
        name: String,
    },
}

/// The image store of the configured runtime.
fn store(config: &Config) -> anyhow::Result<Box<dyn ImageStore>> {
    Ok(match config.runtime.kind {
        crate::config::RuntimeKind::Lxd => Box::new(gatehouse_runtime::lxd::LxdRuntime::new(
            config.runtime.lxd_settings()?,
        )?),
        crate::config::RuntimeKind::Native => {
            Box::new(NativeImages::open(&config.server.state_dir)?)
        }
    })
}

/// The Debian suite to build: the one given, or the one the name says.
fn suite(name: &str, given: Option<String>) -> anyhow::Result<String> {
    match given.or_else(|| suite_for(name).map(str::to_string)) {
        Some(s) => Ok(s),
        None => anyhow::bail!(
            "cannot tell the Debian suite from image name '{name}'; pass --suite (e.g. bookworm)"
        ),
    }
}

/// Builds `name` into `store` with a progress display on stderr.
pub async fn build(store: &dyn ImageStore, name: &str, recipe: &Recipe) -> anyhow::Result<()> {
    let bar = spinner(format!(
        "building image {name} (debootstrap {})",
        recipe.suite
    ));
    let b = bar.clone();
    let n = name.to_string();
    let progress = Box::new(move |line: &str| {
        b.set_message(format!("{n}: {}", line.trim_start_matches("I: ")));
    });
    let result = store.build(name, recipe, progress).await;
    bar.finish_and_clear();
    result?;
    eprintln!("image {name} built in {}", store.place());
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

/// Runs an image command on the configured runtime's image store.
pub async fn run(config: &Config, cmd: ImageCommand) -> anyhow::Result<()> {
    let store = store(config)?;
    match cmd {
        ImageCommand::Build {
            name,
            refresh: true,
            ..
        } => {
            let bar = spinner(format!("building the next generation of image {name}"));
            let b = bar.clone();
            let progress = Box::new(move |line: &str| {
                b.set_message(line.trim_start_matches("I: ").to_string());
            });
            let n = store.refresh(&name, progress).await;
            bar.finish_and_clear();
            eprintln!("image {name}: generation {} built", n?);
        }
        ImageCommand::Import {
            name,
            file,
            refresh: true,
        } => {
            let n = store.import_generation(&name, &file).await?;
            eprintln!("image {name}: generation {n} imported");
        }
        ImageCommand::Build {
            name,
            suite: given,
            mirror,
            minimal,
            ..
        } => {
            let recipe = Recipe {
                suite: suite(&name, given)?,
                mirror,
                flavor: if minimal {
                    Flavor::Minimal
                } else {
                    Flavor::Full
                },
            };
            build(store.as_ref(), &name, &recipe).await?;
        }
        ImageCommand::Import { name, file, .. } => {
            let dropped = store.import(&name, &file).await?;
            if let Some(note) = gatehouse_runtime::devices::dropped_note(dropped) {
                eprintln!("note: {note}");
            }
            eprintln!("image {name} imported into {}", store.place());
        }
        ImageCommand::List => {
            println!("{:<20} {:<25} {}", "NAME", "CREATED", store.origin_title());
            for i in store.list().await? {
                println!("{:<20} {:<25} {}", i.name, i.created, i.origin);
            }
        }
        ImageCommand::Delete { name } => {
            store.delete(&name).await?;
            eprintln!("image {name} deleted from {}", store.place());
        }
    }
    Ok(())
}
