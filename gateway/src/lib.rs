//! The `gatehouse` binary's code: SSH gateway, admin commands, and the container
//! supervisor. `src/main.rs` only calls [`main`]; the library target exists so that fuzz
//! targets (see `fuzz/`) reach the parsers of untrusted input through [`fuzzing`].

mod access;
mod admin;
mod app;
pub mod audit;
mod cli;
mod commands;
mod config;
mod directory;
mod fetch;
mod grammar;
mod guard;
mod hostkey;
mod live;
mod policy;
mod record;
mod repos;
mod retention;
mod ssh;
#[cfg(test)]
mod testing;
mod wiring;

#[doc(hidden)]
pub mod fuzzing;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command};

/// The most threads for blocking work at once.
const BLOCKING_THREADS: usize = 32;

/// Runs the command line's command; the process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The supervisor must stay single-threaded: dispatch it before any runtime starts.
    if let Command::Supervise { args } = &cli.command {
        use gatehouse_runtime::native::{supervise_main, SuperviseArgs};
        return match SuperviseArgs::parse(args) {
            Ok(args) => ExitCode::from(supervise_main(args).clamp(0, 255) as u8),
            Err(e) => {
                eprintln!("gatehouse: {e}");
                ExitCode::from(2)
            }
        };
    }
    let default_level = if matches!(cli.command, Command::Serve | Command::Demo(_)) {
        "info"
    } else {
        "warn"
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("GATEHOUSE_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!("{default_level},russh=warn"))
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Blocking work (audit appends under one lock, supervisor requests) gains nothing
        // from hundreds of threads in a login burst; each costs memory while it lingers.
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gatehouse: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<cli::Quiet>().is_some() => {
            ExitCode::from(e.downcast_ref::<cli::Quiet>().map_or(1, |q| q.0))
        }
        Err(e) => {
            eprintln!("gatehouse: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The command's words as typed, without the program name and `--config`.
fn command_words() -> Vec<String> {
    let mut words = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--config" {
            args.next();
        } else if !a.starts_with("--config=") {
            words.push(a);
        }
    }
    words
}

/// Sends a host admin command to the running gateway, if one runs.
async fn through_gateway(config: &config::Config) -> Option<anyhow::Result<()>> {
    let by = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "root".into());
    let done = admin::socket::forward(&config.server.state_dir, command_words(), by).await?;
    Some(done.and_then(|d| {
        print!("{}", d.out);
        eprint!("{}", d.err);
        match d.code {
            0 => Ok(()),
            c => Err(cli::Quiet(c.min(255) as u8).into()),
        }
    }))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let load = || config::Config::load_or_default(cli.config.as_deref());
    let admin_command = matches!(
        cli.command,
        Command::Container(_) | Command::Sessions(_) | Command::Audit(_)
    );
    // Interactive, so not through the admin socket: attached from here.
    if let Command::Container(commands::container::ContainerCommand::Console { name }) =
        &cli.command
    {
        return cli::console::run(&load()?, name).await;
    }
    if admin_command {
        let config = load()?;
        if let Some(result) = through_gateway(&config).await {
            return result;
        }
    }
    match cli.command {
        Command::Demo(args) => cli::demo::run(args).await,
        Command::Serve => wiring::serve(load()?).await,
        Command::Image(cmd) => cli::image::run(&load()?, cmd).await,
        Command::Container(cmd) => {
            let config = load()?;
            let runtime = wiring::open_runtime(&config)?;
            let mut console = commands::Console::local();
            let result =
                commands::container::run(&config, runtime.as_ref(), cmd, &mut console).await;
            console.print();
            result
        }
        // Read-only and from outside the containers: run here, gateway or not.
        Command::Fleet(cmd) => {
            let config = load()?;
            let runtime = wiring::open_runtime(&config)?;
            let mut console = commands::Console::local();
            let result = commands::fleet::run(&config, runtime.as_ref(), cmd, &mut console).await;
            console.print();
            result
        }
        // Long-running and recorded: run from here, like the console.
        Command::Patch(args) => cli::patch::run(&load()?, args).await,
        Command::Policy(cmd) => cli::policy::run(&load()?, cmd).await,
        Command::Sessions(cmd) => {
            let mut console = commands::Console::local();
            let result = commands::sessions::run(&load()?, cmd, &mut console);
            console.print();
            result
        }
        Command::Replay {
            session,
            speed,
            idle_limit,
            text,
        } => commands::sessions::replay(&load()?, &session, speed, idle_limit, text).await,
        Command::Audit(cmd) => {
            let mut console = commands::Console::local();
            let result = commands::sessions::audit(&load()?, cmd, &mut console);
            console.print();
            result
        }
        Command::Supervise { .. } => {
            anyhow::bail!("__supervise must be dispatched before the async runtime starts")
        }
    }
}
