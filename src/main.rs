//! The `email-ratelimit` command line: parse, dispatch, map errors to exit codes (78 for a bad
//! config, so systemd does not restart-loop).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use email_ratelimit::{admin, config, daemon, probe, telemetry};

/// sysexits EX_CONFIG.
const EXIT_CONFIG: u8 = 78;

#[derive(Debug, Parser)]
#[command(
    name = "email-ratelimit",
    version,
    about = "Postfix policy daemon: daily per-mailbox and server-wide send limits"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the policy daemon.
    Serve {
        /// Config file [default: /etc/email-ratelimit/config.toml, embedded defaults if absent]
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate the config and print the effective settings (passwords masked).
    CheckConfig {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Send one policy request to a running daemon and print the reply's action.
    Probe {
        /// Unix socket path, or host:port
        #[arg(long)]
        socket: String,
        /// sasl_username to send
        #[arg(long)]
        user: String,
        #[arg(long, default_value_t = 1)]
        recipients: u32,
        /// protocol_state to send
        #[arg(long, default_value = "END-OF-MESSAGE")]
        state: String,
        #[arg(long, default_value = "127.0.0.1")]
        client_address: String,
        /// Seconds to wait for the reply
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
    /// Show what a sender has sent today, its caps and what remains.
    Status {
        #[arg(long, short)]
        config: Option<PathBuf>,
        user: String,
    },
    /// List recent violations, newest first.
    Violations {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print the stored JSON records
        #[arg(long)]
        json: bool,
    },
    /// Clear today's counter of one sender.
    Reset {
        #[arg(long, short)]
        config: Option<PathBuf>,
        user: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config_path = match &cli.command {
        Command::Serve { config }
        | Command::CheckConfig { config }
        | Command::Status { config, .. }
        | Command::Violations { config, .. }
        | Command::Reset { config, .. } => Some(config.clone()),
        Command::Probe { .. } => None,
    };
    let loaded = match config_path.map(|p| config::load(p.as_deref()).map(|c| (p, c))).transpose() {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("email-ratelimit: config error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("email-ratelimit: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match (cli.command, loaded) {
        (Command::Serve { .. }, Some((path, config))) => {
            let log = telemetry::init(&config.log.level);
            match runtime.block_on(daemon::serve(path, config, log)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("cannot start: {e}");
                    eprintln!("email-ratelimit: {e}");
                    ExitCode::from(if e.is_config() { EXIT_CONFIG } else { 1 })
                }
            }
        }
        (Command::CheckConfig { .. }, Some((_, config))) => {
            print!("{}", config.render());
            ExitCode::SUCCESS
        }
        (Command::Probe { socket, user, recipients, state, client_address, timeout }, _) => {
            let request = probe::Probe { user, recipients, state, client_address };
            finish(
                runtime
                    .block_on(probe::send(&socket, &request, Duration::from_secs(timeout)))
                    .map(|a| a + "\n"),
            )
        }
        (Command::Status { user, .. }, Some((_, config))) => {
            finish(runtime.block_on(admin::status(&config, &user)))
        }
        (Command::Violations { limit, json, .. }, Some((_, config))) => {
            finish(runtime.block_on(admin::violations(&config, limit, json)))
        }
        (Command::Reset { user, .. }, Some((_, config))) => {
            finish(runtime.block_on(admin::reset(&config, &user)))
        }
        (_, None) => ExitCode::FAILURE,
    }
}

fn finish<E: std::fmt::Display>(result: Result<String, E>) -> ExitCode {
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("email-ratelimit: {e}");
            ExitCode::FAILURE
        }
    }
}
