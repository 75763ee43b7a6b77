//! The commands, one file each: every `cli` argument struct has its own `run`, which parses what
//! it was given into typed values once, does its work, prints what it prints, and fails with one
//! [`CommandError`], whose variants are mapped to exit codes here and only here.

use std::path::Path;

use crate::cli::Command;
use crate::config::{self, Config};

mod check_config;
mod generate;
mod lock;
mod locks;
mod next_date;
mod probe;
mod raise;
mod record;
mod release;
mod replay;
mod reset;
mod serve;
mod status;
mod top;
mod trial;
mod unlock;
mod violations;

/// sysexits EX_CONFIG: a config that does not load (or that `check-config` refuses a part of);
/// systemd does not restart-loop on it.
const EXIT_CONFIG: u8 = 78;

/// Why a command failed, and so its exit status.
#[derive(Debug, PartialEq, Eq)]
pub enum CommandError {
    /// The config does not load: 78.
    Config(String),
    /// Settings the config check refuses, one line each (the daemon runs without their part): 78.
    Refused(Vec<String>),
    /// Anything else: 1.
    Failed(String),
    /// Printed already on stdout (`status`: the health); the status says what is down.
    Down(u8),
}

impl CommandError {
    /// The process's exit status.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) | Self::Refused(_) => EXIT_CONFIG,
            Self::Failed(_) => 1,
            Self::Down(code) => *code,
        }
    }

    /// What goes to stderr, a line each, after `email-ratelimit: `.
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        match self {
            Self::Config(why) | Self::Failed(why) => vec![why.clone()],
            Self::Refused(lines) => lines.clone(),
            Self::Down(_) => Vec::new(),
        }
    }
}

impl From<crate::admin::AdminError> for CommandError {
    fn from(e: crate::admin::AdminError) -> Self {
        Self::Failed(e.to_string())
    }
}

/// Runs one command.
///
/// # Errors
/// [`CommandError`], which says the exit status.
pub fn run(command: Command) -> Result<(), CommandError> {
    if !matches!(command, Command::Serve(_)) {
        background_threads();
    }
    match command {
        Command::Serve(c) => c.run(),
        Command::CheckConfig(c) => c.run(),
        Command::Probe(c) => c.run(),
        Command::Status(c) => c.run(),
        Command::Violations(c) => c.run(),
        Command::Reset(c) => c.run(),
        Command::Top(c) => c.run(),
        Command::Raise(c) => c.run(),
        Command::Lock(c) => c.run(),
        Command::Unlock(c) => c.run(),
        Command::Release(c) => c.run(),
        Command::Trial(c) => c.run(),
        Command::Record(c) => c.run(),
        Command::Replay(c) => c.run(),
        Command::Locks(c) => c.run(),
        Command::NextDate(c) => c.run(),
        Command::Generate(c) => c.run(),
    }
}

/// Where every command's config comes from: `--config`, else [`config::default_path`] (the
/// embedded defaults when that file does not exist).
fn load(given: Option<&Path>) -> Result<Config, CommandError> {
    config::load(given).map_err(|e| CommandError::Config(format!("config error: {e}")))
}

/// Runs `work` to its end on the one-threaded runtime every command uses. One thread runs every
/// policy connection and the Redis link: on the small machines this daemon shares with Postfix,
/// Dovecot and Redis, handing a request between worker threads cost more CPU than the request
/// itself (BENCHMARKS.md, issue 13). Heavy work goes to the blocking pool.
fn block_on<F: std::future::Future>(work: F) -> Result<F::Output, CommandError> {
    let runtime = runtime()?;
    Ok(runtime.block_on(work))
}

fn runtime() -> Result<tokio::runtime::Runtime, CommandError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CommandError::Failed(format!("cannot start the runtime: {e}")))
}

/// Starts jemalloc's background threads, which give memory freed after a burst (the config parse
/// of a long mailbox list, a database refresh) back to the system while the process is idle.
/// `serve` starts them once its privileges are dropped; the other commands at once.
fn background_threads() {
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        eprintln!("email-ratelimit: note: jemalloc background threads not started: {e}");
    }
}
