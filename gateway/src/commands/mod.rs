//! The commands the local CLI (clap, `cli/`) and the admin control plane (over SSH and
//! the admin socket, `admin/`) both run: their types, their execution, and the console
//! their output goes to. New admin commands are added here once.

pub mod console;
pub mod container;
pub mod fleet;
pub mod hosted;
pub mod patch;
pub mod player;
pub mod sessions;

use gatehouse_runtime::ContainerRecord;

/// Which containers a `container list` shows.
pub type Visible = Box<dyn Fn(&ContainerRecord) -> bool + Send + Sync>;

/// Where an admin command's output goes, and who runs it (named in audit events). The
/// local CLI prints it; the admin control plane over SSH sends it down the channel.
#[derive(Default)]
pub struct Console {
    /// What goes to stdout.
    pub out: String,
    /// What goes to stderr.
    pub err: String,
    /// Who runs the command.
    pub by: String,
    /// The person running it over SSH (the default owner of what they create).
    pub user: Option<String>,
    /// Which containers `container list` may show (`None`: all).
    pub visible: Option<Visible>,
}

impl Console {
    /// The console of a command run on the gateway host.
    pub fn local() -> Self {
        let user = std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "root".into());
        Console {
            by: format!("{user} (local admin)"),
            ..Default::default()
        }
    }

    /// A line of output.
    pub fn say(&mut self, line: String) {
        self.out.push_str(&line);
        self.out.push('\n');
    }

    /// A line of information (stderr).
    pub fn note(&mut self, line: String) {
        self.err.push_str(&line);
        self.err.push('\n');
    }

    /// Prints what was said to this process's stdout and stderr.
    pub fn print(self) {
        use std::io::Write;
        let _ = std::io::stdout().write_all(self.out.as_bytes());
        let _ = std::io::stderr().write_all(self.err.as_bytes());
    }
}
