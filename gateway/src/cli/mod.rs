//! The command line: `serve`, `demo`, `image …`, `container …`.

pub mod console;
pub mod demo;
pub mod image;
pub mod patch;
pub mod policy;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::commands::{container, sessions};

/// gatehouse: an SSH gateway for OS containers.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, about)]
pub struct Cli {
    /// Configuration file (default /etc/gatehouse/gatehouse.toml, else built-in defaults).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve,
    /// Try gatehouse locally on built-in defaults.
    Demo(demo::DemoArgs),
    /// Manage root filesystem images.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Manage containers.
    #[command(subcommand)]
    Container(container::ContainerCommand),
    /// What the fleet's containers run: packages, pending updates, known vulnerabilities,
    /// the auditor's report.
    #[command(subcommand)]
    Fleet(crate::commands::fleet::FleetCommand),
    /// Upgrade packages inside containers, as recorded, audited sessions under a change
    /// reference.
    Patch(crate::commands::patch::PatchArgs),
    /// Check policy files; explain a decision.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Recorded sessions.
    #[command(subcommand)]
    Sessions(sessions::SessionsCommand),
    /// Replay a recorded session in the terminal, or print it as text.
    Replay {
        /// The session id (see `sessions list`).
        session: String,
        /// Playback speed factor.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Longest pause, in seconds.
        #[arg(long)]
        idle_limit: Option<f64>,
        /// Print the plain text instead of playing it.
        #[arg(long)]
        text: bool,
    },
    /// The audit log.
    #[command(subcommand)]
    Audit(sessions::AuditCommand),
    /// Internal: run a container's supervisor (its words are
    /// `gatehouse_runtime::native::SuperviseArgs`).
    #[command(name = "__supervise", hide = true)]
    Supervise {
        /// The arguments, read by the runtime that made them.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<std::ffi::OsString>,
    },
}

/// An error that only sets the exit code: the command has said everything already.
#[derive(Debug)]
pub struct Quiet(pub u8);

impl std::fmt::Display for Quiet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}

impl std::error::Error for Quiet {}
