//! The `email-ratelimit` command line: parse, dispatch, map errors to exit codes (78 for a bad
//! config, so systemd does not restart-loop).

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use email_ratelimit::cli::{Cli, Command};
use email_ratelimit::{admin, cli, clock, config, daemon, generate, probe, telemetry};

/// jemalloc with its background thread: memory freed after a burst (the config parse of a long
/// mailbox list, a database refresh) goes back to the system within seconds even while the
/// daemon is idle; glibc kept most of it (BENCHMARKS.md, issue 13).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// sysexits EX_CONFIG.
const EXIT_CONFIG: u8 = 78;

/// Starts jemalloc's background threads, which give memory freed after a burst back to the
/// system while the process is idle. `serve` starts them once its privileges are dropped; the
/// other commands at once.
fn background_threads() {
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        eprintln!("email-ratelimit: note: jemalloc background threads not started: {e}");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        background_threads();
    }
    let config_path = match &cli.command {
        Command::Serve { config, .. }
        | Command::CheckConfig { config, .. }
        | Command::Status { config, .. }
        | Command::Violations { config, .. }
        | Command::Reset { config, .. }
        | Command::Top { config, .. }
        | Command::Raise { config, .. }
        | Command::Lock { config, .. }
        | Command::Unlock { config, .. }
        | Command::Release { config, .. }
        | Command::Locks { config, .. }
        | Command::Trial { config }
        | Command::Record { config, .. }
        | Command::NextDate { config }
        | Command::Replay { config, .. } => Some(config.clone()),
        // The config is read for its socket only when none is given.
        Command::Probe { config, socket: None, .. } => Some(config.clone()),
        Command::Probe { .. } | Command::Generate { .. } => None,
    };
    let loaded = match config_path.map(|p| config::load(p.as_deref()).map(|c| (p, c))).transpose() {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("email-ratelimit: config error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // One thread runs every policy connection and the Redis link: on the small machines this
    // daemon shares with Postfix, Dovecot and Redis, handing a request between worker threads
    // cost more CPU than the request itself (BENCHMARKS.md, issue 13). Heavy work (config
    // reloads, limits rebuilds, the cache file) goes to the blocking pool.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("email-ratelimit: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match (cli.command, loaded) {
        (Command::Serve { pidfile, .. }, Some((path, config))) => {
            // Bind, write the pid file and drop to `[daemon] user` while this is the only
            // thread; the log's writer and jemalloc's threads start after.
            let served =
                runtime.block_on(daemon::prepare(&config, pidfile.as_deref())).and_then(|prepared| {
                    background_threads();
                    let (log, _flush) = telemetry::init(&config.log).unzip();
                    runtime.block_on(daemon::serve(path, config, log, prepared))
                });
            match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("email-ratelimit: {e}");
                    ExitCode::from(if e.is_config() { EXIT_CONFIG } else { 1 })
                }
            }
        }
        (Command::CheckConfig { quiet, non_default, .. }, Some((_, config))) => {
            // The warnings `serve` would log, on stderr: stdout stays the effective config.
            for warning in email_ratelimit::config::warnings(&config) {
                eprintln!("warning: {warning}");
            }
            if non_default {
                print!("{}", config.render_non_default());
            } else if !quiet {
                print!("{}", config.render());
            }
            // Refused settings: `serve` runs without their part; the check says to change them.
            for refused in &config.refused {
                eprintln!("email-ratelimit: {refused}");
            }
            if config.refused.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_CONFIG) }
        }
        (Command::NextDate { .. }, Some((_, config))) => {
            println!("{}", config.timezone.next_date(clock::from_env().0.now()));
            ExitCode::SUCCESS
        }
        (Command::Generate { what, dir }, _) => {
            match generate::generate(what, dir.as_deref(), &mut std::io::stdout().lock()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("email-ratelimit: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        (
            Command::Probe {
                socket,
                user,
                recipients,
                state,
                client_address,
                sender,
                recipient,
                size,
                count,
                timeout,
                ..
            },
            loaded,
        ) => {
            let configured = loaded.map(|(_, config)| config.listen.socket.display().to_string());
            let Some(socket) = socket.or(configured) else { return ExitCode::FAILURE };
            let request = probe::Probe {
                user,
                recipients,
                state,
                client_address,
                sender: sender.unwrap_or_default(),
                recipient,
                size,
                count,
            };
            finish(
                runtime
                    .block_on(probe::send(&socket, &request, Duration::from_secs(timeout)))
                    .map(|a| a.to_string()),
            )
        }
        (Command::Status { user: Some(user), json, .. }, Some((_, config))) => {
            finish(runtime.block_on(admin::status(&config, &user, json)))
        }
        (Command::Status { user: None, json, .. }, Some((_, config))) => {
            match runtime.block_on(admin::health(&config, json)) {
                // Printed either way; the exit status says what is down (for checks): 0 nothing,
                // 1 the daemon, 2 Redis.
                Ok((text, health)) => {
                    print!("{text}");
                    ExitCode::from(health.exit_code())
                }
                Err(e) => finish::<admin::AdminError>(Err(e)),
            }
        }
        (Command::Top { limit, domains, local, date, json, .. }, Some((_, config))) => {
            let of = match (domains, local) {
                (true, _) => admin::TopOf::Domains,
                (false, true) => admin::TopOf::Local,
                (false, false) => admin::TopOf::Senders,
            };
            finish(runtime.block_on(admin::top(&config, limit, of, date, json)))
        }
        (Command::Raise { user, cancel: true, .. }, Some((_, config))) => {
            finish(runtime.block_on(admin::cancel_raise(&config, &user)))
        }
        (Command::Raise { user, caps, duration, lower, .. }, Some((_, config))) => {
            let duration = duration.unwrap_or_default();
            let lowering = if lower { admin::Lowering::Allowed } else { admin::Lowering::Refused };
            finish(runtime.block_on(admin::raise(&config, &user, &caps, &duration, lowering)))
        }
        (Command::Lock { user, reason, duration, .. }, Some((_, config))) => {
            finish(runtime.block_on(admin::lock(&config, &user, &reason, duration.as_deref())))
        }
        (Command::Unlock { user, .. }, Some((_, config))) => {
            finish(runtime.block_on(admin::unlock(&config, &user)))
        }
        (Command::Release { user, .. }, Some((_, config))) => {
            finish(runtime.block_on(admin::release(&config, &user)))
        }
        (Command::Trial { .. }, Some((_, config))) => finish(runtime.block_on(admin::trial(&config))),
        (Command::Replay { input, decisions, json, mode, file, .. }, Some((_, config))) => {
            finish(runtime.block_on(replay(&config, input, decisions.as_deref(), json, mode, &file)))
        }
        (Command::Record { action, user, reason, .. }, Some((_, config))) => {
            finish(runtime.block_on(admin::record(&config, &action, &user, &reason)))
        }
        (Command::Locks { json, .. }, Some((_, config))) => {
            finish(runtime.block_on(admin::locks(&config, json)))
        }
        (Command::Violations { limit, json, user, since, .. }, Some((_, config))) => {
            let only = admin::Only { user: user.as_deref(), since: since.as_deref() };
            finish(runtime.block_on(admin::violations(&config, limit, &only, json)))
        }
        (Command::Reset { user, .. }, Some((_, config))) => {
            finish(runtime.block_on(admin::reset(&config, user.as_deref())))
        }
        (_, None) => ExitCode::FAILURE,
    }
}

/// `replay`: the summary text (or JSON).
async fn replay(
    config: &config::Config,
    input: cli::ReplayInput,
    decisions: Option<&std::path::Path>,
    json: bool,
    mode: cli::ReplayModeArg,
    file: &std::path::Path,
) -> Result<String, String> {
    use email_ratelimit::replay::{self, Format, ReplayMode};
    let format = match input {
        cli::ReplayInput::Jsonl => Format::Jsonl,
        cli::ReplayInput::Journal => Format::Journal,
    };
    let mode = match mode {
        cli::ReplayModeArg::Enforce => ReplayMode::Enforce,
        cli::ReplayModeArg::AsConfigured => ReplayMode::AsConfigured,
    };
    let reader: Box<dyn std::io::BufRead> = if file.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let f = std::fs::File::open(file)
            .map_err(|e| format!("{}: {}", file.display(), email_ratelimit::oserror::plain(&e)))?;
        Box::new(std::io::BufReader::with_capacity(1 << 20, f))
    };
    let mut out = match decisions {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|e| format!("{}: {}", path.display(), email_ratelimit::oserror::plain(&e)))?,
        )),
        None => None,
    };
    let report =
        replay::run(config, reader, format, mode, out.as_mut().map(|w| w as &mut dyn std::io::Write))
            .await
            .map_err(|e| e.to_string())?;
    if let Some(mut w) = out {
        std::io::Write::flush(&mut w).map_err(|e| e.to_string())?;
    }
    Ok(if json { report.json().to_string() + "\n" } else { report.text() })
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
